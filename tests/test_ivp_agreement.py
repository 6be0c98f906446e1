"""Agreement of ``diffsens.solve_ivp`` with ``scipy.integrate.solve_ivp``.

Native methods with a scipy counterpart (RK23, RK45, DOP853) are compared
with the same scipy method at the same tolerances; Tsit5 and Vern7 are
compared with scipy's DOP853 at a tight tolerance.  Results are compared the
scipy way: the same fields, shapes, dtypes, status and message, and values
that agree to within a multiple of the tolerance (not bitwise: diffsens's
step-size controller differs from scipy's).  Where a closed-form solution
exists it is checked too.

The scipy methods (Radau, BDF, LSODA, OdeSolver subclasses) and the no-step
corner cases (``t0 == tf``, empty ``y0``) are delegated to scipy, so there the
results must be identical.
"""

import numpy as np
import pytest
import scipy.integrate
from numpy.testing import assert_allclose, assert_array_equal

import diffsens
from diffsens import problems

NATIVE = ["RK23", "RK45", "DOP853", "Tsit5", "Vern7"]
SCIPY_TWIN = {"RK23": "RK23", "RK45": "RK45", "DOP853": "DOP853"}

RTOL = 1e-7
ATOL = 1e-10
#: Global errors accumulate over the span, so values are compared with a
#: margin above the requested tolerance.
AGREE = 100 * RTOL

RESULT_KEYS = {"t", "y", "sol", "t_events", "y_events", "nfev", "njev",
               "nlu", "status", "message", "success"}

MESSAGE_END = ("The solver successfully reached the end of the integration "
               "interval.")
MESSAGE_EVENT = "A termination event occurred."


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def reference(fun, t_span, y0, method, **kw):
    """scipy's answer: the same method, or a tight DOP853 for Tsit5/Vern7."""
    if method in SCIPY_TWIN:
        kw.setdefault("rtol", RTOL)
        kw.setdefault("atol", ATOL)
        return scipy.integrate.solve_ivp(fun, t_span, y0,
                                         method=SCIPY_TWIN[method], **kw)
    kw["rtol"] = 1e-12
    kw["atol"] = 1e-14
    return scipy.integrate.solve_ivp(fun, t_span, y0, method="DOP853", **kw)


def both(fun, t_span, y0, method, **kw):
    kw_d = dict(kw)
    kw_d.setdefault("rtol", RTOL)
    kw_d.setdefault("atol", ATOL)
    res = diffsens.solve_ivp(fun, t_span, y0, method=method, **kw_d)
    ref = reference(fun, t_span, y0, method, **kw)
    return res, ref


def check_fields(res, ref):
    """The structure of the result matches scipy's exactly."""
    assert isinstance(res, diffsens.OdeResult)
    assert set(res.keys()) == RESULT_KEYS
    assert set(res.keys()) == set(ref.keys())
    assert res.status == ref.status
    assert res.message == ref.message
    assert res.success == ref.success
    assert isinstance(res.success, (bool, np.bool_))
    assert isinstance(res.nfev, int) and res.nfev > 0
    assert isinstance(res.njev, int) and isinstance(res.nlu, int)
    assert res.t.ndim == 1
    assert res.y.ndim == 2 and res.y.shape[1] == res.t.shape[0]
    assert res.y.shape[0] == ref.y.shape[0]
    assert res.y.dtype == ref.y.dtype
    assert res.t.dtype == ref.t.dtype
    assert (res.sol is None) == (ref.sol is None)
    assert (res.t_events is None) == (ref.t_events is None)
    assert (res.y_events is None) == (ref.y_events is None)
    if res.t_events is not None:
        assert len(res.t_events) == len(ref.t_events)
        assert len(res.y_events) == len(ref.y_events)
        for te, te_ref, ye, ye_ref in zip(res.t_events, ref.t_events,
                                          res.y_events, ref.y_events):
            assert isinstance(te, np.ndarray) and isinstance(ye, np.ndarray)
            assert te.shape == te_ref.shape
            assert ye.shape == ye_ref.shape


def check_values(res, ref, scale=AGREE):
    """Values agree to a tolerance consistent with the requested rtol."""
    ymax = max(np.abs(ref.y).max(), 1.0) if ref.y.size else 1.0
    if res.t.shape == ref.t.shape and (res.t.size == 0 or ref.t.size < 3
                                       or np.array_equal(res.t, ref.t)):
        assert_allclose(res.y, ref.y, rtol=scale, atol=scale * ymax)
    else:
        # both at their own steps: the end points must agree
        assert res.t[0] == ref.t[0]
        assert res.t[-1] == pytest.approx(ref.t[-1], rel=scale, abs=scale)
        assert_allclose(res.y[:, -1], ref.y[:, -1], rtol=scale,
                        atol=scale * ymax)
    if res.t_events is not None:
        for te, te_ref, ye, ye_ref in zip(res.t_events, ref.t_events,
                                          res.y_events, ref.y_events):
            assert_allclose(te, te_ref, rtol=scale, atol=scale)
            assert_allclose(ye, ye_ref, rtol=scale, atol=scale * ymax)


def check_against_scipy(res, ref, scale=AGREE):
    check_fields(res, ref)
    check_values(res, ref, scale)


# ---------------------------------------------------------------------------
# problems
# ---------------------------------------------------------------------------

def decay(t, y):
    return -0.5 * y


def decay_exact(t):
    return np.array([2.0, 4.0])[:, None] * np.exp(-0.5 * np.atleast_1d(t))


def rotation(t, y):
    return 1j * y


def nonautonomous(t, y):
    # y' = t - y, y(0) = 1  ->  y = t - 1 + 2 exp(-t)
    return t - y


def nonautonomous_exact(t):
    t = np.atleast_1d(t)
    return (t - 1 + 2 * np.exp(-t))[None, :]


def oscillator(t, y):
    # y = (sin t, cos t)
    return np.array([y[1], -y[0]])


def lotka_volterra(t, z, a, b, c, d):
    x, y = z
    return [a * x - b * x * y, -c * y + d * x * y]


LV_ARGS = (1.5, 1.0, 3.0, 1.0)


def ball(t, y, g):
    return [y[1], -g]


def hit_ground(t, y, g):
    return y[0]


hit_ground.terminal = True
hit_ground.direction = -1


# ---------------------------------------------------------------------------
# basic problems
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
def test_exponential_decay(method):
    res, ref = both(decay, (0, 10), [2.0, 4.0], method)
    check_fields(res, ref)
    assert res.status == 0 and res.message == MESSAGE_END
    assert res.t[0] == 0 and res.t[-1] == 10
    assert np.all(np.diff(res.t) > 0)
    assert_allclose(res.y, decay_exact(res.t), rtol=AGREE, atol=1e-8)
    check_values(res, ref)


@pytest.mark.parametrize("method", NATIVE)
def test_exponential_decay_default_tolerances(method):
    res = diffsens.solve_ivp(decay, (0, 10), [2.0, 4.0], method=method)
    ref = reference(decay, (0, 10), [2.0, 4.0], method)
    check_fields(res, ref)
    assert_allclose(res.y, decay_exact(res.t), rtol=1e-2, atol=1e-5)


@pytest.mark.parametrize("method", NATIVE)
def test_lotka_volterra_args(method):
    t_eval = np.linspace(0, 10, 41)
    res, ref = both(lotka_volterra, (0, 10), [1.0, 1.0], method,
                    t_eval=t_eval, args=LV_ARGS)
    check_against_scipy(res, ref)
    assert_array_equal(res.t, t_eval)
    # the builtin problem has an mpmath reference at t = 10
    prob = problems.get("lotka_volterra")
    res2 = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0, method=method,
                              args=(prob.p,), rtol=1e-9, atol=1e-12)
    assert res2.status == 0
    assert_allclose(res2.y[:, -1], prob.y_ref, rtol=1e-5)


@pytest.mark.parametrize("method", NATIVE)
def test_complex_rotation(method):
    t_eval = np.linspace(0, 10, 21)
    res, ref = both(rotation, (0, 10), [1.0 + 0j, 0.5j], method,
                    t_eval=t_eval, dense_output=True)
    check_against_scipy(res, ref)
    assert res.y.dtype == np.complex128
    exact = np.array([1.0, 0.5j])[:, None] * np.exp(1j * t_eval)
    assert_allclose(res.y, exact, rtol=0, atol=AGREE)
    ts = np.linspace(0, 10, 77)
    sol = res.sol(ts)
    assert sol.dtype == np.complex128 and sol.shape == (2, 77)
    assert_allclose(sol, np.array([1.0, 0.5j])[:, None] * np.exp(1j * ts),
                    rtol=0, atol=AGREE)
    assert res.sol(3.0).dtype == np.complex128
    assert res.sol(3.0).shape == (2,)


@pytest.mark.parametrize("method", NATIVE)
def test_complex_rotation_steps(method):
    res, ref = both(rotation, (0, 10), [1.0 + 0j], method)
    check_fields(res, ref)
    assert_allclose(res.y[0], np.exp(1j * res.t), rtol=0, atol=AGREE)


@pytest.mark.parametrize("method", NATIVE)
def test_nonautonomous_scalar(method):
    res, ref = both(nonautonomous, (0, 5), [1.0], method)
    check_fields(res, ref)
    check_values(res, ref)
    assert_allclose(res.y, nonautonomous_exact(res.t), rtol=AGREE, atol=1e-9)


@pytest.mark.parametrize("method", NATIVE)
def test_backward_integration(method):
    t_eval = np.linspace(10, 0, 26)
    res, ref = both(decay, (10, 0), decay_exact(10.0)[:, 0], method,
                    t_eval=t_eval)
    check_against_scipy(res, ref)
    assert_array_equal(res.t, t_eval)
    assert_allclose(res.y, decay_exact(t_eval), rtol=AGREE)

    res, ref = both(decay, (10, 0), decay_exact(10.0)[:, 0], method)
    check_fields(res, ref)
    assert res.t[0] == 10 and res.t[-1] == 0
    assert np.all(np.diff(res.t) < 0)
    assert_allclose(res.y, decay_exact(res.t), rtol=AGREE)


@pytest.mark.parametrize("method", NATIVE)
def test_backward_dense_output(method):
    res, ref = both(oscillator, (6, -1), [np.sin(6.0), np.cos(6.0)],
                    method, dense_output=True)
    check_fields(res, ref)
    check_values(res, ref)
    sol = res.sol
    assert sol.t_min == -1 and sol.t_max == 6
    assert not sol.ascending
    ts = np.linspace(6, -1, 57)
    assert_allclose(sol(ts), [np.sin(ts), np.cos(ts)], rtol=0, atol=AGREE)
    assert_allclose(sol(res.t), res.y, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# t_eval and dense output
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("dense", [False, True])
def test_t_eval(method, dense):
    t_eval = np.array([0.0, 0.3, 1.0, 2.5, 2.51, 7.0, 10.0])
    res, ref = both(decay, (0, 10), [2.0, 4.0], method, t_eval=t_eval,
                    dense_output=dense)
    check_against_scipy(res, ref)
    assert_array_equal(res.t, t_eval)
    assert_allclose(res.y, decay_exact(t_eval), rtol=AGREE)
    if dense:
        assert res.sol.t_min == 0 and res.sol.t_max == 10
        assert_allclose(res.sol(t_eval), res.y, rtol=1e-12)


@pytest.mark.parametrize("method", NATIVE)
def test_t_eval_interior_subset(method):
    # t_eval need not contain the end points
    t_eval = np.linspace(1, 9, 5)
    res, ref = both(decay, (0, 10), [2.0, 4.0], method, t_eval=t_eval)
    check_against_scipy(res, ref)
    assert_array_equal(res.t, t_eval)
    # ... and may be a list, or a single point
    res, ref = both(decay, (0, 10), [2.0, 4.0], method, t_eval=[4.0])
    check_against_scipy(res, ref)
    assert res.y.shape == (2, 1)


@pytest.mark.parametrize("method", NATIVE)
def test_dense_output(method):
    res, ref = both(nonautonomous, (0, 5), [1.0], method, dense_output=True)
    check_fields(res, ref)
    sol = res.sol
    # attributes of scipy's OdeSolution
    assert isinstance(sol, scipy.integrate.OdeSolution)
    assert sol.t_min == 0 and sol.t_max == 5
    assert sol.n_segments == len(res.t) - 1
    assert_array_equal(sol.ts, res.t)
    assert len(sol.interpolants) == sol.n_segments
    # many points vs the exact solution
    ts = np.linspace(0, 5, 301)
    ys = sol(ts)
    assert ys.shape == (1, 301)
    assert_allclose(ys, nonautonomous_exact(ts), rtol=AGREE, atol=1e-8)
    # scalar t -> shape (n,), array t -> (n, k), list -> (n, k)
    assert sol(2.0).shape == (1,)
    assert_allclose(sol(2.0), nonautonomous_exact(2.0)[:, 0], rtol=AGREE)
    assert sol(np.array([2.0])).shape == (1, 1)
    assert sol([1.0, 2.0, 3.0]).shape == (1, 3)
    # the breakpoints reproduce the stored steps
    assert_allclose(sol(res.t), res.y, rtol=1e-10, atol=1e-13)
    for i in (0, sol.n_segments // 2, sol.n_segments - 1):
        assert_allclose(sol(res.t[i]), res.y[:, i], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("y0, t_span", [([1.0], (0, 5)), ([1.0], (5, 0)),
                                        ([1.0 + 1j, 2j], (0, 5))])
def test_dense_output_interpolants(method, y0, t_span):
    # sol.interpolants are scipy DenseOutput objects, usable one by one, each
    # agreeing with sol inside its own segment, for scalar and array t
    res = diffsens.solve_ivp(nonautonomous, t_span, y0, method=method,
                             dense_output=True, rtol=1e-6, atol=1e-9)
    sol = res.sol
    n = len(y0)
    assert len(sol.interpolants) == sol.n_segments
    for i in (0, sol.n_segments // 2, sol.n_segments - 1):
        seg = sol.interpolants[i]
        assert isinstance(seg, scipy.integrate.DenseOutput)
        assert seg.t_old == sol.ts[i] and seg.t == sol.ts[i + 1]
        tm = 0.5 * (sol.ts[i] + sol.ts[i + 1])
        assert seg(tm).shape == (n,)
        assert_allclose(seg(tm), sol(tm), rtol=1e-13)
        tt = sol.ts[i] + np.array([0.25, 0.5, 0.75]) * (sol.ts[i + 1] - sol.ts[i])
        yy = seg(tt)
        assert yy.shape == (n, 3)
        assert yy.dtype == res.y.dtype
        assert_allclose(yy, sol(tt), rtol=1e-13)
        assert_allclose(seg(sol.ts[i + 1]), res.y[:, i + 1], rtol=1e-10)


@pytest.mark.parametrize("method", NATIVE)
def test_dense_output_matches_scipy_ode_solution_selection(method):
    # scipy picks the segment on the left of a breakpoint; evaluating at the
    # breakpoint must give the same value whichever side is used (continuity)
    res = diffsens.solve_ivp(oscillator, (0, 6), [0.0, 1.0], method=method,
                             dense_output=True, rtol=1e-8, atol=1e-10)
    sol = res.sol
    for i in range(1, sol.n_segments):
        left = sol.interpolants[i - 1](sol.ts[i])
        right = sol.interpolants[i](sol.ts[i])
        assert_allclose(left, right, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", NATIVE)
def test_dense_output_complex_and_unsorted_points(method):
    res = diffsens.solve_ivp(rotation, (0, 4), [1.0 + 0j], method=method,
                             dense_output=True, rtol=1e-8, atol=1e-10)
    ts = np.array([3.9, 0.1, 2.0, 0.0, 4.0])
    assert_allclose(res.sol(ts)[0], np.exp(1j * ts), atol=1e-5)


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
def test_vectorized(method):
    calls = []

    def fun_vec(t, y):
        calls.append(y.shape)
        return -0.5 * y

    t_eval = np.linspace(0, 10, 11)
    res = diffsens.solve_ivp(fun_vec, (0, 10), [2.0, 4.0], method=method,
                             vectorized=True, t_eval=t_eval, rtol=RTOL,
                             atol=ATOL)
    ref = reference(decay, (0, 10), [2.0, 4.0], method, t_eval=t_eval,
                    vectorized=True)
    check_against_scipy(res, ref)
    assert calls and all(len(s) == 2 and s[0] == 2 for s in calls)
    assert_allclose(res.y, decay_exact(t_eval), rtol=AGREE)

    # a vectorized fun may return shape (n, 1) or (n,)
    res2 = diffsens.solve_ivp(lambda t, y: -0.5 * y[:, 0], (0, 10),
                              [2.0, 4.0], method=method, vectorized=True,
                              t_eval=t_eval, rtol=RTOL, atol=ATOL)
    assert_allclose(res2.y, res.y, rtol=1e-14)


@pytest.mark.parametrize("method", NATIVE)
def test_args_passed_to_fun(method):
    seen = []

    def fun(t, y, a, b):
        seen.append((a, b))
        return [a * y[0] + b]

    res, ref = both(fun, (0, 2), [1.0], method, args=(-1.0, 2.0))
    check_fields(res, ref)
    assert set(seen) == {(-1.0, 2.0)}
    # y = 2 - exp(-t)
    assert_allclose(res.y[0], 2 - np.exp(-res.t), rtol=AGREE)
    # args as a list is accepted like scipy
    res_list = diffsens.solve_ivp(fun, (0, 2), [1.0], method=method,
                                  args=[-1.0, 2.0], rtol=RTOL, atol=ATOL)
    assert_array_equal(res_list.y, res.y)


@pytest.mark.parametrize("method", NATIVE)
def test_rtol_atol_arrays(method):
    rtol = np.array([1e-6, 1e-9])
    atol = np.array([1e-9, 1e-12])
    t_eval = np.linspace(0, 10, 6)
    res = diffsens.solve_ivp(decay, (0, 10), [2.0, 4.0], method=method,
                             rtol=rtol, atol=atol, t_eval=t_eval)
    ref = reference(decay, (0, 10), [2.0, 4.0], method, rtol=rtol,
                    atol=atol, t_eval=t_eval)
    check_against_scipy(res, ref, scale=1e-3)
    exact = decay_exact(t_eval)
    assert_allclose(res.y[0], exact[0], rtol=1e-3)
    assert_allclose(res.y[1], exact[1], rtol=1e-6)
    # lists work as well
    res2 = diffsens.solve_ivp(decay, (0, 10), [2.0, 4.0], method=method,
                              rtol=list(rtol), atol=list(atol), t_eval=t_eval)
    assert_array_equal(res2.y, res.y)
    # the tighter component costs more than a uniformly loose solve
    loose = diffsens.solve_ivp(decay, (0, 10), [2.0, 4.0], method=method,
                               rtol=1e-6, atol=1e-9, t_eval=t_eval)
    assert res.nfev > loose.nfev


@pytest.mark.parametrize("method", NATIVE)
def test_first_step(method):
    first = 1e-3
    res = diffsens.solve_ivp(decay, (0, 10), [2.0, 4.0], method=method,
                             first_step=first, rtol=1e-6, atol=1e-9)
    assert res.status == 0
    assert res.t[1] == pytest.approx(first, rel=1e-12)
    if method in SCIPY_TWIN:
        ref = scipy.integrate.solve_ivp(decay, (0, 10), [2.0, 4.0],
                                        method=method, first_step=first,
                                        rtol=1e-6, atol=1e-9)
        assert ref.t[1] == pytest.approx(res.t[1], rel=1e-12)
        check_against_scipy(res, ref, scale=1e-3)
    # backward: the first step goes the other way
    res = diffsens.solve_ivp(decay, (10, 0), [2.0, 4.0], method=method,
                             first_step=first, rtol=1e-6, atol=1e-9)
    assert res.t[1] == pytest.approx(10 - first, rel=1e-12)


@pytest.mark.parametrize("method", NATIVE)
def test_max_step(method):
    max_step = 0.25
    res, ref = both(decay, (0, 10), [2.0, 4.0], method, max_step=max_step)
    check_against_scipy(res, ref)
    steps = np.diff(res.t)
    assert np.all(steps <= max_step * (1 + 1e-12))
    assert len(res.t) - 1 >= 40
    # also with t_eval and dense output: the segments respect max_step
    res = diffsens.solve_ivp(decay, (0, 10), [2.0, 4.0], method=method,
                             max_step=max_step, dense_output=True,
                             t_eval=[0.0, 10.0])
    assert np.all(np.abs(np.diff(res.sol.ts)) <= max_step * (1 + 1e-12))
    # backward integration
    res = diffsens.solve_ivp(decay, (10, 0), [2.0, 4.0], method=method,
                             max_step=max_step)
    steps = np.diff(res.t)
    assert np.all(steps < 0) and np.all(-steps <= max_step * (1 + 1e-12))


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("t_span", [(0.0, 0.0), (2.5, 2.5)])
@pytest.mark.parametrize("kw", [{}, {"dense_output": True},
                                {"t_eval": [2.5]}])
def test_zero_length_span_like_scipy(method, t_span, kw):
    kw = dict(kw)
    if "t_eval" in kw:
        kw["t_eval"] = [t_span[0]]
    res = diffsens.solve_ivp(decay, t_span, [2.0, 4.0], method=method, **kw)
    ref = scipy.integrate.solve_ivp(decay, t_span, [2.0, 4.0], **kw)
    assert set(res.keys()) == set(ref.keys())
    for key in ("t", "y"):
        # (scipy returns empty lists when t_eval is given and tf == t0)
        assert type(res[key]) is type(ref[key])
        assert np.shape(res[key]) == np.shape(ref[key])
        assert np.asarray(res[key]).dtype == np.asarray(ref[key]).dtype
        assert_array_equal(res[key], ref[key])
    for key in ("status", "message", "success", "nfev", "njev", "nlu",
                "t_events", "y_events"):
        assert res[key] == ref[key]
    assert (res.sol is None) == (ref.sol is None)
    if res.sol is not None:
        assert_array_equal(res.sol(t_span[0]), ref.sol(t_span[0]))


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("kw", [{}, {"t_eval": [0.0, 0.5, 1.0]},
                                {"dense_output": True}])
def test_empty_state_like_scipy(method, kw):
    res = diffsens.solve_ivp(lambda t, y: y, (0, 1), np.empty(0),
                             method=method, **kw)
    ref = scipy.integrate.solve_ivp(lambda t, y: y, (0, 1), np.empty(0),
                                    **kw)
    assert set(res.keys()) == set(ref.keys())
    for key in ("t", "y"):
        assert res[key].shape == ref[key].shape
        assert_array_equal(res[key], ref[key])
    for key in ("status", "message", "success", "nfev", "njev", "nlu"):
        assert res[key] == ref[key]
    assert res.status == 0
    assert (res.sol is None) == (ref.sol is None)


# ---------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("direction, expected", [
    (0, [np.pi, 2 * np.pi, 3 * np.pi]),
    (1, [2 * np.pi]),
    (-1, [np.pi, 3 * np.pi]),
])
def test_event_direction(method, direction, expected):
    def ev(t, y):
        return y[0]

    ev.direction = direction
    y0 = [np.sin(0.5), np.cos(0.5)]
    res, ref = both(oscillator, (0.5, 10), y0, method, events=ev)
    check_against_scipy(res, ref, scale=1e-4)
    assert res.status == 0 and res.message == MESSAGE_END
    assert res.t[-1] == 10
    assert_allclose(res.t_events[0], expected, rtol=1e-6)
    assert res.y_events[0].shape == (len(expected), 2)
    assert_allclose(res.y_events[0][:, 0], 0, atol=1e-6)
    assert_allclose(res.y_events[0][:, 1], np.cos(expected), atol=1e-6)


@pytest.mark.parametrize("method", NATIVE)
def test_ball_drop_terminal(method):
    h, g = 10.0, 9.81
    res, ref = both(ball, (0, 10), [h, 0.0], method, events=hit_ground,
                    args=(g,))
    check_against_scipy(res, ref)
    t_hit = np.sqrt(2 * h / g)
    assert res.status == 1 and res.message == MESSAGE_EVENT
    assert res.success
    assert res.t_events[0].shape == (1,)
    assert res.t_events[0][0] == pytest.approx(t_hit, rel=1e-9)
    assert res.y_events[0].shape == (1, 2)
    assert_allclose(res.y_events[0][0], [0.0, -g * t_hit], atol=1e-8)
    # t and y are truncated at the event
    assert res.t[-1] == res.t_events[0][0]
    assert np.all(res.t <= res.t[-1])
    assert_allclose(res.y[:, -1], res.y_events[0][0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", NATIVE)
def test_ball_drop_default_tolerances(method):
    res = diffsens.solve_ivp(lambda t, y: [y[1], -9.81], (0, 10), [10.0, 0.0],
                             events=lambda t, y: y[0],
                             method=method)
    # non-terminal: the integration goes on through the ground
    assert res.status == 0
    assert res.t_events[0][0] == pytest.approx(np.sqrt(20 / 9.81), rel=1e-6)


@pytest.mark.parametrize("method", NATIVE)
def test_terminal_event_infinite_tf(method):
    h, g = 10.0, 9.81
    res = diffsens.solve_ivp(ball, (0, np.inf), [h, 0.0], method=method,
                             events=hit_ground, args=(g,), rtol=RTOL,
                             atol=ATOL)
    assert res.status == 1
    assert res.t[-1] == pytest.approx(np.sqrt(2 * h / g), rel=1e-9)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("count", [1, 2, 3])
def test_terminal_count(method, count):
    def ev(t, y):
        return y[0]

    ev.terminal = count
    y0 = [np.sin(0.5), np.cos(0.5)]
    res, ref = both(oscillator, (0.5, 20), y0, method, events=ev)
    check_against_scipy(res, ref, scale=1e-4)
    expected = np.pi * np.arange(1, count + 1)
    assert res.status == 1
    assert_allclose(res.t_events[0], expected, rtol=1e-6)
    assert res.t[-1] == res.t_events[0][-1]
    assert res.y_events[0].shape == (count, 2)


@pytest.mark.parametrize("method", NATIVE)
def test_terminal_count_with_direction(method):
    def ev(t, y):
        return y[0]

    ev.terminal = 2
    ev.direction = -1
    y0 = [np.sin(0.5), np.cos(0.5)]
    res, ref = both(oscillator, (0.5, 20), y0, method, events=ev)
    check_against_scipy(res, ref, scale=1e-4)
    assert_allclose(res.t_events[0], [np.pi, 3 * np.pi], rtol=1e-6)
    assert res.t[-1] == pytest.approx(3 * np.pi, rel=1e-6)


@pytest.mark.parametrize("method", NATIVE)
def test_multiple_events(method):
    def crossing(t, y):
        return y[0]

    def peak(t, y):          # y[1] = cos t: zero at pi/2 + k pi
        return y[1]

    def stop(t, y):          # terminal at t = 8
        return t - 8

    stop.terminal = True
    never = lambda t, y: 1.0  # noqa: E731

    y0 = [np.sin(0.5), np.cos(0.5)]
    events = [crossing, peak, never, stop]
    res, ref = both(oscillator, (0.5, 20), y0, method, events=events)
    check_against_scipy(res, ref, scale=1e-4)
    assert res.status == 1
    assert len(res.t_events) == 4 and len(res.y_events) == 4
    assert_allclose(res.t_events[0], [np.pi, 2 * np.pi], rtol=1e-6)
    assert_allclose(res.t_events[1], np.pi / 2 + np.pi * np.arange(3),
                    rtol=1e-6)
    assert res.t_events[2].shape == (0,)
    assert res.y_events[2].shape == (0,)
    assert_allclose(res.t_events[3], [8.0], rtol=1e-12)
    assert res.y_events[0].shape == (2, 2)
    assert res.y_events[1].shape == (3, 2)
    assert res.y_events[3].shape == (1, 2)
    assert res.t[-1] == pytest.approx(8.0, rel=1e-12)


@pytest.mark.parametrize("method", NATIVE)
def test_events_with_args(method):
    seen = []

    def lv_event(t, z, a, b, c, d):
        seen.append((a, b, c, d))
        return z[0] - 2.0   # prey crosses 2

    res, ref = both(lotka_volterra, (0, 10), [1.0, 1.0], method,
                    args=LV_ARGS, events=lv_event)
    check_against_scipy(res, ref, scale=1e-4)
    assert set(seen) == {LV_ARGS}
    assert res.t_events[0].size >= 2
    assert_allclose(res.y_events[0][:, 0], 2.0, rtol=1e-6)


@pytest.mark.parametrize("method", NATIVE)
def test_t_eval_with_terminal_event(method):
    h, g = 10.0, 9.81
    t_hit = np.sqrt(2 * h / g)
    t_eval = np.linspace(0, 3, 13)          # points on both sides of t_hit
    res, ref = both(ball, (0, 3), [h, 0.0], method, events=hit_ground,
                    args=(g,), t_eval=t_eval)
    check_against_scipy(res, ref)
    assert res.status == 1
    keep = t_eval[t_eval <= t_hit]
    assert_array_equal(res.t, keep)
    assert res.y.shape == (2, keep.size)
    assert_allclose(res.y[0], h - 0.5 * g * keep ** 2, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("with_t_eval", [False, True])
def test_dense_output_with_terminal_event(method, with_t_eval):
    h, g = 10.0, 9.81
    t_hit = np.sqrt(2 * h / g)
    kw = {"t_eval": np.linspace(0, 3, 7)} if with_t_eval else {}
    res, ref = both(ball, (0, 3), [h, 0.0], method, events=hit_ground,
                    args=(g,), dense_output=True, **kw)
    check_against_scipy(res, ref)
    assert res.status == 1
    assert res.sol.t_max == res.t_events[0][-1]
    assert res.sol.t_max == pytest.approx(t_hit, rel=1e-9)
    assert ref.sol.t_max == pytest.approx(res.sol.t_max, rel=1e-6)
    ts = np.linspace(0, res.sol.t_max, 50)
    assert_allclose(res.sol(ts)[0], h - 0.5 * g * ts ** 2, rtol=1e-8,
                    atol=1e-9)
    assert_allclose(res.sol(res.sol.t_max), res.y_events[0][0], atol=1e-10)


@pytest.mark.parametrize("method", NATIVE)
def test_backward_with_events_and_t_eval(method):
    def ev(t, y):
        return y[0]

    ev.terminal = 2
    y0 = [np.sin(10.0), np.cos(10.0)]
    t_eval = np.linspace(10, 0, 41)
    res, ref = both(oscillator, (10, 0), y0, method, events=ev,
                    t_eval=t_eval)
    check_against_scipy(res, ref, scale=1e-4)
    assert res.status == 1
    assert_allclose(res.t_events[0], [3 * np.pi, 2 * np.pi], rtol=1e-6)
    assert_array_equal(res.t, t_eval[t_eval >= res.t_events[0][-1]])
    assert_allclose(res.y[0], np.sin(res.t), atol=1e-5)


@pytest.mark.parametrize("method", NATIVE)
def test_event_at_initial_point_like_scipy(method):
    # g(t0) == 0: scipy records an occurrence at t0 on the first step
    def ev(t, y):
        return y[0]

    res, ref = both(oscillator, (0, 4), [0.0, 1.0], method, events=ev)
    check_against_scipy(res, ref, scale=1e-4)
    assert_allclose(res.t_events[0], ref.t_events[0], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("method", SCIPY_TWIN)
def test_event_at_step_end_like_scipy(method):
    # a root exactly on a step end is seen by both adjacent steps: scipy
    # reports it twice, and so must a drop-in
    def ev(t, y):
        return t - 1.0

    kw = dict(first_step=0.25, max_step=0.25, rtol=1e10, atol=1e10,
              events=ev)   # fixed steps: one ends on t = 1
    res = diffsens.solve_ivp(decay, (0, 2), [1.0], method=method, **kw)
    ref = scipy.integrate.solve_ivp(decay, (0, 2), [1.0], method=method, **kw)
    check_fields(res, ref)
    assert_array_equal(res.t_events[0], ref.t_events[0])
    assert_allclose(res.y_events[0], ref.y_events[0], rtol=1e-12)


# ---------------------------------------------------------------------------
# methods delegated to scipy
# ---------------------------------------------------------------------------

def _assert_identical(res, ref):
    assert isinstance(res, diffsens.OdeResult)
    assert set(res.keys()) == set(ref.keys())
    for key in ("t", "y"):
        assert res[key].shape == ref[key].shape
        assert_array_equal(res[key], ref[key])
    for key in ("status", "message", "success", "nfev", "njev", "nlu"):
        assert res[key] == ref[key]
    if ref.t_events is None:
        assert res.t_events is None and res.y_events is None
    else:
        for a, b in zip(res.t_events, ref.t_events):
            assert_array_equal(a, b)
        for a, b in zip(res.y_events, ref.y_events):
            assert_array_equal(a, b)
    assert (res.sol is None) == (ref.sol is None)


@pytest.mark.parametrize("method", ["Radau", "BDF", "LSODA",
                                    scipy.integrate.RK45,
                                    scipy.integrate.DOP853])
def test_delegated_methods_identical_to_scipy(method):
    kw = dict(t_eval=np.linspace(0, 10, 21), args=LV_ARGS, rtol=1e-6,
              atol=1e-9, dense_output=True)
    res = diffsens.solve_ivp(lotka_volterra, (0, 10), [1.0, 1.0],
                             method=method, **kw)
    ref = scipy.integrate.solve_ivp(lotka_volterra, (0, 10), [1.0, 1.0],
                                    method=method, **kw)
    _assert_identical(res, ref)
    ts = np.linspace(0, 10, 33)
    assert_array_equal(res.sol(ts), ref.sol(ts))


@pytest.mark.parametrize("method", ["Radau", "BDF", "LSODA",
                                    scipy.integrate.RK23])
def test_delegated_methods_events_and_steps(method):
    h, g = 10.0, 9.81
    res = diffsens.solve_ivp(ball, (0, 10), [h, 0.0], method=method,
                             events=hit_ground, args=(g,))
    ref = scipy.integrate.solve_ivp(ball, (0, 10), [h, 0.0], method=method,
                                    events=hit_ground, args=(g,))
    _assert_identical(res, ref)
    assert res.status == 1


@pytest.mark.parametrize("method", ["Radau", "BDF", "LSODA"])
def test_delegated_stiff_problem(method):
    prob = problems.get("rober_1e5")
    kw = dict(args=(prob.p,), rtol=1e-6, atol=1e-10)
    if method != "LSODA":
        kw["jac"] = prob.jac
    res = diffsens.solve_ivp(prob.fun, (0, 100.0), prob.y0, method=method,
                             **kw)
    ref = scipy.integrate.solve_ivp(prob.fun, (0, 100.0), prob.y0,
                                    method=method, **kw)
    _assert_identical(res, ref)
    assert res.status == 0


def test_delegated_extraneous_option_warns_like_scipy():
    with pytest.warns(UserWarning, match="`max_steps`"):
        diffsens.solve_ivp(decay, (0, 1), [1.0, 1.0], method="Radau",
                           max_steps=10)
