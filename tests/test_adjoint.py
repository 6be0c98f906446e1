"""Adjoint gradients (``diffsens.adjoint_gradient``, ``diffsens.gradient``).

Every gradient is checked against a route that does not go through the
adjoint code:

* closed forms for ``y' = A(p) y``: the outputs are ``expm(A t) y0``, their
  parameter derivatives come from ``scipy.linalg.expm_frechet``, and the
  integral of a quadratic form of ``y`` from Van Loan's block exponential
  (differentiated by a complex step);
* forward sensitivities (``solve_ivp_sens``, ``'dual'`` and ``'continuous'``)
  with the chain rule ``grad = sum_i dgdy_i^T S_i``;
* central finite differences of scipy DOP853 solves at rtol 1e-13 (the loss
  of Lotka-Volterra, and a ``g`` integral through a quadrature state);
* identities the documentation promises: ``'discrete'`` is the derivative of
  the discrete solution, so it equals the forward ``'dual'`` mode to
  round-off; checkpointing changes the memory, not the gradient.

Tolerances follow the accuracy of the solves: at rtol 1e-10 the forward
sensitivities of the linear system are good to ~1e-11, so 1e-6 leaves room
for the adjoint's own integration and interpolation; at rtol 1e-8 the
Lotka-Volterra and ROBER gradients are good to ~1e-7, compared at 1e-4.
"""

import functools

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import diffsens
from _interrupt import interrupt_child
from _linear import expm_reference, van_loan_gram
from diffsens import problems

STRATEGIES = ["gauss", "interpolating", "quadrature", "backsolve", "discrete"]
# strategies that keep (checkpointed) forward states: no backward reconstruction of y
STORING = ["gauss", "interpolating", "quadrature", "discrete"]
TIGHT = dict(rtol=1e-10, atol=1e-12)
LV_TOL = dict(rtol=1e-8, atol=1e-10)


def _rel(value, ref):
    """max |value - ref| / max |ref| over the whole vector."""
    value = np.asarray(value, dtype=float)
    ref = np.asarray(ref, dtype=float)
    assert value.shape == ref.shape, (value.shape, ref.shape)
    scale = np.abs(ref).max()
    return float(np.abs(value - ref).max() / (scale if scale > 0 else 1.0))


def _adjoint(fun, t_span, y0, p, adjoint, **kwargs):
    return diffsens.adjoint_gradient(fun, t_span, y0, p, adjoint=adjoint, **kwargs)


def _check_result(res, adjoint, n, m, t_eval=None):
    assert res.status == 0 and res.success, res.message
    assert res.adjoint == adjoint
    assert res.grad_p.shape == (m,)
    assert res.grad_y0.shape == (n,)
    assert np.isfinite(res.grad_p).all() and np.isfinite(res.grad_y0).all()
    assert res.nfev > 0 and res.nfev_adjoint > 0
    if t_eval is not None:
        np.testing.assert_array_equal(res.t, t_eval)
        assert res.y.shape == (n, len(t_eval))


def _backsolve_gave_up(res, adjoint):
    """'backsolve' reconstructs y backwards; where that amplifies the forward error
    beyond the tolerance it must say so (status -1, a message), never return a
    wrong gradient as a success.  True when it gave up that way."""
    if adjoint != "backsolve" or res.status == 0:
        return False
    assert res.status == -1 and not res.success
    assert isinstance(res.message, str)
    assert any(word in res.message.lower() for word in ("backward", "backsolve", "reconstr"))
    return True


@functools.lru_cache(maxsize=None)
def _traced(name):
    prob = problems.get(name)
    return diffsens.trace(prob.fun, prob.y0, prob.p)


def _forward_vjp(res, dgdy):
    """sum_i dgdy[:, i]^T S_i for p and y0 from a forward SensResult."""
    return (np.einsum("it,ijt->j", dgdy, res.sens),
            np.einsum("it,ijt->j", dgdy, res.sens_y0))


# ---------------------------------------------------------------------------
# 1. y' = A(p) y: exact gradients from expm / expm_frechet
# ---------------------------------------------------------------------------

A0 = np.array([[-1.0, 0.5, 0.2],
               [0.3, -0.8, 0.4],
               [0.1, 0.2, -1.2]])
A1 = np.array([[-1.0, 0.0, 0.5],
               [1.0, -0.5, 0.0],
               [0.0, 0.5, -0.5]])
A2 = np.array([[0.0, 0.0, 0.0],
               [0.0, -1.0, 1.0],
               [0.2, 0.0, -0.3]])
A3 = np.array([[0.0, 1.0, 0.0],       # a rotation: oscillating solutions
               [-1.0, 0.0, 0.0],
               [0.0, 0.0, 0.0]])
LIN_P = np.array([0.7, 1.1, 0.4])
LIN_Y0 = np.array([1.0, -0.5, 2.0])
LIN_T = np.linspace(0.0, 3.0, 7)               # includes t0: dy(t0)/dy0 = I there
LIN_W = np.random.default_rng(20240611).standard_normal((3, LIN_T.size))


def linear_fun(t, y, p):
    """A(p) y with A(p) = A0 + p0 A1 + p1^2 A2 + sin(p2) A3 (eigenvalues -0.6 .. -3.2)."""
    return A0 @ y + p[0] * (A1 @ y) + p[1] * p[1] * (A2 @ y) + np.sin(p[2]) * (A3 @ y)


def _lin_A(p):
    return A0 + p[0] * A1 + p[1] ** 2 * A2 + np.sin(p[2]) * A3


def _lin_dA(p):
    return [A1, 2.0 * p[1] * A2, np.cos(p[2]) * A3]


def _lin_exact(t=LIN_T, W=LIN_W, p=LIN_P, y0=LIN_Y0):
    """Y (3, nt) and the exact VJP sum_i W_i^T dy(t_i)/dp, sum_i W_i^T dy(t_i)/dy0."""
    return expm_reference(_lin_A(p), _lin_dA(p), t, W, y0)


@functools.lru_cache(maxsize=None)
def _lin_traced():
    return diffsens.trace(linear_fun, LIN_Y0, LIN_P)


def _lin_rhs(kind):
    return linear_fun if kind == "python" else _lin_traced()


def test_linear_reference_against_finite_differences():
    """The expm_frechet reference itself, by central differences of expm."""
    Y, gp, g0 = _lin_exact()
    h = 1e-6
    for j in range(3):
        q = LIN_P.copy()
        q[j] += h
        up = np.sum(LIN_W * _lin_exact(p=q)[0])
        q[j] -= 2 * h
        down = np.sum(LIN_W * _lin_exact(p=q)[0])
        assert abs((up - down) / (2 * h) - gp[j]) < 1e-7 * np.abs(gp).max()
    # linear in y0: the VJP w.r.t. y0 dotted with y0 is the weighted sum itself
    np.testing.assert_allclose(g0 @ LIN_Y0, np.sum(LIN_W * Y), rtol=1e-12)


@pytest.mark.parametrize("kind", ["python", "traced"])
@pytest.mark.parametrize("method", ["Tsit5", "DOP853"])
@pytest.mark.parametrize("adjoint", STRATEGIES)
def test_linear_dgdy_vs_expm_frechet(adjoint, method, kind):
    res = _adjoint(_lin_rhs(kind), (0.0, 3.0), LIN_Y0, LIN_P, adjoint, t_eval=LIN_T,
                   dgdy=LIN_W, method=method, **TIGHT)
    _check_result(res, adjoint, 3, 3, LIN_T)
    assert res.value is None
    Y, gp, g0 = _lin_exact()
    assert _rel(res.y, Y) < 1e-8
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


@pytest.mark.parametrize("adjoint", STRATEGIES)
def test_linear_loss_with_explicit_p_dependence(adjoint):
    """loss(Y, p) = sum(W * Y) + p0 p1: value and the direct dloss/dp term."""
    def loss(Y, p):
        return np.sum(LIN_W * Y) + p[0] * p[1]

    res = _adjoint(_lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, adjoint, t_eval=LIN_T,
                   loss=loss, **TIGHT)
    _check_result(res, adjoint, 3, 3, LIN_T)
    Y, gp, g0 = _lin_exact()
    value = np.sum(LIN_W * Y) + LIN_P[0] * LIN_P[1]
    assert abs(res.value - value) < 1e-8 * abs(value)
    gp = gp + np.array([LIN_P[1], LIN_P[0], 0.0])
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


@pytest.mark.parametrize("method, tol, bound", [
    ("Rodas5P", TIGHT, 1e-6),
    ("Rodas4", TIGHT, 1e-6),
    # order 2: forward sensitivities at rtol 1e-8 are good to ~2e-7 here
    ("Rosenbrock23", dict(rtol=1e-8, atol=1e-10), 1e-5),
])
@pytest.mark.parametrize("adjoint", ["gauss", "interpolating", "quadrature", "backsolve",
                                     "discrete"])
def test_linear_rosenbrock_vs_expm_frechet(adjoint, method, tol, bound):
    res = _adjoint(_lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, adjoint, t_eval=LIN_T,
                   dgdy=LIN_W, method=method, **tol)
    if method == "Rosenbrock23" and _backsolve_gave_up(res, adjoint):
        # backwards, the -3.2 mode grows by exp(3.2 * 3) ~ 1.4e4: Rosenbrock23's
        # global error (~2e-7 at rtol 1e-8) then exceeds the tolerance
        return
    _check_result(res, adjoint, 3, 3, LIN_T)
    Y, gp, g0 = _lin_exact()
    assert _rel(res.grad_p, gp) < bound
    assert _rel(res.grad_y0, g0) < bound


def forced_decay(t, y, p, c):
    """Non-autonomous, with an extra argument: y0' = -p0 y0 + c sin(p1 t), y1' = p0 y0 - p2 y1."""
    return np.stack([-p[0] * y[0] + c * np.sin(p[1] * t), p[0] * y[0] - p[2] * y[1]])


@pytest.mark.parametrize("kind", ["python", "traced"])
@pytest.mark.parametrize("adjoint", STRATEGIES)
def test_non_autonomous_with_args(adjoint, kind):
    """Explicit time dependence and args: against forward 'continuous' sensitivities."""
    y0, p, c = np.array([1.0, 0.2]), np.array([0.8, 2.5, 0.5]), 1.7
    t = np.linspace(0.0, 4.0, 9)
    W = np.random.default_rng(7).standard_normal((2, t.size))
    fun = forced_decay if kind == "python" else diffsens.trace(forced_decay, y0, p, args=(c,))
    fwd = diffsens.solve_ivp_sens(fun, (0.0, 4.0), y0, p, t_eval=t, args=(c,),
                                  sens="continuous", wrt=("p", "y0"), method="DOP853",
                                  rtol=1e-12, atol=1e-14)
    gp, g0 = _forward_vjp(fwd, W)
    res = _adjoint(fun, (0.0, 4.0), y0, p, adjoint, t_eval=t, dgdy=W, args=(c,), **TIGHT)
    _check_result(res, adjoint, 2, 3, t)
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


@pytest.mark.parametrize("adjoint, method",
                         [(a, "Tsit5") for a in STRATEGIES]
                         + [(a, "Rodas5P") for a in STRATEGIES])
def test_linear_outputs_inside_the_span(adjoint, method):
    """t_eval without t0 and tf: nothing after the last output, y0 only through y."""
    t = np.array([0.5, 1.7, 2.2])
    W = np.random.default_rng(5).standard_normal((3, t.size))
    res = _adjoint(_lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, adjoint, t_eval=t, dgdy=W,
                   method=method, **TIGHT)
    _check_result(res, adjoint, 3, 3, t)
    Y, gp, g0 = _lin_exact(t=t, W=W)
    assert _rel(res.y, Y) < 1e-8
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


@pytest.mark.parametrize("adjoint", STRATEGIES)
@pytest.mark.parametrize("method", ["Tsit5", "Rodas5P"])
def test_linear_reversed_time_span(adjoint, method):
    """t_span = (1, -2): the forward solve runs down in t, the adjoint back up."""
    t = np.linspace(1.0, -2.0, 7)
    W = np.random.default_rng(6).standard_normal((3, t.size))
    res = _adjoint(_lin_traced(), (1.0, -2.0), LIN_Y0, LIN_P, adjoint, t_eval=t, dgdy=W,
                   method=method, **TIGHT)
    _check_result(res, adjoint, 3, 3, t)
    Y, gp, g0 = _lin_exact(t=t - 1.0, W=W)          # autonomous: shift t0 to 0
    assert _rel(res.y, Y) < 1e-8
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


# ---------------------------------------------------------------------------
# 2. Lotka-Volterra: sum of y^2 at the outputs, adjoint vs forward vs FD
# ---------------------------------------------------------------------------

LV = problems.get("lotka_volterra")
LV_T = np.asarray(LV.t_eval, dtype=float)


def lv_loss(Y, p):
    return np.sum(Y * Y)


def _lv_loss_scipy(p, y0):
    sol = scipy.integrate.solve_ivp(LV.fun, LV.t_span, y0, method="DOP853", t_eval=LV_T,
                                    args=(p,), rtol=1e-13, atol=1e-15)
    assert sol.status == 0, sol.message
    return float(np.sum(sol.y ** 2))


@functools.lru_cache(maxsize=None)
def _lv_fd():
    """Value and central differences (h = 1e-5 relative: O(h^2) ~ 1e-9) of the loss."""
    p, y0 = np.asarray(LV.p, dtype=float), np.asarray(LV.y0, dtype=float)
    value = _lv_loss_scipy(p, y0)
    grads = []
    for base, other_is_p in ((p, True), (y0, False)):
        g = np.zeros(base.size)
        for j in range(base.size):
            h = 1e-5 * max(abs(base[j]), 1.0)
            up, down = base.copy(), base.copy()
            up[j] += h
            down[j] -= h
            f = ((lambda q: _lv_loss_scipy(q, y0)) if other_is_p
                 else (lambda q: _lv_loss_scipy(p, q)))
            g[j] = (f(up) - f(down)) / (2 * h)
        grads.append(g)
    return value, grads[0], grads[1]


@functools.lru_cache(maxsize=None)
def _lv_forward(method="Tsit5", rtol=1e-8, atol=1e-10):
    """Forward 'dual' chain rule: grad = sum_i 2 y_i^T S_i."""
    fwd = diffsens.solve_ivp_sens(_traced(LV.name), LV.t_span, LV.y0, LV.p, method=method,
                                  t_eval=LV_T, sens="dual", wrt=("p", "y0"),
                                  rtol=rtol, atol=atol)
    assert fwd.status == 0, fwd.message
    gp, g0 = _forward_vjp(fwd, 2.0 * fwd.y)
    return fwd, gp, g0


def test_lv_references_agree():
    """Forward chain rule vs finite differences: both references are sound."""
    value, gp_fd, g0_fd = _lv_fd()
    fwd, gp, g0 = _lv_forward()
    assert abs(np.sum(fwd.y ** 2) - value) < 1e-7 * value
    assert _rel(gp, gp_fd) < 1e-6
    assert _rel(g0, g0_fd) < 1e-6


@pytest.mark.parametrize("adjoint", STRATEGIES)
def test_lotka_volterra_loss(adjoint):
    res = _adjoint(_traced(LV.name), LV.t_span, LV.y0, LV.p, adjoint, t_eval=LV_T,
                   loss=lv_loss, **LV_TOL)
    _check_result(res, adjoint, 2, 4, LV_T)
    value, gp_fd, g0_fd = _lv_fd()
    fwd, gp, g0 = _lv_forward()
    np.testing.assert_allclose(res.value, np.sum(res.y ** 2), rtol=1e-13)
    assert abs(res.value - value) < 1e-6 * value
    assert _rel(res.grad_p, gp) < 1e-4
    assert _rel(res.grad_y0, g0) < 1e-4
    assert _rel(res.grad_p, gp_fd) < 1e-4
    assert _rel(res.grad_y0, g0_fd) < 1e-4


@pytest.mark.parametrize("adjoint", ["gauss", "discrete"])
def test_lotka_volterra_dgdy_equals_loss(adjoint):
    """dgdy = 2 Y is the same VJP as loss = sum(Y^2), value None."""
    kw = dict(t_eval=LV_T, **LV_TOL)
    by_loss = _adjoint(_traced(LV.name), LV.t_span, LV.y0, LV.p, adjoint, loss=lv_loss, **kw)
    by_dgdy = _adjoint(_traced(LV.name), LV.t_span, LV.y0, LV.p, adjoint,
                       dgdy=2.0 * by_loss.y, **kw)
    _check_result(by_dgdy, adjoint, 2, 4, LV_T)
    assert by_dgdy.value is None
    np.testing.assert_allclose(by_dgdy.grad_p, by_loss.grad_p, rtol=1e-12, atol=0)
    np.testing.assert_allclose(by_dgdy.grad_y0, by_loss.grad_y0, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------
# 3. 'discrete' is the forward 'dual' derivative of the same discrete solution
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoints", [None, 3])
@pytest.mark.parametrize("t_eval", [LV_T, np.array([2.5, 7.0, 10.0])], ids=["dense", "sparse"])
@pytest.mark.parametrize("kind", ["python", "traced"])
@pytest.mark.parametrize("method", ["Tsit5", "RK45", "DOP853", "Vern7", "RK23"])
def test_discrete_equals_forward_dual(method, kind, t_eval, checkpoints):
    """Dense and sparse outputs.  With sparse ones most steps hold none, so
    their last stage is swept only for the first stage of the step after them
    (one vjp for the FSAL pair)."""
    fun = LV.fun if kind == "python" else _traced(LV.name)
    tol = dict(rtol=1e-6, atol=1e-8)
    fwd = diffsens.solve_ivp_sens(fun, LV.t_span, LV.y0, LV.p, method=method, t_eval=t_eval,
                                  sens="dual", wrt=("p", "y0"), **tol)
    assert fwd.status == 0
    W = np.random.default_rng(3).standard_normal((2, t_eval.size))
    gp, g0 = _forward_vjp(fwd, W)
    res = diffsens.adjoint_gradient(fun, LV.t_span, LV.y0, LV.p, t_eval=t_eval, dgdy=W,
                                    method=method, adjoint="discrete",
                                    checkpoints=checkpoints, **tol)
    _check_result(res, "discrete", 2, 4, t_eval)
    # the same steps: the same outputs
    np.testing.assert_allclose(res.y, fwd.y, rtol=1e-13, atol=1e-15)
    assert _rel(res.grad_p, gp) < 1e-10
    assert _rel(res.grad_y0, g0) < 1e-10


@pytest.mark.parametrize("method", ["Tsit5", "RK45"])
def test_discrete_fsal_pairs_share_one_vjp(method):
    """With an output in nearly every step, each step sweeps its last stage
    (the interpolant reads it) at the point where the next step's first stage
    is: one vjp serves both, so a step costs its s stages' vjps, not s + 1
    (the first step's first stage has no step before it to take it: + 1)."""
    tableau = diffsens._tableaus.TABLEAUS[method]
    assert tableau.n_extra == 0
    res = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p,
                                    t_eval=LV_T, loss=lambda Y, p: (Y * Y).sum(),
                                    method=method, adjoint="discrete",
                                    rtol=1e-6, atol=1e-8)
    assert res.status == 0 and res.n_steps > 50
    assert res.nfev_adjoint <= tableau.n_stages * res.n_steps + 1


# ---------------------------------------------------------------------------
# 4. Brusselator (n = 32, m = 3)
# ---------------------------------------------------------------------------

BRU = problems.get("brusselator_1d")
BRU_T = np.linspace(0.0, 10.0, 11)
BRU_W = np.random.default_rng(11).standard_normal((BRU.n, BRU_T.size))


@functools.lru_cache(maxsize=None)
def _bru_forward():
    """Forward 'dual' at rtol 1e-11: the VJP to ~1e-9 (rtol 1e-8 is within 3e-7)."""
    fwd = diffsens.solve_ivp_sens(_traced(BRU.name), BRU.t_span, BRU.y0, BRU.p,
                                  t_eval=BRU_T, wrt=("p", "y0"), rtol=1e-11, atol=1e-13)
    assert fwd.status == 0
    return _forward_vjp(fwd, BRU_W)


@pytest.mark.parametrize("adjoint", STRATEGIES)
def test_brusselator_vs_forward(adjoint):
    assert BRU.n == 32 and BRU.m == 3
    res = _adjoint(_traced(BRU.name), BRU.t_span, BRU.y0, BRU.p, adjoint, t_eval=BRU_T,
                   dgdy=BRU_W, rtol=1e-8, atol=1e-10)
    if _backsolve_gave_up(res, adjoint):
        return        # integrating the diffusion backwards may legitimately fail
    _check_result(res, adjoint, BRU.n, BRU.m, BRU_T)
    gp, g0 = _bru_forward()
    assert _rel(res.grad_p, gp) < 1e-5
    assert _rel(res.grad_y0, g0) < 1e-5


def test_brusselator_rosenbrock_discrete_vs_forward():
    """n = 32: W^T's solves go through LAPACK (past the in-house tiny solves)."""
    res = _adjoint(_traced(BRU.name), BRU.t_span, BRU.y0, BRU.p, "discrete", t_eval=BRU_T,
                   dgdy=BRU_W, method="Rodas5P", rtol=1e-8, atol=1e-10)
    _check_result(res, "discrete", BRU.n, BRU.m, BRU_T)
    gp, g0 = _bru_forward()
    assert _rel(res.grad_p, gp) < 1e-5
    assert _rel(res.grad_y0, g0) < 1e-5


# ---------------------------------------------------------------------------
# 5. ROBER with Rodas5P
# ---------------------------------------------------------------------------

ROB = problems.get("rober_1e5")
ROB_T = np.asarray(ROB.t_eval, dtype=float)    # logspace(-5, 5, 50), t_span (0, 1e5)
ROB_W = np.zeros((3, ROB_T.size))
ROB_W[0] = 1.0                                 # loss = sum of y1 at the outputs
ROB_TOL = dict(rtol=1e-8, atol=1e-12)


@functools.lru_cache(maxsize=None)
def _rober_forward():
    """Forward 'continuous': rtol 1e-8 and 1e-11 agree to 2e-8 on p * grad_p."""
    fwd = diffsens.solve_ivp_sens(_traced(ROB.name), ROB.t_span, ROB.y0, ROB.p,
                                  method="Rodas5P", t_eval=ROB_T, sens="continuous",
                                  wrt=("p", "y0"), **ROB_TOL)
    assert fwd.status == 0
    return _forward_vjp(fwd, ROB_W)


def _assert_rober_gradient(res):
    gp, g0 = _rober_forward()
    # rates span 0.04 .. 3e7: compare log-derivatives p_j dL/dp_j, each to 1e-4
    p = np.asarray(ROB.p)
    np.testing.assert_allclose(p * res.grad_p, p * gp, rtol=1e-4, atol=0)
    np.testing.assert_allclose(res.grad_y0, g0, rtol=1e-4, atol=0)


@pytest.mark.parametrize("kind", ["python", "traced"])
@pytest.mark.parametrize("adjoint", ["gauss", "interpolating", "quadrature", "discrete"])
def test_rober_rodas5p_vs_forward(adjoint, kind):
    fun = ROB.fun if kind == "python" else _traced(ROB.name)
    res = diffsens.adjoint_gradient(fun, ROB.t_span, ROB.y0, ROB.p, t_eval=ROB_T,
                                    dgdy=ROB_W, method="Rodas5P", adjoint=adjoint, **ROB_TOL)
    _check_result(res, adjoint, 3, 3, ROB_T)
    _assert_rober_gradient(res)


def test_rober_backsolve_fails_loudly():
    """y reconstructed backwards through the stiff transient: status -1, or right."""
    res = diffsens.adjoint_gradient(_traced(ROB.name), ROB.t_span, ROB.y0, ROB.p,
                                    t_eval=ROB_T, dgdy=ROB_W, method="Rodas5P",
                                    adjoint="backsolve", **ROB_TOL)
    assert res.adjoint == "backsolve"
    # (Kim et al. 2021: y integrated back through the stiff transient blows up;
    # it does here, for the traced and the Python route alike)
    assert _backsolve_gave_up(res, "backsolve")
    assert "unstable on stiff problems" in res.message
    assert np.isnan(res.grad_p).all() and np.isnan(res.grad_y0).all()


ROB_LONG = problems.get("rober")               # t_span (0, 1e11)


def _rober_long_y12(p):
    sol = diffsens.solve_ivp(_traced(ROB_LONG.name), ROB_LONG.t_span, ROB_LONG.y0,
                             method="Rodas5P", args=(p,), rtol=1e-12, atol=1e-30)
    assert sol.status == 0
    return sol.y[0, -1] + sol.y[1, -1]


@functools.lru_cache(maxsize=None)
def _rober_long_fd():
    """d y3(1e11)/dp = -d(y1 + y2)/dp: central differences, h = 1e-4 p_j.

    y1 + y2 ~ 2e-8 is solved to ~1e-12 relative (it matches the Test Set
    reference), so noise / h ~ 1e-8 and the O(h^2) truncation ~ 1e-8; scipy
    Radau at rtol 1e-13 gives the same three numbers to 3e-8.
    """
    p = np.asarray(ROB_LONG.p, dtype=float)
    fd = np.zeros(3)
    for j in range(3):
        e = 1e-4 * p[j] * np.eye(3)[j]
        fd[j] = -(_rober_long_y12(p + e) - _rober_long_y12(p - e)) / (2 * e[j])
    return fd


# Here the parameter integral is a cancellation (lambda_1 ~ lambda_2 ~ 1, the
# integrand holds their difference).  'gauss' and 'quadrature' read lambda
# inside its steps, where only the steps' ends are error-controlled; they
# missed by ~2% while lambda's steps straddled the kinks of y(t) at the
# forward steps' ends.  The backward steps now end there (1.6e-7 here).


@pytest.mark.parametrize("adjoint", ["gauss", "interpolating", "quadrature"])
def test_rober_long_horizon_y3(adjoint):
    """loss = y3(1e11) on the full ROBER span.  The gradient is a small difference
    (y3 ~ 1 - 2e-8): forward 'continuous' sensitivities at this tolerance get
    dL/dk1, dL/dk3 to 2e-8 of the differences, the 'interpolating' adjoint all
    three to 2e-5."""
    res = diffsens.adjoint_gradient(_traced(ROB_LONG.name), ROB_LONG.t_span, ROB_LONG.y0,
                                    ROB_LONG.p, t_eval=[ROB_LONG.t_span[1]],
                                    dgdy=np.array([[0.0], [0.0], [1.0]]), method="Rodas5P",
                                    adjoint=adjoint, **ROB_TOL)
    assert res.status == 0, res.message
    _check_result(res, adjoint, 3, 3)
    np.testing.assert_allclose(res.grad_p, _rober_long_fd(), rtol=1e-4, atol=0)
    # y3 + y2 + y1 = sum(y0) exactly, so dy3/dy0 is (1, 1, 1) up to ~4e-8
    np.testing.assert_allclose(res.grad_y0, 1.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("adjoint", ["gauss", "interpolating"])
def test_rober_long_horizon_checkpoints(adjoint):
    """Checkpoint spacing is a memory setting: on the same problem as above a
    checkpoint every step and the default spacing give the same gradient to the
    accuracy the 'interpolating' adjoint shows at this tolerance (~2e-5)."""
    kw = dict(t_eval=[ROB_LONG.t_span[1]], dgdy=np.array([[0.0], [0.0], [1.0]]),
              method="Rodas5P", adjoint=adjoint, **ROB_TOL)
    dense = diffsens.adjoint_gradient(_traced(ROB_LONG.name), ROB_LONG.t_span, ROB_LONG.y0,
                                      ROB_LONG.p, checkpoints=1, **kw)
    default = diffsens.adjoint_gradient(_traced(ROB_LONG.name), ROB_LONG.t_span,
                                        ROB_LONG.y0, ROB_LONG.p, **kw)
    assert dense.status == default.status == 0
    assert dense.n_checkpoints > default.n_checkpoints
    np.testing.assert_allclose(default.grad_p, dense.grad_p, rtol=1e-4, atol=0)


ROB_LONG_T = np.logspace(-5, 11, 33)
ROB_LONG_W = np.zeros((3, ROB_LONG_T.size))
ROB_LONG_W[0] = 1.0


@functools.lru_cache(maxsize=None)
def _rober_full_span_forward():
    """Forward 'continuous' at rtol 1e-10: rtol 1e-8 agrees with it to 3e-7 on p * grad."""
    fwd = diffsens.solve_ivp_sens(_traced(ROB_LONG.name), ROB_LONG.t_span, ROB_LONG.y0,
                                  ROB_LONG.p, method="Rodas5P", t_eval=ROB_LONG_T,
                                  sens="continuous", wrt=("p", "y0"), rtol=1e-10, atol=1e-14)
    assert fwd.status == 0
    return _forward_vjp(fwd, ROB_LONG_W)


# A jump of lambda at t ~ 1e11 starts a transient shorter than the spacing of
# doubles there: the adjoint stops with status -1.  Known bug (local time per
# backward stretch would fix it); strict, so the fix shows up as XPASS.
_FAR_TRANSIENT = pytest.mark.xfail(strict=True, reason=(
    "adjoint transient after a jump at t ~ 1e11 is below the spacing of doubles"))


@pytest.mark.parametrize("adjoint", [pytest.param("gauss", marks=_FAR_TRANSIENT),
                                     pytest.param("interpolating", marks=_FAR_TRANSIENT),
                                     "discrete"])   # no transient: the forward steps
def test_rober_full_span_sum_y1(adjoint):
    """The built-in 'rober' over its whole span (0, 1e11), loss = sum of y1 at 33
    log-spaced outputs.  Forward sensitivities solve it at this tolerance; the
    adjoint must too.  (Each output makes lambda jump by dgdy, which starts a fast
    adjoint transient, time scale 1/(k3 y3) ~ 1e-4, near t = 1e11 where doubles
    are 1.5e-5 apart: the backward steps must not need to resolve it.)"""
    res = diffsens.adjoint_gradient(_traced(ROB_LONG.name), ROB_LONG.t_span, ROB_LONG.y0,
                                    ROB_LONG.p, t_eval=ROB_LONG_T, dgdy=ROB_LONG_W,
                                    method="Rodas5P", adjoint=adjoint, **ROB_TOL)
    _check_result(res, adjoint, 3, 3, ROB_LONG_T)
    gp, g0 = _rober_full_span_forward()
    p = np.asarray(ROB_LONG.p)
    np.testing.assert_allclose(p * res.grad_p, p * gp, rtol=1e-4, atol=0)
    np.testing.assert_allclose(res.grad_y0, g0, rtol=1e-4, atol=0)


# ---------------------------------------------------------------------------
# 6. Integrand form g(t, y, p)
# ---------------------------------------------------------------------------

Q = np.array([[2.0, 0.5, 0.0],
              [0.5, 1.0, -0.3],
              [0.0, -0.3, 1.5]])
G_T = 2.5


def lin_g(t, y, p):
    """(1 + p0)/2 y^T Q y: depends on p directly and through y."""
    return 0.5 * (1.0 + p[0]) * (y @ (Q @ y))


def _lin_g_integral(p, y0, T=G_T):
    """int_0^T (1 + p0)/2 y^T Q y dt by Van Loan: expm([[-A^T, Q], [0, A]] T)."""
    return 0.5 * (1.0 + p[0]) * (y0 @ van_loan_gram(_lin_A(p), Q, T) @ y0)


def _lin_g_exact():
    """Value and gradient by complex steps of the Van Loan closed form."""
    h = 1e-30
    gp = np.array([_lin_g_integral(LIN_P + 1j * h * e, LIN_Y0.astype(complex)).imag / h
                   for e in np.eye(3)])
    g0 = np.array([_lin_g_integral(LIN_P.astype(complex), LIN_Y0 + 1j * h * e).imag / h
                   for e in np.eye(3)])
    return _lin_g_integral(LIN_P, LIN_Y0), gp, g0


def test_van_loan_reference():
    """The closed form against quad over expm; its complex step against expm_frechet."""
    A, dA = _lin_A(LIN_P), _lin_dA(LIN_P)
    quad, _ = scipy.integrate.quad(
        lambda t: lin_g(t, scipy.linalg.expm(A * t) @ LIN_Y0, LIN_P), 0.0, G_T,
        epsabs=0, epsrel=1e-13)
    value, gp, g0 = _lin_g_exact()
    np.testing.assert_allclose(value, quad, rtol=1e-11)
    # d/dp_j of the block exponential is its Frechet derivative along dM_j
    M = np.block([[-A.T, Q], [np.zeros((3, 3)), A]])
    F = scipy.linalg.expm(M * G_T)
    gram = F[3:, 3:].T @ F[:3, 3:]
    c = 0.5 * (1.0 + LIN_P[0])
    for j, D in enumerate(dA):
        dM = np.block([[-D.T, np.zeros((3, 3))], [np.zeros((3, 3)), D]])
        L = scipy.linalg.expm_frechet(M * G_T, dM * G_T, compute_expm=False)
        dgram = L[3:, 3:].T @ F[:3, 3:] + F[3:, 3:].T @ L[:3, 3:]
        ref = c * (LIN_Y0 @ dgram @ LIN_Y0) + (0.5 * LIN_Y0 @ gram @ LIN_Y0 if j == 0 else 0.0)
        np.testing.assert_allclose(gp[j], ref, rtol=1e-8)
    np.testing.assert_allclose(g0, c * (gram + gram.T) @ LIN_Y0, rtol=1e-9)


@pytest.mark.parametrize("method", ["Tsit5", "Rodas5P"])
@pytest.mark.parametrize("kind", ["python", "traced"])
@pytest.mark.parametrize("adjoint", STRATEGIES)
def test_g_integral_linear_closed_form(adjoint, kind, method):
    res = _adjoint(_lin_rhs(kind), (0.0, G_T), LIN_Y0, LIN_P, adjoint, g=lin_g,
                   method=method, **TIGHT)
    _check_result(res, adjoint, 3, 3)
    value, gp, g0 = _lin_g_exact()
    assert abs(res.value - value) < 1e-8 * abs(value)
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


def lv_g(t, y, p):
    return p[0] * y[0] * y[0] + y[1] + 0.1 * t * y[0]


def _lv_g_scipy(p, y0):
    """int g dt as a quadrature state q' = g integrated with y (DOP853, rtol 1e-13)."""
    def aug(t, z):
        return np.append(LV.fun(t, z[:2], p), lv_g(t, z[:2], p))
    sol = scipy.integrate.solve_ivp(aug, LV.t_span, np.append(y0, 0.0), method="DOP853",
                                    rtol=1e-13, atol=1e-15)
    assert sol.status == 0
    return sol.y[2, -1]


@functools.lru_cache(maxsize=None)
def _lv_g_fd():
    p, y0 = np.asarray(LV.p, dtype=float), np.asarray(LV.y0, dtype=float)
    gp, g0 = np.zeros(4), np.zeros(2)
    for j in range(4):
        e = 1e-5 * abs(p[j]) * np.eye(4)[j]
        gp[j] = (_lv_g_scipy(p + e, y0) - _lv_g_scipy(p - e, y0)) / (2 * e[j])
    for j in range(2):
        e = 1e-5 * np.eye(2)[j]
        g0[j] = (_lv_g_scipy(p, y0 + e) - _lv_g_scipy(p, y0 - e)) / (2 * e[j])
    return _lv_g_scipy(p, y0), gp, g0


@pytest.mark.parametrize("adjoint", STRATEGIES)
def test_g_integral_lotka_volterra_vs_fd(adjoint):
    res = _adjoint(_traced(LV.name), LV.t_span, LV.y0, LV.p, adjoint, g=lv_g, **LV_TOL)
    _check_result(res, adjoint, 2, 4)
    value, gp, g0 = _lv_g_fd()
    assert abs(res.value - value) < 1e-6 * abs(value)
    assert _rel(res.grad_p, gp) < 1e-4
    assert _rel(res.grad_y0, g0) < 1e-4


# ---------------------------------------------------------------------------
# 7. Traced and plain Python right-hand sides
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("adjoint", ["gauss", "interpolating", "quadrature", "backsolve",
                                     "discrete"])
def test_traced_and_python_agree(adjoint):
    kw = dict(t_eval=LV_T, loss=lv_loss, **LV_TOL)
    plain = diffsens.adjoint_gradient(LV.fun, LV.t_span, LV.y0, LV.p, adjoint=adjoint, **kw)
    traced = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p,
                                       adjoint=adjoint, **kw)
    _check_result(plain, adjoint, 2, 4, LV_T)
    _check_result(traced, adjoint, 2, 4, LV_T)
    # the same arithmetic in a different order: round-off apart, well inside rtol
    np.testing.assert_allclose(plain.y, traced.y, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(plain.value, traced.value, rtol=1e-7)
    assert _rel(plain.grad_p, traced.grad_p) < 1e-6
    assert _rel(plain.grad_y0, traced.grad_y0) < 1e-6
    _, gp_fd, g0_fd = _lv_fd()
    assert _rel(plain.grad_p, gp_fd) < 1e-4
    assert _rel(plain.grad_y0, g0_fd) < 1e-4


# ---------------------------------------------------------------------------
# 8. Checkpoints
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("adjoint", STORING)
def test_checkpoints_change_memory_not_gradient(adjoint):
    kw = dict(t_eval=LV_T, loss=lv_loss, adjoint=adjoint, **LV_TOL)
    results = {c: diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p,
                                            checkpoints=c, **kw)
               for c in (1, 3, 50, None)}
    for res in results.values():
        _check_result(res, adjoint, 2, 4, LV_T)
        assert res.n_checkpoints >= 1
    ref = results[None]
    for c, res in results.items():
        assert _rel(res.grad_p, ref.grad_p) < 1e-8, c
        assert _rel(res.grad_y0, ref.grad_y0) < 1e-8, c
        np.testing.assert_allclose(res.value, ref.value, rtol=1e-12)
    # ~280 Tsit5 steps: a checkpoint every 1, 3, 50 steps
    assert results[1].n_checkpoints > results[3].n_checkpoints > results[50].n_checkpoints


def test_backsolve_keeps_no_forward_steps():
    """'backsolve' integrates y back from y(T): it keeps no checkpoints and
    no steps whatever `checkpoints` says (O(1) memory), and the gradient is
    the same."""
    kw = dict(t_eval=LV_T, loss=lv_loss, adjoint="backsolve", **LV_TOL)
    results = [diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p,
                                         checkpoints=c, **kw) for c in (None, 3)]
    for res in results:
        _check_result(res, "backsolve", 2, 4, LV_T)
        assert res.n_checkpoints == 0 and res.n_steps > 100
    np.testing.assert_array_equal(results[0].grad_p, results[1].grad_p)
    gauss = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p,
                                      **dict(kw, adjoint="gauss"))
    assert _rel(results[0].grad_p, gauss.grad_p) < 1e-4


@pytest.mark.parametrize("adjoint", STORING)
@pytest.mark.parametrize("budget", [None, 20_000])
def test_recorded_steps_equal_rerun_stretches(adjoint, budget, monkeypatch):
    """checkpoints=None keeps the forward steps (and drops them once they
    outgrow RECORD_BYTES, here after a few stretches); re-running the
    stretches from checkpoints instead must give the very same gradient,
    since the driver is deterministic."""
    from diffsens import _adjoint
    if budget is not None:
        monkeypatch.setattr(_adjoint, "RECORD_BYTES", budget)
        monkeypatch.setattr(_adjoint, "DEFAULT_CHECKPOINT_INTERVAL", 20)
    kw = dict(t_eval=LV_T, loss=lv_loss, adjoint=adjoint, **LV_TOL)
    kept = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p, **kw)
    rerun = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p,
                                      checkpoints=_adjoint.DEFAULT_CHECKPOINT_INTERVAL,
                                      **kw)
    _check_result(kept, adjoint, 2, 4, LV_T)
    np.testing.assert_array_equal(kept.grad_p, rerun.grad_p)
    np.testing.assert_array_equal(kept.grad_y0, rerun.grad_y0)
    assert kept.n_checkpoints == rerun.n_checkpoints > 2
    # re-running costs evaluations; keeping the steps does not (20 kB hold
    # ~90 of LV's ~280 steps: the forward pass drops them and re-runs too)
    if budget is None:
        assert kept.nfev_adjoint < rerun.nfev_adjoint
    else:
        assert kept.nfev_adjoint == rerun.nfev_adjoint


def _stiff_pair(t, y, p):
    """A nonlinear autonomous system with three parameters."""
    return np.stack([-p[0] * y[0] * y[1] + p[2], p[1] * y[0] - 5.0 * p[2] * y[1] ** 2])


def _forced_stiff_pair(t, y, p):
    """The same, forced in t: the Rosenbrock steps take df/dt by a difference."""
    return _stiff_pair(t, y, p) + np.stack([0.3 * np.sin(3 * t), 0.1 * t])


# every step h = 0.1 (huge tolerances accept it): the same step sizes for all
# parameters, so central differences of the solution see the discrete map
_FIXED_STEPS = dict(rtol=1e3, atol=1e3, first_step=0.1, max_step=0.1)


def _fixed_step_differences(fun, method, y0, p, t, loss, delta):
    def value(p_, y0_):
        sol = diffsens.solve_ivp(fun, (0.0, 2.0), y0_, method=method, t_eval=t,
                                 args=(p_,), **_FIXED_STEPS)
        return loss(sol.y, p_)

    def central(f, x):
        out = np.zeros_like(x)
        for k in range(x.size):
            e = np.zeros_like(x)
            e[k] = delta
            out[k] = (f(x + e) - f(x - e)) / (2 * delta)
        return out

    return (central(lambda q: value(q, y0), p), central(lambda z: value(p, z), y0))


@pytest.mark.parametrize("kind", ["python", "traced"])
@pytest.mark.parametrize("method", ["Rodas5P", "Rodas4", "Rosenbrock23"])
@pytest.mark.parametrize("fun, delta, bound", [
    (_stiff_pair, 1e-6, 1e-7),
    # the step's df/dt difference (t step ~1.5e-8) puts rounding noise of
    # ~1e-8 in the solution, which a 1e-6 difference in p would magnify
    (_forced_stiff_pair, 1e-4, 1e-6),
])
def test_rosenbrock_discrete_is_the_derivative_of_its_steps(fun, delta, bound, method,
                                                            kind):
    """'discrete' with a Rosenbrock method against central differences of the
    same fixed-step solution (outputs inside steps and at their ends)."""
    y0, p = np.array([1.0, 0.5]), np.array([0.7, 1.3, 0.4])
    t = np.array([0.33, 0.5, 1.0, 1.37, 2.0])

    def loss(Y, p):
        return (Y ** 2).sum() + Y[0, -1] * p[0]

    rhs = fun if kind == "python" else diffsens.trace(fun, y0, p)
    res = diffsens.adjoint_gradient(rhs, (0.0, 2.0), y0, p, t_eval=t, loss=loss,
                                    method=method, adjoint="discrete", **_FIXED_STEPS)
    _check_result(res, "discrete", 2, 3, t)
    assert res.n_steps == 20
    gp, g0 = _fixed_step_differences(fun, method, y0, p, t, loss, delta)
    assert _rel(res.grad_p, gp) < bound
    assert _rel(res.grad_y0, g0) < bound


@pytest.mark.parametrize("budget", [None, 0])
def test_rosenbrock_discrete_rerun_stretches(budget, monkeypatch):
    """Steps re-run from checkpoints give the gradient the recorded steps give."""
    from diffsens import _adjoint
    if budget is not None:
        monkeypatch.setattr(_adjoint, "RECORD_BYTES", budget)
    kw = dict(t_eval=ROB_T, dgdy=ROB_W, method="Rodas5P", adjoint="discrete", **ROB_TOL)
    ref = diffsens.adjoint_gradient(_traced(ROB.name), ROB.t_span, ROB.y0, ROB.p, **kw)
    res = diffsens.adjoint_gradient(_traced(ROB.name), ROB.t_span, ROB.y0, ROB.p,
                                    checkpoints=7, **kw)
    _check_result(res, "discrete", 3, 3, ROB_T)
    assert res.n_checkpoints > 3
    np.testing.assert_array_equal(res.grad_p, ref.grad_p)
    np.testing.assert_array_equal(res.grad_y0, ref.grad_y0)


# ---------------------------------------------------------------------------
# 8b. The loss's own derivatives: a recorded tape, checked against the loss
# ---------------------------------------------------------------------------


def _lv_loss_by_forward(data):
    fwd, _, _ = _lv_forward()
    dgdy = 2 * (fwd.y - data)
    return _forward_vjp(fwd, dgdy)


def test_traced_loss_follows_changed_data():
    """A loss closing over data is recorded with that data as constants; when
    the data change the recording no longer matches the loss's value and is
    made again, so the gradient follows the new data."""
    data = np.zeros((2, LV_T.size))

    def loss(Y, p):
        return np.sum((Y - data) ** 2)

    for shift in (0.0, 0.5, -1.0):
        data[:] = shift
        res = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p,
                                        t_eval=LV_T, loss=loss, adjoint="discrete",
                                        **LV_TOL)
        gp, g0 = _lv_loss_by_forward(data)
        np.testing.assert_allclose(res.value, np.sum((res.y - shift) ** 2), rtol=1e-13)
        assert _rel(res.grad_p, gp) < 1e-4, shift
        assert _rel(res.grad_y0, g0) < 1e-4, shift


def test_untraceable_loss_uses_dual_numbers():
    """A loss that branches on a value cannot be recorded: dual numbers then
    give its derivatives (here the branch taken is y**2 everywhere)."""
    def loss(Y, p):
        total = 0.0
        for value in Y.ravel():
            total = total + (value * value if value > -1e300 else value)
        return total

    res = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p,
                                    t_eval=LV_T, loss=loss, adjoint="gauss", **LV_TOL)
    _, gp, g0 = _lv_forward()
    assert _rel(res.grad_p, gp) < 1e-4
    assert _rel(res.grad_y0, g0) < 1e-4


def test_loss_with_direct_parameter_dependence_traced_and_dual_agree():
    from diffsens._adjoint import _dual_loss_derivatives, _loss_derivatives
    rng = np.random.default_rng(7)
    Y, p = rng.standard_normal((2, 5)), rng.standard_normal(3)

    def loss(Y, p):
        return np.sum(np.sin(Y) * p[0]) + p[1] * p[2] * Y[1, 3] ** 3

    value, dY, dp = _loss_derivatives(loss, Y, p)
    v2, dY2, dp2 = _dual_loss_derivatives(loss, Y, p, 4)
    assert value == pytest.approx(v2, rel=1e-14)
    np.testing.assert_allclose(dY, dY2, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dp, dp2, rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------------
# 9. diffsens.gradient picks the route
# ---------------------------------------------------------------------------

N_BIG = 150
_rng = np.random.default_rng(150)
BIG_A = -np.eye(N_BIG) + 0.3 * _rng.standard_normal((N_BIG, N_BIG)) / np.sqrt(N_BIG)
BIG_B1 = 0.2 * _rng.standard_normal((N_BIG, N_BIG)) / np.sqrt(N_BIG)
BIG_B2 = -np.diag(_rng.uniform(0.0, 0.5, N_BIG))
BIG_P = np.array([0.5, 0.8])
BIG_Y0 = _rng.standard_normal(N_BIG)
BIG_T = np.array([0.0, 1.0, 2.0])
BIG_W = _rng.standard_normal((N_BIG, BIG_T.size))


def big_fun(t, y, p):
    return BIG_A @ y + p[0] * (BIG_B1 @ y) + p[1] * (BIG_B2 @ y)


def _big_exact():
    A = BIG_A + BIG_P[0] * BIG_B1 + BIG_P[1] * BIG_B2
    Y, gp, g0 = expm_reference(A, (BIG_B1, BIG_B2), BIG_T, BIG_W, BIG_Y0)
    return np.sum(BIG_W * Y), gp, g0


def big_loss(Y, p):
    return np.sum(BIG_W * Y)


def test_gradient_small_problem_uses_forward():
    res = diffsens.gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p, t_eval=LV_T,
                            loss=lv_loss, **LV_TOL)
    assert res.strategy == "forward"
    assert isinstance(res.reason, str) and res.reason.strip()
    value, gp_fd, g0_fd = _lv_fd()
    adj = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p, t_eval=LV_T,
                                    loss=lv_loss, **LV_TOL)
    assert abs(res.value - value) < 1e-6 * value
    assert res.grad_p.shape == (4,) and res.grad_y0.shape == (2,)
    assert _rel(res.grad_p, adj.grad_p) < 1e-4
    assert _rel(res.grad_y0, adj.grad_y0) < 1e-4
    assert _rel(res.grad_p, gp_fd) < 1e-5
    assert _rel(res.grad_y0, g0_fd) < 1e-5


def test_gradient_with_integrand():
    res = diffsens.gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p, g=lv_g, **LV_TOL)
    assert res.strategy == "forward"   # n + m = 7
    assert isinstance(res.reason, str) and res.reason.strip()
    value, gp, g0 = _lv_g_fd()
    assert abs(res.value - value) < 1e-6 * abs(value)
    assert _rel(res.grad_p, gp) < 1e-4
    assert _rel(res.grad_y0, g0) < 1e-4


def test_gradient_large_problem_uses_adjoint():
    fun = diffsens.trace(big_fun, BIG_Y0, BIG_P)
    res = diffsens.gradient(fun, (0.0, 2.0), BIG_Y0, BIG_P, t_eval=BIG_T, loss=big_loss,
                            **TIGHT)
    assert res.strategy == "adjoint:discrete"
    assert isinstance(res.reason, str) and res.reason.strip()
    value, gp, g0 = _big_exact()
    assert abs(res.value - value) < 1e-8 * abs(value)
    assert res.grad_p.shape == (2,) and res.grad_y0.shape == (N_BIG,)
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6
    # the other route: forward sensitivities w.r.t. p
    fwd = diffsens.solve_ivp_sens(fun, (0.0, 2.0), BIG_Y0, BIG_P, t_eval=BIG_T, wrt="p",
                                  **TIGHT)
    assert _rel(res.grad_p, np.einsum("it,ijt->j", BIG_W, fwd.sens)) < 1e-6


def test_gradient_takes_the_adjoint_strategy_asked_for():
    fun = diffsens.trace(big_fun, BIG_Y0, BIG_P)
    res = diffsens.gradient(fun, (0.0, 2.0), BIG_Y0, BIG_P, t_eval=BIG_T, loss=big_loss,
                            adjoint="gauss", **TIGHT)
    assert res.strategy == "adjoint:gauss" and res.adjoint == "gauss"
    assert "gauss" in res.reason
    value, gp, g0 = _big_exact()
    assert _rel(res.grad_p, gp) < 1e-6 and _rel(res.grad_y0, g0) < 1e-6
    # the forward route has no use for it (and says nothing of it)
    small = diffsens.gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p, t_eval=LV_T,
                              loss=lv_loss, adjoint="gauss", **LV_TOL)
    assert small.strategy == "forward"
    with pytest.raises(ValueError, match="`adjoint` must be one of"):
        diffsens.gradient(fun, (0.0, 2.0), BIG_Y0, BIG_P, t_eval=BIG_T, loss=big_loss,
                          adjoint="sideways")


def test_gradient_forward_reason_names_the_continuous_route():
    res = diffsens.gradient(linear_fun, (0.0, 3.0), LIN_Y0, LIN_P, t_eval=LIN_T,
                            dgdy=LIN_W, method="Rodas5P")
    assert res.strategy == "forward" and "continuous" in res.reason


def test_backward_step_counters():
    kw = dict(t_eval=LV_T, loss=lv_loss, **LV_TOL)
    gauss = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p, **kw)
    assert gauss.n_steps_backward > 0 and gauss.n_rejected_backward >= 0
    discrete = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p,
                                         adjoint="discrete", **kw)
    assert discrete.n_steps_backward == 0 and discrete.n_steps > 0


# ---------------------------------------------------------------------------
# 10. Bad input
# ---------------------------------------------------------------------------

_GOOD = dict(t_eval=LIN_T, dgdy=LIN_W)


def _call(**kwargs):
    return diffsens.adjoint_gradient(linear_fun, (0.0, 3.0), LIN_Y0, LIN_P, **kwargs)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(t_eval=LIN_T), ValueError, "dgdy"),                                  # none
    (dict(t_eval=LIN_T, dgdy=LIN_W, loss=lv_loss), ValueError, "loss"),        # two
    (dict(t_eval=LIN_T, dgdy=LIN_W, g=lin_g), ValueError, "dgdy"),
    (dict(t_eval=LIN_T, g=lin_g, loss=lv_loss), ValueError, "loss"),
    (dict(t_eval=LIN_T, dgdy=LIN_W[:, :-1]), ValueError, "dgdy"),              # shapes
    (dict(t_eval=LIN_T, dgdy=LIN_W[:2]), ValueError, "dgdy"),
    (dict(t_eval=LIN_T, dgdy=LIN_W.T), ValueError, "dgdy"),
    (dict(t_eval=LIN_T, dgdy=LIN_W[:, 0]), ValueError, "dgdy"),
    (dict(dgdy=LIN_W), ValueError, "t_eval"),                                  # no t_eval
    (dict(loss=lv_loss), ValueError, "t_eval"),
    (dict(_GOOD, adjoint="backwards"), ValueError, "adjoint"),
    (dict(_GOOD, checkpoints=0), ValueError, "checkpoints"),
    (dict(_GOOD, checkpoints=-3), ValueError, "checkpoints"),
])
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _call(**kwargs)


def test_bad_input_to_gradient():
    with pytest.raises(ValueError, match="dgdy"):
        diffsens.gradient(linear_fun, (0.0, 3.0), LIN_Y0, LIN_P, t_eval=LIN_T)
    with pytest.raises(ValueError, match="loss"):
        diffsens.gradient(linear_fun, (0.0, 3.0), LIN_Y0, LIN_P, t_eval=LIN_T,
                          dgdy=LIN_W, loss=lv_loss)
    with pytest.raises(ValueError, match="t_eval"):
        diffsens.gradient(linear_fun, (0.0, 3.0), LIN_Y0, LIN_P, loss=lv_loss)


def test_the_good_call_works():
    """The base call the bad-input cases perturb is itself valid."""
    res = _call(**_GOOD)
    assert res.status == 0
    assert _rel(res.grad_p, _lin_exact()[1]) < 1e-2      # default rtol 1e-3


@pytest.mark.parametrize("name", ["AdjointSolve", "ReversibleSolve"])
def test_solve_objects_refuse_misuse_instead_of_crashing(name, monkeypatch):
    """The kernels' pass objects (private, but reachable): a subclass that
    skips __init__, or backward() before forward(), raise -- never hand the
    C kernels null pointers or empty records."""
    from diffsens._kernels import _core
    cls = getattr(_core, name)

    class SkipsInit(cls):
        def __init__(self, *args, **kwargs):
            pass

    broken = SkipsInit()
    with pytest.raises(RuntimeError, match="__init__ has not run"):
        broken.forward()

    made = []

    class Recorder(cls):
        def __init__(self, *args, **kwargs):
            made.append((args, kwargs))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(_core, name, Recorder)
    adjoint = "reversible" if name == "ReversibleSolve" else "gauss"
    diffsens.adjoint_gradient(lambda t, y, p: -p[0] * y, (0, 1), [1.0, 2.0], [0.5],
                              t_eval=[1.0], loss=lambda Y, p: Y.sum(), adjoint=adjoint)
    args, kwargs = made[0]
    fresh = cls(*args, **kwargs)
    W = np.ones((2, 1))
    with pytest.raises(RuntimeError, match="needs a finished forward"):
        if name == "ReversibleSolve":
            fresh.backward(W)
        else:
            fresh.backward(W, "gauss", 1e-6, 1e-8, 3)


# ---------------------------------------------------------------------------
# Ctrl-C in the backward pass
# ---------------------------------------------------------------------------

_CTRL_C_BACKWARD = """
import sys
import numpy as np
import diffsens
import diffsens._adjoint as adjoint_module

method, span, tol = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
both_passes = adjoint_module._both_passes

def announced(solve, n, m, N, p, dgdy, loss, adjoint, n_checkpoints, backward):
    def backward_announced(W):
        print("backward", flush=True)
        return backward(W)
    return both_passes(solve, n, m, N, p, dgdy, loss, adjoint, n_checkpoints,
                       backward_announced)

adjoint_module._both_passes = announced

k = np.arange(400.0)

def oscillator(t, y, p):
    # a tiny term that costs ~1000 ops a call, so that the steps the forward
    # pass records (no re-run, whose forward steps would check for signals
    # themselves) take a while to reverse
    slow = 1e-12 * np.sum(np.sin(y[0] * (1.0 + 1e-3 * k)))
    return np.stack([p[0] * y[1] + slow, -p[0] * y[0]])

rhs = diffsens.trace(oscillator, [1.0, 0.0], [1.0])
diffsens.adjoint_gradient(rhs, (0.0, span), [1.0, 0.0], [1.0], t_eval=[span],
                          dgdy=[[1.0], [0.0]], method=method, adjoint="discrete",
                          rtol=tol, atol=tol, max_steps=10**9)
print("finished", flush=True)
"""


@pytest.mark.parametrize("method, span, tol", [("Tsit5", 6e3, 1e-10),
                                               ("Rodas5P", 6e3, 1e-8)])
def test_ctrl_c_interrupts_discrete_backward_pass(method, span, tol, tmp_path):
    out, err, returncode, elapsed = interrupt_child(
        _CTRL_C_BACKWARD, (method, str(span), str(tol)), cwd=tmp_path, ready="backward")
    assert elapsed < 5
    assert returncode != 0
    assert "KeyboardInterrupt" in err, err
    assert "finished" not in out
