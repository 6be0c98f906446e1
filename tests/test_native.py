"""A tape's value pass compiled to machine code (``trace(..., compile=True)``).

The compiled pass must be the interpreter's, bit for bit: on every built-in
problem, on random right-hand sides (the property tests' trees), on every
op, inside solves and reverse sweeps.  Then the cache, and the ways
compiling can fail.  These tests need a C compiler (CI builds diffsens from
source, so it has one).
"""
import subprocess

import numpy as np
import pytest
from hypothesis import given

import diffsens
import diffsens._native as native
from diffsens import problems
from diffsens._kernels._core import TapeFunction
from diffsens._schedule import schedule
from test_tape import _settings, make_fun, rhs_cases

pytestmark = pytest.mark.skipif(native.c_compiler() is None, reason="no C compiler")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    """One cache for this module's tests, never the user's."""
    folder = tmp_path_factory.getbasetemp() / "native-cache"
    folder.mkdir(exist_ok=True)
    monkeypatch.setenv("DIFFSENS_CACHE_DIR", str(folder))
    return folder


def both(fun, y0, p=None, **kwargs):
    return (diffsens.trace(fun, y0, p, **kwargs),
            diffsens.trace(fun, y0, p, compile=True, **kwargs))


def random_states(n, rows, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 2.0, (rows, n))


@pytest.mark.parametrize("name", sorted(problems.PROBLEMS))
def test_builtin_problems_compile_to_the_interpreters_values(name):
    prob = problems.get(name)
    interpreted, compiled = both(prob.fun, prob.y0, prob.p)
    assert compiled.compiled and not interpreted.compiled
    assert "compiled" in repr(compiled)
    Y = random_states(prob.n, 50)
    ts = np.linspace(0.0, 3.0, 50)
    np.testing.assert_array_equal(compiled.function.value_batch(ts, Y, prob.p),
                                  interpreted.function.value_batch(ts, Y, prob.p))
    args = () if prob.p is None else (prob.p,)
    np.testing.assert_array_equal(compiled(0.5, Y[0], *args), interpreted(0.5, Y[0], *args))


@_settings(25)
@given(case=rhs_cases(analytic=False))
def test_random_right_hand_sides_compile_to_the_interpreters_values(case):
    spec, t, y, p = case["spec"], case["t"], case["y"], case["p"]
    n, m = spec[0], spec[1]
    interpreted, compiled = both(make_fun(spec), np.zeros(n), np.zeros(m) if m else None)
    pv = p if m else None
    rows = np.stack([y, -y, 0.5 * y[::-1], y + 1.0])
    ts = np.array([t, 0.3, 1.1, t])
    np.testing.assert_array_equal(compiled.function.value_batch(ts, rows, pv),
                                  interpreted.function.value_batch(ts, rows, pv))
    w = case["w"]
    for got, want in zip(compiled.function.vjp(t, y, pv, w), interpreted.function.vjp(t, y, pv, w)):
        np.testing.assert_array_equal(got, want)


def every_op(t, y, p):
    """Each op the tracer records at least once (and the scheduler's SUM, PROD
    and LINCOMB), so each has its line in the generated code."""
    a, b, c = y[0], y[1], y[2]
    A = np.array([[0.5, -1.25, 2.0], [1.0, 0.0, -3.0], [0.25, 4.0, 1.0]])
    dense = A @ y[:3]                                       # LINCOMB
    return np.array([
        a + b - c * p[0] / (1.0 + b * b) - (-a) + a * b * c * p[1] + a * b * c * b,
        np.exp(a) + np.log(b) + np.log1p(c) + np.expm1(a) + np.sqrt(b) + abs(a - b),
        np.sin(a) + np.cos(b) + np.tan(c) + np.tanh(a) + np.sinh(b) + np.cosh(c),
        np.arctan(a) + np.arcsin(c / 4.0) + np.arccos(c / 4.0) + a ** 3 + b ** -2 + a ** 2.5
        + np.power(b, p[0]),
        np.where(a < b, a, b) + np.where(a <= c, 1.0, 2.0) + np.where(a > b, c, a)
        + np.where(a >= c, b, c) + np.where(a == b, 1.0, 0.0) + np.where(a != c, 3.0, 4.0)
        + np.maximum(a, b) + np.minimum(b, c) + np.clip(c, 0.5, 1.5),
        dense[0] + dense[1] * dense[2] + np.sum(y) + np.prod(y) + t * a,
    ])


def test_every_op_compiles_to_the_interpreters_values():
    interpreted, compiled = both(every_op, np.ones(6), np.array([0.7, -1.3]))
    p = np.array([0.7, -1.3])
    Y = random_states(6, 200, seed=1)
    Y[:, 2] = np.linspace(-3.9, 3.9, 200)        # arcsin/arccos inside, tan off its poles
    Y[7, 0] = Y[7, 1]                             # ties for ==, <=, >= and max/min
    Y[11, 0] = Y[11, 2]
    Y[13, 0] = np.nan                             # NaN through max/min, where and sums
    ts = np.linspace(-1.0, 1.0, 200)
    with np.errstate(all="ignore"):
        want = interpreted.function.value_batch(ts, Y, p)
    got = compiled.function.value_batch(ts, Y, p)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[13]).any() and np.isfinite(got[150:]).all()


def test_solves_with_a_compiled_tape_are_the_interpreted_solves():
    rober = problems.get("rober_1e5")
    interpreted, compiled = both(rober.fun, rober.y0, rober.p)
    for method in ("Rodas5P", "Tsit5"):
        span = rober.t_span if method == "Rodas5P" else (0.0, 1e-3)
        kw = dict(method=method, args=(rober.p,), rtol=1e-6, atol=1e-10)
        want = diffsens.solve_ivp(interpreted, span, rober.y0, **kw)
        got = diffsens.solve_ivp(compiled, span, rober.y0, **kw)
        np.testing.assert_array_equal(got.t, want.t)
        np.testing.assert_array_equal(got.y, want.y)
        assert got.nfev == want.nfev
    kw = dict(method="Rodas5P", sens="continuous", t_eval=rober.t_eval, rtol=1e-6, atol=1e-10)
    want = diffsens.solve_ivp_sens(interpreted, rober.t_span, rober.y0, rober.p, **kw)
    got = diffsens.solve_ivp_sens(compiled, rober.t_span, rober.y0, rober.p, **kw)
    np.testing.assert_array_equal(got.sens, want.sens)


def test_adjoint_gradients_through_a_compiled_tape_are_the_interpreters():
    lv = problems.get("lotka_volterra")
    interpreted, compiled = both(lv.fun, lv.y0, lv.p)
    t_eval = np.linspace(0.0, 5.0, 11)
    weights = np.cos(np.arange(2 * t_eval.size)).reshape(2, -1)
    for method in ("Tsit5", "Rodas5P"):
        kw = dict(t_eval=t_eval, dgdy=weights, method=method, rtol=1e-8, atol=1e-10)
        want = diffsens.adjoint_gradient(interpreted, (0.0, 5.0), lv.y0, lv.p, **kw)
        got = diffsens.adjoint_gradient(compiled, (0.0, 5.0), lv.y0, lv.p, **kw)
        np.testing.assert_array_equal(got.grad_p, want.grad_p)
        np.testing.assert_array_equal(got.grad_y0, want.grad_y0)


def test_the_compiled_pass_is_what_runs(monkeypatch):
    """Every route to f (a call, a batch, a solve's steps, a reverse sweep)
    runs the compiled pass: one that writes 42 into dy[0] shows up in each."""
    real = native.value_pass_source

    def marked(program, rows):
        return real(program, rows).replace("    return 0;", "    dy[0] = 42.0;\n    return 0;")

    monkeypatch.setattr(native, "value_pass_source", marked)
    lv = problems.get("lotka_volterra")
    rhs = diffsens.trace(lv.fun, lv.y0, lv.p, compile=True)
    assert rhs(0.0, lv.y0, lv.p)[0] == 42.0
    assert rhs.function.value_batch(0.0, np.ones((3, 2)), lv.p)[:, 0].tolist() == [42.0] * 3
    assert rhs.vjp(0.0, lv.y0, lv.p, np.ones(2))[0][0] == 42.0
    res = diffsens.solve_ivp(rhs, (0.0, 0.5), lv.y0, method="Tsit5", args=(lv.p,),
                             rtol=1e-6, atol=1e-8)
    assert res.y[0, -1] > 10.0     # dy0/dt = 42 from the start: ~ 1 + 21


def test_a_tape_compiles_once(monkeypatch):
    hires = problems.get("hires")
    diffsens.trace(hires.fun, hires.y0, hires.p, compile=True)

    def no_compiler(*args, **kwargs):
        raise AssertionError("the compiler ran for a cached tape")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    again = diffsens.trace(hires.fun, hires.y0, hires.p, compile=True)
    assert again.compiled


def test_without_a_compiler_compile_says_how_to_go_on(monkeypatch):
    monkeypatch.setattr(native, "c_compiler", lambda: None)
    lv = problems.get("lotka_volterra")
    with pytest.raises(RuntimeError, match=r"needs a C compiler.*compile=False"):
        diffsens.trace(lv.fun, lv.y0, lv.p, compile=True)
    assert not diffsens.trace(lv.fun, lv.y0, lv.p).compiled


def test_a_failing_compiler_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFSENS_CACHE_DIR", str(tmp_path))   # nothing cached
    monkeypatch.setenv("CC", "false")                          # exits 1
    lv = problems.get("lotka_volterra")
    with pytest.raises(RuntimeError, match="failed.*compile=False"):
        diffsens.trace(lv.fun, lv.y0, lv.p, compile=True)
    assert [f.name for f in tmp_path.iterdir()] == []          # no partial files left


def test_a_long_tape_stays_interpreted_and_says_so(monkeypatch):
    pollu = problems.get("pollu")
    n_ops = diffsens.trace(pollu.fun, pollu.y0, pollu.p).function.rows.shape[0]
    monkeypatch.setattr(native, "MAX_OPS", n_ops - 1)
    with pytest.warns(RuntimeWarning, match=rf"{n_ops} ops.*stays interpreted"):
        rhs = diffsens.trace(pollu.fun, pollu.y0, pollu.p, compile=True)
    assert not rhs.compiled
    monkeypatch.setattr(native, "MAX_OPS", n_ops)
    assert diffsens.trace(pollu.fun, pollu.y0, pollu.p, compile=True).compiled


def test_a_cache_folder_others_can_write_to_is_not_used(monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("DIFFSENS_CACHE_DIR", str(shared))
    lv = problems.get("lotka_volterra")
    rhs = diffsens.trace(lv.fun, lv.y0, lv.p, compile=True)
    assert rhs.compiled and not rhs.function.native.path.startswith(str(shared))
    assert list(shared.iterdir()) == []


def test_a_compiled_pass_serves_only_its_own_program():
    lv, rober = problems.get("lotka_volterra"), problems.get("rober")
    program = schedule(diffsens.trace(lv.fun, lv.y0, lv.p).tape)
    other = schedule(diffsens.trace(rober.fun, rober.y0, rober.p).tape)
    compiled = native.compile_value_pass(other, TapeFunction(other).rows)
    with pytest.raises(ValueError, match="another program"):
        TapeFunction(program, native=compiled)
