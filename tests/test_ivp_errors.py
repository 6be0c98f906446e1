"""Error paths of ``diffsens.solve_ivp``: bad input, failing callbacks,
non-finite values, step limits, stiffness, Ctrl-C and reference leaks.

Messages of input errors are scipy's where scipy has one (checked verbatim
against scipy for its own methods where practical).
"""

import gc
import re
import sys
import textwrap
import time
import traceback
import warnings

import numpy as np
import pytest
import scipy.integrate

import diffsens
from _interrupt import interrupt_child
from diffsens import problems
from diffsens._tableaus import TABLEAUS

NATIVE = list(TABLEAUS)
ALL_METHODS = NATIVE + ["Radau", "BDF", "LSODA"]
EPS = np.finfo(float).eps


def decay(t, y):
    return -0.5 * y


def solve(method="RK45", fun=decay, t_span=(0, 1), y0=(1.0, 2.0), **kw):
    return diffsens.solve_ivp(fun, t_span, y0, method=method, **kw)


def scipy_error(exc_type, fun=decay, t_span=(0, 1), y0=(1.0, 2.0), **kw):
    """The message scipy raises for the same input (its RK45)."""
    with pytest.raises(exc_type) as info:
        scipy.integrate.solve_ivp(fun, t_span, y0, method="RK45", **kw)
    return str(info.value)


# ---------------------------------------------------------------------------
# method
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["rk45", "Euler", "", None, 45, "RK4"])
def test_bad_method(method):
    with pytest.raises(ValueError, match="`method` must be one of") as info:
        solve(method)
    msg = str(info.value)
    for name in ALL_METHODS:
        assert repr(name) in msg
    assert "OdeSolver class" in msg


def test_bad_method_class():
    with pytest.raises(ValueError, match="`method` must be one of"):
        solve(int)


# ---------------------------------------------------------------------------
# y0
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
def test_y0_two_dimensional(method):
    msg = scipy_error(ValueError, y0=[[1.0, 2.0]])
    assert msg == "`y0` must be 1-dimensional."
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(method, y0=[[1.0, 2.0]])
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(method, y0=np.ones((2, 2)))


@pytest.mark.parametrize("method", NATIVE)
def test_y0_scalar(method):
    # a 0-d y0 is not 1-dimensional either
    with pytest.raises(ValueError, match=re.escape("`y0` must be 1-dimensional.")):
        solve(method, y0=1.0)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_y0_not_finite(method, bad):
    msg = scipy_error(ValueError, y0=[1.0, bad])
    assert msg == "All components of the initial state `y0` must be finite."
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(method, y0=[1.0, bad])
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(method, y0=[1.0 + 0j, complex(0, bad)])


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("y0", [["a", "b"], np.array(["x"]),
                                [object(), object()], [None, 1.0]])
def test_y0_not_numbers(method, y0):
    with pytest.raises(TypeError):
        solve(method, y0=y0)


# ---------------------------------------------------------------------------
# t_eval
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("t_span, t_eval, expected", [
    ((0, 1), [[0.0, 0.5, 1.0]], "`t_eval` must be 1-dimensional."),
    ((0, 1), 0.5, "`t_eval` must be 1-dimensional."),
    ((0, 1), [0.0, 0.5, 1.5], "Values in `t_eval` are not within `t_span`."),
    ((0, 1), [-0.1, 0.5], "Values in `t_eval` are not within `t_span`."),
    ((1, 0), [1.0, 0.5, -0.5], "Values in `t_eval` are not within `t_span`."),
    ((0, 1), [0.0, 0.7, 0.5], "Values in `t_eval` are not properly sorted."),
    ((0, 1), [0.0, 0.5, 0.5], "Values in `t_eval` are not properly sorted."),
    ((0, 1), [1.0, 0.5, 0.0], "Values in `t_eval` are not properly sorted."),
    ((1, 0), [0.0, 0.5, 1.0], "Values in `t_eval` are not properly sorted."),
])
def test_t_eval_errors(method, t_span, t_eval, expected):
    assert scipy_error(ValueError, t_span=t_span, t_eval=t_eval) == expected
    with pytest.raises(ValueError, match=re.escape(expected)):
        solve(method, t_span=t_span, t_eval=t_eval)


# ---------------------------------------------------------------------------
# tolerances
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("atol", [-1e-6, [1e-6, -1e-6]])
def test_negative_atol(method, atol):
    msg = scipy_error(ValueError, atol=atol)
    assert msg == "`atol` must be positive."
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(method, atol=atol)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("atol", [[1e-6, 1e-6, 1e-6], [[1e-6, 1e-6]], [1e-6]])
def test_atol_wrong_shape(method, atol):
    msg = scipy_error(ValueError, atol=atol)
    assert msg == "`atol` has wrong shape."
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(method, atol=atol)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("rtol", [1e-16, 0.0, np.array([1e-3, 1e-20])])
def test_rtol_too_small_warns_then_solves(method, rtol):
    expected = ("At least one element of `rtol` is too small. "
                f"Setting `rtol = np.maximum(rtol, {100 * EPS})`.")
    with pytest.warns(UserWarning) as rec_scipy:
        scipy.integrate.solve_ivp(decay, (0, 1), [1.0, 2.0], rtol=rtol)
    assert expected in [str(w.message) for w in rec_scipy]
    with pytest.warns(UserWarning, match=re.escape(expected)):
        res = solve(method, rtol=rtol, atol=1e-12)
    assert res.status == 0 and res.success
    assert res.t[-1] == 1
    np.testing.assert_allclose(res.y[:, -1], [np.exp(-0.5), 2 * np.exp(-0.5)],
                               rtol=1e-11)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("kw", [{"rtol": np.nan}, {"rtol": np.inf},
                                {"rtol": [1e-3, np.nan]}, {"atol": np.nan},
                                {"atol": [1e-6, np.inf]}])
def test_tolerance_not_finite(method, kw):
    with pytest.raises(ValueError, match="finite"):
        solve(method, **kw)


# ---------------------------------------------------------------------------
# step options
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("max_step", [0, 0.0, -1.0, -np.inf])
def test_max_step_not_positive(method, max_step):
    msg = scipy_error(ValueError, max_step=max_step)
    assert msg == "`max_step` must be positive."
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(method, max_step=max_step)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("first_step, expected", [
    (0.0, "`first_step` must be positive."),
    (-0.1, "`first_step` must be positive."),
    (1.5, "`first_step` exceeds bounds."),
])
@pytest.mark.parametrize("t_span", [(0, 1), (1, 0)])
def test_first_step_errors(method, first_step, expected, t_span):
    assert scipy_error(ValueError, first_step=first_step,
                       t_span=t_span) == expected
    with pytest.raises(ValueError, match=re.escape(expected)):
        solve(method, first_step=first_step, t_span=t_span)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("max_steps", [0, -1, 2.5, True])
def test_max_steps_invalid(method, max_steps):
    with pytest.raises(ValueError, match="max_steps"):
        solve(method, max_steps=max_steps)


@pytest.mark.parametrize("method", NATIVE)
def test_max_steps_valid_forms(method):
    # an integer-valued float or numpy integer is accepted
    assert solve(method, max_steps=1000.0).status == 0
    assert solve(method, max_steps=np.int64(1000)).status == 0


# ---------------------------------------------------------------------------
# args, events, options
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE + ["Radau"])
@pytest.mark.parametrize("args", [5, 2.5, True])
def test_args_not_unpackable(method, args):
    msg = scipy_error(TypeError, args=args)
    assert msg == ("Supplied 'args' cannot be unpacked. Please supply `args` "
                   f"as a tuple (e.g. `args=({args},)`)")
    with pytest.raises(TypeError, match=re.escape(msg)):
        solve(method, args=args)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("terminal", [-1, 1.5, -2.0])
def test_bad_event_terminal(method, terminal):
    def ev(t, y):
        return y[0] - 0.5

    ev.terminal = terminal
    msg = scipy_error(ValueError, events=ev)
    assert msg == ("The `terminal` attribute of each event must be a boolean "
                   "or positive integer.")
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(method, events=ev)
    # also when it is one of several events
    ok = lambda t, y: y[1]  # noqa: E731
    with pytest.raises(ValueError, match=re.escape(msg)):
        solve(method, events=[ok, ev])


@pytest.mark.parametrize("method", NATIVE)
def test_event_terminal_false_and_zero_are_not_terminal(method):
    def ev(t, y):
        return y[0] - 0.7

    for terminal in (False, 0):
        ev.terminal = terminal
        res = solve(method, events=ev)
        assert res.status == 0
        assert res.t_events[0].size == 1


@pytest.mark.parametrize("method", NATIVE)
def test_unknown_option_warns(method):
    expected = ("The following arguments have no effect for a chosen solver: "
                "`foo`.")
    with pytest.warns(UserWarning) as rec_scipy:
        scipy.integrate.solve_ivp(decay, (0, 1), [1.0, 2.0], foo=1)
    assert expected in [str(w.message) for w in rec_scipy]
    with pytest.warns(UserWarning, match=re.escape(expected)):
        res = solve(method, foo=1)
    assert res.status == 0


@pytest.mark.parametrize("method", NATIVE)
def test_known_options_do_not_warn(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = solve(method, rtol=1e-6, atol=1e-9, first_step=1e-3,
                    max_step=0.5, max_steps=10_000, stiffness_check=False)
    assert res.status == 0


# ---------------------------------------------------------------------------
# fun misbehaving
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("out", [[1.0, 2.0, 3.0], [1.0], [[1.0, 2.0]],
                                 np.zeros((2, 2))])
def test_fun_wrong_shape(method, out):
    shape = np.shape(out)
    with pytest.raises(ValueError, match="shape") as info:
        solve(method, fun=lambda t, y: out)
    msg = str(info.value)
    assert "(2,)" in msg
    assert str(shape) in msg


@pytest.mark.parametrize("method", NATIVE)
def test_fun_wrong_shape_later(method):
    # the right shape at first, the wrong one after some steps
    def fun(t, y):
        return -y if t < 0.5 else np.zeros(3)

    with pytest.raises(ValueError, match=re.escape("(3,)")):
        solve(method, fun=fun)


@pytest.mark.parametrize("method", NATIVE)
def test_fun_returns_non_numbers(method):
    with pytest.raises((TypeError, ValueError)):
        solve(method, fun=lambda t, y: ["a", "b"])
    with pytest.raises((TypeError, ValueError)):
        solve(method, fun=lambda t, y: None)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fun_not_finite(method, bad):
    res = solve(method, fun=lambda t, y: np.full_like(y, bad))
    assert res.status == -1
    assert not res.success
    assert "non-finite" in res.message
    assert isinstance(res.nfev, int) and res.nfev >= 1


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("kw", [{}, {"dense_output": True},
                                {"t_eval": [0.0, 0.5, 1.0]}])
def test_fun_not_finite_complex_and_options(method, kw):
    res = solve(method, fun=lambda t, y: y * np.nan, y0=[1.0 + 1j], **kw)
    assert res.status == -1
    assert "non-finite" in res.message


@pytest.mark.parametrize("method", NATIVE)
def test_fun_not_finite_at_start_result_shapes(method):
    # scipy stores (t0, y0) before the first step when t_eval is None, so a
    # failure on the first step leaves t == [t0] and y of shape (n, 1); the
    # result must at least keep the (n, len(t)) layout of y
    res = solve(method, fun=lambda t, y: np.full_like(y, np.nan))
    assert res.status == -1
    assert res.y.ndim == 2
    assert res.y.shape == (2, res.t.size)
    assert res.t.size >= 1 and res.t[0] == 0.0
    np.testing.assert_array_equal(res.y[:, 0], [1.0, 2.0])


def nan_after_one(t, y):
    if t > 1:
        return np.full_like(y, np.nan)
    return -0.5 * y


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("kw", [{}, {"dense_output": True},
                                {"t_eval": np.linspace(0, 5, 11)}])
def test_fun_not_finite_after_t_1(method, kw):
    res = solve(method, fun=nan_after_one, t_span=(0, 5), **kw)
    assert res.status == -1
    assert not res.success
    assert "non-finite" in res.message
    assert res.t.size > 0
    assert res.t[-1] <= 1.0
    if "t_eval" in kw:
        assert res.t.size >= 2
        np.testing.assert_array_equal(res.t, kw["t_eval"][:res.t.size])
    else:
        assert res.t[-1] == pytest.approx(1.0, abs=1e-6)
        assert res.y.shape == (2, res.t.size)
        np.testing.assert_allclose(res.y[:, -1],
                                   np.array([1.0, 2.0]) * np.exp(-0.5 * res.t[-1]),
                                   rtol=1e-3)
    if kw.get("dense_output"):
        assert res.sol is not None
        assert res.sol.t_max <= 1.0
        assert res.sol.t_max == pytest.approx(1.0, abs=1e-6)


class RHSError(Exception):
    pass


def raising_rhs(t, y):
    if t > 0.3:
        raise RHSError("boom at t=%g" % t)
    return -y


def raising_rhs_at_once(t, y):
    raise RHSError("boom")


def raising_event(t, y):
    if t > 0.3:
        raise RHSError("event boom")
    return y[0] - 10.0


def _frame_names(excinfo):
    return [frame.name for frame in traceback.extract_tb(excinfo.tb)]


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("fun", [raising_rhs, raising_rhs_at_once])
@pytest.mark.parametrize("kw", [{}, {"dense_output": True},
                                {"t_eval": [0.0, 0.5, 1.0]},
                                {"vectorized": True}])
def test_fun_raises(method, fun, kw):
    with pytest.raises(RHSError, match="boom") as info:
        solve(method, fun=fun, **kw)
    assert fun.__name__ in _frame_names(info)


@pytest.mark.parametrize("method", NATIVE)
def test_fun_raises_with_args(method):
    def fun(t, y, a):
        raise KeyError(a)

    with pytest.raises(KeyError, match="the-key") as info:
        solve(method, fun=fun, args=("the-key",))
    assert "fun" in _frame_names(info)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("exc", [ZeroDivisionError, RuntimeError,
                                 FloatingPointError, StopIteration])
def test_fun_exception_type_preserved(method, exc):
    def fun(t, y):
        raise exc("x")

    with pytest.raises(exc):
        solve(method, fun=fun)


@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("terminal", [False, True])
def test_event_raises(method, terminal):
    raising_event.terminal = terminal
    try:
        with pytest.raises(RHSError, match="event boom") as info:
            solve(method, events=raising_event)
        assert "raising_event" in _frame_names(info)
        with pytest.raises(RHSError, match="event boom"):
            solve(method, events=[lambda t, y: y[0], raising_event],
                  dense_output=True)
    finally:
        del raising_event.terminal


@pytest.mark.parametrize("method", NATIVE)
def test_event_raises_at_start(method):
    def ev(t, y):
        raise ZeroDivisionError("ev")

    with pytest.raises(ZeroDivisionError) as info:
        solve(method, events=ev)
    assert "ev" in _frame_names(info)


@pytest.mark.parametrize("method", NATIVE)
def test_event_returns_non_number(method):
    with pytest.raises((TypeError, ValueError)):
        solve(method, events=lambda t, y: "x")


@pytest.mark.parametrize("method", NATIVE)
def test_solver_usable_after_errors(method):
    for _ in range(3):
        with pytest.raises(RHSError):
            solve(method, fun=raising_rhs)
    res = solve(method, rtol=1e-8, atol=1e-10)
    assert res.status == 0
    np.testing.assert_allclose(res.y[:, -1], [np.exp(-0.5), 2 * np.exp(-0.5)],
                               rtol=1e-6)


# ---------------------------------------------------------------------------
# limits: max_steps, stiffness
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
@pytest.mark.parametrize("kw", [{}, {"dense_output": True},
                                {"t_eval": np.linspace(0, 100, 11)}])
def test_max_steps_reached(method, kw):
    res = solve(method, fun=lambda t, y: [np.cos(t)], t_span=(0, 100),
                y0=[0.0], max_steps=5, max_step=1.0, **kw)
    assert res.status == -1
    assert not res.success
    assert "max_steps" in res.message
    if "t_eval" in kw:
        # only t_eval points reached by the 5 steps (t <= 5)
        np.testing.assert_array_equal(res.t, [0.0])
        assert res.y.shape == (1, 1)
    else:
        assert len(res.t) - 1 == 5
        assert 0 < res.t[-1] <= 5.0
        np.testing.assert_allclose(res.y[0], np.sin(res.t), atol=1e-2)
    if kw.get("dense_output"):
        assert res.sol.n_segments == 5
        assert res.sol.t_max <= 5.0


def test_max_steps_exact_count_suffices():
    # exactly N fixed steps are allowed with max_steps == N
    res = solve("RK45", t_span=(0, 1), first_step=0.125, max_step=0.125,
                max_steps=8)
    assert res.status == 0
    assert len(res.t) - 1 == 8
    res = solve("RK45", t_span=(0, 1), first_step=0.125, max_step=0.125,
                max_steps=7)
    assert res.status == -1 and "max_steps" in res.message


def stiff_scalar(t, y):
    return -1e6 * (y - np.cos(t))


#: Methods with Hairer's stiffness test (it needs a stage at t + h besides the
#: FSAL one; RK23 has none, so there ``stiffness_check`` has no effect).
STIFF_CHECKED = [m for m in NATIVE if TABLEAUS[m].stiffness_stage >= 0]


@pytest.mark.parametrize("method", STIFF_CHECKED)
def test_stiff_scalar_detected(method):
    start = time.perf_counter()
    res = solve(method, fun=stiff_scalar, t_span=(0, 10), y0=[0.0])
    assert time.perf_counter() - start < 30
    assert res.status == -1
    assert not res.success
    assert "stiff" in res.message
    assert res.t[-1] < 10


@pytest.mark.parametrize("method", STIFF_CHECKED)
def test_stiff_robertson_detected(method):
    prob = problems.get("rober")
    start = time.perf_counter()
    with np.errstate(all="ignore"):
        # (max_steps only bounds the time should detection ever regress)
        res = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0,
                                 method=method, args=(prob.p,),
                                 max_steps=200_000)
    assert time.perf_counter() - start < 30
    assert res.status == -1
    assert "stiff" in res.message
    assert res.t[-1] < prob.t_span[1]


@pytest.mark.parametrize("method", NATIVE)
def test_stiffness_check_off_ends_by_max_steps(method):
    prob = problems.get("rober")
    with np.errstate(all="ignore"):
        res = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0,
                                 method=method, args=(prob.p,),
                                 stiffness_check=False, max_steps=2000)
    assert res.status == -1
    assert "max_steps" in res.message
    assert len(res.t) - 1 == 2000


# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------

CTRL_C_CODE = textwrap.dedent("""
    import sys
    import numpy as np
    import diffsens

    first = []

    def fun(t, y):
        if not first:
            first.append(1)
            print("started", flush=True)
        return [y[1], -y[0]]

    diffsens.solve_ivp(fun, (0, 1e9), [1.0, 0.0], method={method!r},
                       rtol=1e-12, atol=1e-12, max_steps=10**12)
    print("finished", flush=True)
""")


@pytest.mark.parametrize("method", ["RK45", "Vern7"])
def test_ctrl_c_interrupts(method, tmp_path):
    _, err, returncode, elapsed = interrupt_child(CTRL_C_CODE.format(method=method),
                                                  cwd=tmp_path, delay=0.2, timeout=20)
    assert returncode != 0
    assert "KeyboardInterrupt" in err
    assert "finished" not in err
    assert elapsed < 5, elapsed


# ---------------------------------------------------------------------------
# reference leaks
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", NATIVE)
def test_no_reference_leak_on_errors(method):
    marker = object()

    def fun(t, y, m):
        if t > 0.1:
            raise RHSError("leak?")
        return -y

    def event(t, y, m):
        return y[0] - 10.0

    args = (marker,)

    def run():
        try:
            diffsens.solve_ivp(fun, (0, 1), [1.0, 2.0], method=method,
                               args=args, events=event, dense_output=True)
        except RHSError:
            pass

    run()
    gc.collect()
    before = (sys.getrefcount(fun), sys.getrefcount(event),
              sys.getrefcount(marker), sys.getrefcount(args))
    for _ in range(50):
        run()
    gc.collect()
    after = (sys.getrefcount(fun), sys.getrefcount(event),
             sys.getrefcount(marker), sys.getrefcount(args))
    assert after == before


@pytest.mark.parametrize("method", NATIVE)
def test_no_reference_leak_on_success(method):
    marker = object()

    def fun(t, y, m):
        return -y

    def event(t, y, m):
        return y[0] - 0.5

    event.terminal = True
    args = (marker,)

    def run():
        res = diffsens.solve_ivp(fun, (0, 5), [1.0, 2.0], method=method,
                                 args=args, events=event, dense_output=True,
                                 t_eval=[0.0, 0.5])
        assert res.status == 1
        res.sol(0.3)

    run()
    gc.collect()
    before = (sys.getrefcount(fun), sys.getrefcount(event),
              sys.getrefcount(marker), sys.getrefcount(args))
    for _ in range(50):
        run()
    gc.collect()
    after = (sys.getrefcount(fun), sys.getrefcount(event),
             sys.getrefcount(marker), sys.getrefcount(args))
    assert after == before


def test_no_memory_growth_on_errors():
    import tracemalloc

    def fun(t, y):
        if t > 0.1:
            raise RHSError("x")
        return -y

    def run(n):
        for _ in range(n):
            try:
                diffsens.solve_ivp(fun, (0, 1), np.ones(50), method="DOP853",
                                   dense_output=True)
            except RHSError:
                pass

    run(20)
    gc.collect()
    tracemalloc.start()
    try:
        run(20)
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        run(200)
        gc.collect()
        now, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 200 failed solves of a 50-dimensional problem: no per-call growth
    assert now - base < 100_000
