"""The Rosenbrock methods ('Rosenbrock23', 'Rodas4', 'Rodas5P') through
``diffsens.solve_ivp``: the C stepper, its Jacobian routes and mass matrices.

What is checked, and against what:

1. Observed convergence with forced fixed steps on a non-stiff, nonlinear,
   non-autonomous system with a closed-form solution: the global error at the
   grid points has slope ``order``; the dense output's *local* error has
   slope ``dense_order + 1`` (why local, see ``test_dense_output_order``).
2. Accuracy on the IVP Test Set (HIRES, POLLU, ROBER to t = 1e11) against the
   published reference values, for a traced and a plain Python ``fun``.
3. A stiff Prothero-Robinson problem: Rodas5P takes few steps where RK45 is
   stopped by its stiffness detection.
4. The Jacobian routes (traced tape, Python ``fun`` on dual numbers, a user
   ``jac`` callable or constant matrix, forward differences) reach the same
   solution, and the route the docs describe is the one actually taken.
5. Mass matrices: Robertson as an index-1 DAE against its ODE form, a
   nonsingular mass matrix against ``y' = M^-1 f``; validation of ``mass``.
6. ``t_eval``, ``dense_output``, events, backward integration, ``args``.
7. Failure paths: W singular for every step size, non-finite ``fun``,
   exceptions from callbacks, complex ``y0``, explicit-only options.
8. Traced Rodas5P on ROBER (0 .. 1e5) against scipy's Radau at tight
   tolerance, to the accuracy its own tolerances imply.
"""

import warnings

import numpy as np
import pytest
import scipy.integrate

import diffsens
from _rosenbrock_step import generic_step
from diffsens import problems
from diffsens._rosenbrock_tableaus import ROSENBROCK_TABLEAUS

METHODS = ["Rosenbrock23", "Rodas4", "Rodas5P"]
HUGE = 1e10   # rtol = atol = HUGE: every step is accepted


def mixed_digits(y, y_ref):
    """Test Set "mixed error significant digits": -log10 max |y - y_ref| / (1 + |y_ref|)."""
    return -np.log10(np.max(np.abs(y - y_ref) / (1.0 + np.abs(y_ref))))


# ---------------------------------------------------------------------------
# 1. Observed convergence orders (fixed steps)
# ---------------------------------------------------------------------------
#
# y1 = exp(sin t), y2 = 1 / (1 + t^2) solve
#     y1' = y1 cos t + y1 (y2 - 1/(1+t^2))
#     y2' = -2 t y2^2 + y2 (log y1 - sin t)
# The coupling terms vanish on the exact solution but not in the Jacobian
# (dy1'/dy2 = y1, dy2'/dy1 = y2 / y1), so an exact, full J and df/dt are
# needed for the full order.  Non-stiff: the Jacobian's eigenvalues are O(1).

def coupled(t, y):
    y1, y2 = y
    return np.array([y1 * np.cos(t) + y1 * (y2 - 1.0 / (1.0 + t * t)),
                     -2.0 * t * y2 * y2 + y2 * (np.log(y1) - np.sin(t))])


def coupled_exact(t):
    t = np.asarray(t, dtype=float)
    return np.array([np.exp(np.sin(t)), 1.0 / (1.0 + t * t)])


def coupled_local(t_old, y_old, s):
    """The exact solution through each (t_old[i], y_old[:, i]), at t_old + s.

    No closed form: one DOP853 solve at rtol 1e-13 of all steps at once (a
    block-diagonal system in s = t - t_old); its error (<~1e-15) is far below
    the smallest local error measured (~5e-13).
    """
    def g(s, z):
        return coupled(t_old + s, z.reshape(2, -1)).reshape(-1)
    res = scipy.integrate.solve_ivp(g, (0.0, s), np.asarray(y_old).reshape(-1),
                                    method="DOP853", rtol=1e-13, atol=1e-16)
    assert res.status == 0
    return res.y[:, -1].reshape(2, -1)


T_END = 2.0


def fixed_step_solve(method, h, t_span=(0.0, T_END), **kw):
    t0, tf = t_span
    res = diffsens.solve_ivp(coupled, t_span, coupled_exact(t0), method=method,
                             first_step=h, max_step=h, rtol=HUGE, atol=HUGE, **kw)
    assert res.status == 0, res.message
    n_steps = round(abs(tf - t0) / h)
    assert len(res.t) - 1 == n_steps                 # exactly fixed steps
    assert np.all(np.diff(res.t) == np.sign(tf - t0) * h)
    assert res.t[-1] == tf
    assert res.njev == n_steps and res.nlu == n_steps   # one J, one LU per step
    return res


def observed_order(hs, errors):
    hs, errors = np.asarray(hs), np.asarray(errors)
    assert np.all(np.isfinite(errors)) and np.all(errors > 0)
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


#: Exponents k of the step sizes h = 2**-k: in the asymptotic regime, with
#: errors from ~1e-2 down to >~1e-11 (above round-off and above the
#: O(h sqrt(eps)) floor that the forward-difference df/dt leaves).
GLOBAL_STEPS = {"Rosenbrock23": [4, 5, 6, 7, 8], "Rodas4": [4, 5, 6, 7],
                "Rodas5P": [3, 4, 5, 6]}
DENSE_STEPS = {"Rosenbrock23": [2, 3, 4, 5, 6], "Rodas4": [2, 3, 4, 5, 6],
               "Rodas5P": [4, 5, 6, 7]}


@pytest.mark.parametrize("method", METHODS)
def test_global_order(method):
    hs, errors = [], []
    for k in GLOBAL_STEPS[method]:
        h = 2.0 ** -k
        res = fixed_step_solve(method, h)
        errors.append(np.max(np.abs(res.y - coupled_exact(res.t))))
        hs.append(h)
    assert min(errors) > 1e-11, errors
    assert np.all(np.diff(errors) < 0), errors
    p = observed_order(hs, errors)
    assert abs(p - ROSENBROCK_TABLEAUS[method].order) < 0.25, (p, errors)


@pytest.mark.parametrize("method", METHODS)
def test_dense_output_order(method):
    # Local, not global, error: at a midpoint the global error is the
    # propagated O(h**order) error of the grid values plus the interpolant's
    # own O(h**(dense_order + 1)) error, so its slope is
    # min(order, dense_order + 1) -- 2, 4 and 5 here, which for Rodas4 and
    # Rodas5P says nothing about dense_order (3 and 4).  Measured against the
    # exact solution through each step's own start (t_old, y_old), the grid
    # error drops out and the slope is dense_order + 1.
    hs, errors = [], []
    for k in DENSE_STEPS[method]:
        h = 2.0 ** -k
        res = fixed_step_solve(method, h, dense_output=True)
        assert res.sol.n_segments == len(res.t) - 1
        t_old, y_old = res.t[:-1], res.y[:, :-1]
        mid = t_old + 0.5 * h
        errors.append(np.max(np.abs(res.sol(mid) - coupled_local(t_old, y_old, 0.5 * h))))
        hs.append(h)
    assert min(errors) > 1e-13, errors
    p = observed_order(hs, errors)
    dense_order = ROSENBROCK_TABLEAUS[method].dense_order
    assert abs((p - 1) - dense_order) < 0.3, (p, errors)


@pytest.mark.parametrize("method", METHODS)
def test_dense_output_interpolates_the_grid(method):
    res = fixed_step_solve(method, 0.125, dense_output=True)
    np.testing.assert_allclose(res.sol(res.t), res.y, rtol=1e-13, atol=0)
    # between the grid points as accurate as on them (global error)
    mid = 0.5 * (res.t[1:] + res.t[:-1])
    err_mid = np.max(np.abs(res.sol(mid) - coupled_exact(mid)))
    err_grid = np.max(np.abs(res.y - coupled_exact(res.t)))
    assert err_mid < 20 * err_grid


@pytest.mark.parametrize("method", METHODS)
def test_one_step_is_the_generic_form(method):
    # The C step takes the shortcuts the coefficients allow (a stage argument
    # that extends the previous one, y_new from the last stage's argument,
    # err = U_{s-1}); one step on ROBER must still be the generic form
    # y + sum_i m_i U_i, to round-off in W's solves.
    tab = ROSENBROCK_TABLEAUS[method]
    rober = problems.get("rober")
    y0 = np.array([0.9, 0.05, 0.05])
    for h in (1e-4, 1e-2, 1.0):
        res = diffsens.solve_ivp(rober.fun, (0.0, h), y0, method=method, args=(rober.p,),
                                 first_step=h, max_step=h, rtol=HUGE, atol=HUGE)
        assert len(res.t) == 2
        f = lambda t, y: rober.fun(t, y, rober.p)    # noqa: E731
        jac = lambda t, y: rober.jac(t, y, rober.p)  # noqa: E731
        W = np.eye(3) / (tab.gamma * h) - jac(0.0, y0)
        y_ref, _, U = generic_step(tab, f, jac, lambda t, y: np.zeros(3), 0.0, y0, h)
        scale = max(1.0, float(np.max(np.abs(U))))
        bound = 16 * np.finfo(float).eps * np.linalg.cond(W) * scale
        np.testing.assert_allclose(res.y[:, -1], y_ref, rtol=0, atol=bound)


@pytest.mark.parametrize("method", METHODS)
def test_fixed_steps_backward(method):
    h = 2.0 ** -5
    bwd = fixed_step_solve(method, h, t_span=(T_END, 0.0))
    fwd = fixed_step_solve(method, h)
    err_b = np.max(np.abs(bwd.y - coupled_exact(bwd.t)))
    err_f = np.max(np.abs(fwd.y - coupled_exact(fwd.t)))
    assert err_b < 30 * err_f and err_f < 30 * err_b, (err_b, err_f)


# ---------------------------------------------------------------------------
# 2. IVP Test Set accuracy
# ---------------------------------------------------------------------------

TRACED = {}


def traced(prob):
    if prob.name not in TRACED:
        TRACED[prob.name] = diffsens.trace(prob.fun, prob.y0, prob.p)
    return TRACED[prob.name]


@pytest.mark.parametrize("route", ["traced", "python"])
@pytest.mark.parametrize("method, min_digits", [("Rodas5P", 7), ("Rodas4", 6)])
@pytest.mark.parametrize("name", ["hires", "pollu", "rober"])
def test_testset_accuracy(name, method, min_digits, route):
    prob = problems.get(name)
    fun = traced(prob) if route == "traced" else prob.fun
    res = diffsens.solve_ivp(fun, prob.t_span, prob.y0, method=method,
                             args=(prob.p,), rtol=1e-10, atol=1e-10)
    assert res.status == 0 and res.success, res.message
    assert res.t[-1] == prob.t_span[1]
    digits = mixed_digits(res.y[:, -1], prob.y_ref)
    assert digits >= min_digits, digits
    assert res.njev > 0 and res.nlu >= res.njev


@pytest.mark.parametrize("route", ["traced", "python"])
def test_testset_rober_rosenbrock23(route):
    prob = problems.get("rober")
    fun = traced(prob) if route == "traced" else prob.fun
    res = diffsens.solve_ivp(fun, prob.t_span, prob.y0, method="Rosenbrock23",
                             args=(prob.p,), rtol=1e-6, atol=1e-6)
    assert res.status == 0, res.message
    assert mixed_digits(res.y[:, -1], prob.y_ref) >= 3
    assert res.njev > 0 and res.nlu >= res.njev


# ---------------------------------------------------------------------------
# 3. Stiffness: Prothero-Robinson y' = lambda (y - cos t) - sin t
# ---------------------------------------------------------------------------

LAMBDA = -1e6


def prothero_robinson(t, y):
    return LAMBDA * (y - np.cos(t)) - np.sin(t)


@pytest.mark.parametrize("y0", [1.0, 2.0])
def test_stiff_rodas5p_few_steps(y0):
    # y0 = 1 starts on the smooth solution cos t; y0 = 2 adds the transient
    # exp(lambda t), gone after ~1e-5, which an L-stable method damps at once.
    res = diffsens.solve_ivp(prothero_robinson, (0.0, 10.0), [y0], method="Rodas5P",
                             rtol=1e-6, atol=1e-9)
    assert res.status == 0, res.message
    assert len(res.t) - 1 < 200
    exact = np.cos(res.t) + (y0 - 1.0) * np.exp(LAMBDA * res.t)
    assert np.max(np.abs(res.y[0] - exact)) < 1e-6
    assert res.njev == len(res.t) - 1


def test_stiff_explicit_method_is_stopped():
    rk = diffsens.solve_ivp(prothero_robinson, (0.0, 10.0), [1.0], method="RK45",
                            rtol=1e-6, atol=1e-9)
    assert rk.status == -1 and not rk.success
    assert "stiff" in rk.message
    assert rk.t[-1] < 1.0
    ros = diffsens.solve_ivp(prothero_robinson, (0.0, 10.0), [1.0], method="Rodas5P",
                             rtol=1e-6, atol=1e-9)
    assert ros.status == 0 and ros.nfev < rk.nfev / 10


# ---------------------------------------------------------------------------
# 4. Jacobian routes
# ---------------------------------------------------------------------------

class Counted:
    """A ``fun(t, y, *args)`` that counts its calls on floats and on Duals."""

    def __init__(self, fun):
        self.fun = fun
        self.float_calls = self.dual_calls = 0

    def __call__(self, t, y, *args):
        if np.asarray(y).dtype == object:
            self.dual_calls += 1
        else:
            self.float_calls += 1
        return self.fun(t, y, *args)


class CountedJac:
    def __init__(self, jac):
        self.jac = jac
        self.calls = 0

    def __call__(self, t, y, *args):
        self.calls += 1
        return self.jac(t, y, *args)


def no_duals(fun):
    """``fun`` behind a float() conversion, which a Dual refuses (TypeError)."""
    def wrapped(t, y, *args):
        return fun(t, np.array([float(v) for v in y]), *args)
    return wrapped


def run_route(route, fun, y0, t_span, args=(), jac=None, **kw):
    """Solve by one Jacobian route; check that route was the one taken."""
    n = len(y0)
    kw = dict(method="Rodas5P", args=args, **kw)
    if route == "traced":
        counted = Counted(fun)
        rhs = diffsens.trace(counted, y0, *args)   # runs it once, on tracers
        counted.float_calls = counted.dual_calls = 0
        res = diffsens.solve_ivp(rhs, t_span, y0, **kw)
        assert counted.float_calls == counted.dual_calls == 0   # all in C
        # a traced fun ignores `jac`: this one would raise if called
        def trap(*_):
            raise AssertionError("jac called for a traced fun")
        res2 = diffsens.solve_ivp(rhs, t_span, y0, jac=trap, **kw)
        np.testing.assert_array_equal(res2.y, res.y)
        return res
    if route == "duals":
        counted = Counted(fun)
        res = diffsens.solve_ivp(counted, t_span, y0, **kw)
        # one trial call, then one dual evaluation (n lanes) per Jacobian
        assert counted.dual_calls == res.njev + 1
        assert counted.float_calls == res.nfev - res.njev
        return res
    if route in ("jac", "jac_array"):
        counted = Counted(fun)
        jac_arg = CountedJac(jac) if route == "jac" else jac
        res = diffsens.solve_ivp(counted, t_span, y0, jac=jac_arg, **kw)
        assert counted.dual_calls == 0
        if route == "jac":
            assert jac_arg.calls == res.njev
        return res
    if route == "fd":
        counted = Counted(no_duals(fun))
        res = diffsens.solve_ivp(counted, t_span, y0, **kw)
        assert counted.dual_calls == 1          # the failed trial only
        assert counted.float_calls == res.nfev
        # n extra evaluations per Jacobian (plus one for df/dt)
        assert res.nfev >= (n + 1) * res.njev
        return res
    raise ValueError(route)


# A linear, stiff, non-autonomous problem whose solution is y_exact(t):
# y' = A y + b(t), b = y_exact' - A y_exact; A is not symmetric (a transposed
# Jacobian would show), eigenvalues -2000 -+ 707.
LIN_A = np.array([[-2000.0, 1000.0], [500.0, -2000.0]])


def lin_exact(t):
    t = np.asarray(t, dtype=float)
    return np.array([np.cos(t), np.sin(t) + 2.0])


def linear(t, y):
    c, s = np.cos(t), np.sin(t)
    (a, b), (d, e) = LIN_A
    forcing = np.array([-s - (a * c + b * (s + 2.0)), c - (d * c + e * (s + 2.0))])
    return LIN_A @ y + forcing


@pytest.mark.parametrize("route", ["traced", "duals", "jac", "jac_array", "fd"])
def test_jacobian_routes_linear(route):
    jac = (lambda t, y: LIN_A) if route == "jac" else LIN_A
    res = run_route(route, linear, lin_exact(0.0), (0.0, 5.0), jac=jac,
                    rtol=1e-8, atol=1e-10, t_eval=np.linspace(0, 5, 21))
    assert res.status == 0, res.message
    assert res.njev > 0 and res.nlu >= res.njev
    np.testing.assert_allclose(res.y, lin_exact(res.t), rtol=0, atol=1e-7)


def test_jacobian_routes_linear_exact_ones_agree():
    # duals, a jac callable and a constant jac give the same exact J (and the
    # same f): the same steps and results
    kw = dict(rtol=1e-8, atol=1e-10)
    y0 = lin_exact(0.0)
    duals = run_route("duals", linear, y0, (0.0, 5.0), **kw)
    jac_fn = run_route("jac", linear, y0, (0.0, 5.0), jac=lambda t, y: LIN_A, **kw)
    jac_arr = run_route("jac_array", linear, y0, (0.0, 5.0), jac=LIN_A, **kw)
    for other in (jac_fn, jac_arr):
        np.testing.assert_array_equal(other.t, duals.t)
        np.testing.assert_allclose(other.y, duals.y, rtol=1e-13, atol=0)
        assert other.njev == duals.njev


@pytest.mark.parametrize("route", ["traced", "duals", "jac", "fd"])
def test_jacobian_routes_hires(route):
    prob = problems.get("hires")
    res = run_route(route, prob.fun, prob.y0, prob.t_span, args=(prob.p,),
                    jac=prob.jac, rtol=1e-8, atol=1e-10)
    assert res.status == 0, res.message
    assert res.njev > 0 and res.nlu >= res.njev
    assert mixed_digits(res.y[:, -1], prob.y_ref) >= 7.5
    # and the routes agree with each other to the tolerance
    ref = diffsens.solve_ivp(traced(prob), prob.t_span, prob.y0, method="Rodas5P",
                             args=(prob.p,), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.y[:, -1], ref.y[:, -1], rtol=1e-6, atol=1e-10)


def test_vectorized_fun_with_jac():
    # as in scipy (Radau, BDF), `jac` gets a 1-D y also when `fun` is
    # vectorized (fun itself gets a column)
    seen = []

    def fun(t, y):
        return np.array([-y[0] * y[1], y[0] - y[1]])

    def jac(t, y):
        seen.append(np.shape(y))
        return np.array([[-y[1], -y[0]], [1.0, -1.0]])

    kw = dict(method="Rodas5P", rtol=1e-8, atol=1e-10)
    plain = diffsens.solve_ivp(fun, (0.0, 1.0), [1.0, 1.0], jac=jac, **kw)
    assert plain.status == 0 and set(seen) == {(2,)}
    seen.clear()
    vec = diffsens.solve_ivp(fun, (0.0, 1.0), [1.0, 1.0], vectorized=True, jac=jac, **kw)
    assert vec.status == 0 and set(seen) == {(2,)}
    np.testing.assert_allclose(vec.y, plain.y, rtol=1e-12)


def test_vectorized_fun_without_jac():
    def fun(t, y):
        return np.array([-y[0] * y[1], y[0] - y[1]])
    kw = dict(method="Rodas4", rtol=1e-8, atol=1e-10)
    plain = diffsens.solve_ivp(fun, (0.0, 1.0), [1.0, 1.0], **kw)
    vec = diffsens.solve_ivp(fun, (0.0, 1.0), [1.0, 1.0], vectorized=True, **kw)
    assert vec.status == 0
    np.testing.assert_allclose(vec.y, plain.y, rtol=1e-12)


def test_jac_wrong_shape_array():
    with pytest.raises(ValueError, match=r"`jac` is expected to have shape \(2, 2\)"):
        diffsens.solve_ivp(linear, (0, 1), lin_exact(0.0), method="Rodas5P",
                           jac=np.zeros((3, 2)))


def test_jac_wrong_shape_callable():
    # scipy's wording, as for an array
    with pytest.raises(ValueError, match=r"`jac` is expected to have shape \(2, 2\), "
                                         r"but actually has \(2, 3\)"):
        diffsens.solve_ivp(linear, (0, 1), lin_exact(0.0), method="Rodas4",
                           jac=lambda t, y: np.zeros((2, 3)))


# ---------------------------------------------------------------------------
# 5. Mass matrices
# ---------------------------------------------------------------------------

ROBER_1E5 = problems.get("rober_1e5")


def rober_dae(t, y, p):
    """Robertson with the conservation law as the algebraic equation."""
    k1, k2, k3 = p
    y1, y2, y3 = y
    return np.array([-k1 * y1 + k3 * y2 * y3,
                     k1 * y1 - k3 * y2 * y3 - k2 * y2 * y2,
                     y1 + y2 + y3 - 1.0])


ROBER_MASS = np.diag([1.0, 1.0, 0.0])


@pytest.fixture(scope="module")
def rober_radau():
    """scipy Radau with the analytic Jacobian at tight tolerance, on t_eval."""
    prob = ROBER_1E5
    res = scipy.integrate.solve_ivp(prob.fun, prob.t_span, prob.y0, method="Radau",
                                    args=(prob.p,), jac=prob.jac, rtol=1e-10,
                                    atol=1e-14, t_eval=prob.t_eval)
    assert res.status == 0
    return res.y


@pytest.mark.parametrize("route", ["python", "traced"])
@pytest.mark.parametrize("method", ["Rodas5P", "Rodas4"])
def test_rober_index1_dae(method, route, rober_radau):
    prob = ROBER_1E5
    kw = dict(method=method, args=(prob.p,), rtol=1e-8, atol=1e-14)
    dae_fun = diffsens.trace(rober_dae, prob.y0, prob.p) if route == "traced" else rober_dae
    ode_fun = traced(prob) if route == "traced" else prob.fun
    for t_eval in (None, prob.t_eval):
        dae = diffsens.solve_ivp(dae_fun, prob.t_span, prob.y0, mass=ROBER_MASS,
                                 t_eval=t_eval, **kw)
        ode = diffsens.solve_ivp(ode_fun, prob.t_span, prob.y0, t_eval=t_eval, **kw)
        assert dae.status == 0 and ode.status == 0, (dae.message, ode.message)
        assert dae.njev > 0 and dae.nlu >= dae.njev
        # the algebraic equation holds at every output
        np.testing.assert_allclose(dae.y.sum(axis=0), 1.0, rtol=0, atol=1e-14)
        # at t = 1e5: ~1e-6 relative
        np.testing.assert_allclose(dae.y[:, -1], ode.y[:, -1], rtol=1e-6, atol=0)
        if t_eval is not None:
            np.testing.assert_array_equal(dae.t, t_eval)
            # along the 50 log-spaced outputs: 1e-6 relative (y3 starts at
            # ~1e-11, far below atol, hence the small absolute floor)
            np.testing.assert_allclose(dae.y, ode.y, rtol=1e-6, atol=1e-15)
            np.testing.assert_allclose(dae.y, rober_radau, rtol=1e-6, atol=1e-13)


@pytest.mark.parametrize("route", ["python", "traced", "jac", "vectorized"])
def test_inconsistent_dae_initial_value(route):
    """y1 + y2 + y3 = 1 broken by 0.5: refused with a message naming `y0` and
    the way out; broken by less than the tolerances: solved."""
    prob = ROBER_1E5
    kw = dict(method="Rodas5P", args=(prob.p,), mass=ROBER_MASS, rtol=1e-6, atol=1e-10)
    fun = diffsens.trace(rober_dae, prob.y0, prob.p) if route == "traced" else rober_dae
    if route == "jac":
        kw["jac"] = lambda t, y, p: np.array([[-p[0], p[2] * y[2], p[2] * y[1]],
                                              [p[0], -p[2] * y[2] - 2 * p[1] * y[1],
                                               -p[2] * y[1]],
                                              [1.0, 1.0, 1.0]])
    if route == "vectorized":
        kw["vectorized"] = True
    with pytest.raises(ValueError, match=r"`y0` does not satisfy the algebraic equations"
                                         r"(.|\n)*method='IDA'"):
        diffsens.solve_ivp(fun, (0.0, 1.0), [1.0, 0.0, 0.5], **kw)
    res = diffsens.solve_ivp(fun, (0.0, 1.0), [1.0, 0.0, 1e-12], **kw)
    assert res.status == 0
    np.testing.assert_allclose(res.y[:, -1].sum(), 1.0, atol=1e-10)


M2 = np.array([[2.0, 1.0], [1.0, 3.0]])


def forced_vdp(t, y):
    return np.array([y[1], (1.0 - y[0] * y[0]) * y[1] - y[0] + 0.5 * np.cos(t)])


# also a non-symmetric M: a transposed mass matrix would show
@pytest.mark.parametrize("mass", [M2, np.array([[2.0, 1.0], [-0.5, 3.0]])],
                         ids=["symmetric", "nonsymmetric"])
@pytest.mark.parametrize("method", METHODS)
def test_nonsingular_mass_matches_ode(method, mass):
    m_inv = np.linalg.inv(mass)

    def solved(t, y):
        return m_inv @ forced_vdp(t, y)

    t_eval = np.linspace(0.0, 10.0, 41)
    kw = dict(method=method, rtol=1e-9, atol=1e-11, t_eval=t_eval)
    with_mass = diffsens.solve_ivp(forced_vdp, (0.0, 10.0), [2.0, 0.0], mass=mass, **kw)
    ode = diffsens.solve_ivp(solved, (0.0, 10.0), [2.0, 0.0], **kw)
    ref = scipy.integrate.solve_ivp(solved, (0.0, 10.0), [2.0, 0.0], method="DOP853",
                                    rtol=1e-12, atol=1e-14, t_eval=t_eval)
    assert with_mass.status == 0 and ode.status == 0
    # the same method on the same problem: agreement far below the error
    np.testing.assert_allclose(with_mass.y, ode.y, rtol=0, atol=1e-8)
    # both solve it (Rosenbrock23's global error: ~1e-6 at rtol 1e-9)
    tol = 1e-5 if method == "Rosenbrock23" else 1e-6
    np.testing.assert_allclose(with_mass.y, ref.y, rtol=0, atol=tol)
    np.testing.assert_allclose(ode.y, ref.y, rtol=0, atol=tol)


def test_identity_mass_changes_nothing():
    kw = dict(method="Rodas5P", rtol=1e-8, atol=1e-10)
    plain = diffsens.solve_ivp(forced_vdp, (0.0, 5.0), [2.0, 0.0], **kw)
    eye = diffsens.solve_ivp(forced_vdp, (0.0, 5.0), [2.0, 0.0], mass=np.eye(2), **kw)
    np.testing.assert_array_equal(eye.t, plain.t)
    np.testing.assert_allclose(eye.y, plain.y, rtol=1e-13)


@pytest.mark.parametrize("bad", [np.eye(3), np.ones(2), np.eye(2)[None], 2.0])
def test_mass_wrong_shape(bad):
    with pytest.raises(ValueError, match="`mass`"):
        diffsens.solve_ivp(forced_vdp, (0.0, 1.0), [2.0, 0.0], method="Rodas5P",
                           mass=bad)


@pytest.mark.parametrize("method", ["Tsit5", "DOP853", "RK45", "BDF", "Radau", "CVODE"])
def test_mass_refused_by_methods_without_one(method):
    """They would solve y' = f (scipy's methods only warn that `mass` has no
    effect): a different problem, so an error naming the methods that take one."""
    with pytest.raises(ValueError, match="`mass` is taken by the Rosenbrock methods"):
        diffsens.solve_ivp(lambda t, y: -y, (0.0, 1.0), [1.0, 1.0], method=method,
                           mass=np.diag([1.0, 0.0]))


def test_mass_refused_with_sensitivities_and_adjoints():
    f = lambda t, y, p: -p[0] * y
    with pytest.raises(ValueError, match="`mass`"):
        diffsens.solve_ivp_sens(f, (0.0, 1.0), [1.0, 1.0], [1.0], method="Rodas5P",
                                sens="continuous", mass=np.diag([1.0, 0.0]))
    with pytest.raises(ValueError, match="`mass`"):
        diffsens.adjoint_gradient(f, (0.0, 1.0), [1.0, 1.0], [1.0], method="Rodas5P",
                                  t_eval=[1.0], dgdy=np.ones((2, 1)),
                                  mass=np.diag([1.0, 0.0]))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_mass_non_finite(value):
    mass = np.eye(2)
    mass[0, 1] = value
    with pytest.raises(ValueError, match="mass"):
        diffsens.solve_ivp(forced_vdp, (0.0, 1.0), [2.0, 0.0], method="Rodas4",
                           mass=mass)


# ---------------------------------------------------------------------------
# 6. t_eval, dense output, events, backward integration, args
# ---------------------------------------------------------------------------

#: rtol and the bound on the global error (in units of rtol) of the
#: adaptive solves below: an order-2 method's global error is a poor
#: multiple of the local tolerance (observed: 20-50 rtol forward,
#: 360 rtol backward at 1e-6).
ADAPTIVE = {"Rosenbrock23": (1e-6, 1e3), "Rodas4": (1e-9, 100), "Rodas5P": (1e-9, 100)}


@pytest.mark.parametrize("method", METHODS)
def test_t_eval_and_dense_output(method):
    rtol, bound = ADAPTIVE[method]
    t_eval = np.linspace(0.0, 6.0, 37)
    res = diffsens.solve_ivp(coupled, (0.0, 6.0), coupled_exact(0.0), method=method,
                             rtol=rtol, atol=rtol, t_eval=t_eval, dense_output=True)
    assert res.status == 0
    np.testing.assert_array_equal(res.t, t_eval)
    np.testing.assert_allclose(res.y, coupled_exact(t_eval), rtol=0, atol=bound * rtol)
    # the outputs are the interpolant's values
    np.testing.assert_allclose(res.sol(t_eval), res.y, rtol=1e-13, atol=1e-15)
    ts = np.linspace(0.0, 6.0, 301)
    np.testing.assert_allclose(res.sol(ts), coupled_exact(ts), rtol=0, atol=bound * rtol)
    assert res.sol(3.0).shape == (2,)


def coupled_mirrored(s, z):
    """z(s) = y(-s): the backward problem as a forward one."""
    return -coupled(-s, z)


@pytest.mark.parametrize("method", METHODS)
def test_backward_integration(method):
    # from 0 down to -6 (from 6 down to 0 the problem is ill-conditioned:
    # perturbations of y2 grow ~(1 + 36)**2-fold)
    rtol, bound = ADAPTIVE[method]
    t_eval = np.linspace(0.0, -6.0, 13)
    kw = dict(method=method, rtol=rtol, atol=rtol)
    res = diffsens.solve_ivp(coupled, (0.0, -6.0), coupled_exact(0.0), t_eval=t_eval,
                             dense_output=True, **kw)
    assert res.status == 0
    np.testing.assert_array_equal(res.t, t_eval)
    np.testing.assert_allclose(res.y, coupled_exact(t_eval), rtol=0, atol=bound * rtol)
    ts = np.linspace(-6.0, 0.0, 101)
    np.testing.assert_allclose(res.sol(ts), coupled_exact(ts), rtol=0, atol=bound * rtol)
    # no t_eval: every step, decreasing
    bwd = diffsens.solve_ivp(coupled, (0.0, -6.0), coupled_exact(0.0), **kw)
    assert bwd.t[0] == 0.0 and bwd.t[-1] == -6.0 and np.all(np.diff(bwd.t) < 0)
    np.testing.assert_allclose(bwd.y, coupled_exact(bwd.t), rtol=0, atol=bound * rtol)
    # the same steps as for the mirrored forward problem (up to the one-sided
    # difference quotient for df/dt, which looks the other way)
    fwd = diffsens.solve_ivp(coupled_mirrored, (0.0, 6.0), coupled_exact(0.0), **kw)
    assert abs(len(fwd.t) - len(bwd.t)) <= max(2, 0.02 * len(fwd.t))
    np.testing.assert_allclose(bwd.t[:4], -fwd.t[:4], rtol=1e-3)


def oscillator(t, y, omega):
    return np.array([y[1], -omega * omega * y[0]])


@pytest.mark.parametrize("method", METHODS)
def test_events_direction_and_args(method):
    # y = cos(omega t): y[0] falls through zero at omega t = pi/2 + 2 pi k and
    # rises through zero at 3 pi/2 + 2 pi k
    omega = 1.5
    rtol = 1e-6 if method == "Rosenbrock23" else 1e-10
    seen_args = []

    def down(t, y, w):
        seen_args.append(w)
        return y[0]
    down.direction = -1

    def up(t, y, w):
        return y[0]
    up.direction = 1

    def any_dir(t, y, w):
        return y[0]

    res = diffsens.solve_ivp(oscillator, (0.0, 20.0), [1.0, 0.0], method=method,
                             args=(omega,), rtol=rtol, atol=rtol,
                             events=[down, up, any_dir])
    assert res.status == 0
    assert set(seen_args) == {omega}
    k = np.arange(10)
    want_down = (np.pi / 2 + 2 * np.pi * k) / omega
    want_up = (3 * np.pi / 2 + 2 * np.pi * k) / omega
    want_down, want_up = want_down[want_down < 20], want_up[want_up < 20]
    tol = 1e3 * rtol
    np.testing.assert_allclose(res.t_events[0], want_down, atol=tol, rtol=0)
    np.testing.assert_allclose(res.t_events[1], want_up, atol=tol, rtol=0)
    np.testing.assert_allclose(res.t_events[2], np.sort(np.r_[want_down, want_up]),
                               atol=tol, rtol=0)
    np.testing.assert_allclose(res.y_events[2][:, 0], 0.0, atol=tol)
    # y' = -omega sin(omega t): -omega on the way down, +omega on the way up
    np.testing.assert_allclose(res.y_events[0][:, 1], -omega, atol=tol)
    np.testing.assert_allclose(res.y_events[1][:, 1], omega, atol=tol)


@pytest.mark.parametrize("method", METHODS)
def test_terminal_events(method):
    def hit_ground(t, y):
        return y[0]
    hit_ground.terminal = True
    hit_ground.direction = -1
    res = diffsens.solve_ivp(lambda t, y: np.array([y[1], -9.81]), (0.0, 10.0),
                             [10.0, 0.0], method=method, events=hit_ground,
                             dense_output=True)
    assert res.status == 1 and res.success
    assert res.message == "A termination event occurred."
    # a quadratic: every method's interpolant is exact
    t_hit = np.sqrt(20.0 / 9.81)
    np.testing.assert_allclose(res.t_events[0], [t_hit], rtol=1e-12)
    assert res.t[-1] == res.t_events[0][0]
    np.testing.assert_allclose(res.y[:, -1], [0.0, -9.81 * t_hit], atol=1e-9)
    np.testing.assert_allclose(res.sol(t_hit), res.y[:, -1], atol=1e-12)

    # terminal = 2: stops at the second (any-direction) zero of cos(omega t)
    def zero(t, y, w):
        return y[0]
    zero.terminal = 2
    res = diffsens.solve_ivp(oscillator, (0.0, 20.0), [1.0, 0.0], method=method,
                             args=(1.0,), rtol=1e-8, atol=1e-8, events=zero)
    assert res.status == 1
    np.testing.assert_allclose(res.t_events[0], [np.pi / 2, 3 * np.pi / 2], atol=1e-4)
    assert res.t[-1] == res.t_events[0][-1]


def test_args_reach_fun_and_jac():
    # p enters fun and jac via args; a closure with the same p gives the same
    p = (0.04, 3e7, 1e4)
    prob = problems.get("rober_1e5")
    calls = []

    def jac(t, y, *args):
        calls.append(args)
        return prob.jac(t, y, np.array(args))

    def fun(t, y, *args):
        return prob.fun(t, y, np.array(args))

    kw = dict(method="Rodas4", rtol=1e-7, atol=1e-12)
    res = diffsens.solve_ivp(fun, (0.0, 100.0), prob.y0, args=p, jac=jac, **kw)
    closure = diffsens.solve_ivp(lambda t, y: prob.fun(t, y, prob.p), (0.0, 100.0),
                                 prob.y0, **kw)
    assert res.status == 0 and closure.status == 0
    assert calls and all(a == p for a in calls) and len(calls) == res.njev
    np.testing.assert_allclose(res.y[:, -1], closure.y[:, -1], rtol=1e-6)


def test_zero_length_span():
    # nothing to step; the Rosenbrock options are still valid ones
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = diffsens.solve_ivp(forced_vdp, (1.0, 1.0), [2.0, 0.0], method="Rodas5P",
                                 jac=np.eye(2), mass=M2)
    assert res.status == 0
    np.testing.assert_array_equal(res.y[:, -1], [2.0, 0.0])


# ---------------------------------------------------------------------------
# 7. Failure paths
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("jac", [None, np.zeros((1, 1))])
@pytest.mark.parametrize("method", METHODS)
def test_singular_w_for_every_step_size(method, jac):
    # M = 0 and J = 0: W = M / (gamma h) - J = 0 whatever h is
    res = diffsens.solve_ivp(lambda t, y: np.ones(1), (0.0, 1.0), [0.0], method=method,
                             mass=np.zeros((1, 1)), jac=jac)
    assert res.status == -1 and not res.success
    assert "singular" in res.message
    assert res.nlu > 1          # retried with smaller steps before giving up
    assert res.t[-1] == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_fun(method):
    res = diffsens.solve_ivp(lambda t, y: np.full(1, np.nan), (0.0, 1.0), [1.0],
                             method=method)
    assert res.status == -1 and "non-finite" in res.message

    def blows_up(t, y):
        return -y if t <= 1.0 else np.full(1, np.inf)
    res = diffsens.solve_ivp(blows_up, (0.0, 2.0), [1.0], method=method)
    assert res.status == -1 and not res.success
    assert "non-finite" in res.message
    assert 0.9 < res.t[-1] <= 1.0
    np.testing.assert_allclose(res.y[0], np.exp(-res.t), rtol=1e-2)


class Boom(Exception):
    pass


@pytest.mark.parametrize("where", ["fun", "fun_value_error", "jac", "traced_event"])
def test_callback_exceptions_propagate(where):
    def fun(t, y):
        if t > 0.5:
            if where == "fun":
                raise Boom("from fun")
            if where == "fun_value_error":
                raise ValueError("from fun")
        return -y

    def jac(t, y):
        if t > 0.5:
            raise Boom("from jac")
        return -np.eye(1)

    def event(t, y):
        if t > 0.5:
            raise Boom("from event")
        return y[0] - 2.0

    kw = {}
    rhs = fun
    if where == "jac":
        kw["jac"] = jac
    if where == "traced_event":
        rhs = diffsens.trace(lambda t, y: -y, [1.0])
        kw["events"] = event
    exc = ValueError if where == "fun_value_error" else Boom
    with pytest.raises(exc, match="from"):
        diffsens.solve_ivp(rhs, (0.0, 1.0), [1.0], method="Rodas5P", **kw)


@pytest.mark.parametrize("method", METHODS)
def test_max_steps(method):
    res = diffsens.solve_ivp(prothero_robinson, (0.0, 10.0), [1.0], method=method,
                             rtol=1e-8, atol=1e-10, max_steps=5)
    assert res.status == -1 and "max_steps=5" in res.message
    assert len(res.t) == 6


@pytest.mark.parametrize("method", METHODS)
def test_complex_y0_rejected(method):
    with pytest.raises(ValueError, match="complex"):
        diffsens.solve_ivp(lambda t, y: -y, (0.0, 1.0), [1.0 + 1.0j], method=method)


@pytest.mark.parametrize("method", METHODS)
def test_stiffness_check_is_not_an_option(method):
    with pytest.warns(UserWarning, match="no effect"):
        res = diffsens.solve_ivp(lambda t, y: -y, (0.0, 1.0), [1.0], method=method,
                                 stiffness_check=False)
    assert res.status == 0


# ---------------------------------------------------------------------------
# 8. ROBER (0 .. 1e5) against scipy's Radau
# ---------------------------------------------------------------------------

def test_traced_rodas5p_rober_vs_radau(rober_radau):
    prob = ROBER_1E5
    rtol, atol = 1e-6, 1e-10
    res = diffsens.solve_ivp(traced(prob), prob.t_span, prob.y0, method="Rodas5P",
                             args=(prob.p,), t_eval=prob.t_eval, rtol=rtol, atol=atol)
    assert res.status == 0, res.message
    np.testing.assert_array_equal(res.t, prob.t_eval)
    # the reference (Radau, rtol 1e-10, atol 1e-14) is ~1e-5 of this scale
    # away from the exact solution; the error of a solution at these
    # tolerances is a small multiple of rtol |y| + atol (observed: 0.31)
    scaled = np.abs(res.y - rober_radau) / (rtol * np.abs(rober_radau) + atol)
    assert scaled.max() < 3.0, scaled.max(axis=1)
    np.testing.assert_allclose(res.y.sum(axis=0), 1.0, rtol=0, atol=1e-14)
    assert res.njev > 0 and res.nlu >= res.njev
