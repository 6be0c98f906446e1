"""SUNDIALS' CVODE and IDA through scikit-sundae: ``diffsens._sundials``.

Accuracy against reference solutions (ROBER, HIRES) and scipy's BDF, the
Jacobian option, scipy-style events and dense output, IDA on Robertson's DAE
(with consistent initialization of the algebraic component), and the error
paths: SUNDIALS failures become ``status=-1``, user exceptions propagate,
bad input raises with diffsens's messages.
"""
import warnings

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.sparse

from diffsens import OdeResult, OdeSolution, problems
from diffsens._sundials import SUNDIALS_METHODS, solve_sundials

ROBER = problems.get("rober")
ROBER_1E5 = problems.get("rober_1e5")
HIRES = problems.get("hires")


def oscillator(t, y):
    return [y[1], -y[0]]


def decay(t, y):
    return -0.5 * y


def rober_residual(t, y, yp, p):
    """Robertson as a DAE: two rate equations and mass conservation."""
    k1, k2, k3 = p
    return [yp[0] + k1 * y[0] - k3 * y[1] * y[2],
            yp[1] - k1 * y[0] + k3 * y[1] * y[2] + k2 * y[1] ** 2,
            y[0] + y[1] + y[2] - 1.0]


def rober_yp0(p):
    return [-p[0], p[0], 0.0]


# --------------------------------------------------------------------------
# CVODE accuracy
# --------------------------------------------------------------------------

def test_methods_listed():
    assert SUNDIALS_METHODS == ("CVODE", "IDA")


def test_public_solve_ivp_dispatches_to_sundials():
    """diffsens.solve_ivp(method='CVODE' / 'IDA') is the same solve as
    solve_sundials, results in the (n, nt) layout."""
    import diffsens
    prob = ROBER_1E5
    kw = dict(t_eval=prob.t_eval, args=(prob.p,), rtol=1e-8, atol=1e-12)
    res = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0, method="CVODE", **kw)
    ref = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, **kw)
    assert isinstance(res, OdeResult) and res.status == 0 and res.y.shape == (3, 50)
    np.testing.assert_array_equal(res.y, ref.y)
    dae = diffsens.solve_ivp(rober_residual, prob.t_span, prob.y0, method="IDA",
                             yp0=rober_yp0(prob.p), algebraic=[2], **kw)
    assert dae.status == 0 and dae.y.shape == (3, 50)
    np.testing.assert_allclose(dae.y, ref.y, rtol=1e-5, atol=1e-11)
    short = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0, method="CVODE",
                               max_steps=5, **kw)
    assert short.status == -1 and not short.success and short.message


def test_rober_1e5_t_eval_matches_scipy_bdf():
    prob = ROBER_1E5
    res = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, t_eval=prob.t_eval,
                         args=(prob.p,), rtol=1e-8, atol=1e-12)
    assert isinstance(res, OdeResult)
    assert res.status == 0 and res.success
    assert res.message == "The solver successfully reached the end of the integration interval."
    assert res.y.shape == (3, 50)
    np.testing.assert_array_equal(res.t, prob.t_eval)
    np.testing.assert_allclose(res.y.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    ref = scipy.integrate.solve_ivp(prob.fun, prob.t_span, prob.y0, method="BDF",
                                    t_eval=prob.t_eval, args=(prob.p,), jac=prob.jac,
                                    rtol=1e-10, atol=1e-14)
    assert ref.status == 0
    # mixed error: relative to the size of each component plus a small floor
    assert np.all(np.abs(res.y - ref.y) <= 1e-5 * (1e-6 + np.abs(ref.y)))
    assert res.sol is None and res.t_events is None and res.y_events is None
    for field in ("nfev", "njev", "nlu"):
        assert isinstance(res[field], int)
    assert res.nfev > 0 and res.njev > 0 and res.nlu == res.njev


def test_rober_to_1e11_against_reference():
    prob = ROBER
    res = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, args=(prob.p,),
                         rtol=1e-8, atol=1e-14)
    assert res.status == 0
    assert res.t[0] == 0.0 and res.t[-1] == prob.t_span[1]
    assert np.all(np.diff(res.t) > 0)        # every internal step, in order
    assert res.y.shape == (3, res.t.size) and res.t.size > 100
    y_ref = np.asarray(prob.y_ref)
    err = np.abs(res.y[:, -1] - y_ref)
    assert np.max(err / (1.0 + np.abs(y_ref))) <= 1e-6
    assert np.all(err <= 1e-6 * (1e-6 + np.abs(y_ref)))   # y1 ~ 2e-8 to 6 digits


def test_hires_against_reference_and_scipy():
    prob = HIRES
    res = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, args=(prob.p,),
                         rtol=1e-10, atol=1e-12)
    assert res.status == 0
    y_ref = np.asarray(prob.y_ref)
    assert np.all(np.abs(res.y[:, -1] - y_ref) <= 1e-6 * (1e-3 + np.abs(y_ref)))
    ref = scipy.integrate.solve_ivp(prob.fun, prob.t_span, prob.y0, method="BDF",
                                    args=(prob.p,), jac=prob.jac, rtol=1e-10, atol=1e-12)
    assert np.all(np.abs(res.y[:, -1] - ref.y[:, -1]) <= 1e-6 * (1e-3 + np.abs(y_ref)))


def test_analytic_jacobian_is_used_and_agrees():
    prob = ROBER_1E5
    calls = []

    def jac(t, y, p):
        calls.append(t)
        return prob.jac(t, y, p)

    fun_calls = []

    def fun(t, y, p):
        fun_calls.append(t)
        return prob.fun(t, y, p)

    kw = dict(t_eval=prob.t_eval, args=(prob.p,), rtol=1e-8, atol=1e-12)
    fd = solve_sundials("CVODE", fun, prob.t_span, prob.y0, **kw)
    # nfev counts every call of fun, the difference-quotient Jacobian's included
    assert fd.nfev == len(fun_calls)
    an = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, jac=jac, **kw)
    assert an.status == 0
    assert len(calls) == an.njev > 0
    assert np.all(np.abs(an.y - fd.y) <= 1e-5 * (1e-6 + np.abs(fd.y)))


@pytest.mark.parametrize("kind", ["array", "sparse"])
def test_constant_and_sparse_jacobian(kind):
    A = np.array([[-1.0, 0.5], [0.0, -100.0]])
    jac = A if kind == "array" else (lambda t, y: scipy.sparse.csr_matrix(A))
    res = solve_sundials("CVODE", lambda t, y: A @ y, (0, 2), [1.0, 1.0], jac=jac,
                         t_eval=[2.0], rtol=1e-10, atol=1e-12)
    exact = scipy.linalg.expm(2 * A) @ [1.0, 1.0]
    np.testing.assert_allclose(res.y[:, 0], exact, rtol=1e-7, atol=1e-12)


def test_max_step_first_step_and_vectorized():
    res = solve_sundials("CVODE", decay, (0, 10), [1.0, 2.0], max_step=0.25,
                         vectorized=True, rtol=1e-8, atol=1e-10)
    assert res.status == 0
    assert np.max(np.diff(res.t)) <= 0.25 * (1 + 1e-12)
    np.testing.assert_allclose(res.y[:, -1], np.exp(-5) * np.array([1.0, 2.0]),
                               rtol=1e-6)
    res = solve_sundials("CVODE", decay, (0, 10), [1.0, 2.0], first_step=1e-3)
    assert res.t[1] == pytest.approx(1e-3, rel=1e-12)


def test_backward_integration_and_zero_span():
    y10 = [np.cos(10.0), -np.sin(10.0)]
    res = solve_sundials("CVODE", oscillator, (10, 0), y10, rtol=1e-10, atol=1e-12)
    assert res.status == 0 and np.all(np.diff(res.t) < 0)
    np.testing.assert_allclose(res.y[:, -1], [1.0, 0.0], atol=1e-7)

    res = solve_sundials("CVODE", decay, (1, 1), [3.0], t_eval=[1.0], dense_output=True)
    assert res.status == 0 and res.nfev == 0
    np.testing.assert_array_equal(res.y, [[3.0]])
    assert res.sol(1.0)[0] == 3.0


# --------------------------------------------------------------------------
# Events and dense output
# --------------------------------------------------------------------------

def test_events_match_exact_roots():
    def crossing(t, y):
        return y[0]

    def half_up(t, y):
        return y[0] - 0.5
    half_up.direction = 1

    res = solve_sundials("CVODE", oscillator, (0, 20), [1.0, 0.0],
                         events=[crossing, half_up], rtol=1e-10, atol=1e-12)
    assert res.status == 0 and res.t[-1] == 20
    zeros = np.pi / 2 + np.pi * np.arange(6)
    np.testing.assert_allclose(res.t_events[0], zeros, rtol=0, atol=1e-8)
    assert res.y_events[0].shape == (6, 2)
    np.testing.assert_allclose(res.y_events[0][:, 0], 0.0, atol=1e-8)
    np.testing.assert_allclose(np.abs(res.y_events[0][:, 1]), 1.0, atol=1e-8)
    # cos t = 1/2 on the way up: t = 5 pi / 3 + 2 k pi only
    np.testing.assert_allclose(res.t_events[1], 5 * np.pi / 3 + 2 * np.pi * np.arange(3),
                               rtol=0, atol=1e-8)
    # same structure and roots as scipy
    ref = scipy.integrate.solve_ivp(oscillator, (0, 20), [1.0, 0.0],
                                    events=[crossing, half_up], rtol=1e-10, atol=1e-12)
    for ours, theirs in zip(res.t_events, ref.t_events):
        np.testing.assert_allclose(ours, theirs, atol=1e-7)


@pytest.mark.parametrize("with_t_eval", [False, True])
def test_terminal_event_count(with_t_eval):
    def crossing(t, y):
        return y[0]
    crossing.terminal = 3

    def never(t, y):
        return 2.0 + y[0]
    never.terminal = True

    t_eval = np.linspace(0, 20, 201) if with_t_eval else None
    res = solve_sundials("CVODE", oscillator, (0, 20), [1.0, 0.0],
                         events=[crossing, never], t_eval=t_eval, dense_output=True,
                         rtol=1e-10, atol=1e-12)
    root = 5 * np.pi / 2
    assert res.status == 1 and res.success
    assert res.message == "A termination event occurred."
    assert len(res.t_events[0]) == 3
    assert res.t_events[0][-1] == pytest.approx(root, abs=1e-8)
    assert res.t_events[1].size == 0 and res.y_events[1].size == 0
    assert res.sol.t_max == res.t_events[0][-1]
    if with_t_eval:
        np.testing.assert_array_equal(res.t, t_eval[t_eval <= res.t_events[0][-1]])
    else:
        assert res.t[-1] == res.t_events[0][-1]
        np.testing.assert_allclose(res.y[:, -1], [0.0, -1.0], atol=1e-8)


def test_dense_output_accuracy():
    t_eval = np.linspace(0, 20, 401)
    res = solve_sundials("CVODE", oscillator, (0, 20), [1.0, 0.0], t_eval=t_eval,
                         dense_output=True, rtol=1e-10, atol=1e-12)
    sol = res.sol
    assert isinstance(sol, OdeSolution)
    assert sol.t_min == 0 and sol.t_max == 20
    fine = np.linspace(0, 20, 5001)
    np.testing.assert_allclose(sol(fine)[0], np.cos(fine), rtol=0, atol=1e-7)
    np.testing.assert_allclose(sol(fine)[1], -np.sin(fine), rtol=0, atol=1e-7)
    # the dense output reproduces SUNDIALS' own interpolant (used for t_eval)
    np.testing.assert_allclose(sol(t_eval), res.y, rtol=0, atol=1e-12)
    # continuous across steps
    inner = sol.ts[1:-1]
    left = np.array([seg(t) for seg, t in zip(sol.interpolants[:-1], inner)])
    right = np.array([seg(t) for seg, t in zip(sol.interpolants[1:], inner)])
    np.testing.assert_allclose(left, right, rtol=0, atol=1e-12)
    assert sol(3.0).shape == (2,)


def test_dense_output_stiff():
    prob = ROBER_1E5
    res = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, args=(prob.p,),
                         dense_output=True, rtol=1e-8, atol=1e-12)
    at = res.sol(prob.t_eval)
    ref = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, args=(prob.p,),
                         t_eval=prob.t_eval, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(at, ref.y, rtol=1e-9, atol=1e-15)


# --------------------------------------------------------------------------
# IDA
# --------------------------------------------------------------------------

def test_ida_robertson_dae_matches_ode():
    prob = ROBER_1E5
    kw = dict(t_eval=prob.t_eval, args=(prob.p,), rtol=1e-8, atol=1e-12)
    dae = solve_sundials("IDA", rober_residual, prob.t_span, prob.y0,
                         yp0=rober_yp0(prob.p), algebraic=[2], **kw)
    ode = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, **kw)
    assert dae.status == 0 and dae.y.shape == (3, 50)
    np.testing.assert_allclose(dae.y.sum(axis=0), 1.0, rtol=0, atol=1e-8)
    assert np.all(np.abs(dae.y - ode.y) <= 1e-6 * (1e-3 + np.abs(ode.y)))
    assert dae.nfev > 0 and dae.njev > 0


def test_ida_inconsistent_initial_values_are_fixed():
    prob = ROBER_1E5
    y0_bad = [1.0, 0.0, 0.3]          # violates y1 + y2 + y3 = 1
    ref = solve_sundials("IDA", rober_residual, prob.t_span, prob.y0, args=(prob.p,),
                         yp0=rober_yp0(prob.p), algebraic=[2], t_eval=prob.t_eval,
                         rtol=1e-8, atol=1e-12)
    for algebraic in ([2], [False, False, True]):
        res = solve_sundials("IDA", rober_residual, (0, 1e5), y0_bad, args=(prob.p,),
                             yp0=[0.0, 0.0, 0.0], algebraic=algebraic,
                             rtol=1e-8, atol=1e-12, dense_output=True)
        assert res.status == 0
        # the algebraic component is corrected, the differential ones kept
        np.testing.assert_allclose(res.y[:, 0], [1.0, 0.0, 0.0], atol=1e-12)
        np.testing.assert_allclose(res.sol(prob.t_eval), ref.y, rtol=1e-5, atol=1e-11)
    # without the initial-condition calculation IDA cannot start: status -1
    bad = solve_sundials("IDA", rober_residual, (0, 1e5), y0_bad, args=(prob.p,),
                         yp0=[0.0, 0.0, 0.0], rtol=1e-8, atol=1e-12)
    assert bad.status == -1 and not bad.success
    assert "SUNDIALS" in bad.message


def test_ida_without_yp0_and_y0_correction():
    # yp0 omitted: computed by the initial-condition calculation
    res = solve_sundials("IDA", lambda t, y, yp: yp + 0.5 * y, (0, 2), [1.0, 2.0],
                         rtol=1e-10, atol=1e-12)
    assert res.status == 0
    np.testing.assert_allclose(res.y[:, -1], np.exp(-1.0) * np.array([1.0, 2.0]),
                               rtol=1e-7)
    # calc_initcond='y0': y is computed from the given yp0
    res = solve_sundials("IDA", lambda t, y, yp: yp + 0.5 * y, (0, 2), [0.0, 0.0],
                         yp0=[-0.5, -1.0], calc_initcond="y0", t_eval=[0.0, 2.0],
                         rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.y[:, 0], [1.0, 2.0], rtol=1e-10)


def test_ida_jacobian_and_events():
    prob = ROBER_1E5
    k1, k2, k3 = prob.p

    def jac(t, y, yp, cj, p):
        dF_dy = np.array([[k1, -k3 * y[2], -k3 * y[1]],
                          [-k1, k3 * y[2] + 2 * k2 * y[1], k3 * y[1]],
                          [1.0, 1.0, 1.0]])
        return dF_dy + cj * np.diag([1.0, 1.0, 0.0])

    def half(t, y, yp, p):
        return y[0] - 0.5
    half.terminal = True

    kw = dict(args=(prob.p,), yp0=rober_yp0(prob.p), algebraic=[2], rtol=1e-8,
              atol=1e-12)
    res = solve_sundials("IDA", rober_residual, prob.t_span, prob.y0, jac=jac,
                         events=half, **kw)
    ode = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, args=(prob.p,),
                         events=lambda t, y, p: y[0] - 0.5, rtol=1e-8, atol=1e-12)
    assert res.status == 1 and res.njev > 0
    assert res.t[-1] == res.t_events[0][0]
    assert res.t_events[0][0] == pytest.approx(ode.t_events[0][0], rel=1e-6)
    assert res.y[0, -1] == pytest.approx(0.5, abs=1e-10)


# --------------------------------------------------------------------------
# Failures, exceptions, bad input
# --------------------------------------------------------------------------

def test_max_steps_failure():
    prob = ROBER
    res = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, args=(prob.p,),
                         max_steps=10, dense_output=True)
    assert res.status == -1 and not res.success
    assert "max_steps=10" in res.message
    assert res.t.size == 11 and res.y.shape == (3, 11)
    assert res.sol.t_max == res.t[-1]


def test_sundials_failure_is_status_minus_one(capsys):
    prob = ROBER
    res = solve_sundials("CVODE", prob.fun, prob.t_span, prob.y0, args=(prob.p,),
                         first_step=1.0, min_step=1.0)
    assert res.status == -1 and not res.success
    assert res.message.startswith("Convergence tests failed")
    assert "SUNDIALS" in res.message and "hmin" in res.message
    # scikit-sundae's printed report went into the message, not to stdout
    assert "Error" not in capsys.readouterr().out


def test_stalled_steps_fail_with_message():
    def jump(t, y):
        return -y if t <= 0.5 else np.full_like(y, np.nan)
    res = solve_sundials("CVODE", jump, (0, 1), [1.0])
    assert res.status == -1
    assert "non-finite" in res.message and res.t[-1] <= 0.5


def test_ida_initial_condition_failure():
    def impossible(t, y, yp):
        return [yp[0] + y[0], y[1] ** 2 + 1.0]
    res = solve_sundials("IDA", impossible, (0, 1), [1.0, 0.0], algebraic=[1])
    assert res.status == -1 and "IDACalcIC" in res.message
    assert res.t.size == 0


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("where", ["fun", "jac", "event", "ida"])
def test_user_exceptions_propagate(where):
    def raising(t, *rest):
        if t > 0.1:
            raise Boom(where)
        return -rest[0] if where != "ida" else rest[1] + rest[0]

    def event(t, y):
        return raising(t, y)[0] - 10.0

    with pytest.raises(Boom, match=where):
        if where == "fun":
            solve_sundials("CVODE", raising, (0, 1), [1.0])
        elif where == "jac":
            solve_sundials("CVODE", decay, (0, 1), [1.0],
                           jac=lambda t, y: raising(t + 1.0, y))
        elif where == "event":
            solve_sundials("CVODE", decay, (0, 1), [1.0], events=event)
        else:
            solve_sundials("IDA", raising, (0, 1), [1.0], yp0=[-1.0])


def test_user_output_passes_through(capsys):
    def chatty(t, y):
        if not chatty.said:
            print("hello from fun")
            chatty.said = True
        return -y
    chatty.said = False
    solve_sundials("CVODE", chatty, (0, 1), [1.0])
    assert capsys.readouterr().out == "hello from fun\n"


@pytest.mark.parametrize("options, message", [
    (dict(atol=-1.0), "`atol` must be positive."),
    (dict(atol=[1e-6, 1e-6, 1e-6]), "`atol` has wrong shape."),
    (dict(rtol=[1e-3, 1e-3, 1e-3]), "`rtol` has wrong shape."),
    (dict(rtol=np.nan), "`rtol` and `atol` must be finite."),
    (dict(rtol=[1e-3, 1e-4]), "single relative tolerance"),
    (dict(max_step=0.0), "`max_step` must be positive."),
    (dict(first_step=5.0), "`first_step` exceeds bounds."),
    (dict(max_steps=0), "`max_steps` must be a positive integer"),
    (dict(max_order=6), "`max_order` must be an integer from 1 to 5"),
])
def test_bad_options_raise(options, message):
    with pytest.raises(ValueError, match=message.replace("`", ".").replace("(", ".")):
        solve_sundials("CVODE", decay, (0, 1), [1.0, 2.0], **options)


def test_small_rtol_warns_and_unknown_options_warn():
    with pytest.warns(UserWarning, match="At least one element of `rtol` is too small"):
        res = solve_sundials("CVODE", decay, (0, 1), [1.0], rtol=1e-20)
    assert res.status == 0
    with pytest.warns(UserWarning) as record:
        solve_sundials("CVODE", decay, (0, 1), [1.0], foo=1, yp0=[0.0])
    assert [str(w.message) for w in record] == [
        "The following arguments have no effect for a chosen solver: `foo`, `yp0`."]
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve_sundials("IDA", lambda t, y, yp: yp + y, (0, 1), [1.0], yp0=[-1.0],
                       algebraic=[], calc_init_dt=0.1)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="`method` must be one of"):
        solve_sundials("CVODES", decay, (0, 1), [1.0])
    with pytest.raises(ValueError, match="must be real"):
        solve_sundials("CVODE", decay, (0, 1), [1.0 + 1j])
    with pytest.raises(ValueError, match="`y0` must be 1-dimensional."):
        solve_sundials("CVODE", decay, (0, 1), [[1.0]])
    with pytest.raises(ValueError, match="must be finite"):
        solve_sundials("CVODE", decay, (0, 1), [np.inf])
    with pytest.raises(ValueError, match="`t_span` must be finite"):
        solve_sundials("CVODE", decay, (0, np.inf), [1.0])
    with pytest.raises(ValueError, match="Values in `t_eval` are not within `t_span`."):
        solve_sundials("CVODE", decay, (0, 1), [1.0], t_eval=[2.0])
    with pytest.raises(TypeError, match="`events.0.` must be callable"):
        solve_sundials("CVODE", decay, (0, 1), [1.0], events=[1.0])
    with pytest.raises(ValueError, match="shape \\(1,\\), got shape \\(2,\\)"):
        solve_sundials("CVODE", lambda t, y: [1.0, 2.0], (0, 1), [1.0])
    with pytest.raises(ValueError, match="`jac` is expected to have shape"):
        solve_sundials("CVODE", decay, (0, 1), [1.0], jac=np.eye(2))
    with pytest.raises(ValueError, match="`yp0` must have the shape of `y0`"):
        solve_sundials("IDA", rober_residual, (0, 1), [1.0, 0, 0], yp0=[0.0])
    with pytest.raises(ValueError, match="`algebraic` indices"):
        solve_sundials("IDA", rober_residual, (0, 1), [1.0, 0, 0], algebraic=[3])
    with pytest.raises(ValueError, match="`calc_initcond` must be"):
        solve_sundials("IDA", rober_residual, (0, 1), [1.0, 0, 0], calc_initcond="yes")
    with pytest.raises(TypeError, match="`jac` must be callable"):
        solve_sundials("IDA", rober_residual, (0, 1), [1.0, 0, 0], jac=np.eye(3))
    with pytest.raises(TypeError, match="Supplied 'args' cannot be unpacked"):
        solve_sundials("CVODE", decay, (0, 1), [1.0], args=1.0)
