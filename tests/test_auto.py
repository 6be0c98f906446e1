"""method='auto': Tsit5 while the problem is non-stiff, Rodas5P while it is stiff."""
import numpy as np
import pytest
import scipy.integrate

import diffsens
from diffsens import problems


def test_nonstiff_problem_stays_explicit():
    lv = problems.get("lotka_volterra")
    res = diffsens.solve_ivp(lv.fun, lv.t_span, lv.y0, method="auto", args=(lv.p,),
                             t_eval=lv.t_eval, rtol=1e-8, atol=1e-10)
    ref = diffsens.solve_ivp(lv.fun, lv.t_span, lv.y0, method="Tsit5", args=(lv.p,),
                             t_eval=lv.t_eval, rtol=1e-8, atol=1e-10)
    assert res.method_segments == [("Tsit5", 0.0, 10.0)]
    np.testing.assert_array_equal(res.y, ref.y)


@pytest.mark.parametrize("traced", [False, True])
def test_rober_switches_and_stays_accurate(traced):
    prob = problems.get("rober")
    fun = diffsens.trace(prob.fun, prob.y0, prob.p) if traced else prob.fun
    res = diffsens.solve_ivp(fun, prob.t_span, prob.y0, method="auto", args=(prob.p,),
                             rtol=1e-8, atol=1e-12, dense_output=True)
    assert res.status == 0
    (m1, a1, b1), (m2, a2, b2) = res.method_segments
    assert (m1, m2) == ("Tsit5", "Rodas5P")
    assert a1 == 0.0 and b1 == a2 and b2 == prob.t_span[1] and 0 < b1 < 1e3
    digits = -np.log10(np.max(np.abs(res.y[:, -1] - prob.y_ref) / (1 + np.abs(prob.y_ref))))
    assert digits > 9
    # every step stored, strictly increasing across the switch
    assert np.all(np.diff(res.t) > 0)
    # the dense output is continuous at the switch and right on both sides
    ts = np.array([b1 * 0.5, b1, b1 * 1.5, 1e3])
    ref = scipy.integrate.solve_ivp(prob.fun, (0, 1e3), prob.y0, method="Radau",
                                    t_eval=ts, args=(prob.p,), jac=prob.jac,
                                    rtol=1e-12, atol=1e-16).y
    np.testing.assert_allclose(res.sol(ts), ref, rtol=1e-5, atol=1e-11)


def test_t_eval_and_events_across_the_switch():
    prob = problems.get("rober_1e5")

    def y2_peaks(t, y, p):      # y2' = 0 at the peak of the intermediate
        return prob.fun(t, y, p)[1]
    y2_peaks.direction = -1

    res = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0, method="auto",
                             args=(prob.p,), t_eval=prob.t_eval, events=y2_peaks,
                             rtol=1e-8, atol=1e-12)
    assert res.status == 0 and len(res.method_segments) == 2
    np.testing.assert_array_equal(res.t, prob.t_eval)
    ref = scipy.integrate.solve_ivp(prob.fun, prob.t_span, prob.y0, method="Radau",
                                    t_eval=prob.t_eval, args=(prob.p,), jac=prob.jac,
                                    rtol=1e-12, atol=1e-16).y
    scale = np.max(np.abs(ref), axis=1, keepdims=True)
    assert np.max(np.abs(res.y - ref) / scale) < 1e-5
    assert len(res.t_events[0]) == 1          # one peak, before the switch
    assert 1e-3 < res.t_events[0][0] < res.method_segments[0][2]


def test_mass_matrix_is_refused():
    with pytest.raises(ValueError, match="mass"):
        diffsens.solve_ivp(lambda t, y: -y, (0, 1), [1.0, 2.0], method="auto",
                           mass=np.eye(2))


def test_first_step_is_the_first_segments_only():
    """After a switch back, a first_step valid for the whole span may not be
    for the rest of it: the later segments choose their own."""
    def fun(t, y):
        lam = 1 + 1e5 * np.exp(-((t - 5) / 0.5) ** 2)
        return -lam * (y - np.cos(t)) - np.sin(t)

    res = diffsens.solve_ivp(fun, (0, 10), [1.0], method="auto", rtol=1e-8, atol=1e-10,
                             first_step=4.0)
    assert res.status == 0, res.message
    assert [m for m, _, _ in res.method_segments] == ["Tsit5", "Rodas5P", "Tsit5"]
    np.testing.assert_allclose(res.y[0, -1], np.cos(10.0), atol=1e-7)


def test_switches_back_when_the_stiffness_passes():
    # stiff only around t = 5: lambda(t) peaks at 1e5
    def fun(t, y):
        lam = 1 + 1e5 * np.exp(-((t - 5) / 0.5) ** 2)
        return -lam * (y - np.cos(t)) - np.sin(t)

    res = diffsens.solve_ivp(fun, (0, 10), [1.0], method="auto", rtol=1e-8, atol=1e-10,
                             dense_output=True, t_eval=np.linspace(0, 10, 41))
    assert res.status == 0
    assert [m for m, _, _ in res.method_segments] == ["Tsit5", "Rodas5P", "Tsit5"]
    (_, _, a), (_, b, c), (_, d, e) = res.method_segments
    assert a == b and c == d and e == 10.0 and 3 < a < 5 < c < 7
    np.testing.assert_allclose(res.y[0], np.cos(res.t), atol=1e-7)
    ts = np.linspace(0, 10, 1001)
    np.testing.assert_allclose(res.sol(ts)[0], np.cos(ts), atol=1e-6)
    np.testing.assert_array_equal(res.t, np.linspace(0, 10, 41))
