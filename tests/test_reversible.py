"""adjoint='reversible': McCallum & Foster's reversible solver and its adjoint.

Every derivative is checked against a route that does not go through the
reversible backward pass:

* central finite differences of the reversible *forward* solution with its
  step sequence frozen (``ReversibleSolve(t_fixed=...)`` replays the steps of
  an unperturbed solve): the backward pass claims to be the exact derivative
  of that discrete map, so the two agree to the differences' own error;
* closed forms for ``y' = A(p) y`` (``expm`` / ``expm_frechet``, and Van
  Loan's block exponential for an integral of ``y^T Q y``): the reversible
  solution approximates the exact one to the tolerance, so does its gradient;
* the existing ``adjoint='discrete'`` and forward ``sens='dual'``
  derivatives of a plain Tsit5 solve (a different discrete solution: they
  agree to the tolerance's order, not to round-off).

The forward solution is checked against tight reference solves, and the
backward reconstruction of ``(y0, z0)`` from the final pair against ``y0``.
"""

import functools

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import diffsens
from _linear import expm_reference, van_loan_gram
from diffsens import problems
from diffsens._adjoint import _kernel_fun
from diffsens._ivp import _tableau, native_options
from diffsens._kernels import _core

LV = problems.get("lotka_volterra")
LV_T = np.asarray(LV.t_eval, dtype=float)
LV_TOL = dict(rtol=1e-8, atol=1e-10)
TIGHT = dict(rtol=1e-10, atol=1e-12)


def _rel(value, ref):
    """max |value - ref| / max |ref| over the whole vector."""
    value = np.asarray(value, dtype=float)
    ref = np.asarray(ref, dtype=float)
    assert value.shape == ref.shape, (value.shape, ref.shape)
    scale = np.abs(ref).max()
    return float(np.abs(value - ref).max() / (scale if scale > 0 else 1.0))


def _check(res, n, m, t_eval=None):
    assert res.status == 0 and res.success, res.message
    assert res.adjoint == "reversible"
    assert res.grad_p.shape == (m,) and res.grad_y0.shape == (n,)
    assert np.isfinite(res.grad_p).all() and np.isfinite(res.grad_y0).all()
    assert res.nfev > 0 and res.nfev_adjoint > 0 and res.n_steps > 0
    assert res.n_checkpoints == 0
    if t_eval is not None:
        np.testing.assert_array_equal(res.t, t_eval)
        assert res.y.shape == (n, len(t_eval))


def _reversible(fun, t_span, y0, p, **kwargs):
    return diffsens.adjoint_gradient(fun, t_span, y0, p, adjoint="reversible", **kwargs)


@functools.lru_cache(maxsize=None)
def _traced(name):
    prob = problems.get(name)
    return diffsens.trace(prob.fun, prob.y0, prob.p)


def _solve(fun, t_span, y0, p, t_eval, method="Tsit5", coupling=0.999, t_fixed=None,
           yield_every=1000, **options):
    """A ReversibleSolve after its forward pass (the hook behind adjoint_gradient)."""
    y0, p = np.asarray(y0, dtype=float), np.asarray(p, dtype=float)
    t0, tf = map(float, t_span)
    opt = native_options(options, y0.size, t0, tf,
                         known={"rtol", "atol", "first_step", "max_step", "max_steps"})
    solve = _core.ReversibleSolve(_tableau(method), _kernel_fun(fun, y0.size, p.size, p, ()),
                                  t0, tf, y0, p, opt["rtol"], opt["atol"], opt["max_step"],
                                  opt["first_step"], opt["max_steps"],
                                  np.asarray(t_eval, dtype=float), coupling, t_fixed,
                                  yield_every)
    status, message = solve.forward()
    assert status == 0, message
    return solve


# ---------------------------------------------------------------------------
# y' = A(p) y: exact solution and derivatives
# ---------------------------------------------------------------------------

A0 = np.array([[-1.0, 0.5, 0.2],
               [0.3, -0.8, 0.4],
               [0.1, 0.2, -1.2]])
A1 = np.array([[-1.0, 0.0, 0.5],
               [1.0, -0.5, 0.0],
               [0.0, 0.5, -0.5]])
A2 = np.array([[0.0, 1.0, 0.0],      # a rotation: oscillating solutions
               [-1.0, 0.0, 0.0],
               [0.0, 0.0, 0.0]])
LIN_P = np.array([0.7, 0.4])
LIN_Y0 = np.array([1.0, -0.5, 2.0])
LIN_T = np.linspace(0.0, 3.0, 7)            # includes t0: dy(t0)/dy0 = I there
LIN_W = np.random.default_rng(20241115).standard_normal((3, LIN_T.size))


def linear_fun(t, y, p):
    """A(p) y with A(p) = A0 + p0 A1 + sin(p1) A2."""
    return A0 @ y + p[0] * (A1 @ y) + np.sin(p[1]) * (A2 @ y)


def _lin_A(p):
    return A0 + p[0] * A1 + np.sin(p[1]) * A2


def _lin_exact(t=LIN_T, W=LIN_W, p=LIN_P, y0=LIN_Y0):
    """Y (3, nt) and the exact VJPs sum_i W_i^T dy(t_i)/dp, .../dy0."""
    return expm_reference(_lin_A(p), [A1, np.cos(p[1]) * A2], t, W, y0)


@functools.lru_cache(maxsize=None)
def _lin_traced():
    return diffsens.trace(linear_fun, LIN_Y0, LIN_P)


def _lin_rhs(kind):
    return linear_fun if kind == "python" else _lin_traced()


def test_linear_reference_against_finite_differences():
    """The expm_frechet reference itself, by central differences of expm."""
    _, gp, g0 = _lin_exact()
    for j in range(2):
        e = 1e-6 * np.eye(2)[j]
        up = np.sum(LIN_W * _lin_exact(p=LIN_P + e)[0])
        down = np.sum(LIN_W * _lin_exact(p=LIN_P - e)[0])
        assert abs((up - down) / 2e-6 - gp[j]) < 1e-7 * np.abs(gp).max()
    for j in range(3):
        e = 1e-6 * np.eye(3)[j]
        up = np.sum(LIN_W * _lin_exact(y0=LIN_Y0 + e)[0])
        down = np.sum(LIN_W * _lin_exact(y0=LIN_Y0 - e)[0])
        assert abs((up - down) / 2e-6 - g0[j]) < 1e-7 * np.abs(g0).max()


@pytest.mark.parametrize("kind", ["python", "traced"])
@pytest.mark.parametrize("method", ["Tsit5", "DOP853", "Vern7"])
def test_linear_vs_expm_frechet(method, kind):
    """Outputs (t0 among them), grad_p and grad_y0 against the closed forms."""
    res = _reversible(_lin_rhs(kind), (0.0, 3.0), LIN_Y0, LIN_P, t_eval=LIN_T,
                      dgdy=LIN_W, method=method, **TIGHT)
    _check(res, 3, 2, LIN_T)
    assert res.value is None
    Y, gp, g0 = _lin_exact()
    np.testing.assert_array_equal(res.y[:, 0], LIN_Y0)      # the output at t0 is y0
    assert _rel(res.y, Y) < 1e-8
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


@pytest.mark.parametrize("method", ["RK45", "RK23"])
def test_linear_lower_order_methods(method):
    """RK45 at rtol 1e-10, RK23 (order 3) at rtol 1e-8: the tolerance's order."""
    tol, bound = (TIGHT, 1e-6) if method == "RK45" else (dict(rtol=1e-8, atol=1e-10), 1e-5)
    res = _reversible(_lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, t_eval=LIN_T,
                      dgdy=LIN_W, method=method, **tol)
    _check(res, 3, 2, LIN_T)
    Y, gp, g0 = _lin_exact()
    assert _rel(res.y, Y) < bound
    assert _rel(res.grad_p, gp) < bound
    assert _rel(res.grad_y0, g0) < bound


def test_linear_many_outputs():
    """120 outputs: every one a step end, all of them exact to the tolerance."""
    t = np.linspace(0.0, 3.0, 120)
    W = np.random.default_rng(120).standard_normal((3, t.size))
    res = _reversible(_lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, t_eval=t, dgdy=W, **TIGHT)
    _check(res, 3, 2, t)
    assert res.n_steps >= t.size - 1
    Y, gp, g0 = _lin_exact(t=t, W=W)
    assert _rel(res.y, Y) < 1e-8
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


def test_linear_outputs_inside_the_span():
    """t_eval without t0 and tf: the steps after the last output carry nothing."""
    t = np.array([0.5, 1.7, 2.2])
    W = np.random.default_rng(5).standard_normal((3, t.size))
    res = _reversible(_lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, t_eval=t, dgdy=W, **TIGHT)
    _check(res, 3, 2, t)
    Y, gp, g0 = _lin_exact(t=t, W=W)
    assert _rel(res.y, Y) < 1e-8
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


def test_linear_reversed_time_span():
    """t_span = (1, -2): the solve runs down in t, the adjoint back up."""
    t = np.linspace(1.0, -2.0, 7)
    W = np.random.default_rng(6).standard_normal((3, t.size))
    res = _reversible(_lin_traced(), (1.0, -2.0), LIN_Y0, LIN_P, t_eval=t, dgdy=W, **TIGHT)
    _check(res, 3, 2, t)
    Y, gp, g0 = _lin_exact(t=t - 1.0, W=W)          # autonomous: shift t0 to 0
    assert _rel(res.y, Y) < 1e-8
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


def test_linear_loss_with_explicit_p_dependence():
    """loss(Y, p) = sum(W * Y) + p0 p1: the value and the direct dloss/dp term."""
    def loss(Y, p):
        return np.sum(LIN_W * Y) + p[0] * p[1]

    res = _reversible(_lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, t_eval=LIN_T, loss=loss,
                      **TIGHT)
    _check(res, 3, 2, LIN_T)
    Y, gp, g0 = _lin_exact()
    value = np.sum(LIN_W * Y) + LIN_P[0] * LIN_P[1]
    assert abs(res.value - value) < 1e-8 * abs(value)
    assert _rel(res.grad_p, gp + LIN_P[::-1]) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


# ---------------------------------------------------------------------------
# The exact derivative of the discrete solution: frozen-step differences
# ---------------------------------------------------------------------------


def _frozen_fd(fun, t_span, y0, p, t_eval, W, ts, method, coupling, rel_step=1e-6,
               **tol):
    """Central differences of sum(W * Y) along the step times ts."""
    def loss(q, x):
        s = _solve(fun, t_span, x, q, t_eval, method=method, coupling=coupling,
                   t_fixed=ts, **tol)
        return np.sum(W * s.y_out)

    grads = []
    for base, wrt_p in ((np.asarray(p, float), True), (np.asarray(y0, float), False)):
        g = np.zeros(base.size)
        for j in range(base.size):
            h = rel_step * max(abs(base[j]), 1.0)
            up, down = base.copy(), base.copy()
            up[j] += h
            down[j] -= h
            f = (lambda q: loss(q, y0)) if wrt_p else (lambda x: loss(p, x))
            g[j] = (f(up) - f(down)) / (2 * h)
        grads.append(g)
    return grads


def pendulum(t, y, p):
    """A damped, forced pendulum: nonlinear, non-autonomous, p in every term."""
    return np.stack([y[1], -p[0] * np.sin(y[0]) - p[1] * y[1] + 0.3 * np.cos(p[2] * t)])


PEND_Y0, PEND_P = np.array([1.0, 0.0]), np.array([2.0, 0.3, 1.3])


@functools.lru_cache(maxsize=None)
def _pendulum_traced():
    return diffsens.trace(pendulum, PEND_Y0, PEND_P)


def _frozen_fd(fun, t_span, y0, p, t_eval, W, ts, method, coupling, rel_step=3e-4,
               **tol):
    """Fourth-order central differences of sum(W * Y) along the step times ts."""
    def loss(q, x):
        s = _solve(fun, t_span, x, q, t_eval, method=method, coupling=coupling,
                   t_fixed=ts, **tol)
        return np.sum(W * s.y_out)

    grads = []
    for base, wrt_p in ((np.asarray(p, float), True), (np.asarray(y0, float), False)):
        g = np.zeros(base.size)
        for j in range(base.size):
            e = rel_step * max(abs(base[j]), 1.0) * np.eye(base.size)[j]
            f = (lambda q: loss(q, y0)) if wrt_p else (lambda x: loss(p, x))
            g[j] = (8 * (f(base + e) - f(base - e)) - (f(base + 2 * e) - f(base - 2 * e))
                    ) / (12 * e[j])
        grads.append(g)
    return grads


FROZEN_CASES = {
    # loose tolerances: large steps, so the discrete map is far from the flow
    "pendulum": (_pendulum_traced, (0.0, 5.0), PEND_Y0, PEND_P, np.linspace(0.0, 5.0, 11)),
    "lotka_volterra": (lambda: _traced(LV.name), (0.0, 2.0), LV.y0, LV.p,
                       np.linspace(0.0, 2.0, 21)),
}


@pytest.mark.parametrize("method, coupling", [("Tsit5", 0.999), ("DOP853", 0.9),
                                              ("RK23", 1.0), ("Vern7", 0.999),
                                              ("RK45", 0.9)])
@pytest.mark.parametrize("case", sorted(FROZEN_CASES))
def test_gradient_is_exact_for_the_discrete_solution(case, method, coupling):
    """The backward pass equals finite differences of the forward pass with its steps
    frozen (replayed): the exact derivative of the discrete solution."""
    make, t_span, y0, p, t_eval = FROZEN_CASES[case]
    fun, tol = make(), dict(rtol=1e-4, atol=1e-6)
    W = np.random.default_rng(17).standard_normal((len(y0), t_eval.size))
    solve = _solve(fun, t_span, y0, p, t_eval, method=method, coupling=coupling, **tol)
    replay = _solve(fun, t_span, y0, p, t_eval, method=method, coupling=coupling,
                    t_fixed=solve.ts, **tol)
    np.testing.assert_array_equal(replay.y_out, solve.y_out)   # the replay is the solve
    gp, g0, status, message = solve.backward(W)
    assert status == 0, message
    gp_fd, g0_fd = _frozen_fd(fun, t_span, y0, p, t_eval, W, solve.ts, method, coupling,
                              **tol)
    assert _rel(gp, gp_fd) < 1e-9
    assert _rel(g0, g0_fd) < 1e-9


def test_frozen_steps_differ_from_the_exact_gradient():
    """The frozen-step test can fail: at rtol 1e-4 the discrete derivative and the
    exact one (expm_frechet) differ visibly, and the backward pass follows the former."""
    tol = dict(rtol=1e-4, atol=1e-6)
    solve = _solve(_lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, LIN_T, **tol)
    gp, g0, status, _ = solve.backward(LIN_W)
    assert status == 0
    gp_fd, g0_fd = _frozen_fd(_lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, LIN_T, LIN_W,
                              solve.ts, "Tsit5", 0.999, **tol)
    _, gp_exact, g0_exact = _lin_exact()
    assert _rel(gp, gp_fd) < 1e-9 and _rel(g0, g0_fd) < 1e-9
    assert _rel(gp, gp_exact) > 1000 * _rel(gp, gp_fd)


def test_long_lotka_volterra_frozen_steps():
    """Over LV's whole span the reconstruction's round-off (~1e-10 here) is amplified
    by the problem's sensitivity: exact to ~1e-7, not to round-off."""
    fun, tol = _traced(LV.name), dict(rtol=1e-4, atol=1e-6)
    W = np.random.default_rng(17).standard_normal((2, LV_T.size))
    solve = _solve(fun, LV.t_span, LV.y0, LV.p, LV_T, **tol)
    gp, g0, status, message = solve.backward(W)
    assert status == 0, message
    gp_fd, g0_fd = _frozen_fd(fun, LV.t_span, LV.y0, LV.p, LV_T, W, solve.ts, "Tsit5",
                              0.999, **tol)
    assert _rel(gp, gp_fd) < 1e-6
    assert _rel(g0, g0_fd) < 1e-6


# ---------------------------------------------------------------------------
# The forward solution and the backward reconstruction
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _lv_reference():
    ref = diffsens.solve_ivp(_traced(LV.name), LV.t_span, LV.y0, method="DOP853",
                             t_eval=LV_T, args=(LV.p,), rtol=1e-12, atol=1e-14)
    assert ref.status == 0
    return ref.y


@pytest.mark.parametrize("coupling, factor", [(0.999, 300), (1.0, 300), (0.5, 10)])
def test_lotka_volterra_forward_accuracy(coupling, factor):
    """The outputs are states y_n, converging to a tight reference as rtol shrinks.

    With lambda near 1 the drift z - y is barely damped (it settles near the local
    error / (1 - lambda)) and feeds back into y: the error is ~50-150 times rtol
    here, where plain Tsit5 stays within ~5 rtol.  lambda = 0.5 damps the drift
    and is as accurate as the base method (but see the reconstruction test)."""
    errors = []
    for rtol in (1e-6, 1e-8, 1e-10):
        solve = _solve(_traced(LV.name), LV.t_span, LV.y0, LV.p, LV_T, coupling=coupling,
                       rtol=rtol, atol=rtol * 1e-2)
        np.testing.assert_array_equal(solve.t_out, LV_T)
        errors.append(_rel(solve.y_out, _lv_reference()))
        assert errors[-1] < factor * rtol, (rtol, errors[-1])
    assert errors[0] > 30 * errors[1] > 900 * errors[2]


def test_forward_matches_adjoint_gradient():
    """adjoint_gradient's outputs are the forward pass's."""
    res = _reversible(_traced(LV.name), LV.t_span, LV.y0, LV.p, t_eval=LV_T,
                      dgdy=np.ones((2, LV_T.size)), **LV_TOL)
    _check(res, 2, 4, LV_T)
    solve = _solve(_traced(LV.name), LV.t_span, LV.y0, LV.p, LV_T, **LV_TOL)
    np.testing.assert_array_equal(res.y, solve.y_out)
    assert res.n_steps == solve.n_steps


def test_coupling_changes_the_solution():
    """lambda enters the scheme: different lambdas, different (equally accurate) y."""
    ys = [_solve(_traced(LV.name), LV.t_span, LV.y0, LV.p, LV_T, coupling=c, rtol=1e-6,
                 atol=1e-8).y_out for c in (0.999, 0.3)]
    assert 0 < _rel(ys[0], ys[1]) < 1e-3


@pytest.mark.parametrize("name", ["lotka_volterra", "linear"])
@pytest.mark.parametrize("coupling", [0.999, 1.0])
def test_backward_reconstruction_returns_y0(name, coupling):
    """Rebuilding (y_n, z_n) backward from the final pair lands on (y0, y0)."""
    if name == "linear":
        fun, t_span, y0, p, t_eval = _lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, LIN_T
    else:
        fun, t_span, y0, p, t_eval = _traced(LV.name), LV.t_span, LV.y0, LV.p, LV_T
    solve = _solve(fun, t_span, y0, p, t_eval, coupling=coupling, **LV_TOL)
    assert solve.n_steps > 50
    W = np.ones((len(y0), len(t_eval)))
    _, _, status, _ = solve.backward(W)
    assert status == 0
    y0 = np.asarray(y0, dtype=float)
    # round-off of the rebuild, grown by the problem's own sensitivity (LV: ~1e3)
    bound = 1e-10 if name == "lotka_volterra" else 1e-13
    assert _rel(solve.y0_reconstructed, y0) < bound
    assert _rel(solve.z0_reconstructed, y0) < bound
    assert solve.reconstruction_drift() < 0.1      # of the tolerance: status 0


def test_small_coupling_over_many_steps_is_a_status():
    """Backward, round-off grows like coupling**-steps: 0.5 over ~420 steps cannot
    rebuild y0, and the result says so instead of returning a wrong gradient."""
    res = _reversible(_traced(LV.name), LV.t_span, LV.y0, LV.p, t_eval=LV_T,
                      dgdy=np.ones((2, LV_T.size)), reversible_coupling=0.5, **LV_TOL)
    assert res.status == -1 and not res.success
    assert "reversible_coupling" in res.message
    assert res.y.shape == (2, LV_T.size)            # the forward pass itself is fine
    assert _rel(res.y, _lv_reference()) < 1e-6


def test_step_options_are_honoured():
    """max_step bounds every step, first_step is the first one, and the steps land on
    every output and on tf."""
    t = np.array([0.3, 1.0, 2.5])
    solve = _solve(_lin_traced(), (0.0, 3.0), LIN_Y0, LIN_P, t, max_step=0.05,
                   first_step=1e-3, rtol=1e-3, atol=1e-6)
    steps = np.diff(solve.ts)
    assert steps[0] == pytest.approx(1e-3) and steps.max() <= 0.05 * (1 + 1e-12)
    assert solve.ts[0] == 0.0 and solve.ts[-1] == 3.0 and np.isin(t, solve.ts).all()
    assert solve.n_steps == len(steps) >= 60


def test_resuming_changes_nothing():
    """Yielding every few steps (Ctrl-C checks) and growing the step-time buffer
    (256 at first; ~420 steps here) leave every number bit-identical."""
    W = np.random.default_rng(1).standard_normal((2, LV_T.size))
    results = []
    for every in (0, 7, 1000):
        s = _solve(_traced(LV.name), LV.t_span, LV.y0, LV.p, LV_T, yield_every=every,
                   **LV_TOL)
        assert s.n_steps > 256
        results.append((s.y_out, s.ts) + s.backward(W)[:2])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# Against the other routes on Lotka-Volterra
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _lv_forward_dual():
    fwd = diffsens.solve_ivp_sens(_traced(LV.name), LV.t_span, LV.y0, LV.p, t_eval=LV_T,
                                  sens="dual", wrt=("p", "y0"), method="DOP853",
                                  rtol=1e-12, atol=1e-14)
    assert fwd.status == 0
    W = 2.0 * fwd.y
    return (np.einsum("it,ijt->j", W, fwd.sens), np.einsum("it,ijt->j", W, fwd.sens_y0))


def test_lotka_volterra_vs_discrete_and_forward():
    kw = dict(t_eval=LV_T, loss=lambda Y, p: np.sum(Y * Y), **LV_TOL)
    res = _reversible(_traced(LV.name), LV.t_span, LV.y0, LV.p, **kw)
    _check(res, 2, 4, LV_T)
    disc = diffsens.adjoint_gradient(_traced(LV.name), LV.t_span, LV.y0, LV.p,
                                     adjoint="discrete", **kw)
    assert disc.status == 0
    gp, g0 = _lv_forward_dual()
    np.testing.assert_allclose(res.value, np.sum(res.y ** 2), rtol=1e-13)
    assert abs(res.value - disc.value) < 1e-6 * disc.value
    assert _rel(res.grad_p, disc.grad_p) < 1e-5
    assert _rel(res.grad_y0, disc.grad_y0) < 1e-5
    assert _rel(res.grad_p, gp) < 1e-5
    assert _rel(res.grad_y0, g0) < 1e-5


def test_python_and_traced_agree():
    kw = dict(t_eval=LV_T, loss=lambda Y, p: np.sum(Y * Y), rtol=1e-6, atol=1e-8)
    plain = _reversible(LV.fun, LV.t_span, LV.y0, LV.p, **kw)
    traced = _reversible(_traced(LV.name), LV.t_span, LV.y0, LV.p, **kw)
    _check(plain, 2, 4, LV_T)
    _check(traced, 2, 4, LV_T)
    # the same arithmetic in a different order: round-off apart
    np.testing.assert_allclose(plain.y, traced.y, rtol=1e-9)
    assert _rel(plain.grad_p, traced.grad_p) < 1e-8
    assert _rel(plain.grad_y0, traced.grad_y0) < 1e-8
    assert plain.n_steps == traced.n_steps


def test_checkpoints_are_ignored():
    kw = dict(t_eval=LV_T, dgdy=np.ones((2, LV_T.size)), rtol=1e-6, atol=1e-8)
    a = _reversible(_traced(LV.name), LV.t_span, LV.y0, LV.p, **kw)
    b = _reversible(_traced(LV.name), LV.t_span, LV.y0, LV.p, checkpoints=3, **kw)
    np.testing.assert_array_equal(a.grad_p, b.grad_p)
    np.testing.assert_array_equal(a.grad_y0, b.grad_y0)
    assert a.n_checkpoints == b.n_checkpoints == 0


# ---------------------------------------------------------------------------
# g: an integral of y^T Q y, by Van Loan's block exponential
# ---------------------------------------------------------------------------

Q = np.array([[2.0, 0.5, 0.0],
              [0.5, 1.0, -0.3],
              [0.0, -0.3, 1.5]])
G_T = 2.5


def lin_g(t, y, p):
    return 0.5 * (1.0 + p[0]) * (y @ (Q @ y))


def _lin_g_integral(p, y0):
    """int_0^T (1 + p0)/2 y^T Q y dt: expm([[-A^T, Q], [0, A]] T) (Van Loan)."""
    return 0.5 * (1.0 + p[0]) * (y0 @ van_loan_gram(_lin_A(p), Q, G_T) @ y0)


def test_van_loan_reference():
    """The closed form against quad over expm."""
    quad, _ = scipy.integrate.quad(
        lambda t: lin_g(t, scipy.linalg.expm(_lin_A(LIN_P) * t) @ LIN_Y0, LIN_P), 0.0, G_T,
        epsabs=0, epsrel=1e-13)
    np.testing.assert_allclose(_lin_g_integral(LIN_P, LIN_Y0), quad, rtol=1e-11)


@pytest.mark.parametrize("kind", ["python", "traced"])
def test_g_integral_closed_form(kind):
    res = _reversible(_lin_rhs(kind), (0.0, G_T), LIN_Y0, LIN_P, g=lin_g, **TIGHT)
    _check(res, 3, 2)
    h = 1e-30   # complex steps of the closed form
    gp = np.array([_lin_g_integral(LIN_P + 1j * h * e, LIN_Y0.astype(complex)).imag / h
                   for e in np.eye(2)])
    g0 = np.array([_lin_g_integral(LIN_P.astype(complex), LIN_Y0 + 1j * h * e).imag / h
                   for e in np.eye(3)])
    value = _lin_g_integral(LIN_P, LIN_Y0)
    assert abs(res.value - value) < 1e-8 * abs(value)
    assert _rel(res.grad_p, gp) < 1e-6
    assert _rel(res.grad_y0, g0) < 1e-6


# ---------------------------------------------------------------------------
# Errors: the user's exceptions, bad input, numerical failure
# ---------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_python_exception_in_the_forward_pass_propagates():
    def fun(t, y, p):
        if t > 1.0:
            raise Boom("forward")
        return linear_fun(t, y, p)

    with pytest.raises(Boom, match="forward") as info:
        _reversible(fun, (0.0, 3.0), LIN_Y0, LIN_P, t_eval=LIN_T, dgdy=LIN_W)
    assert any(entry.name == "fun" for entry in info.traceback)   # raised where it was


def test_python_exception_in_the_backward_pass_propagates():
    armed = []

    def fun(t, y, p):
        if armed:
            raise Boom("backward")
        return linear_fun(t, y, p)

    def loss(Y, p):              # runs between the passes
        armed.append(True)
        return np.sum(Y)

    with pytest.raises(Boom, match="backward") as info:
        _reversible(fun, (0.0, 3.0), LIN_Y0, LIN_P, t_eval=LIN_T, loss=loss)
    assert armed
    assert any(entry.name == "fun" for entry in info.traceback)


@pytest.mark.parametrize("method", ["Rosenbrock23", "Rodas4", "Rodas5P"])
def test_rosenbrock_method_is_refused(method):
    with pytest.raises(ValueError, match="adjoint='reversible'.*explicit.*'gauss'"):
        _reversible(linear_fun, (0.0, 3.0), LIN_Y0, LIN_P, t_eval=LIN_T, dgdy=LIN_W,
                    method=method)


@pytest.mark.parametrize("coupling", [0.0, -0.5, 1.5, 1.0 + 1e-12, np.nan, np.inf,
                                      "half", True])
def test_bad_coupling(coupling):
    with pytest.raises(ValueError, match="reversible_coupling"):
        _reversible(linear_fun, (0.0, 3.0), LIN_Y0, LIN_P, t_eval=LIN_T, dgdy=LIN_W,
                    reversible_coupling=coupling)


def test_coupling_without_reversible_warns():
    with pytest.warns(UserWarning, match="reversible_coupling"):
        res = diffsens.adjoint_gradient(linear_fun, (0.0, 3.0), LIN_Y0, LIN_P,
                                        t_eval=LIN_T, dgdy=LIN_W, adjoint="gauss",
                                        reversible_coupling=0.9)
    assert res.status == 0


@pytest.mark.parametrize("kind", ["python", "traced"])
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_blow_up_is_a_status(kind):
    """y' = y^2, y(0) = 1 has a pole at t = 1: status -1 and a message, no exception."""
    def fun(t, y, p):
        return p[0] * y * y

    rhs = fun if kind == "python" else diffsens.trace(fun, np.ones(1), np.ones(1))
    res = _reversible(rhs, (0.0, 2.0), [1.0], [1.0], t_eval=[0.5, 2.0],
                      loss=lambda Y, p: np.sum(Y))
    assert res.status == -1 and not res.success
    assert isinstance(res.message, str) and res.message
    assert np.isnan(res.grad_p).all() and np.isnan(res.grad_y0).all()
    np.testing.assert_array_equal(res.t, [0.5])          # the output it reached
    np.testing.assert_allclose(res.y[0], [2.0], rtol=1e-2)


def test_max_steps_is_a_status():
    res = _reversible(_traced(LV.name), LV.t_span, LV.y0, LV.p, t_eval=LV_T,
                      dgdy=np.ones((2, LV_T.size)), max_steps=20, **LV_TOL)
    assert res.status == -1 and "max_steps=20" in res.message
    assert res.n_steps == 20
