"""The native solvers with a traced right-hand side (``diffsens.trace``).

A traced RHS runs the whole integration in C without calling Python.  These
tests check that it changes nothing but the evaluation of ``f`` (results agree
with the plain Python function), that no Python runs per step, that Ctrl-C
still stops a GIL-free solve, and the failure modes: non-finite values, bad
parameters and states, events and dense output.
"""

import sys
import textwrap

import numpy as np
import pytest
import scipy.integrate

import diffsens
from _interrupt import interrupt_child
from diffsens import problems

NATIVE = ["RK23", "RK45", "DOP853", "Tsit5", "Vern7"]


def _traced(prob):
    return diffsens.trace(prob.fun, prob.y0, prob.p)


def _scale(y):
    """Per-component scale of a trajectory (its largest magnitude)."""
    return np.abs(y).max(axis=-1, keepdims=True) + 1e-12


# ---------------------------------------------------------------------------
# Same algorithm, different evaluation of f
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("name", ["lotka_volterra", "pleiades"])
def test_traced_equals_python_rhs(name, method):
    prob = problems.get(name)
    rhs = _traced(prob)
    t_eval = np.linspace(*prob.t_span, 41)
    kw = dict(method=method, t_eval=t_eval, args=(prob.p,), rtol=1e-6, atol=1e-8)
    traced = diffsens.solve_ivp(rhs, prob.t_span, prob.y0, **kw)
    plain = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0, **kw)
    assert traced.status == plain.status == 0, (traced.message, plain.message)
    assert traced.success and traced.message == plain.message
    np.testing.assert_array_equal(traced.t, plain.t)
    # f agrees to round-off, so the step sequences agree (up to a step
    # accepted on one side and rejected on the other by a hair)
    assert abs(traced.nfev - plain.nfev) <= 0.02 * plain.nfev
    err = np.abs(traced.y - plain.y) / _scale(plain.y)
    assert err.max() <= 1e-8, err.max()


@pytest.mark.parametrize("method", NATIVE)
def test_traced_lotka_volterra_is_bitwise_identical(method):
    """Lotka-Volterra traces to the very same floating-point operations."""
    prob = problems.get("lotka_volterra")
    rhs = _traced(prob)
    y = np.array([0.7, 1.3])
    np.testing.assert_array_equal(rhs(1.0, y, prob.p), prob.fun(1.0, y, prob.p))
    kw = dict(method=method, args=(prob.p,), rtol=1e-8, atol=1e-10)
    traced = diffsens.solve_ivp(rhs, prob.t_span, prob.y0, **kw)
    plain = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0, **kw)
    assert traced.nfev == plain.nfev
    np.testing.assert_array_equal(traced.t, plain.t)
    np.testing.assert_array_equal(traced.y, plain.y)


def test_traced_solution_is_accurate():
    prob = problems.get("pleiades")
    res = diffsens.solve_ivp(_traced(prob), prob.t_span, prob.y0, method="DOP853",
                             args=(prob.p,), rtol=1e-12, atol=1e-12)
    assert res.status == 0
    np.testing.assert_allclose(res.y[:, -1], prob.y_ref, rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------
# No Python per step
# ---------------------------------------------------------------------------


def _oscillator(t, y, p):
    return np.array([y[1], -p[0] * y[0] - p[1] * np.sin(y[0])])


def test_traced_rhs_calls_python_only_while_tracing():
    calls = []

    def fun(t, y, p):
        calls.append(1)
        return _oscillator(t, y, p)

    p = np.array([1.0, 0.5])
    rhs = diffsens.trace(fun, [1.0, 0.0], p)
    assert len(calls) == 1
    res = diffsens.solve_ivp(rhs, (0.0, 2000.0), [1.0, 0.0], method="DOP853",
                             args=(p,), rtol=1e-10, atol=1e-10)
    assert res.status == 0 and res.nfev > 10_000
    # jvp, vjp and jacobian do not call it either
    rhs.jvp(0.0, [1.0, 0.0], p, [1.0, 0.0])
    rhs.vjp(0.0, [1.0, 0.0], p, [1.0, 0.0])
    rhs.jacobian(0.0, [1.0, 0.0], p)
    assert len(calls) == 1


def _python_calls_during(func):
    count = 0

    def profiler(frame, event, arg):
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(profiler)
    try:
        res = func()
    finally:
        sys.setprofile(None)
    return count, res


@pytest.mark.parametrize("method", ["RK45", "Vern7"])
def test_python_calls_do_not_grow_with_steps(method):
    p = np.array([1.0, 0.5])
    rhs = diffsens.trace(_oscillator, [1.0, 0.0], p)

    def solve(tf):
        return diffsens.solve_ivp(rhs, (0.0, tf), [1.0, 0.0], method=method,
                                  t_eval=np.linspace(0.0, tf, 11), args=(p,),
                                  rtol=1e-9, atol=1e-9)

    solve(10.0)   # warm up: imports, caches
    short_calls, short = _python_calls_during(lambda: solve(100.0))
    long_calls, long = _python_calls_during(lambda: solve(1000.0))
    assert short.status == long.status == 0
    assert long.nfev > 8 * short.nfev > 8 * 1000
    assert long_calls == short_calls, (short_calls, long_calls)


# ---------------------------------------------------------------------------
# Ctrl-C during a GIL-free solve
# ---------------------------------------------------------------------------

_CTRL_C_CODE = textwrap.dedent("""
    import sys
    import numpy as np
    import diffsens

    def oscillator(t, y):
        return np.array([y[1], -y[0]])

    rhs = diffsens.trace(oscillator, [1.0, 0.0])
    print("started", flush=True)
    diffsens.solve_ivp(rhs, (0.0, 1e9), [1.0, 0.0], method="DOP853",
                       t_eval=[0.0, 1e9], rtol=1e-12, atol=1e-12,
                       max_steps=10**12, stiffness_check=False)
    print("finished", flush=True)
""")


def _assert_interrupted(code, tmp_path):
    """Ctrl-C half a second into ``code`` stops it within 5 s with a
    KeyboardInterrupt, before it finishes."""
    out, err, returncode, elapsed = interrupt_child(code, cwd=tmp_path,
                                                    delay=0.5, timeout=5)
    assert elapsed < 5
    assert returncode != 0
    assert "KeyboardInterrupt" in err, err
    assert "finished" not in out


def test_ctrl_c_interrupts_traced_solve(tmp_path):
    _assert_interrupted(_CTRL_C_CODE, tmp_path)


_CTRL_C_THREADS_CODE = textwrap.dedent("""
    import numpy as np
    import diffsens

    def oscillator(t, y, p):
        return np.array([y[1], -p[0] * y[0]])

    rhs = diffsens.trace(oscillator, [1.0, 0.0], [1.0])
    print("started", flush=True)
    diffsens.solve_ivp_sens(rhs, (0.0, 1e9), [1.0, 0.0], [1.0], method="DOP853",
                            wrt=("p", "y0"), chunk_size=1, workers=3,
                            t_eval=[0.0, 1e9], rtol=1e-12, atol=1e-12,
                            max_steps=10**12, stiffness_check=False)
    print("finished", flush=True)
""")


def test_ctrl_c_interrupts_sensitivity_chunks_on_threads(tmp_path):
    """Ctrl-C reaches the main thread only; the chunks' solves on worker
    threads must stop too (the pool's shutdown waits for them)."""
    _assert_interrupted(_CTRL_C_THREADS_CODE, tmp_path)


# ---------------------------------------------------------------------------
# Failures that end the solve
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", NATIVE)
def test_blow_up_ends_with_status_minus_one(method):
    """y' = y**2, y(0) = 1: y = 1 / (1 - t) blows up at t = 1."""
    rhs = diffsens.trace(lambda t, y: y ** 2, [1.0])
    res = diffsens.solve_ivp(rhs, (0.0, 2.0), [1.0], method=method)
    assert res.status == -1 and not res.success
    assert isinstance(res.message, str) and res.message
    # stopped at the pole (a last step may land a hair past it, as in scipy)
    assert 0.99 < res.t[-1] < 1.01
    # exactly as with the plain function: y**2 is the same operation in C
    plain = diffsens.solve_ivp(lambda t, y: y ** 2, (0.0, 2.0), [1.0], method=method)
    assert plain.status == -1 and plain.message == res.message
    assert plain.nfev == res.nfev
    np.testing.assert_array_equal(plain.t, res.t)
    np.testing.assert_array_equal(plain.y, res.y)


@pytest.mark.parametrize("method", ["RK45", "DOP853"])
def test_nan_from_the_tape_ends_with_status_minus_one(method):
    """sqrt(1 - t) is NaN past t = 1: the tape's value is not finite."""
    rhs = diffsens.trace(lambda t, y: np.sqrt(1.0 - t) * y, [1.0])
    res = diffsens.solve_ivp(rhs, (0.0, 2.0), [1.0], method=method)
    assert res.status == -1 and not res.success
    assert "non-finite" in res.message
    assert 0.99 < res.t[-1] <= 1.0
    assert np.isfinite(res.y).all()


@pytest.mark.parametrize("y0", [800.0, 700.0])
def test_overflow_in_the_tape_ends_with_status_minus_one(y0):
    """exp(800) overflows at t0; exp(700) overflows after the first stage."""
    rhs = diffsens.trace(lambda t, y: np.exp(y), [1.0])
    res = diffsens.solve_ivp(rhs, (0.0, 2.0), [y0], method="Tsit5")
    assert res.status == -1 and not res.success
    assert "non-finite" in res.message
    np.testing.assert_array_equal(res.t, [0.0])


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lv():
    prob = problems.get("lotka_volterra")
    return prob, _traced(prob)


@pytest.mark.parametrize("method", ["RK45", "Tsit5"])
def test_missing_parameters(lv, method):
    prob, rhs = lv
    with pytest.raises(ValueError, match=r"args=\(p,\)"):
        diffsens.solve_ivp(rhs, prob.t_span, prob.y0, method=method)
    with pytest.raises(ValueError, match=r"args=\(p,\)"):
        diffsens.solve_ivp(rhs, prob.t_span, prob.y0, method=method, args=())


@pytest.mark.parametrize("p", [np.ones(3), np.ones(5), np.ones((4, 1)), np.ones((2, 2))])
def test_wrong_parameter_shape(lv, p):
    prob, rhs = lv
    with pytest.raises(ValueError, match="shape"):
        diffsens.solve_ivp(rhs, prob.t_span, prob.y0, args=(p,))


def test_missing_parameters_in_the_python_evaluations(lv):
    prob, rhs = lv
    y = np.asarray(prob.y0, dtype=float)
    for call in (lambda: rhs.jvp(0.0, y, None, np.ones(2)),
                 lambda: rhs.vjp(0.0, y, None, np.ones(2)),
                 lambda: rhs.jacobian(0.0, y)):
        with pytest.raises(ValueError, match=r"m = 4 parameters: pass `p` \(shape \(4,\)\)"):
            call()


def test_complex_state_rejected(lv):
    prob, rhs = lv
    with pytest.raises(ValueError, match="complex"):
        diffsens.solve_ivp(rhs, prob.t_span, prob.y0.astype(complex), args=(prob.p,))
    with pytest.raises(ValueError, match="complex"):
        diffsens.solve_ivp(rhs, prob.t_span, [1.0 + 1j, 1.0], args=(prob.p,))


@pytest.mark.parametrize("y0", [[1.0], [1.0, 1.0, 1.0], [[1.0, 1.0]]])
def test_wrong_state_length(lv, y0):
    prob, rhs = lv
    with pytest.raises(ValueError):
        diffsens.solve_ivp(rhs, prob.t_span, y0, args=(prob.p,))


def test_scipy_accepts_traced_rhs(lv):
    prob, rhs = lv
    t_eval = np.linspace(*prob.t_span, 21)
    kw = dict(t_eval=t_eval, args=(prob.p,), rtol=1e-8, atol=1e-10)
    with_traced = scipy.integrate.solve_ivp(rhs, prob.t_span, prob.y0, **kw)
    with_plain = scipy.integrate.solve_ivp(prob.fun, prob.t_span, prob.y0, **kw)
    ours = diffsens.solve_ivp(rhs, prob.t_span, prob.y0, **kw)
    assert with_traced.status == with_plain.status == ours.status == 0
    assert with_traced.nfev == with_plain.nfev
    np.testing.assert_array_equal(with_traced.y, with_plain.y)
    # diffsens's RK45 is its own implementation: agreement to the tolerance
    np.testing.assert_allclose(ours.y, with_plain.y, rtol=1e-5, atol=1e-7)
    # an implicit scipy method through diffsens.solve_ivp, also as a callable
    radau = diffsens.solve_ivp(rhs, prob.t_span, prob.y0, method="Radau", **kw)
    assert radau.status == 0
    np.testing.assert_allclose(radau.y, with_plain.y, rtol=1e-6, atol=1e-8)


def test_traced_rhs_callable_like_the_function(lv):
    prob, rhs = lv
    y = np.array([0.3, 2.0])
    np.testing.assert_array_equal(rhs(0.5, y, prob.p), prob.fun(0.5, y, prob.p))
    with pytest.raises(ValueError, match=r"args=\(p,\)"):
        rhs(0.5, y)


# ---------------------------------------------------------------------------
# Events and dense output
# ---------------------------------------------------------------------------


def _x_crosses_2(t, y, p):
    return y[0] - 2.0


def _y_min(t, y, p):
    return y[1] - 0.5


_y_min.terminal = True
_y_min.direction = -1


@pytest.mark.parametrize("method", ["RK45", "DOP853", "Vern7"])
def test_events_with_traced_rhs(lv, method):
    prob, rhs = lv
    kw = dict(method=method, args=(prob.p,), rtol=1e-10, atol=1e-12,
              events=[_x_crosses_2])
    traced = diffsens.solve_ivp(rhs, prob.t_span, prob.y0, **kw)
    plain = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0, **kw)
    assert traced.status == plain.status == 0
    assert len(traced.t_events[0]) == len(plain.t_events[0]) >= 2
    np.testing.assert_allclose(traced.t_events[0], plain.t_events[0], rtol=1e-9)
    np.testing.assert_allclose(traced.y_events[0][:, 0], 2.0, rtol=1e-9)
    # terminal event, with direction
    term = diffsens.solve_ivp(rhs, prob.t_span, prob.y0, method=method, args=(prob.p,),
                              rtol=1e-10, atol=1e-12, events=_y_min)
    term_plain = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0, method=method,
                                    args=(prob.p,), rtol=1e-10, atol=1e-12, events=_y_min)
    assert term.status == term_plain.status == 1
    assert len(term.t_events[0]) == 1
    np.testing.assert_allclose(term.t_events[0], term_plain.t_events[0], rtol=1e-9)
    assert term.t[-1] == term.t_events[0][0]
    np.testing.assert_allclose(term.y_events[0][0, 1], 0.5, rtol=1e-9)


def test_event_exception_propagates(lv):
    prob, rhs = lv

    def bad_event(t, y, p):
        if t > 1.0:
            raise RuntimeError("event failed")
        return 1.0

    with pytest.raises(RuntimeError, match="event failed"):
        diffsens.solve_ivp(rhs, prob.t_span, prob.y0, args=(prob.p,), events=bad_event)


@pytest.mark.parametrize("method", ["RK23", "Tsit5", "DOP853"])
def test_dense_output_with_traced_rhs(lv, method):
    prob, rhs = lv
    t_eval = np.linspace(*prob.t_span, 17)
    kw = dict(method=method, args=(prob.p,), rtol=1e-8, atol=1e-10, dense_output=True)
    traced = diffsens.solve_ivp(rhs, prob.t_span, prob.y0, t_eval=t_eval, **kw)
    plain = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0, t_eval=t_eval, **kw)
    assert traced.sol is not None and traced.status == 0
    ts = np.linspace(*prob.t_span, 301)
    scale = _scale(plain.sol(ts))
    assert (np.abs(traced.sol(ts) - plain.sol(ts)) / scale).max() <= 1e-8
    # the dense output passes through the stored points
    np.testing.assert_allclose(traced.sol(t_eval), traced.y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(traced.sol(prob.t_span[1]), traced.y[:, -1],
                               rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# Infinite partials against zero tangents
# ---------------------------------------------------------------------------


def _sqrt_forced(t, y, p):
    """A damped oscillator forced by sqrt(t): d sqrt(t)/dt is infinite at t = 0,
    but t carries no tangent in a Jacobian or a sensitivity."""
    return np.array([y[1], -y[0] - p[0] * y[1] + np.sqrt(t)])


def test_infinite_partial_times_zero_tangent_is_zero():
    """As for diffsens.Dual: inf * 0 in a derivative lane is 0, not NaN."""
    rhs = diffsens.trace(_sqrt_forced, [1.0, 0.0], [0.3])
    J_y, J_p = rhs.jacobian(0.0, np.array([1.0, 0.0]), np.array([0.3]))
    np.testing.assert_array_equal(J_y, [[0.0, 1.0], [-1.0, -0.3]])
    np.testing.assert_array_equal(J_p, [[0.0], [0.0]])
    root = diffsens.trace(lambda t, y, p: p[0] * np.sqrt(y), [1.0], [1.0])
    _, lanes = root.jvp(0.0, [0.0], [1.0], [0.0], [1.0])
    assert lanes[0] == 0.0
    power = diffsens.trace(lambda t, y, p: p[0] * t ** 0.5 - y, [1.0], [1.0])
    J_y, J_p = power.jacobian(0.0, np.array([1.0]), np.array([2.0]))
    assert J_y[0, 0] == -1.0 and J_p[0, 0] == 0.0


@pytest.mark.parametrize("method", ["Rodas5P", "Rosenbrock23"])
def test_sqrt_of_t_forcing_solves_like_the_python_function(method):
    p = np.array([0.3])
    rhs = diffsens.trace(_sqrt_forced, [1.0, 0.0], p)
    traced = diffsens.solve_ivp(rhs, (0.0, 5.0), [1.0, 0.0], method=method, args=(p,),
                                rtol=1e-8, atol=1e-10)
    plain = diffsens.solve_ivp(_sqrt_forced, (0.0, 5.0), [1.0, 0.0], method=method,
                               args=(p,), rtol=1e-8, atol=1e-10)
    assert traced.status == 0 and plain.status == 0
    np.testing.assert_allclose(traced.y[:, -1], plain.y[:, -1], rtol=1e-6)


def test_sqrt_of_t_forcing_sensitivities_match_dual_numbers():
    p = [0.3]
    rhs = diffsens.trace(_sqrt_forced, [1.0, 0.0], p)
    kw = dict(t_eval=[2.5, 5.0], rtol=1e-10, atol=1e-10)
    traced = diffsens.solve_ivp_sens(rhs, (0.0, 5.0), [1.0, 0.0], p, **kw)
    duals = diffsens.solve_ivp_sens(_sqrt_forced, (0.0, 5.0), [1.0, 0.0], p, **kw)
    assert traced.status == 0 and duals.status == 0
    assert np.all(np.isfinite(traced.sens))
    np.testing.assert_allclose(traced.sens, duals.sens, rtol=1e-12, atol=1e-14)


def test_traced_with_an_empty_p_takes_it_back_in_args():
    """fun(t, y, p) traced with p = [] (m = 0) is called with args=(p,) like
    any other; the empty p is not an extra argument baked into the tape."""
    rhs = diffsens.trace(lambda t, y, p: -y, [1.0, 2.0], np.zeros(0))
    assert rhs.m == 0
    with_p = diffsens.solve_ivp(rhs, (0.0, 1.0), [1.0, 2.0], args=(np.zeros(0),))
    without = diffsens.solve_ivp(rhs, (0.0, 1.0), [1.0, 2.0])
    np.testing.assert_array_equal(with_p.y, without.y)
    np.testing.assert_allclose(with_p.y[:, -1], np.exp(-1.0) * np.array([1.0, 2.0]),
                               rtol=1e-3)
    sens = diffsens.solve_ivp_sens(rhs, (0.0, 1.0), [1.0, 2.0], np.zeros(0), wrt="y0",
                                   t_eval=[1.0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sens.sens_y0[:, :, -1], np.exp(-1.0) * np.eye(2),
                               rtol=1e-8)
