"""Observed convergence orders of the native methods through ``solve_ivp``.

Fixed steps are forced with ``first_step = max_step = h`` and tolerances so
loose (``rtol = atol = 1e10``) that every step is accepted; ``h`` is a power
of two and the span a multiple of it, so the grid is exact and the number of
steps is known.  The step sizes of each method are chosen coarse enough that
the errors stay well above round-off (>~1e-12) and fine enough to be in the
asymptotic regime; the observed order (least-squares slope of log(error)
against log(h)) must be within 0.2 of the theory:

* global error at the grid points: ``order``;
* dense output: the interpolant's local error inside the steps (at the
  midpoint and the quarter points), against the exact solution through the
  step's start ``(t_old, y_old)``, is O(h**(dense_order + 1)).

An adaptive work-precision check closes the file.
"""

import numpy as np
import pytest

import diffsens
from diffsens import problems
from diffsens._tableaus import TABLEAUS

NATIVE = list(TABLEAUS)
HUGE = 1e10
ORDER_TOL = 0.2


def rotation(t, y):
    return 1j * y


def rotation_exact(t):
    return np.exp(1j * np.asarray(t))[None, :]


def rotation_local(t_old, y_old, t):
    """Exact solution at t through (t_old, y_old)."""
    return y_old * np.exp(1j * (t - t_old))


def expsin(t, y):
    return y * np.cos(t)


def expsin_exact(t):
    return np.exp(np.sin(np.asarray(t)))[None, :]


def expsin_local(t_old, y_old, t):
    return y_old * np.exp(np.sin(t) - np.sin(t_old))


T_END = 64.0

#: Problem -> method -> exponents k of the step sizes h = 2**-k.
GLOBAL_STEPS = {
    "rotation": {"RK23": [3, 4, 5, 6], "RK45": [2, 3, 4, 5, 6],
                 "DOP853": [0, 1, 2], "Tsit5": [4, 5, 6],
                 "Vern7": [1, 2, 3]},
    # (DOP853's global error on exp(sin t) only reaches its asymptotic
    # regime below 1e-12, where round-off takes over: measured on the
    # rotation above and through its dense output below.)
    "expsin": {"RK23": [2, 3, 4, 5, 6], "RK45": [3, 4, 5, 6],
               "Tsit5": [4, 5, 6], "Vern7": [2, 3, 4]},
}
DENSE_STEPS = {
    "expsin": {"RK23": [2, 3, 4], "RK45": [2, 3, 4, 5],
               "DOP853": [1, 2, 3], "Tsit5": [1, 2, 3, 4],
               "Vern7": [1, 2, 3]},
}
#: Where in each step the interpolant is checked (the midpoint and two
#: more: the leading error term of some interpolants is small at the
#: midpoint alone, which delays the asymptotic regime into round-off).
THETAS = (0.25, 0.5, 0.75)

PROBLEMS = {
    "rotation": (rotation, rotation_exact, rotation_local, [1.0 + 0j]),
    "expsin": (expsin, expsin_exact, expsin_local, [1.0]),
}


def fixed_step_solve(method, problem, h, **kw):
    fun, _, _, y0 = PROBLEMS[problem]
    res = diffsens.solve_ivp(fun, (0.0, T_END), y0, method=method,
                             first_step=h, max_step=h, rtol=HUGE, atol=HUGE,
                             **kw)
    n_steps = int(T_END / h)
    assert res.status == 0, res.message
    # exactly fixed steps
    assert len(res.t) - 1 == n_steps
    assert np.all(np.diff(res.t) == h)
    assert res.t[-1] == T_END
    return res


def observed_order(hs, errors):
    hs, errors = np.asarray(hs), np.asarray(errors)
    assert np.all(np.isfinite(errors)) and np.all(errors > 0)
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


def _cases(table):
    return [(p, m) for p in table for m in table[p]]


@pytest.mark.parametrize("problem, method", _cases(GLOBAL_STEPS))
def test_global_order(problem, method):
    _, exact, _, _ = PROBLEMS[problem]
    hs, errors = [], []
    for k in GLOBAL_STEPS[problem][method]:
        h = 2.0 ** -k
        res = fixed_step_solve(method, problem, h)
        errors.append(np.max(np.abs(res.y - exact(res.t))))
        hs.append(h)
    assert min(errors) > 1e-13, errors      # no round-off in the fit
    p = observed_order(hs, errors)
    assert abs(p - TABLEAUS[method].order) < ORDER_TOL, (p, errors)
    # errors decrease from each h to the next
    assert np.all(np.diff(errors) < 0), errors


@pytest.mark.parametrize("problem, method", _cases(DENSE_STEPS))
def test_dense_output_order(problem, method):
    _, _, local, _ = PROBLEMS[problem]
    hs, errors = [], []
    for k in DENSE_STEPS[problem][method]:
        h = 2.0 ** -k
        res = fixed_step_solve(method, problem, h, dense_output=True)
        assert res.sol.n_segments == len(res.t) - 1
        t_old, y_old = res.t[:-1], res.y[:, :-1]
        err = 0.0
        for theta in THETAS:
            tm = t_old + theta * h
            err = max(err, np.max(np.abs(res.sol(tm) - local(t_old, y_old, tm))))
        errors.append(err)
        hs.append(h)
    assert min(errors) > 1e-14, errors
    p = observed_order(hs, errors)
    assert abs(p - (TABLEAUS[method].dense_order + 1)) < ORDER_TOL, (p, errors)


@pytest.mark.parametrize("method", NATIVE)
def test_dense_output_matches_grid_with_fixed_steps(method):
    # the interpolant reproduces the step end points it was built on
    res = fixed_step_solve(method, "expsin", 0.25, dense_output=True)
    np.testing.assert_allclose(res.sol(res.t), res.y, rtol=1e-12)
    # and between them it is as accurate as the grid values (global error)
    mid = 0.5 * (res.t[1:] + res.t[:-1])
    err_mid = np.max(np.abs(res.sol(mid) - expsin_exact(mid)))
    err_grid = np.max(np.abs(res.y - expsin_exact(res.t)))
    assert err_mid < 20 * err_grid + 1e-13


@pytest.mark.parametrize("method", NATIVE)
def test_fixed_steps_backward(method):
    # the same forcing works for tf < t0 with an exact grid
    h = 0.125
    res = diffsens.solve_ivp(expsin, (8.0, 0.0), expsin_exact([8.0])[:, 0],
                             method=method, first_step=h, max_step=h,
                             rtol=HUGE, atol=HUGE)
    assert res.status == 0
    assert len(res.t) - 1 == 64
    assert np.all(np.diff(res.t) == -h)
    fwd = diffsens.solve_ivp(expsin, (0.0, 8.0), [1.0], method=method,
                             first_step=h, max_step=h, rtol=HUGE, atol=HUGE)
    # errors are of the same size in both directions
    err_b = np.max(np.abs(res.y - expsin_exact(res.t)))
    err_f = np.max(np.abs(fwd.y - expsin_exact(fwd.t)))
    assert err_b < 100 * err_f + 1e-12 and err_f < 100 * err_b + 1e-12


# ---------------------------------------------------------------------------
# adaptive work-precision
# ---------------------------------------------------------------------------

RTOLS = [1e-4, 1e-6, 1e-8, 1e-10]


@pytest.mark.parametrize("method", NATIVE)
def test_work_precision_lotka_volterra(method):
    prob = problems.get("lotka_volterra")
    errors, nfevs = [], []
    for rtol in RTOLS:
        res = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0,
                                 method=method, args=(prob.p,), rtol=rtol,
                                 atol=1e-2 * rtol)
        assert res.status == 0
        err = np.max(np.abs(res.y[:, -1] - prob.y_ref) / np.abs(prob.y_ref))
        errors.append(err)
        nfevs.append(res.nfev)
        # within a factor 100 of the requested tolerance
        assert err < 100 * rtol, (rtol, err)
    errors = np.array(errors)
    # monotone-ish: never more than a small bump, and 4+ decades overall
    assert np.all(errors[1:] < 3 * errors[:-1]), errors
    assert errors[-1] < 1e-4 * errors[0], errors
    # tighter tolerances cost more
    assert np.all(np.diff(nfevs) > 0), nfevs


@pytest.mark.parametrize("method", NATIVE)
def test_work_precision_expsin_dense(method):
    # the error at all steps and of the dense output between them
    errors = []
    ts = np.linspace(0, 20, 1001)
    for rtol in RTOLS:
        res = diffsens.solve_ivp(expsin, (0, 20), [1.0], method=method,
                                 rtol=rtol, atol=1e-2 * rtol,
                                 dense_output=True)
        assert res.status == 0
        exact = expsin_exact(res.t)
        err = np.max(np.abs(res.y - exact) / exact)
        err_dense = np.max(np.abs(res.sol(ts) - expsin_exact(ts))
                           / expsin_exact(ts))
        assert err < 100 * rtol, (rtol, err)
        assert err_dense < 100 * rtol, (rtol, err_dense)
        errors.append(err)
    errors = np.array(errors)
    assert np.all(errors[1:] < 3 * errors[:-1]), errors
    assert errors[-1] < 1e-4 * errors[0], errors
