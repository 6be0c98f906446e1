"""Forward sensitivities (``diffsens.solve_ivp_sens``) against independent routes.

Every derivative the solver returns is checked against something that does
not go through its dual lanes:

* closed forms: the Bateman function of the one-compartment oral model and
  its parameter derivatives (worked out by hand below, and checked by a
  complex step of the closed form), and ``y' = A(p) y`` through the matrix
  exponential and its Frechet derivative (``scipy.linalg.expm_frechet``);
* central finite differences of plain solves (Lotka-Volterra, Brusselator);
* the solver against itself where the documentation promises identities:
  ``'dual'`` follows the steps of the plain solve, chunks of directions and
  worker threads give bitwise the same numbers, dense output reproduces the
  stored points.

Both kinds of right-hand side are covered: a plain Python ``fun(t, y, p)``
(evaluated on NumPy object arrays of ``diffsens._dual.Dual``) and the same
function recorded by ``diffsens.trace``.
"""

import functools

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.special

import diffsens
from diffsens import problems
from diffsens._dual import Dual
from diffsens.problems._pk import bateman

ALL_METHODS = ["Tsit5", "RK45", "DOP853", "Vern7", "RK23"]
METHODS = ["Tsit5", "DOP853"]
KINDS = ["python", "traced"]
SENS = ["dual", "continuous"]
TIGHT = dict(rtol=1e-10, atol=1e-12)


@functools.lru_cache(maxsize=None)
def _traced_problem(name):
    prob = problems.get(name)
    return diffsens.trace(prob.fun, prob.y0, prob.p)


def _problem_rhs(kind, name):
    """The problem's own ``fun`` or its traced tape."""
    return problems.get(name).fun if kind == "python" else _traced_problem(name)


def _rhs(kind, fun, y0, p, args=()):
    return fun if kind == "python" else diffsens.trace(fun, y0, p, args=args)


def _rel_err(value, ref, axis=-1):
    """Error relative to each series' largest magnitude along `axis` (time)."""
    scale = np.abs(ref).max(axis=axis, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    return float((np.abs(value - ref) / scale).max())


# ---------------------------------------------------------------------------
# 1. One-compartment oral absorption vs the Bateman function
# ---------------------------------------------------------------------------

ORAL = problems.get("one_compartment_oral")
DOSE = ORAL.y0[0]


def _oral_closed(t, dose, ka, ke, V):
    """Gut amount and concentration, written out (complex-step friendly)."""
    gut = dose * np.exp(-ka * t)
    conc = dose * ka / (V * (ka - ke)) * (np.exp(-ke * t) - np.exp(-ka * t))
    return np.stack([gut, conc])


def _oral_dp(t, dose, ka, ke, V):
    """d(gut, conc)/d(ka, ke, V), shape (2, 3, nt), derived by hand.

    With d = ka - ke, E = exp(-ke t) - exp(-ka t), c = dose ka E / (V d):

        d gut/d ka = -t dose exp(-ka t),  d gut/d ke = d gut/d V = 0
        d c/d ka   = dose/V [-ke E / d^2 + ka t exp(-ka t) / d]
        d c/d ke   = dose/V [ ka E / d^2 - ka t exp(-ke t) / d]
        d c/d V    = -c / V
    """
    t = np.asarray(t, dtype=float)
    d = ka - ke
    E = np.exp(-ke * t) - np.exp(-ka * t)
    c = dose * ka * E / (V * d)
    zero = np.zeros_like(t)
    dgut = np.stack([-t * dose * np.exp(-ka * t), zero, zero])
    dconc = np.stack([dose / V * (-ke * E / d**2 + ka * t * np.exp(-ka * t) / d),
                      dose / V * (ka * E / d**2 - ka * t * np.exp(-ke * t) / d),
                      -c / V])
    return np.stack([dgut, dconc])


def _oral_dy0(t, dose, ka, ke, V):
    """d(gut, conc)/d(gut0, conc0), shape (2, 2, nt) (linear in y0)."""
    t = np.asarray(t, dtype=float)
    zero = np.zeros_like(t)
    return np.stack([np.stack([np.exp(-ka * t), zero]),
                     np.stack([_oral_closed(t, 1.0, ka, ke, V)[1], np.exp(-ke * t)])])


def test_oral_closed_form_and_its_derivatives():
    """The hand-written reference: Bateman values, complex step of the derivatives."""
    t = np.asarray(ORAL.t_eval, dtype=float)
    ka, ke, V = ORAL.p
    ref = _oral_closed(t, DOSE, ka, ke, V)
    np.testing.assert_allclose(ref[1], bateman(t, DOSE, ka, ke, V), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ref[:, -1], ORAL.y_ref, rtol=1e-13)
    h = 1e-30
    S = _oral_dp(t, DOSE, ka, ke, V)
    for j in range(3):
        pc = np.array(ORAL.p, dtype=complex)
        pc[j] += 1j * h
        cs = _oral_closed(t, DOSE, *pc).imag / h
        np.testing.assert_allclose(S[:, j], cs, rtol=1e-12, atol=1e-14)
    S0 = _oral_dy0(t, DOSE, ka, ke, V)
    for j in range(2):
        y0c = np.array(ORAL.y0, dtype=complex)
        y0c[j] += 1j * h
        # the solution is linear in y0: gut0 feeds both, conc0 decays alone
        cs = np.stack([y0c[0] * np.exp(-ka * t),
                       _oral_closed(t, y0c[0], ka, ke, V)[1] + y0c[1] * np.exp(-ke * t)])
        np.testing.assert_allclose(S0[:, j], cs.imag / h, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("sens", SENS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ALL_METHODS)
def test_oral_absorption_matches_bateman(method, kind, sens):
    t = np.asarray(ORAL.t_eval, dtype=float)
    ka, ke, V = ORAL.p
    res = diffsens.solve_ivp_sens(_problem_rhs(kind, ORAL.name), ORAL.t_span, ORAL.y0,
                                  ORAL.p, method=method, t_eval=t, sens=sens,
                                  wrt=("p", "y0"), **TIGHT)
    assert res.status == 0 and res.success, res.message
    assert res.sens_method == sens
    np.testing.assert_array_equal(res.t, t)
    assert res.y.shape == (2, t.size)
    assert res.sens.shape == (2, 3, t.size)
    assert res.sens_y0.shape == (2, 2, t.size)
    assert _rel_err(res.y, _oral_closed(t, DOSE, ka, ke, V)) < 1e-8
    assert _rel_err(res.sens, _oral_dp(t, DOSE, ka, ke, V)) < 1e-7
    assert _rel_err(res.sens_y0, _oral_dy0(t, DOSE, ka, ke, V)) < 1e-7
    # ke and V do not enter the gut equation at all: exactly zero
    assert not res.sens[0, 1:].any()


# ---------------------------------------------------------------------------
# 2. y' = A(p) y vs the matrix exponential and its Frechet derivative
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


def linear_fun(t, y, p):
    """A(p) y with A(p) = A0 + p0 A1 + p1^2 A2 + sin(p2) A3."""
    return A0 @ y + p[0] * (A1 @ y) + p[1] ** 2 * (A2 @ y) + np.sin(p[2]) * (A3 @ y)


def _lin_A(p):
    return A0 + p[0] * A1 + p[1] ** 2 * A2 + np.sin(p[2]) * A3


def _lin_dA(p):
    return [A1, 2.0 * p[1] * A2, np.cos(p[2]) * A3]


def _lin_reference(t, p=LIN_P, y0=LIN_Y0):
    """y, dy/dp (3, 3, nt) and dy/dy0 = expm(A t) (3, 3, nt)."""
    A, dA = _lin_A(p), _lin_dA(p)
    ys, sens, sens_y0 = [], [], []
    for ti in np.atleast_1d(t):
        cols = []
        for dAi in dA:
            E, L = scipy.linalg.expm_frechet(A * ti, dAi * ti)
            cols.append(L @ y0)
        ys.append(E @ y0)
        sens.append(np.stack(cols, axis=1))
        sens_y0.append(E)
    return np.stack(ys, -1), np.stack(sens, -1), np.stack(sens_y0, -1)


@pytest.mark.parametrize("sens", SENS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_linear_system_vs_expm_frechet(method, kind, sens):
    t = np.linspace(0.0, 3.0, 13)
    fun = _rhs(kind, linear_fun, LIN_Y0, LIN_P)
    res = diffsens.solve_ivp_sens(fun, (0.0, 3.0), LIN_Y0, LIN_P, method=method,
                                  t_eval=t, sens=sens, wrt=("p", "y0"), **TIGHT)
    assert res.status == 0, res.message
    y_ref, s_ref, s0_ref = _lin_reference(t)
    assert _rel_err(res.y, y_ref) < 1e-8
    assert _rel_err(res.sens, s_ref) < 1e-7
    assert _rel_err(res.sens_y0, s0_ref) < 1e-7


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["Rodas5P", "Rodas4"])
def test_rosenbrock_linear_system_vs_expm_frechet(method, kind):
    t = np.linspace(0.0, 3.0, 13)
    fun = _rhs(kind, linear_fun, LIN_Y0, LIN_P)
    res = diffsens.solve_ivp_sens(fun, (0.0, 3.0), LIN_Y0, LIN_P, method=method,
                                  t_eval=t, sens="continuous", wrt=("p", "y0"), **TIGHT)
    assert res.status == 0, res.message
    y_ref, s_ref, s0_ref = _lin_reference(t)
    assert _rel_err(res.y, y_ref) < 1e-8
    assert _rel_err(res.sens, s_ref) < 1e-7
    assert _rel_err(res.sens_y0, s0_ref) < 1e-7


ROBER_1E5 = problems.get("rober_1e5")


def _central_differences(y_of_p, p, relative_step=1e-4):
    """dy/dp (..., m, ...) of ``y_of_p(p)`` (shape (n, nt)) by central
    differences, each parameter stepped by `relative_step` of itself."""
    columns = []
    for j in range(p.size):
        step = relative_step * p[j]
        up, down = p.copy(), p.copy()
        up[j] += step
        down[j] -= step
        columns.append((y_of_p(up) - y_of_p(down)) / (2 * step))
    return np.stack(columns, axis=1)


@functools.lru_cache(maxsize=None)
def _rober_fd(rtol, atol):
    """Central differences (step 1e-4 relative) of tight Rodas5P solves of ROBER."""
    prob = ROBER_1E5
    rhs = diffsens.trace(prob.fun, prob.y0, prob.p)
    kw = dict(method="Rodas5P", t_eval=prob.t_eval, rtol=rtol, atol=atol)
    return _central_differences(
        lambda p: diffsens.solve_ivp(rhs, prob.t_span, prob.y0, args=(p,), **kw).y,
        np.asarray(prob.p, dtype=float))


@pytest.mark.parametrize("error_control", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_rosenbrock_rober_vs_finite_differences(kind, error_control):
    """Stiff and nonlinear: the sensitivity stages need the block coupling S
    to y (d/dy of J S + J_p) in the augmented Jacobian to keep the order.
    One LU of W per step serves every sensitivity column: the same count as
    the plain solve when the steps are the same (no error control on S)."""
    prob = ROBER_1E5
    kw = dict(t_eval=prob.t_eval, rtol=1e-10, atol=1e-14)
    fun = _rhs(kind, prob.fun, prob.y0, prob.p)
    res = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p, method="Rodas5P",
                                  sens="continuous", sens_error_control=error_control,
                                  **kw)
    assert res.status == 0, res.message
    fd = _rober_fd(kw["rtol"], kw["atol"])
    for j in range(3):   # each parameter's column against its own scale
        assert _rel_err(res.sens[:, j], fd[:, j]) < 1e-5, j
    plain = diffsens.solve_ivp(fun, prob.t_span, prob.y0, method="Rodas5P",
                               args=(prob.p,), **kw)
    if not error_control:
        assert res.nlu == plain.nlu and res.njev == plain.njev
        np.testing.assert_array_equal(res.y, plain.y)


def test_system_without_states():
    """n = 0: solve_ivp's (scipy's) empty result, empty sensitivities."""
    res = diffsens.solve_ivp_sens(lambda t, y, p: y, (0.0, 1.0), np.zeros(0), [1.0, 2.0],
                                  t_eval=[0.5, 1.0], wrt=("p", "y0"), dense_output=True)
    assert res.status == 0 and res.success
    np.testing.assert_array_equal(res.t, [0.5, 1.0])
    assert res.y.shape == (0, 2)
    assert res.sens.shape == (0, 2, 2) and res.sens_y0.shape == (0, 0, 2)
    assert res.sol.sens(0.3).shape == (0, 2)


ROBER_STEP = 2.0 ** -10    # fixed steps of the discrete-derivative tests


def _rober_fixed_steps(fun, p, method, **kw):
    """ROBER's stiff transient, [0, 1/16], in 64 steps of exactly ROBER_STEP:
    a tolerance no error estimate reaches, the step capped at its first size."""
    return diffsens.solve_ivp_sens(fun, (0.0, 64 * ROBER_STEP), ROBER_1E5.y0, p,
                                   method=method,
                                   rtol=1e6, atol=1e6, first_step=ROBER_STEP,
                                   max_step=ROBER_STEP, **kw)


@pytest.mark.parametrize("method", ["Rodas5P", "Rodas4", "Rosenbrock23"])
def test_rosenbrock_dual_is_the_derivative_of_the_discrete_solution(method):
    """sens='dual' with a Rosenbrock method against central differences of
    the same fixed-step solve: the step applied to [y, S] with the exact
    coupling block is the step's derivative.  Rosenbrock23 (3 stages, 3
    states) couples stage by stage, Rodas4/Rodas5P by the block per step.
    (The differences' own error: ~2e-7 on the smallest series.)"""
    prob = ROBER_1E5
    p = np.asarray(prob.p, dtype=float)
    fun = _traced_problem("rober_1e5")
    res = _rober_fixed_steps(fun, p, method)
    assert res.status == 0, res.message
    np.testing.assert_array_equal(res.t, np.arange(65) * ROBER_STEP)   # no step moved
    fd = _central_differences(lambda q: _rober_fixed_steps(fun, q, method).y, p)
    for j in range(p.size):
        assert _rel_err(res.sens[:, j], fd[:, j]) < 1e-6, j


@pytest.mark.parametrize("method", ["Rodas5P", "auto"])
def test_rosenbrock_dual_of_a_python_fun_is_refused_with_the_way_out(method):
    """A Python fun has no exact second derivatives for the step's derivative."""
    with pytest.raises(ValueError, match="sens='continuous'"):
        diffsens.solve_ivp_sens(linear_fun, (0.0, 1.0), LIN_Y0, LIN_P, method=method)


def test_rosenbrock_dual_is_continuous_without_error_control_on_s():
    """'dual' with a Rosenbrock method: the steps of the plain solve, the
    numbers of sens='continuous' with sens_error_control=False, and chunks of
    directions that reproduce them bit for bit."""
    prob = ROBER_1E5
    rhs = _traced_problem("rober_1e5")
    kw = dict(t_eval=prob.t_eval, rtol=1e-6, atol=1e-10, method="Rodas5P")
    dual = diffsens.solve_ivp_sens(rhs, prob.t_span, prob.y0, prob.p, **kw)
    assert dual.sens_method == "dual"
    continuous = diffsens.solve_ivp_sens(rhs, prob.t_span, prob.y0, prob.p,
                                         sens="continuous", sens_error_control=False, **kw)
    np.testing.assert_array_equal(dual.sens, continuous.sens)
    chunked = diffsens.solve_ivp_sens(rhs, prob.t_span, prob.y0, prob.p, chunk_size=1,
                                      workers=2, wrt=("p", "y0"), **kw)
    np.testing.assert_array_equal(chunked.sens, dual.sens)
    plain = diffsens.solve_ivp(rhs, prob.t_span, prob.y0, args=(prob.p,), **kw)
    np.testing.assert_array_equal(dual.y, plain.y)
    assert dual.nlu == plain.nlu


def _stiff_in_the_middle(t, y, p):
    """y' = -lam(t) (y - p cos t) - p sin t, lam = 1 + 1e5 exp(-((t - 5)/0.5)^2):
    stiff around t = 5 only.  With y(0) = 1: y = p cos t + (1 - p) E(t),
    E = exp(-int_0^t lam), so dy/dp = cos t - E(t) at p = 1."""
    lam = 1 + 1e5 * np.exp(-((t - 5) / 0.5) ** 2)
    return -lam * (y - p[0] * np.cos(t)) - p[0] * np.sin(t)


def _stiff_in_the_middle_dy_dp(t):
    integral = t + 1e5 * 0.25 * np.sqrt(np.pi) * (scipy.special.erf((t - 5) / 0.5)
                                                   - scipy.special.erf(-10.0))
    return np.cos(t) - np.exp(-integral)


@pytest.mark.parametrize("kind", KINDS)
def test_auto_switches_with_the_sensitivities(kind):
    """method='auto': Tsit5, Rodas5P through the stiff stretch, Tsit5 again,
    the sensitivities handed over with the state at each switch."""
    t_eval = np.linspace(0.0, 10.0, 41)
    fun = _rhs(kind, _stiff_in_the_middle, [1.0], [1.0])
    res = diffsens.solve_ivp_sens(fun, (0.0, 10.0), [1.0], [1.0], method="auto",
                                  sens="continuous", t_eval=t_eval, dense_output=True,
                                  rtol=1e-8, atol=1e-10)
    assert res.status == 0, res.message
    assert [name for name, _, _ in res.method_segments] == ["Tsit5", "Rodas5P", "Tsit5"]
    np.testing.assert_array_equal(res.t, t_eval)
    assert res.y.shape == (1, 41) and res.sens.shape == (1, 1, 41)
    np.testing.assert_allclose(res.y[0], np.cos(t_eval), atol=1e-7)
    np.testing.assert_allclose(res.sens[0, 0], _stiff_in_the_middle_dy_dp(t_eval), atol=1e-7)
    t_mid = np.array([2.3, 5.05, 7.7])
    np.testing.assert_allclose(res.sol.sens(t_mid)[0, 0], _stiff_in_the_middle_dy_dp(t_mid),
                               atol=1e-7)
    assert res.njev > 0 and res.nlu > 0


def test_auto_sensitivities_equal_one_chunk_when_split():
    kw = dict(method="auto", sens="continuous", sens_error_control=False,
              t_eval=np.linspace(0.0, 10.0, 11), rtol=1e-8, atol=1e-10, wrt=("p", "y0"))
    fun = diffsens.trace(_stiff_in_the_middle, [1.0], [1.0])
    whole = diffsens.solve_ivp_sens(fun, (0.0, 10.0), [1.0], [1.0], **kw)
    split = diffsens.solve_ivp_sens(fun, (0.0, 10.0), [1.0], [1.0], chunk_size=1, **kw)
    assert whole.status == 0 and split.status == 0
    np.testing.assert_array_equal(whole.sens, split.sens)
    np.testing.assert_array_equal(whole.sens_y0, split.sens_y0)


@pytest.mark.parametrize("sens", SENS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_backward_integration(method, kind, sens):
    """t_span reversed: integrate from t0 = 1 down to -2 (expm of A t, t < 1)."""
    t_eval = np.linspace(1.0, -2.0, 7)
    fun = _rhs(kind, linear_fun, LIN_Y0, LIN_P)
    res = diffsens.solve_ivp_sens(fun, (1.0, -2.0), LIN_Y0, LIN_P, method=method,
                                  t_eval=t_eval, dense_output=True, sens=sens,
                                  wrt=("p", "y0"), **TIGHT)
    assert res.status == 0, res.message
    np.testing.assert_array_equal(res.t, t_eval)
    y_ref, s_ref, s0_ref = _lin_reference(t_eval - 1.0)    # autonomous: shift t0 to 0
    assert _rel_err(res.y, y_ref) < 1e-8
    assert _rel_err(res.sens, s_ref) < 1e-7
    assert _rel_err(res.sens_y0, s0_ref) < 1e-7
    np.testing.assert_array_equal(res.sens[:, :, 0], 0.0)
    np.testing.assert_array_equal(res.sens_y0[:, :, 0], np.eye(3))
    t_mid = np.array([0.5, -0.3, -1.7])
    y_mid, s_mid, s0_mid = _lin_reference(t_mid - 1.0)
    assert _rel_err(res.sol.sens(t_mid), s_mid) < 1e-7
    assert _rel_err(res.sol.sens_y0(t_mid), s0_mid) < 1e-7
    assert _rel_err(res.sol(t_mid), y_mid) < 1e-8


# ---------------------------------------------------------------------------
# 3. Central finite differences of plain (scipy) solves
# ---------------------------------------------------------------------------


def _central_fd(prob, t_eval, rel_h=1e-5):
    """dy/dp at t_eval by central differences of scipy DOP853 at rtol 1e-13.

    The truncation error is O(h^2): about 1e-8 relative for h = 1e-5 |p_j| on
    both problems (1e-6 at h = 1e-4), the solver noise / h about as small.
    """
    p = np.asarray(prob.p, dtype=float)
    cols = []
    for j in range(p.size):
        h = rel_h * abs(p[j])
        ys = []
        for sign in (1.0, -1.0):
            q = p.copy()
            q[j] += sign * h
            sol = scipy.integrate.solve_ivp(prob.fun, prob.t_span, prob.y0, method="DOP853",
                                            t_eval=t_eval, args=(q,), rtol=1e-13, atol=1e-15)
            assert sol.status == 0, sol.message
            ys.append(sol.y)
        cols.append((ys[0] - ys[1]) / (2.0 * h))
    return np.stack(cols, axis=1)


@functools.lru_cache(maxsize=None)
def _fd_reference(name):
    prob = problems.get(name)
    t_eval = (np.asarray(prob.t_eval, dtype=float) if prob.t_eval is not None
              else np.linspace(*prob.t_span, 11))
    return t_eval, _central_fd(prob, t_eval)


@pytest.mark.parametrize("sens", SENS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["lotka_volterra", "brusselator_1d"])
def test_finite_differences(name, method, kind, sens):
    prob = problems.get(name)
    t_eval, fd = _fd_reference(name)
    res = diffsens.solve_ivp_sens(_problem_rhs(kind, name), prob.t_span, prob.y0, prob.p,
                                  method=method, t_eval=t_eval, sens=sens, **TIGHT)
    assert res.status == 0, res.message
    assert res.sens.shape == (prob.n, prob.m, t_eval.size)
    # relative to each parameter's largest sensitivity over components and time
    assert _rel_err(res.sens, fd, axis=(0, 2)) < 1e-6


# ---------------------------------------------------------------------------
# 4. 'dual' vs 'continuous'; same steps as the plain solve; chunks; workers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["lotka_volterra", "one_compartment_oral"])
def test_dual_and_continuous_agree(name, method, kind):
    prob = problems.get(name)
    fun = _problem_rhs(kind, name)
    kw = dict(method=method, t_eval=prob.t_eval, wrt=("p", "y0"), rtol=1e-11, atol=1e-13)
    dual = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p, sens="dual", **kw)
    cont = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p, sens="continuous", **kw)
    assert dual.status == cont.status == 0
    assert (dual.sens_method, cont.sens_method) == ("dual", "continuous")
    assert _rel_err(dual.sens, cont.sens) < 1e-9
    assert _rel_err(dual.sens_y0, cont.sens_y0) < 1e-9
    # the continuous method controls the error of S too: it takes more steps
    assert cont.nfev > dual.nfev


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("name", ["lotka_volterra", "one_compartment_oral"])
def test_dual_takes_the_steps_of_the_plain_solve(name, method, kind):
    prob = problems.get(name)
    fun = _problem_rhs(kind, name)
    kw = dict(method=method, rtol=1e-8, atol=1e-10)
    plain = diffsens.solve_ivp(fun, prob.t_span, prob.y0, args=(np.asarray(prob.p),), **kw)
    res = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p, **kw)
    assert plain.status == res.status == 0
    np.testing.assert_array_equal(res.t, plain.t)
    np.testing.assert_array_equal(res.y, plain.y)
    # 'continuous' without error control on S is the same augmented system
    cont = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p, sens="continuous",
                                   sens_error_control=False, **kw)
    np.testing.assert_array_equal(cont.t, plain.t)
    np.testing.assert_array_equal(cont.y, plain.y)


def _assert_same_result(a, b, wrt):
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_array_equal(a.y, b.y)
    if "p" in wrt:
        np.testing.assert_array_equal(a.sens, b.sens)
    if "y0" in wrt:
        np.testing.assert_array_equal(a.sens_y0, b.sens_y0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sens", SENS)
def test_chunks_are_bitwise_identical(sens, kind):
    prob = problems.get("lotka_volterra")
    fun = _problem_rhs(kind, prob.name)
    wrt = ("p", "y0")                                   # 4 + 2 = 6 directions
    t_dense = np.linspace(0.3, 9.7, 17)
    kw = dict(method="Tsit5", t_eval=prob.t_eval, dense_output=True, wrt=wrt, sens=sens,
              sens_error_control=False, rtol=1e-8, atol=1e-10)
    whole = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p, **kw)
    assert whole.status == 0
    for chunk_size in (1, 2, 3, 4, 6, 100):
        part = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p,
                                       chunk_size=chunk_size, **kw)
        _assert_same_result(part, whole, wrt)
        np.testing.assert_array_equal(part.sol.sens(t_dense), whole.sol.sens(t_dense))
        np.testing.assert_array_equal(part.sol.sens_y0(t_dense), whole.sol.sens_y0(t_dense))
        np.testing.assert_array_equal(part.sol(t_dense), whole.sol(t_dense))


@pytest.mark.parametrize("wrt", ["p", "y0", ("p", "y0")])
def test_chunks_every_wrt_on_brusselator(wrt):
    """3 + 32 directions: chunks of 1, 2, 3 (uneven last chunks) are exact."""
    prob = problems.get("brusselator_1d")
    fun = _traced_problem(prob.name)
    kw = dict(method="DOP853", t_eval=[0.0, 1.0, 2.0], wrt=wrt, rtol=1e-7, atol=1e-9)
    whole = diffsens.solve_ivp_sens(fun, (0.0, 2.0), prob.y0, prob.p, **kw)
    for chunk_size in (1, 2, 3):
        part = diffsens.solve_ivp_sens(fun, (0.0, 2.0), prob.y0, prob.p,
                                       chunk_size=chunk_size, **kw)
        _assert_same_result(part, whole, wrt)


@pytest.mark.parametrize("kind", KINDS)
def test_workers_are_bitwise_identical(kind):
    prob = problems.get("lotka_volterra")
    fun = _problem_rhs(kind, prob.name)
    wrt = ("p", "y0")
    kw = dict(method="DOP853", t_eval=prob.t_eval, wrt=wrt, rtol=1e-9, atol=1e-11)
    whole = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p, **kw)
    for chunk_size in (1, 2, 3):
        threaded = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p,
                                           chunk_size=chunk_size, workers=2, **kw)
        _assert_same_result(threaded, whole, wrt)
    for _ in range(3):       # repeated thread pools: no state shared between chunks
        again = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p,
                                        chunk_size=1, workers=4, **kw)
        _assert_same_result(again, whole, wrt)


@pytest.mark.parametrize("sens", SENS)
def test_chunk_size_with_sens_error_control_raises(sens):
    prob = problems.get("lotka_volterra")
    for chunk_size in (1, 2, 3):
        with pytest.raises(ValueError, match="sens_error_control"):
            diffsens.solve_ivp_sens(prob.fun, (0, 1), prob.y0, prob.p, sens=sens,
                                    chunk_size=chunk_size, sens_error_control=True)
    # 'continuous' controls the error of S by default
    with pytest.raises(ValueError, match="chunk_size"):
        diffsens.solve_ivp_sens(prob.fun, (0, 1), prob.y0, prob.p, sens="continuous",
                                chunk_size=2)


def test_sens_error_control_in_dual_mode_tightens_sens():
    """'dual' with sens_error_control=True: more steps, still the derivative."""
    t = np.asarray(ORAL.t_eval, dtype=float)
    kw = dict(method="Tsit5", t_eval=t, rtol=1e-6, atol=1e-9)
    loose = diffsens.solve_ivp_sens(ORAL.fun, ORAL.t_span, ORAL.y0, ORAL.p, **kw)
    tight = diffsens.solve_ivp_sens(ORAL.fun, ORAL.t_span, ORAL.y0, ORAL.p,
                                    sens_error_control=True, **kw)
    assert tight.nfev >= loose.nfev
    ref = _oral_dp(t, DOSE, *ORAL.p)
    assert _rel_err(tight.sens, ref) < 1e-4


# ---------------------------------------------------------------------------
# 5. wrt: shapes, values at t0
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("wrt", ["p", "y0", ("p", "y0"), ["y0", "p"], ("y0",)])
def test_wrt_shapes_and_initial_values(wrt, kind):
    prob = problems.get("lotka_volterra")
    fun = _problem_rhs(kind, prob.name)
    n, m, nt = prob.n, prob.m, len(prob.t_eval)
    res = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p, t_eval=prob.t_eval,
                                  dense_output=True, wrt=wrt, rtol=1e-8, atol=1e-10)
    both = diffsens.solve_ivp_sens(fun, prob.t_span, prob.y0, prob.p, t_eval=prob.t_eval,
                                   wrt=("p", "y0"), rtol=1e-8, atol=1e-10)
    wanted = {wrt} if isinstance(wrt, str) else set(wrt)
    assert res.y.shape == (n, nt)
    if "p" in wanted:
        assert res.sens.shape == (n, m, nt)
        np.testing.assert_array_equal(res.sens[:, :, 0], np.zeros((n, m)))
        np.testing.assert_array_equal(res.sens, both.sens)
        assert res.sol.sens(prob.t_span[0]).shape == (n, m)
        assert res.sol.sens([1.0, 2.0]).shape == (n, m, 2)
        np.testing.assert_array_equal(res.sol.sens(prob.t_span[0]), 0.0)
    else:
        with pytest.raises(ValueError, match="wrt"):
            res.sol.sens(1.0)
    if "y0" in wanted:
        assert res.sens_y0.shape == (n, n, nt)
        np.testing.assert_array_equal(res.sens_y0[:, :, 0], np.eye(n))
        np.testing.assert_array_equal(res.sens_y0, both.sens_y0)
        assert res.sol.sens_y0(1.0).shape == (n, n)
        assert res.sol.sens_y0([1.0, 2.0, 3.0]).shape == (n, n, 3)
        np.testing.assert_array_equal(res.sol.sens_y0(prob.t_span[0]), np.eye(n))
    else:
        with pytest.raises(ValueError, match="wrt"):
            res.sol.sens_y0(1.0)


def test_sens_y0_times_y0_is_y_for_a_linear_system():
    """y(t; y0) = expm(A t) y0 is linear in y0, so sens_y0 @ y0 == y."""
    t = np.linspace(0.0, 2.0, 5)
    res = diffsens.solve_ivp_sens(linear_fun, (0.0, 2.0), LIN_Y0, LIN_P, t_eval=t,
                                  wrt="y0", **TIGHT)
    np.testing.assert_allclose(np.einsum("ijt,j->it", res.sens_y0, LIN_Y0), res.y,
                               rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------
# 6. t_eval, dense output, events
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sens", SENS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_t_eval_and_dense_output(method, kind, sens):
    t = np.asarray(ORAL.t_eval, dtype=float)
    fun = _problem_rhs(kind, ORAL.name)
    kw = dict(method=method, t_eval=t, sens=sens, wrt=("p", "y0"), **TIGHT)
    plain = diffsens.solve_ivp_sens(fun, ORAL.t_span, ORAL.y0, ORAL.p, **kw)
    dense = diffsens.solve_ivp_sens(fun, ORAL.t_span, ORAL.y0, ORAL.p, dense_output=True, **kw)
    assert plain.sol is None
    assert isinstance(dense.sol, diffsens.SensSolution)
    # dense output does not change the steps
    _assert_same_result(dense, plain, ("p", "y0"))
    # the interpolant reproduces the stored points
    np.testing.assert_allclose(dense.sol(t), dense.y, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dense.sol.sens(t), dense.sens, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dense.sol.sens_y0(t), dense.sens_y0, rtol=1e-13, atol=1e-15)
    for i, ti in enumerate(t):
        np.testing.assert_allclose(dense.sol.sens(ti), dense.sens[:, :, i],
                                   rtol=1e-13, atol=1e-15)
    # and is accurate between them
    t_mid = np.linspace(0.1, 23.9, 37)
    ka, ke, V = ORAL.p
    assert _rel_err(dense.sol(t_mid), _oral_closed(t_mid, DOSE, ka, ke, V)) < 1e-7
    assert _rel_err(dense.sol.sens(t_mid), _oral_dp(t_mid, DOSE, ka, ke, V)) < 1e-6
    assert _rel_err(dense.sol.sens_y0(t_mid), _oral_dy0(t_mid, DOSE, ka, ke, V)) < 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_every_step_without_t_eval(kind):
    """t_eval=None stores every step; the sensitivities there are still right."""
    fun = _problem_rhs(kind, ORAL.name)
    res = diffsens.solve_ivp_sens(fun, ORAL.t_span, ORAL.y0, ORAL.p, method="DOP853",
                                  wrt=("p", "y0"), **TIGHT)
    assert res.t[0] == ORAL.t_span[0] and res.t[-1] == ORAL.t_span[1]
    assert res.t.size > 10
    assert res.sens.shape == (2, 3, res.t.size)
    ka, ke, V = ORAL.p
    assert _rel_err(res.sens, _oral_dp(res.t, DOSE, ka, ke, V)) < 1e-7
    assert _rel_err(res.sens_y0, _oral_dy0(res.t, DOSE, ka, ke, V)) < 1e-7


def _half_absorbed(t, y, p):
    return y[0] - 0.5 * DOSE


_half_absorbed.terminal = True


def _conc_peak(t, y, p):
    """Concentration maximum: c' = ka g / V - ke c = 0 (non-terminal)."""
    return p[0] * y[0] / p[2] - p[1] * y[1]


@pytest.mark.parametrize("sens", SENS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_terminal_event_stops_y_and_sens(method, kind, sens):
    fun = _problem_rhs(kind, ORAL.name)
    ka, ke, V = ORAL.p
    events = [_conc_peak, _half_absorbed]
    kw = dict(method=method, events=events, **TIGHT)
    res = diffsens.solve_ivp_sens(fun, ORAL.t_span, ORAL.y0, ORAL.p, sens=sens,
                                  dense_output=True, wrt=("p", "y0"), **kw)
    plain = diffsens.solve_ivp(ORAL.fun, ORAL.t_span, ORAL.y0, args=(np.asarray(ORAL.p),), **kw)
    assert res.status == plain.status == 1, res.message
    t_half = np.log(2.0) / ka
    assert res.t_events[0].size == 0                   # the peak comes later (~2.9 h)
    assert res.t_events[1].shape == (1,)
    np.testing.assert_allclose(res.t_events[1][0], t_half, rtol=1e-9)
    if sens == "dual":
        # same steps, same interpolant of y: the same event
        np.testing.assert_array_equal(res.t_events[1], plain.t_events[1])
        np.testing.assert_array_equal(res.y_events[1], plain.y_events[1])
    else:
        np.testing.assert_allclose(res.t_events[1], plain.t_events[1], rtol=1e-9)
    assert res.y_events[1].shape == (1, 2)
    # both y and sens end at the event time
    assert res.t[-1] == res.t_events[1][0]
    np.testing.assert_array_equal(res.y[:, -1], res.y_events[1][0])
    assert res.y.shape[1] == res.sens.shape[2] == res.sens_y0.shape[2] == res.t.size
    t_end = np.array([res.t[-1]])
    assert _rel_err(res.y[:, -1:], _oral_closed(t_end, DOSE, ka, ke, V)) < 1e-8
    ref = _oral_dp(t_end, DOSE, ka, ke, V)[..., 0]
    np.testing.assert_allclose(res.sens[:, :, -1], ref, rtol=1e-7, atol=1e-7 * np.abs(ref).max())
    ref0 = _oral_dy0(t_end, DOSE, ka, ke, V)[..., 0]
    np.testing.assert_allclose(res.sens_y0[:, :, -1], ref0, rtol=1e-7, atol=1e-9)
    assert res.sol.t_max == res.t[-1]
    np.testing.assert_allclose(res.sol.sens(res.t[-1]), res.sens[:, :, -1], rtol=1e-13,
                               atol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_non_terminal_event_with_t_eval(kind):
    fun = _problem_rhs(kind, ORAL.name)
    t = np.asarray(ORAL.t_eval, dtype=float)
    kw = dict(method="DOP853", events=_conc_peak, t_eval=t, **TIGHT)
    res = diffsens.solve_ivp_sens(fun, ORAL.t_span, ORAL.y0, ORAL.p, **kw)
    plain = diffsens.solve_ivp(ORAL.fun, ORAL.t_span, ORAL.y0, args=(np.asarray(ORAL.p),), **kw)
    ka, ke, V = ORAL.p
    t_max = np.log(ka / ke) / (ka - ke)               # peak of the Bateman curve
    assert res.status == 0
    np.testing.assert_array_equal(res.t, t)
    np.testing.assert_array_equal(res.t_events[0], plain.t_events[0])
    np.testing.assert_allclose(res.t_events[0], [t_max], rtol=1e-8)
    assert res.y_events[0].shape == (1, 2)
    assert _rel_err(res.sens, _oral_dp(t, DOSE, ka, ke, V)) < 1e-7


# ---------------------------------------------------------------------------
# 7. Python right-hand sides: args, lists, NumPy functions
# ---------------------------------------------------------------------------


def lotka_volterra_scaled(t, y, p, c):
    """Lotka-Volterra with time running c times faster: y_c(t) = y(c t)."""
    a, b, cc, d = p
    x, z = y
    return c * np.array([a * x - b * x * z, -cc * z + d * x * z])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_extra_args(method, kind):
    prob = problems.get("lotka_volterra")
    c = 2.0
    fun = _rhs(kind, lotka_volterra_scaled, prob.y0, prob.p, args=(c,))
    t = np.linspace(0.0, 5.0, 21)
    res = diffsens.solve_ivp_sens(fun, (0.0, 5.0), prob.y0, prob.p, method=method, t_eval=t,
                                  args=(c,), wrt=("p", "y0"), **TIGHT)
    ref = diffsens.solve_ivp_sens(_problem_rhs(kind, prob.name), (0.0, 10.0), prob.y0, prob.p,
                                  method=method, t_eval=c * t, wrt=("p", "y0"), **TIGHT)
    assert res.status == ref.status == 0
    assert _rel_err(res.y, ref.y) < 1e-8
    assert _rel_err(res.sens, ref.sens) < 1e-6
    assert _rel_err(res.sens_y0, ref.sens_y0) < 1e-6


def test_extra_array_args_and_several_args():
    """args=(vector, scalar): the vector is used elementwise with Duals."""
    def fun(t, y, p, rates, scale):
        return scale * np.array([-rates[0] * p[0] * y[0],
                                 rates[1] * p[0] * y[0] / p[2] - p[1] * y[1]])
    t = np.asarray(ORAL.t_eval, dtype=float)
    res = diffsens.solve_ivp_sens(fun, ORAL.t_span, ORAL.y0, ORAL.p, t_eval=t,
                                  args=(np.array([1.0, 1.0]), 1.0), **TIGHT)
    assert _rel_err(res.sens, _oral_dp(t, DOSE, *ORAL.p)) < 1e-7


def oral_list(t, y, p):
    ka, ke, V = p
    return [-ka * y[0], ka * y[0] / V - ke * y[1]]


def oral_tuple_mixed(t, y, p):
    """A tuple mixing Duals with a dual-free expression."""
    ka, ke, V = p
    return (-ka * y[0], ka * y[0] / V - ke * y[1])


@pytest.mark.parametrize("sens", SENS)
@pytest.mark.parametrize("fun", [oral_list, oral_tuple_mixed])
def test_fun_returning_a_sequence(fun, sens):
    t = np.asarray(ORAL.t_eval, dtype=float)
    res = diffsens.solve_ivp_sens(fun, ORAL.t_span, ORAL.y0, ORAL.p, t_eval=t,
                                  method="DOP853", sens=sens, **TIGHT)
    ka, ke, V = ORAL.p
    assert _rel_err(res.y, _oral_closed(t, DOSE, ka, ke, V)) < 1e-8
    assert _rel_err(res.sens, _oral_dp(t, DOSE, ka, ke, V)) < 1e-7


def test_fun_with_constant_component():
    """A component that does not depend on y or p (a plain float) has zero sens."""
    def fun(t, y, p):
        return [-p[0] * y[0], 1.0]
    res = diffsens.solve_ivp_sens(fun, (0.0, 2.0), [1.0, 0.0], [0.5], t_eval=[0.0, 1.0, 2.0],
                                  wrt=("p", "y0"), **TIGHT)
    np.testing.assert_allclose(res.y[1], [0.0, 1.0, 2.0], rtol=1e-12)
    np.testing.assert_array_equal(res.sens[1], 0.0)
    np.testing.assert_array_equal(res.sens_y0[1], [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(res.sens[0, 0], -np.array([0.0, 1.0, 2.0]) * np.exp(
        -0.5 * np.array([0.0, 1.0, 2.0])), rtol=1e-8, atol=1e-14)


def linear_fun_numpy(t, y, p):
    """linear_fun spelled with np.exp/np.log, np.where, @ and np.stack."""
    p1_squared = np.exp(2.0 * np.log(p[1]))
    lin = (A0 @ y + p[0] * (A1 @ y) + p1_squared * (A2 @ y)
           + np.sin(p[2]) * (A3 @ y))
    kept = np.where(y > -1e6, lin, 0.0 * lin)          # always the first branch
    return np.stack([kept[0], kept[1], kept[2]])


@pytest.mark.parametrize("sens", SENS)
@pytest.mark.parametrize("kind", KINDS)
def test_fun_with_numpy_functions(kind, sens):
    t = np.linspace(0.0, 3.0, 7)
    fun = _rhs(kind, linear_fun_numpy, LIN_Y0, LIN_P)
    res = diffsens.solve_ivp_sens(fun, (0.0, 3.0), LIN_Y0, LIN_P, t_eval=t, sens=sens,
                                  wrt=("p", "y0"), method="DOP853", **TIGHT)
    y_ref, s_ref, s0_ref = _lin_reference(t)
    assert _rel_err(res.y, y_ref) < 1e-8
    assert _rel_err(res.sens, s_ref) < 1e-7
    assert _rel_err(res.sens_y0, s0_ref) < 1e-7


@pytest.mark.parametrize("sens", SENS)
@pytest.mark.parametrize("kind", KINDS)
def test_np_where_switching_branch(kind, sens):
    """A rate that switches with the state: np.where differentiates the active branch.

    y' = -p0 y while y > 1/2, -p1 y below, y(0) = 1: the switch is at
    ts = ln 2 / p0 and afterwards y = exp(-p0 ts) exp(-p1 (t - ts)).  Like
    ForwardDiff, the branch is chosen on values only, so the solver's
    derivative ignores that ts moves with p0: before the switch it is the
    true -t exp(-p0 t); after it, the derivative at fixed ts,
    dy/dp0 = -ts exp(-p0 ts) exp(-p1 (t - ts)) and dy/dp1 = -(t - ts) y.
    """
    def fun(t, y, p):
        return np.where(y > 0.5, -p[0] * y, -p[1] * y)

    p = np.array([1.0, 0.3])
    ts = np.log(2.0) / p[0]
    t = np.array([0.0, 0.3, 0.6, 1.0, 2.0, 3.0])
    before = t < ts
    y_ref = np.where(before, np.exp(-p[0] * t), 0.5 * np.exp(-p[1] * (t - ts)))
    s_ref = np.stack([np.where(before, -t * y_ref, -ts * y_ref),
                      np.where(before, 0.0, -(t - ts) * y_ref)])
    res = diffsens.solve_ivp_sens(_rhs(kind, fun, [1.0], p), (0.0, 3.0), [1.0], p,
                                  t_eval=t, method="DOP853", sens=sens, **TIGHT)
    np.testing.assert_allclose(res.y[0], y_ref, rtol=1e-8)
    np.testing.assert_allclose(res.sens[0], s_ref, rtol=1e-7, atol=1e-8)
    np.testing.assert_array_equal(res.sens[0, 1, before], 0.0)


# ---------------------------------------------------------------------------
# 8. Bad input
# ---------------------------------------------------------------------------

LV = problems.get("lotka_volterra")


@pytest.mark.parametrize("p, exc", [
    (np.ones((1, 4)), ValueError),
    (np.ones((2, 2)), ValueError),
    (1.5, ValueError),
    ([1.5, np.nan, 3.0, 1.0], ValueError),
    ([1.5, 1.0, np.inf, 1.0], ValueError),
    ([1.5, 1.0, 3.0, -np.inf], ValueError),
    (["a", "b", "c", "d"], (TypeError, ValueError)),
    ("abcd", (TypeError, ValueError)),
    ([1.5 + 1j, 1.0, 3.0, 1.0], (TypeError, ValueError)),
])
@pytest.mark.parametrize("kind", KINDS)
def test_bad_parameters(kind, p, exc):
    fun = _problem_rhs(kind, LV.name)
    with pytest.raises(exc, match="`p`"):
        diffsens.solve_ivp_sens(fun, (0, 1), LV.y0, p)


@pytest.mark.parametrize("kwargs, match", [
    (dict(sens="adjoint"), "sens"),
    (dict(sens=None), "sens"),
    (dict(wrt="q"), "wrt"),
    (dict(wrt=("p", "q")), "wrt"),
    (dict(wrt=()), "wrt"),
    (dict(method="Radau"), "Tsit5.*DOP853|DOP853.*Tsit5"),
    (dict(method="BDF"), "RK45"),
    (dict(method="rk45"), "method"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(chunk_size=-1), "chunk_size"),
    (dict(workers=0), "workers"),
    (dict(workers=-2), "workers"),
])
def test_bad_options_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        diffsens.solve_ivp_sens(LV.fun, (0, 1), LV.y0, LV.p, **kwargs)


def test_radau_message_names_all_allowed_methods():
    with pytest.raises(ValueError) as info:
        diffsens.solve_ivp_sens(LV.fun, (0, 1), LV.y0, LV.p, method="Radau")
    for name in ALL_METHODS:
        assert name in str(info.value)
    assert "Radau" in str(info.value)


@pytest.mark.parametrize("option, value", [("chunk_size", 1.5), ("chunk_size", "2"),
                                           ("workers", 1.5)])
def test_non_integer_chunk_size_or_workers(option, value):
    """Not an integer: an error that says which option is wrong."""
    options = {"chunk_size": 2, option: value}
    with pytest.raises((TypeError, ValueError), match=option):
        diffsens.solve_ivp_sens(_traced_problem(LV.name), (0, 1), LV.y0, LV.p, **options)


@pytest.mark.parametrize("kind", KINDS)
def test_complex_y0(kind):
    fun = _problem_rhs(kind, LV.name)
    with pytest.raises(ValueError, match="y0"):
        diffsens.solve_ivp_sens(fun, (0, 1), np.array([1.0 + 1j, 1.0]), LV.p)


def test_traced_rhs_with_wrong_sizes():
    rhs = _traced_problem(LV.name)
    with pytest.raises(ValueError, match="n = 2"):
        diffsens.solve_ivp_sens(rhs, (0, 1), [1.0, 1.0, 1.0], LV.p)
    with pytest.raises(ValueError, match="m = 4"):
        diffsens.solve_ivp_sens(rhs, (0, 1), LV.y0, LV.p[:3])
    with pytest.raises(ValueError, match="m = 4"):
        diffsens.solve_ivp_sens(rhs, (0, 1), LV.y0, list(LV.p) + [0.0])


def test_not_callable():
    with pytest.raises(TypeError, match="callable"):
        diffsens.solve_ivp_sens(3.0, (0, 1), LV.y0, LV.p)


def _calls_float(t, y, p):
    a, b, c, d = p
    x = float(y[0])
    return np.array([a * x - b * x * y[1], -c * y[1] + d * x * y[1]])


def _fills_float_array(t, y, p):
    a, b, c, d = p
    out = np.empty(2)
    out[0] = a * y[0] - b * y[0] * y[1]
    out[1] = -c * y[1] + d * y[0] * y[1]
    return out


def _asarray_float(t, y, p):
    y = np.asarray(y, dtype=float)
    return np.array([p[0] * y[0], -p[2] * y[1]])


def _interpolates_state(t, y, p):
    # np.interp casts its input to float: object arrays of duals fail in NumPy
    return np.array([-p[0] * np.interp(y[0], [0.0, 1.0, 2.0], [0.0, 1.0, 4.0]),
                     -p[2] * y[1]])


def _special_function_of_state(t, y, p):
    # scipy.special's ufuncs have no object loop (NumPy's own message)
    return -p[0] * scipy.special.expit(y)


@pytest.mark.parametrize("fun", [_calls_float, _fills_float_array, _asarray_float,
                                 _interpolates_state, _special_function_of_state])
@pytest.mark.parametrize("sens", SENS)
def test_fun_that_cannot_take_duals(fun, sens):
    # the same function is fine for a plain solve
    assert diffsens.solve_ivp(fun, (0, 1), LV.y0, args=(np.asarray(LV.p),)).success
    with pytest.raises(TypeError) as info:
        diffsens.solve_ivp_sens(fun, (0, 1), LV.y0, LV.p, sens=sens)
    msg = str(info.value)
    assert "diffsens.trace" in msg
    assert "Dual" in msg


class _OwnError(Exception):
    pass


def _raising_fun(exc_type, raised):
    def fun(t, y, p):
        if t > 0.5:
            err = exc_type("raised by the user's fun")
            raised.append(err)
            raise err
        return np.array([-p[0] * y[0], p[0] * y[0] - p[1] * y[1]])
    return fun


@pytest.mark.parametrize("exc_type", [RuntimeError, ValueError, KeyError, ZeroDivisionError,
                                      ArithmeticError, _OwnError])
@pytest.mark.parametrize("sens", SENS)
def test_fun_raising_its_own_exception_propagates_unchanged(exc_type, sens):
    raised = []
    with pytest.raises(exc_type) as info:
        diffsens.solve_ivp_sens(_raising_fun(exc_type, raised), (0, 1), [1.0, 0.0],
                                [1.0, 0.5], sens=sens)
    # the first one raised (a TypeError or ValueError is followed by one try on
    # plain floats, to tell the user's error from duals a function cannot take)
    assert raised and info.value is raised[0]
    assert type(info.value) is exc_type


def test_fun_raising_type_error_keeps_it_as_the_cause():
    """A TypeError may well come from the duals, so it may be explained, not replaced."""
    raised = []
    with pytest.raises(TypeError) as info:
        diffsens.solve_ivp_sens(_raising_fun(TypeError, raised), (0, 1), [1.0, 0.0],
                                [1.0, 0.5])
    assert raised
    assert info.value is raised[0] or info.value.__cause__ is raised[0]
    assert "raised by the user's fun" in str(info.value)


def test_fun_returning_the_wrong_shape():
    """Same error as diffsens.solve_ivp for a result of the wrong shape."""
    def fun(t, y, p):
        return np.array([-p[0] * y[0], y[1], y[1]])

    with pytest.raises(ValueError, match="shape"):
        diffsens.solve_ivp(fun, (0, 1), [1.0, 0.0], args=(np.array([1.0]),))
    with pytest.raises(ValueError, match="shape"):
        diffsens.solve_ivp_sens(fun, (0, 1), [1.0, 0.0], [1.0])


def test_python_fun_receives_dual_object_arrays():
    seen = {}

    def fun(t, y, p):
        seen.setdefault("y", (type(y), y.dtype, y.shape, type(y[0]), y[0].partials.shape))
        seen.setdefault("p", (type(p), p.dtype, p.shape, type(p[0])))
        seen.setdefault("t", type(t))
        return -p[0] * y

    diffsens.solve_ivp_sens(fun, (0, 1), [1.0, 2.0], [0.3], wrt=("p", "y0"))
    assert seen["y"] == (np.ndarray, np.dtype(object), (2,), Dual, (3,))
    assert seen["p"] == (np.ndarray, np.dtype(object), (1,), Dual)
    assert seen["t"] is float
