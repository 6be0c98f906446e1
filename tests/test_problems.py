"""Tests for diffsens.problems: structure, Jacobians, reference solutions."""

import dataclasses
import doctest
import json
import pathlib

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from diffsens import problems
from diffsens.problems import (
    PROBLEMS,
    Problem,
    bateman,
    lotka_volterra_first_integral,
)

NAMES = sorted(PROBLEMS)
WITH_REF = sorted(name for name, prob in PROBLEMS.items()
                  if prob.y_ref is not None)
TESTSET_JSON = (pathlib.Path(__file__).resolve().parents[1].parent
                / "shared" / "reference" / "ivp_testset.json")

EXPECTED = {
    # name: (n, m, stiff)
    "lotka_volterra": (2, 4, False),
    "pleiades": (28, 7, False),
    "arenstorf": (4, 1, False),
    "lorenz96": (40, 1, False),
    "hires": (8, 10, True),
    "rober": (3, 3, True),
    "rober_1e5": (3, 3, True),
    "pollu": (20, 25, True),
    "brusselator_1d": (32, 3, True),
    "one_compartment_oral": (2, 3, False),
}

# Second evaluation point for problems without a reference solution.
MID_POINT = {"rober_1e5": [0.9, 2.0e-5, 0.1]}


def _solve(prob, method, rtol, atol, **kw):
    if method in ("Radau", "BDF", "LSODA"):
        kw["jac"] = prob.jac
    sol = solve_ivp(prob.fun, prob.t_span, prob.y0, args=(prob.p,),
                    method=method, rtol=rtol, atol=atol, **kw)
    assert sol.status == 0, sol.message
    return sol


# ---------------------------------------------------------------------------
# registry and container
# ---------------------------------------------------------------------------

def test_registry():
    assert set(PROBLEMS) == set(EXPECTED)
    for name, prob in PROBLEMS.items():
        assert isinstance(prob, Problem)
        assert prob.name == name
        assert problems.get(name) is prob
    assert problems.get("Lotka-Volterra") is PROBLEMS["lotka_volterra"]
    with pytest.raises(KeyError, match="available"):
        problems.get("no_such_problem")


@pytest.mark.parametrize("name", NAMES)
def test_structure(name):
    prob = PROBLEMS[name]
    n, m, stiff = EXPECTED[name]
    assert (prob.n, prob.m, prob.stiff) == (n, m, stiff)
    assert isinstance(prob.description, str) and prob.description
    assert "\n" not in prob.description
    assert isinstance(prob.ref_source, str) and prob.ref_source
    t0, tf = prob.t_span
    assert isinstance(prob.t_span, tuple)
    assert type(t0) is float and type(tf) is float and t0 < tf

    arrays = {"y0": (n,), "p": (m,)}
    if prob.y_ref is not None:
        arrays["y_ref"] = (n,)
    if prob.t_eval is not None:
        arrays["t_eval"] = (prob.t_eval.shape[0],)
        assert np.all(np.diff(prob.t_eval) > 0)
        assert t0 <= prob.t_eval[0] and prob.t_eval[-1] <= tf
    for attr, shape in arrays.items():
        arr = getattr(prob, attr)
        assert isinstance(arr, np.ndarray), attr
        assert arr.dtype == np.float64, attr
        assert arr.shape == shape, attr
        assert np.all(np.isfinite(arr)), attr
        assert not arr.flags.writeable, attr
        with pytest.raises(ValueError):
            arr[0] = 1.0

    y0 = prob.y0.copy()
    p = prob.p.copy()
    f = prob.fun(t0, y0, p)
    assert isinstance(f, np.ndarray)
    assert f.shape == (n,) and f.dtype == np.float64
    assert np.all(np.isfinite(f))
    np.testing.assert_array_equal(y0, prob.y0)  # inputs not modified
    np.testing.assert_array_equal(p, prob.p)
    # the RHS also accepts the read-only arrays themselves
    np.testing.assert_array_equal(prob.fun(t0, prob.y0, prob.p), f)

    assert prob.jac is not None
    jac = prob.jac(t0, y0, p)
    assert isinstance(jac, np.ndarray)
    assert jac.shape == (n, n) and jac.dtype == np.float64
    assert np.all(np.isfinite(jac))

    np.testing.assert_array_equal(prob.scipy_fun()(t0, y0), f)
    np.testing.assert_array_equal(prob.scipy_jac()(t0, y0), jac)


def test_problem_is_frozen_and_copies():
    prob = problems.get("lotka_volterra")
    with pytest.raises(dataclasses.FrozenInstanceError):
        prob.y0 = np.zeros(2)
    # replace() builds a new, again frozen, problem without touching the old
    p_new = [2.0, 1.0, 3.0, 1.0]
    other = dataclasses.replace(prob, p=p_new)
    assert other is not prob
    np.testing.assert_array_equal(prob.p, [1.5, 1.0, 3.0, 1.0])
    np.testing.assert_array_equal(other.p, p_new)
    assert not other.p.flags.writeable
    # construction copies caller arrays
    y0 = np.array([1.0, 2.0])
    mine = Problem(name="x", description="x", fun=prob.fun, y0=y0, p=p_new,
                   t_span=(0, 1))
    y0[0] = 5.0
    assert mine.y0[0] == 1.0 and mine.t_span == (0.0, 1.0)
    assert mine.y_ref is None and mine.jac is None
    assert mine.scipy_jac() is None
    with pytest.raises(ValueError):
        Problem(name="x", description="x", fun=prob.fun, y0=y0, p=p_new,
                t_span=(0, 1), y_ref=[1.0, 2.0, 3.0])
    assert "lotka_volterra" in repr(prob)


# ---------------------------------------------------------------------------
# Jacobians against central finite differences
# ---------------------------------------------------------------------------

def _fd_jac(fun, t, y, p):
    n = y.shape[0]
    jac = np.empty((n, n))
    for j in range(n):
        h = 1e-6 * max(abs(y[j]), 1.0)
        yp = y.copy()
        ym = y.copy()
        yp[j] += h
        ym[j] -= h
        jac[:, j] = (fun(t, yp, p) - fun(t, ym, p)) / (2.0 * h)
    return jac


@pytest.mark.parametrize("name", NAMES)
def test_jacobian_finite_differences(name):
    prob = PROBLEMS[name]
    second = prob.y_ref if prob.y_ref is not None else MID_POINT[name]
    t = 0.5 * (prob.t_span[0] + prob.t_span[1])
    for y in (prob.y0, second):
        y = np.array(y, dtype=np.float64)
        jac = prob.jac(t, y, prob.p)
        fd = _fd_jac(prob.fun, t, y, prob.p)
        # column-wise relative error: d f / d y_j is compared with the
        # largest entry of its own column (entries span 1e-3 .. 4e11 in POLLU)
        col_scale = np.max(np.abs(jac), axis=0)
        col_err = np.max(np.abs(jac - fd), axis=0)
        floor = 1e-10 * max(np.abs(jac).max(), 1.0)
        assert np.all(col_err <= 1e-6 * col_scale + floor), (
            name, col_err / np.maximum(col_scale, floor))


# ---------------------------------------------------------------------------
# Reference solutions
# ---------------------------------------------------------------------------

# name: (method, rtol, atol, floor, bound). The end-state error is measured as
# max_i |y_i - y_ref_i| / (|y_ref_i| + floor); bound allows for the growth of
# the global error over the interval (measured values are 10-100x smaller).
SOLVE_SETTINGS = {
    "lotka_volterra": ("DOP853", 1e-10, 1e-12, 0.0, 1e-8),
    "pleiades": ("DOP853", 1e-10, 1e-10, 1.0, 1e-6),
    "arenstorf": ("DOP853", 1e-10, 1e-12, 1.0, 1e-5),
    "lorenz96": ("DOP853", 1e-10, 1e-12, 0.0, 1e-6),
    "hires": ("Radau", 1e-8, 1e-12, 0.0, 1e-6),
    "rober": ("Radau", 1e-8, np.array([1e-12, 1e-18, 1e-12]), 1e-20, 1e-6),
    "pollu": ("Radau", 1e-8, 1e-14, 1e-10, 1e-6),
    "brusselator_1d": ("Radau", 1e-8, 1e-10, 0.0, 1e-6),
    "one_compartment_oral": ("DOP853", 1e-10, 1e-12, 1e-3, 1e-8),
}


def test_solve_settings_cover_references():
    assert set(SOLVE_SETTINGS) == set(WITH_REF)


@pytest.mark.parametrize("name", WITH_REF)
def test_reference_solution(name):
    prob = PROBLEMS[name]
    method, rtol, atol, floor, bound = SOLVE_SETTINGS[name]
    sol = _solve(prob, method, rtol, atol)
    assert sol.t[-1] == prob.t_span[1]
    y_end = sol.y[:, -1]
    err = np.abs(y_end - prob.y_ref) / (np.abs(prob.y_ref) + floor)
    assert err.max() < bound, (name, err.max())


def test_rober_1e5_output_times():
    prob = problems.get("rober_1e5")
    np.testing.assert_allclose(prob.t_eval, np.logspace(-5, 5, 50),
                               rtol=1e-15)
    sol = _solve(prob, "Radau", 1e-8, np.array([1e-12, 1e-18, 1e-12]),
                 t_eval=prob.t_eval)
    assert sol.y.shape == (3, 50)
    np.testing.assert_allclose(sol.y.sum(axis=0), 1.0, rtol=0, atol=1e-10)
    assert np.all(sol.y >= -1e-14)
    # y2 peaks at ~3.65e-5 (t ~ 0.1..1) and decays afterwards
    assert 3.5e-5 < sol.y[1].max() < 3.7e-5
    assert sol.y[1, -1] < 1e-6 and sol.y[2, -1] > 0.5
    # same model as the long-span "rober" problem
    rober = problems.get("rober")
    np.testing.assert_array_equal(prob.y0, rober.y0)
    np.testing.assert_array_equal(prob.p, rober.p)


def test_lotka_volterra_first_integral():
    prob = problems.get("lotka_volterra")
    v0 = lotka_volterra_first_integral(prob.y0, prob.p)
    assert v0 == pytest.approx(2.0)  # d + b at (1, 1)
    assert abs(lotka_volterra_first_integral(prob.y_ref, prob.p) - v0) < 1e-14
    sol = _solve(prob, "DOP853", 1e-10, 1e-12, t_eval=prob.t_eval)
    v = lotka_volterra_first_integral(sol.y, prob.p)
    assert v.shape == (101,)
    assert np.max(np.abs(v - v0)) < 1e-9 * abs(v0)
    # the solution is genuinely oscillating, not trivially constant
    assert np.ptp(sol.y[0]) > 1.0


def test_arenstorf_returns_to_start():
    prob = problems.get("arenstorf")
    assert prob.t_span[1] == problems.ARENSTORF_PERIOD
    # the reference state equals y0 up to the closure of the published data
    np.testing.assert_allclose(prob.y_ref, prob.y0, rtol=0, atol=2e-13)
    sol = _solve(prob, "DOP853", 1e-10, 1e-12, dense_output=True)
    np.testing.assert_allclose(sol.y[:, -1], prob.y0, rtol=0, atol=1e-5)
    # half a period later the satellite is far away from its start
    half = sol.sol(0.5 * prob.t_span[1])
    assert np.linalg.norm(half[:2] - prob.y0[:2]) > 1.0


def test_pleiades_energy_conserved():
    prob = problems.get("pleiades")
    m = prob.p

    def energy(y):
        x, z, vx, vz = y[0:7], y[7:14], y[14:21], y[21:28]
        kin = 0.5 * np.sum(m * (vx * vx + vz * vz))
        iu, ju = np.triu_indices(7, 1)
        r = np.hypot(x[iu] - x[ju], z[iu] - z[ju])
        return kin - np.sum(m[iu] * m[ju] / r)

    assert energy(prob.y_ref) == pytest.approx(energy(prob.y0), rel=1e-13)


# ---------------------------------------------------------------------------
# Pharmacokinetics
# ---------------------------------------------------------------------------

def test_bateman_matches_ode():
    prob = problems.get("one_compartment_oral")
    ka, ke, V = prob.p
    dose = prob.y0[0]
    assert prob.y0[1] == 0.0 and dose == 4.02
    sol = _solve(prob, "DOP853", 1e-11, 1e-13, t_eval=prob.t_eval)
    np.testing.assert_allclose(sol.y[0], dose * np.exp(-ka * prob.t_eval),
                               rtol=1e-8, atol=1e-12)
    exact = bateman(prob.t_eval, dose, ka, ke, V)
    assert exact.shape == prob.t_eval.shape
    np.testing.assert_allclose(sol.y[1], exact, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(
        prob.y_ref,
        [dose * np.exp(-ka * 24.0), bateman(24.0, dose, ka, ke, V)],
        rtol=1e-15)
    # peak concentration of a typical subject: ~6.9 mg/L around 2 h
    assert 6.5 < exact.max() < 7.5


def test_bateman_formula():
    t = np.linspace(0.0, 24.0, 7)
    dose, ka, ke = 4.02, 1.5, 0.08
    naive = dose * ka / (ka - ke) * (np.exp(-ke * t) - np.exp(-ka * t))
    np.testing.assert_allclose(bateman(t, dose, ka, ke), naive, rtol=1e-13)
    np.testing.assert_allclose(bateman(t, dose, ka, ke, 0.5), naive / 0.5,
                               rtol=1e-13)
    # scalar in, scalar out
    val = bateman(2.0, dose, ka, ke)
    assert np.ndim(val) == 0
    assert val == pytest.approx(
        dose * ka / (ka - ke) * (np.exp(-2 * ke) - np.exp(-2 * ka)), rel=1e-14)
    assert bateman(0.0, dose, ka, ke) == 0.0
    # ka == ke: the limit dose * k * t * exp(-k t), continuous in ka
    limit = dose * 0.3 * t * np.exp(-0.3 * t)
    np.testing.assert_allclose(bateman(t, dose, 0.3, 0.3), limit, rtol=1e-15)
    np.testing.assert_allclose(bateman(t, dose, 0.3 + 1e-9, 0.3), limit,
                               rtol=1e-7)
    # broadcasting over parameters
    out = bateman(2.0, dose, np.array([1.0, 1.5, 2.0]), ke)
    assert out.shape == (3,)


# ---------------------------------------------------------------------------
# Comparison with the Test Set data file (skipped if it is not present)
# ---------------------------------------------------------------------------

TESTSET_NAMES = {"HIRES": "hires", "ROBER": "rober", "POLLU": "pollu"}


@pytest.fixture(scope="module")
def testset():
    if not TESTSET_JSON.is_file():
        pytest.skip(f"{TESTSET_JSON} not available")
    with open(TESTSET_JSON, encoding="utf-8") as fh:
        return json.load(fh)


def _eval_text(expressions, namespace):
    return np.array([eval(compile(e, "<testset>", "eval"),  # noqa: S307
                          {"__builtins__": {}}, namespace)
                     for e in expressions])


@pytest.mark.parametrize("key", sorted(TESTSET_NAMES))
def test_matches_testset_json(testset, key):
    data = testset[key]
    prob = problems.get(TESTSET_NAMES[key])
    assert prob.n == data["n"]
    np.testing.assert_array_equal(prob.p, list(data["params"].values()))
    np.testing.assert_array_equal(prob.y0, data["y0"])
    assert prob.t_span == tuple(data["t_span"])
    np.testing.assert_array_equal(prob.y_ref, data["y_end"])

    # the typed-in right-hand side agrees with the text of the definition
    rng = np.random.default_rng(12345)
    for _ in range(5):
        y = rng.uniform(0.0, 1.0, prob.n)
        ns = dict(data["params"])
        ns.update({f"y{i + 1}": float(v) for i, v in enumerate(y)})
        rhs_text = data["rhs"]
        if "rates" in data:
            rates = _eval_text(data["rates"], ns)
            ns.update({f"r{j + 1}": float(r) for j, r in enumerate(rates)})
        expected = _eval_text(rhs_text, ns)
        # size of the individual terms (all are positive for y > 0)
        scale = _eval_text([e.replace("-", "+") for e in rhs_text], ns)
        got = prob.fun(0.0, y, prob.p)
        assert np.all(np.abs(got - expected) <= 1e-13 * np.abs(scale)), key


# ---------------------------------------------------------------------------
# Docstring examples
# ---------------------------------------------------------------------------

def test_docstring_examples():
    import diffsens.problems._nonstiff as nonstiff
    import diffsens.problems._pk as pk

    for module in (problems, nonstiff, pk):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
    assert doctest.testmod(problems).attempted > 0
