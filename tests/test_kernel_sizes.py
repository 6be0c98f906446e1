"""The C kernels are compiled separately for each tiny and small state count
(``_kernels/tiny.h``); every instance must compute what the generic one does.

k identical, uncoupled copies of a system have the error norm of one copy
(an RMS over identical components), so a solve of the copies takes the
steps of a solve of one -- up to round-off: the norm's sum runs over more
terms, and the step sizes drift apart by a few ulps -- and each copy must
equal that solve to round-off.  (A wrong instance errs by far more.)  k runs
over sizes that cross every instance: tiny (n <= 4), small (n <= 16) and
generic, for the plain step and for the step with sensitivity lanes.
"""
import numpy as np
import pytest

import diffsens
from diffsens import problems

LV = problems.get("lotka_volterra")
ROBER = problems.get("rober_1e5")


def copies_of(fun, n, k):
    """fun(t, y, p) for k uncoupled copies of an n-state system."""
    def stacked(t, y, p):
        return np.concatenate([fun(t, y[i * n:(i + 1) * n], p) for i in range(k)])
    return stacked


@pytest.mark.parametrize("method", ["RK45", "Tsit5", "DOP853", "Vern7"])
@pytest.mark.parametrize("traced", [True, False])
def test_explicit_step_same_for_every_size(method, traced):
    kwargs = dict(method=method, t_eval=LV.t_eval, rtol=1e-6, atol=1e-8)
    one = diffsens.solve_ivp(LV.fun, LV.t_span, LV.y0, args=(LV.p,), **kwargs)
    for k in (2, 3, 5, 8, 9):   # n = 4, 6, 10, 16, 18
        fun = copies_of(LV.fun, 2, k)
        y0 = np.tile(LV.y0, k)
        if traced:
            fun = diffsens.trace(fun, y0, LV.p)
        res = diffsens.solve_ivp(fun, LV.t_span, y0, args=(LV.p,), **kwargs)
        assert res.nfev == one.nfev, k
        np.testing.assert_array_equal(res.t, one.t)
        for i in range(k):
            np.testing.assert_allclose(res.y[2 * i:2 * i + 2], one.y, rtol=1e-10,
                                       err_msg=f"k={k}")


def test_dual_sensitivities_same_for_every_size():
    """The augmented state is n (1 + m) long: 10 for one copy, 20 for two."""
    kwargs = dict(method="Tsit5", t_eval=LV.t_eval, rtol=1e-6, atol=1e-8)
    one = diffsens.solve_ivp_sens(diffsens.trace(LV.fun, LV.y0, LV.p), LV.t_span, LV.y0,
                                  LV.p, **kwargs)
    for k in (2, 3):
        y0 = np.tile(LV.y0, k)
        fun = diffsens.trace(copies_of(LV.fun, 2, k), y0, LV.p)
        res = diffsens.solve_ivp_sens(fun, LV.t_span, y0, LV.p, **kwargs)
        np.testing.assert_array_equal(res.t, one.t)
        assert res.nfev == one.nfev, k
        for i in range(k):
            np.testing.assert_allclose(res.sens[2 * i:2 * i + 2], one.sens, rtol=1e-9,
                                       atol=1e-12 * np.abs(one.sens).max(), err_msg=f"k={k}")


@pytest.mark.parametrize("sens", [None, "continuous"])
def test_rosenbrock_step_same_for_every_size(sens):
    """ROBER copies through Rodas5P: n = 3 (tiny) and 6, 15, 18; with three
    rate sensitivities the augmented state is 12 (small) or 24 (generic)."""
    kwargs = dict(method="Rodas5P", t_eval=ROBER.t_eval, rtol=1e-6, atol=1e-10)

    def solve(fun, y0):
        fun = diffsens.trace(fun, y0, ROBER.p)
        if sens is None:
            return diffsens.solve_ivp(fun, ROBER.t_span, y0, args=(ROBER.p,), **kwargs)
        return diffsens.solve_ivp_sens(fun, ROBER.t_span, y0, ROBER.p, sens=sens, **kwargs)

    one = solve(ROBER.fun, ROBER.y0)
    for k in ((2, 5, 6) if sens is None else (2,)):
        res = solve(copies_of(ROBER.fun, 3, k), np.tile(ROBER.y0, k))
        np.testing.assert_array_equal(res.t, one.t)
        for i in range(k):
            got, want = res.y[3 * i:3 * i + 3], one.y
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-14, err_msg=f"k={k}")
            if sens is not None:
                np.testing.assert_allclose(res.sens[3 * i:3 * i + 3], one.sens, rtol=1e-7,
                                           atol=1e-12 * np.abs(one.sens).max(),
                                           err_msg=f"k={k}")
