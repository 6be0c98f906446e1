"""Dual numbers (diffsens._dual): derivatives of every operation, NumPy
object-array usage, Jacobians of the built-in problems, error paths."""
import copy
import math
import operator
import pickle
import sys

import mpmath
import numpy as np
import pytest

from diffsens import problems
from diffsens._dual import (
    Dual, _seed_array_lane_major, _seed_into_lane_major, _split_lane_major,
    seed, split,
)

LANES = [1, 4, 17]          # inline storage (<= 8) and heap storage


def rand_partials(k, seed_=0):
    return np.random.default_rng(seed_ + 101 * k).uniform(-2.0, 2.0, k)


def assert_dual(d, value, partials, rtol=1e-14, atol=0.0):
    assert type(d) is Dual
    np.testing.assert_allclose(d.value, value, rtol=rtol, atol=atol)
    np.testing.assert_allclose(d.partials, partials, rtol=rtol, atol=atol)


def complex_step(f, *args_and_tangents, h=1e-30):
    """d/dt f(x + t dx, ...) at t = 0 by the complex step (per lane)."""
    xs = args_and_tangents[0::2]
    dxs = args_and_tangents[1::2]
    k = len(dxs[0])
    out = np.empty(k)
    for j in range(k):
        z = [complex(x, h * dx[j]) for x, dx in zip(xs, dxs)]
        out[j] = np.imag(f(*z)) / h
    return out


# ---------------------------------------------------------------------------
# Construction, properties
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("k", LANES)
def test_construction_and_properties(k):
    r = rand_partials(k)
    d = Dual(1.25, r)
    assert d.value == 1.25 and isinstance(d.value, float)
    assert d.nlanes == k
    p = d.partials
    np.testing.assert_array_equal(p, r)
    assert p.dtype == np.float64 and p.shape == (k,)
    p[0] = 99.0                       # a copy: the Dual is unchanged
    assert d.partials[0] == r[0]
    assert Dual(2, [1, 2]).partials.tolist() == [1.0, 2.0]
    assert Dual(np.float32(0.5), (0.0,)).value == 0.5
    assert Dual(3.0, []).nlanes == 0


def test_repr_and_misc():
    assert repr(Dual(1.5, [1.0, 0.0])) == "Dual(1.5, [1. 0.])"
    d = Dual(2.0, [1.0, -1.0])
    assert pickle.loads(pickle.dumps(d)).partials.tolist() == [1.0, -1.0]
    assert copy.deepcopy(d) is d        # immutable
    assert hash(d) == hash(2.0)
    assert bool(d) and not bool(Dual(0.0, [1.0, 1.0]))
    assert math.floor(Dual(2.7, [1.0])) == 2
    assert math.ceil(Dual(2.2, [1.0])) == 3
    assert round(Dual(2.7, [1.0])) == 3
    with pytest.raises(ValueError, match="1-dimensional"):
        Dual(1.0, [[1.0]])


# ---------------------------------------------------------------------------
# Unary functions
# ---------------------------------------------------------------------------

GENERAL = [-1.3, -0.2, 0.4, 2.1]
POSITIVE = [0.3, 1.0, 2.5, 7.0]
UNIT = [-0.7, 0.0, 0.3, 0.9]

# name: (points, derivative, complex step usable)
UNARY = {
    "exp": (GENERAL, np.exp, True),
    "exp2": (GENERAL, lambda x: np.log(2.0) * 2.0 ** x, True),
    "expm1": (GENERAL, np.exp, True),
    "log": (POSITIVE, lambda x: 1.0 / x, True),
    "log2": (POSITIVE, lambda x: 1.0 / (x * np.log(2.0)), True),
    "log10": (POSITIVE, lambda x: 1.0 / (x * np.log(10.0)), True),
    "log1p": ([-0.5, 0.0, 0.7, 3.0], lambda x: 1.0 / (1.0 + x), True),
    "sqrt": (POSITIVE, lambda x: 0.5 / np.sqrt(x), True),
    "cbrt": ([-8.0, -0.3, 0.5, 27.0], lambda x: 1.0 / (3.0 * np.cbrt(x) ** 2), False),
    "square": (GENERAL, lambda x: 2.0 * x, True),
    "reciprocal": ([-2.0, 0.5, 3.0], lambda x: -1.0 / x ** 2, True),
    "sin": (GENERAL, np.cos, True),
    "cos": (GENERAL, lambda x: -np.sin(x), True),
    "tan": (GENERAL, lambda x: 1.0 / np.cos(x) ** 2, True),
    "arcsin": (UNIT, lambda x: 1.0 / np.sqrt(1.0 - x * x), True),
    "arccos": (UNIT, lambda x: -1.0 / np.sqrt(1.0 - x * x), True),
    "arctan": (GENERAL, lambda x: 1.0 / (1.0 + x * x), True),
    "sinh": (GENERAL, np.cosh, True),
    "cosh": (GENERAL, np.sinh, True),
    "tanh": (GENERAL, lambda x: 1.0 / np.cosh(x) ** 2, True),
    "arcsinh": (GENERAL, lambda x: 1.0 / np.sqrt(x * x + 1.0), True),
    "arccosh": ([1.2, 2.0, 5.0], lambda x: 1.0 / np.sqrt(x * x - 1.0), True),
    "arctanh": (UNIT, lambda x: 1.0 / (1.0 - x * x), True),
    "deg2rad": (GENERAL, lambda x: np.pi / 180.0 + 0.0 * x, False),
    "rad2deg": (GENERAL, lambda x: 180.0 / np.pi + 0.0 * x, False),
    "radians": (GENERAL, lambda x: np.pi / 180.0 + 0.0 * x, False),
    "degrees": (GENERAL, lambda x: 180.0 / np.pi + 0.0 * x, False),
    "absolute": (GENERAL, np.sign, False),
    "fabs": (GENERAL, np.sign, False),
    "negative": (GENERAL, lambda x: -1.0 + 0.0 * x, True),
    "positive": (GENERAL, lambda x: 1.0 + 0.0 * x, True),
    "conjugate": (GENERAL, lambda x: 1.0 + 0.0 * x, False),
}


@pytest.mark.parametrize("k", LANES)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, k):
    points, deriv, cstep = UNARY[name]
    ufunc = getattr(np, name)
    r = rand_partials(k)
    for v in points:
        x = Dual(v, r)
        want_value = ufunc(v)
        want = deriv(v) * r
        rtol = 1e-14 if name not in ("arcsin", "arccos", "arctanh", "arccosh") else 1e-13
        # as a NumPy ufunc on the scalar (Dual.__array_ufunc__)
        assert_dual(ufunc(x), want_value, want, rtol=rtol, atol=1e-300)
        # as NumPy's object loop sees it (method lookup / operator)
        arr = ufunc(np.array([x, x], dtype=object))
        assert arr.dtype == object and arr.shape == (2,)
        assert_dual(arr[1], want_value, want, rtol=rtol, atol=1e-300)
        if hasattr(Dual, name) and name not in ("negative", "positive", "absolute"):
            assert_dual(getattr(x, name)(), want_value, want, rtol=rtol, atol=1e-300)
        if cstep:
            cs = complex_step(ufunc, v, r)
            np.testing.assert_allclose(ufunc(x).partials, cs, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("k", LANES)
def test_python_unary_operators(k):
    r = rand_partials(k)
    x = Dual(-1.5, r)
    assert_dual(-x, 1.5, -r)
    assert +x is x
    assert_dual(abs(x), 1.5, -r)
    assert_dual(abs(Dual(2.0, r)), 2.0, r)


def test_nonfinite_factor_times_zero_partial_is_zero():
    # sqrt'(0) = inf: a lane that does not depend on x stays 0 (not nan)
    d = np.sqrt(Dual(0.0, [1.0, 0.0]))
    assert d.value == 0.0
    assert d.partials[0] == np.inf and d.partials[1] == 0.0
    d = np.log(Dual(0.0, [0.0, 0.0]))
    assert d.value == -np.inf and d.partials.tolist() == [0.0, 0.0]
    # IEEE arithmetic, as for float64 arrays
    assert (1.0 / Dual(0.0, [1.0])).value == np.inf
    assert np.isnan(np.log(Dual(-1.0, [1.0])).value)


# ---------------------------------------------------------------------------
# Binary operations
# ---------------------------------------------------------------------------

def _pow_grad(a, b):
    return b * a ** (b - 1.0), a ** b * math.log(a)


# name: (operator, ufunc, value, gradient, points)
BINARY = {
    "add": (operator.add, np.add, lambda a, b: a + b, lambda a, b: (1.0, 1.0),
            [(1.3, -0.4), (-2.0, 5.5)]),
    "sub": (operator.sub, np.subtract, lambda a, b: a - b, lambda a, b: (1.0, -1.0),
            [(1.3, -0.4), (-2.0, 5.5)]),
    "mul": (operator.mul, np.multiply, lambda a, b: a * b, lambda a, b: (b, a),
            [(1.3, -0.4), (-2.0, 5.5)]),
    "truediv": (operator.truediv, np.true_divide, lambda a, b: a / b,
                lambda a, b: (1.0 / b, -a / b ** 2), [(1.3, -0.4), (-2.0, 5.5)]),
    "pow": (operator.pow, np.power, lambda a, b: a ** b, _pow_grad,
            [(1.3, -0.4), (2.0, 5.5), (0.7, 2.5)]),
    "arctan2": (None, np.arctan2, math.atan2,
                lambda a, b: (b / (a * a + b * b), -a / (a * a + b * b)),
                [(1.3, -0.4), (-2.0, 5.5)]),
    "hypot": (None, np.hypot, math.hypot,
              lambda a, b: (a / math.hypot(a, b), b / math.hypot(a, b)),
              [(1.3, -0.4), (-2.0, 5.5)]),
}

# complex-analytic stand-ins for the complex step (same derivative)
COMPLEX_FORM = {
    "arctan2": lambda a, b: np.arctan(a / b),
    "hypot": lambda a, b: np.sqrt(a * a + b * b),
}

# constants of all the scalar kinds a user's code may mix in
CONST_KINDS = [float, np.float64, np.float32, np.int64, int]


def _const(kind, v):
    if kind in (int, np.int64):                 # a nonzero integer near v
        return kind(math.copysign(max(1, round(abs(v))), v))
    return kind(v)


def _ops(name):
    op, ufunc = BINARY[name][:2]
    forms = [ufunc]
    if op is not None:
        forms.append(op)
    return forms


@pytest.mark.parametrize("k", LANES)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_dual_dual(name, k):
    _, _, fval, fgrad, points = BINARY[name]
    ra, rb = rand_partials(k, 1), rand_partials(k, 2)
    for a, b in points:
        ga, gb = fgrad(a, b)
        want = ga * ra + gb * rb
        for f in _ops(name):
            assert_dual(f(Dual(a, ra), Dual(b, rb)), fval(a, b), want, rtol=1e-13)
        cs = complex_step(COMPLEX_FORM.get(name, _ops(name)[-1]), a, ra, b, rb)
        np.testing.assert_allclose(want, cs, rtol=1e-13)


@pytest.mark.parametrize("k", LANES)
@pytest.mark.parametrize("kind", CONST_KINDS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_dual_and_constant_both_orders(name, kind, k):
    _, _, fval, fgrad, points = BINARY[name]
    r = rand_partials(k, 3)
    for a, b in points:
        # Dual on the left, constant on the right
        c = _const(kind, b)
        if not (name == "pow" and float(c) == 0.0):
            ga, _ = fgrad(a, float(c))
            for f in _ops(name):
                res = f(Dual(a, r), c)
                assert_dual(res, fval(a, float(c)), ga * r, rtol=1e-6 if kind is np.float32 else 1e-13)
        # constant on the left (reflected operation / NumPy scalar first)
        c = _const(kind, a)
        if name == "pow" and float(c) <= 0.0:
            continue
        _, gb = fgrad(float(c), b)
        for f in _ops(name):
            res = f(c, Dual(b, r))
            assert_dual(res, fval(float(c), b), gb * r, rtol=1e-6 if kind is np.float32 else 1e-13)


@pytest.mark.parametrize("k", LANES)
@pytest.mark.parametrize("name", ["add", "sub", "mul", "truediv", "pow"])
def test_binary_with_float_ndarray(name, k):
    op, ufunc, fval, fgrad, _ = BINARY[name]
    r = rand_partials(k, 4)
    x = Dual(1.7, r)
    arr = np.array([0.5, 1.5, 3.0])
    for res in (op(arr, x), ufunc(arr, x)):
        assert res.dtype == object and res.shape == (3,)
        for i, a in enumerate(arr):
            assert_dual(res[i], fval(a, 1.7), fgrad(a, 1.7)[1] * r, rtol=1e-13)
    for res in (op(x, arr), ufunc(x, arr)):
        assert res.dtype == object and res.shape == (3,)
        for i, b in enumerate(arr):
            assert_dual(res[i], fval(1.7, b), fgrad(1.7, b)[0] * r, rtol=1e-13)
    # a 2-D float array and a 0-d array
    res = op(np.ones((2, 2)), x)
    assert res.shape == (2, 2) and res.dtype == object
    assert type(op(np.array(2.0), x)) is Dual


@pytest.mark.parametrize("k", LANES)
def test_integer_powers_exact(k):
    r = rand_partials(k, 5)
    for v in [-1.7, -0.5, 0.0, 0.3, 2.0]:
        x = Dual(v, r)
        for n in [0, 1, 2, 3, 4, 5, -1, -2, -3]:
            if v == 0.0 and n < 0:
                continue
            want_val = v ** n
            want = (n * v ** (n - 1) if n != 0 else 0.0) * r
            for e in (n, float(n), np.int64(n), np.float64(n)):
                assert_dual(x ** e, want_val, want, rtol=2e-15)
                assert_dual(np.power(x, e), want_val, want, rtol=2e-15)
            # Dual ** Dual with a constant exponent: no log of a negative base
            assert_dual(x ** Dual(float(n), np.zeros(k)), want_val, want, rtol=2e-15)
    # square and cube exactly as multiplications
    x = Dual(1.1, r)
    assert (x ** 2).value == 1.1 * 1.1
    assert (x ** 3).value == 1.1 * 1.1 * 1.1
    np.testing.assert_array_equal((x ** 2).partials, 2.0 * 1.1 * r)


@pytest.mark.parametrize("k", LANES)
def test_power_edge_cases(k):
    r = rand_partials(k, 6)
    # 0 ** Dual(y > 0): value 0, derivative 0 (not nan)
    d = 0.0 ** Dual(2.0, r)
    assert d.value == 0.0 and np.all(d.partials == 0.0)
    d = Dual(0.0, r) ** Dual(2.0, r)
    assert d.value == 0.0 and np.all(d.partials == 0.0)
    # Dual ** Dual, both varying, exponent rule + log rule
    a, b = Dual(1.3, r), Dual(0.6, rand_partials(k, 7))
    d = a ** b
    cs = complex_step(lambda x, y: x ** y, 1.3, r, 0.6, rand_partials(k, 7))
    np.testing.assert_allclose(d.partials, cs, rtol=1e-13)
    # fractional power of a negative base: nan, as for float64
    assert np.isnan((Dual(-2.0, r) ** 0.5).value)
    with pytest.raises(TypeError):
        pow(Dual(2.0, r), 2, 3)


# ---------------------------------------------------------------------------
# Comparisons, max / min
# ---------------------------------------------------------------------------

def test_comparisons_on_value():
    x = Dual(1.0, [1.0, 0.0])
    y = Dual(2.0, [0.0, 1.0])
    for res in (x < y, x <= y, y > x, y >= x, x != y, x == Dual(1.0, [5.0, 5.0]),
                x < 1.5, 1.5 > x, x == 1, x >= np.float64(1.0),
                np.float64(0.5) < x, np.int64(1) == x, x > np.float32(0.5)):
        assert res is True or res is np.True_
    for res in (x > y, x >= y, x == y, x != 1.0, x > 1):
        assert res is False or res is np.False_
    assert np.less(x, y) is True
    assert np.greater(x, 3.0) is False
    assert np.equal(2.0, y) is True
    res = x < np.array([0.0, 2.0])
    assert res.dtype == bool and res.tolist() == [False, True]
    res = np.array([0.0, 2.0]) > x
    assert res.tolist() == [False, True]
    assert max(x, y) is y and min(x, y) is x
    assert max(x, 0.5) is x
    assert (x > 0) and not (x > 1)
    # ForwardDiff semantics: branches follow the value
    f = lambda z: z * z if z > 0 else -z
    assert_dual(f(Dual(3.0, [1.0])), 9.0, [6.0])
    assert_dual(f(Dual(-3.0, [1.0])), 3.0, [-1.0])


def test_ufunc_scalar_specials():
    x = Dual(-1.5, [1.0, 2.0])
    assert np.maximum(x, 0.0) == 0.0 and type(np.maximum(x, 0.0)) is float
    assert np.maximum(x, -3.0) is x
    assert np.minimum(x, 0.0) is x and np.minimum(0.0, x) is x
    assert np.fmax(x, np.nan) is x and np.fmin(np.nan, x) is x
    assert np.isfinite(x) and not np.isnan(x) and not np.isinf(x)
    assert np.signbit(x)
    assert np.sign(x) == -1.0
    assert np.clip(x, -1.0, 1.0) == -1.0
    assert np.clip(Dual(0.5, [1.0, 2.0]), -1.0, 1.0).partials.tolist() == [1.0, 2.0]
    # supported by NumPy's object loops through the wrapped 0-d path
    assert math.floor(np.floor(Dual(2.5, [1.0]))) == 2
    assert np.add(x, 1.0, out=np.empty((), dtype=object)).item().value == -0.5


def test_unsupported_ufuncs_raise_type_error():
    x = Dual(1.5, [1.0])
    with pytest.raises(TypeError):
        np.logaddexp(x, 1.0)      # no object loop in NumPy
    with pytest.raises(TypeError):
        np.ldexp(x, 2)
    with pytest.raises(TypeError):
        np.bitwise_and(x, 1)
    with pytest.raises(TypeError):
        x + "a"
    with pytest.raises(TypeError):
        x * 1j
    with pytest.raises(TypeError):
        x // 2


# ---------------------------------------------------------------------------
# Errors: conversions, lane mismatch
# ---------------------------------------------------------------------------

def test_conversions_raise():
    x = Dual(1.5, [1.0, 0.0])
    with pytest.raises(TypeError, match="cannot be converted to float: the derivative would be lost"):
        float(x)
    with pytest.raises(TypeError, match="cannot be converted to int: the derivative would be lost"):
        int(x)
    with pytest.raises(TypeError, match="cannot be converted to int"):
        operator.index(x)
    with pytest.raises(TypeError, match="cannot be converted to complex"):
        complex(x)
    with pytest.raises(TypeError, match="cannot be converted to float"):
        np.asarray(seed([1.0, 2.0], np.eye(2)), dtype=float)
    with pytest.raises(TypeError, match="cannot be converted to float"):
        np.array([x, 1.0], dtype=np.float64)
    with pytest.raises(TypeError, match="cannot be converted to float"):
        math.exp(x)
    out = np.zeros(2)
    with pytest.raises(TypeError, match="cannot be converted to float"):
        out[0] = x
    with pytest.raises(TypeError):
        [1, 2, 3][x]


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv,
                                operator.pow, np.arctan2, np.hypot])
def test_lane_mismatch(op):
    with pytest.raises(ValueError, match="different numbers of partials"):
        op(Dual(1.0, [1.0, 2.0]), Dual(2.0, [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="different numbers of partials"):
        op(seed([1.0, 2.0], np.eye(2)), Dual(2.0, [1.0]))


# ---------------------------------------------------------------------------
# Object arrays through NumPy
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("k", LANES)
def test_object_arrays_through_numpy(k):
    rng = np.random.default_rng(k)
    n = 3
    vals = np.array([0.5, -1.2, 2.0])
    P = rng.uniform(-1, 1, (n, k))
    y = seed(vals, P)
    assert y.dtype == object and y.shape == (n,) and len(y) == n
    assert all(type(e) is Dual and e.nlanes == k for e in y)
    a, b, c = y                                          # unpacking
    assert_dual(a, 0.5, P[0])

    def check(res, want_vals, want_P):
        got_v, got_P = split(res, len(want_vals), k)
        np.testing.assert_allclose(got_v, want_vals, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(got_P, want_P, rtol=1e-13, atol=1e-14)

    check(np.exp(y), np.exp(vals), np.exp(vals)[:, None] * P)
    check(np.sin(y) * y, np.sin(vals) * vals,
          (np.cos(vals) * vals + np.sin(vals))[:, None] * P)
    W = rng.uniform(-1, 1, (n, 4))
    check(y @ W, vals @ W, W.T @ P)
    V = rng.uniform(-1, 1, (2, n))
    check(V @ y, V @ vals, V @ P)
    check(np.dot(V, y), V @ vals, V @ P)
    s = np.sum(y)
    assert_dual(s, vals.sum(), P.sum(axis=0), rtol=1e-14)
    pr = np.prod(y)
    assert_dual(pr, vals.prod(), sum(vals.prod() / vals[i] * P[i] for i in range(n)), rtol=1e-13)
    # branches on the value
    w = np.where(y > 0, y, 0.0)
    check(w, np.where(vals > 0, vals, 0.0), np.where((vals > 0)[:, None], P, 0.0))
    m = np.maximum(y, 0.0)
    check(m, np.maximum(vals, 0.0), np.where((vals > 0)[:, None], P, 0.0))
    m = np.minimum(y, 1.0)
    check(m, np.minimum(vals, 1.0), np.where((vals < 1)[:, None], P, 0.0))
    cl = np.clip(y, -1.0, 1.0)
    inside = (np.abs(vals) < 1.0)[:, None]
    check(cl, np.clip(vals, -1.0, 1.0), np.where(inside, P, 0.0))
    # stacking, concatenation, reshape, slicing
    st = np.stack([y, 2.0 * y])
    assert st.shape == (2, n) and st.dtype == object
    check(st[1], 2.0 * vals, 2.0 * P)
    cc = np.concatenate((y, np.ones(1)))
    check(cc, np.append(vals, 1.0), np.vstack([P, np.zeros((1, k))]))
    check(y[::-1], vals[::-1], P[::-1])
    check(y.reshape(1, n)[0], vals, P)
    # item assignment into fresh object arrays
    out = np.empty(n, dtype=object)
    out[0] = a * b
    out[1] = 3.0
    out[2] = c ** 2
    check(out, [0.5 * -1.2, 3.0, 4.0], [P[0] * -1.2 + 0.5 * P[1], np.zeros(k), 4.0 * P[2]])
    z = np.zeros_like(y)
    assert z.dtype == object
    z[1] = np.exp(b)
    z[2:] = y[:1]
    check(z, [0.0, np.exp(-1.2), 0.5], [np.zeros(k), np.exp(-1.2) * P[1], P[0]])
    # list comprehension, sum(), mixed float/Dual arithmetic
    lst = [e * e + 1 for e in y]
    check(lst, vals ** 2 + 1, 2 * vals[:, None] * P)
    assert_dual(sum(y), vals.sum(), P.sum(axis=0), rtol=1e-14)
    # Dual scalar times object array, both orders
    check(a * y, 0.5 * vals, 0.5 * P + vals[:, None] * P[0])
    check(y / a, vals / 0.5, (P * 0.5 - vals[:, None] * P[0]) / 0.25)


# ---------------------------------------------------------------------------
# Built-in problems: Jacobians from duals
# ---------------------------------------------------------------------------

PROBLEMS = ["lotka_volterra", "rober", "hires", "pollu", "brusselator_1d"]


def _states(prob):
    rng = np.random.default_rng(7)
    y0 = np.asarray(prob.y0, dtype=float)
    return [y0, y0 * rng.uniform(0.5, 1.5, y0.shape) + rng.uniform(0.01, 0.1, y0.shape)]


def _jacobians(prob, t, y, p):
    n, m = y.shape[0], p.shape[0]
    k = n + m
    Y = seed(y, np.eye(n, k))
    P = seed(p, np.eye(m, k, n))
    vals, parts = split(prob.fun(t, Y, P), n, k)
    return vals, parts[:, :n], parts[:, n:]


def _fd_parameter_jacobian(prob, t, y, p):
    """Central differences of fun in p, in 40-digit mpmath arithmetic (the
    problems' NumPy code runs on object arrays of mpf); float64 differences
    cannot reach 1e-6 where a parameter's terms are tiny next to the other
    terms of the same equation (POLLU)."""
    with mpmath.workdps(40):
        ym = np.array([mpmath.mpf(float(v)) for v in y], dtype=object)
        fd = np.empty((y.shape[0], p.shape[0]))
        for j in range(p.shape[0]):
            h = mpmath.mpf("1e-15") * max(abs(p[j]), 1e-3)
            pp = np.array([mpmath.mpf(float(v)) for v in p], dtype=object)
            pm = pp.copy()
            pp[j] += h
            pm[j] -= h
            d = (np.asarray(prob.fun(t, ym, pp), dtype=object)
                 - np.asarray(prob.fun(t, ym, pm), dtype=object)) / (2 * h)
            fd[:, j] = [float(v) for v in d]
    return fd


@pytest.mark.parametrize("name", PROBLEMS)
def test_problem_jacobians(name):
    prob = problems.get(name)
    p = np.asarray(prob.p, dtype=float)
    t = 0.3
    for y in _states(prob):
        n = y.shape[0]
        f = prob.fun(t, y, p)
        vals, Jy, Jp = _jacobians(prob, t, y, p)
        np.testing.assert_allclose(vals, f, rtol=1e-14, atol=1e-14 * np.abs(f).max())
        J = prob.jac(t, y, p)
        np.testing.assert_allclose(Jy, J, rtol=1e-12, atol=1e-14 * np.abs(J).max())
        fd = _fd_parameter_jacobian(prob, t, y, p)
        np.testing.assert_allclose(Jp, fd, rtol=1e-6, atol=1e-14 * np.abs(fd).max())
        # only the state differentiated, p a plain float array
        vals2, Jy2 = split(prob.fun(t, seed(y, np.eye(n)), p), n, n)
        np.testing.assert_array_equal(vals2, vals)
        np.testing.assert_allclose(Jy2, Jy, rtol=1e-14, atol=1e-300)
        # p as an object array of Python floats (the fast way)
        vals3, Jy3 = split(prob.fun(t, seed(y, np.eye(n)), p.astype(object)), n, n)
        np.testing.assert_allclose(Jy3, Jy, rtol=1e-14, atol=1e-300)


def test_lotka_volterra_jacobian_exact():
    prob = problems.get("lotka_volterra")
    y = np.array([1.3, 0.7])
    p = np.asarray(prob.p, dtype=float)
    _, Jy, Jp = _jacobians(prob, 0.0, y, p)
    a, b, c, d = p
    x, z = y
    np.testing.assert_array_equal(Jy, [[a - b * z, -b * x], [d * z, -c + d * x]])
    np.testing.assert_array_equal(Jp, [[x, -x * z, 0, 0], [0, 0, -z, x * z]])


# ---------------------------------------------------------------------------
# seed / split and the lane-major C API
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("k", LANES)
def test_seed_split_roundtrip(k):
    rng = np.random.default_rng(3)
    v = rng.normal(size=5)
    P = rng.normal(size=(5, k))
    y = seed(v, P)
    v2, P2 = split(y, 5, k)
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(P2, P)
    # non-contiguous inputs
    y = seed(v[::-1], np.asfortranarray(P))
    np.testing.assert_array_equal(split(y, 5, k)[1], P)
    # list / tuple / float ndarray / mixed numbers
    v3, P3 = split(list(y), 5, k)
    np.testing.assert_array_equal(P3, P)
    v3, P3 = split(tuple(y[:4]) + (2,), 5, k)
    np.testing.assert_array_equal(v3[4], 2.0)
    np.testing.assert_array_equal(P3[4], 0.0)
    v4, P4 = split(np.arange(5.0), 5, k)
    np.testing.assert_array_equal(v4, np.arange(5.0))
    assert P4.shape == (5, k) and not P4.any()
    v5, P5 = split([np.float32(1.5), np.int64(2), True, np.array(3.0), np.array(y[0])], 5, k)
    np.testing.assert_array_equal(v5, [1.5, 2.0, 1.0, 3.0, y[0].value])
    np.testing.assert_array_equal(P5[4], y[0].partials)
    # n == 1: a scalar result is accepted
    v6, P6 = split(y[0], 1, k)
    np.testing.assert_array_equal(P6[0], y[0].partials)
    # strided object array
    big = np.empty(10, dtype=object)
    big[::2] = y
    big[1::2] = 0.0
    np.testing.assert_array_equal(split(big[::2], 5, k)[1], P)


def test_split_errors():
    y = seed([1.0, 2.0, 3.0], np.eye(3))
    with pytest.raises(ValueError, match=r"shape \(2,\).*shape \(3,\)"):
        split(y, 2, 3)
    with pytest.raises(ValueError, match=r"shape \(3, 1\)"):
        split(y.reshape(3, 1), 3, 3)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        split([1.0, 2.0, 3.0, 4.0], 3, 3)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        split([[1.0, 2.0], [3.0, 4.0]], 3, 3)
    with pytest.raises(ValueError, match=r"scalar"):
        split(1.0, 3, 3)
    with pytest.raises(ValueError, match="2 partials; expected 3"):
        split([y[0], Dual(1.0, [1.0, 2.0]), 1.0], 3, 3)
    with pytest.raises(TypeError, match="element 1 .*'str'"):
        split([y[0], "x", 1.0], 3, 3)
    with pytest.raises(TypeError, match="element 2 .*'complex'"):
        split(np.array([y[0], 1.0, 2j], dtype=object), 3, 3)
    with pytest.raises(TypeError, match="element 0 .*NoneType"):
        split(np.empty(3, dtype=object), 3, 3)
    with pytest.raises(TypeError, match="complex128"):
        split(np.ones(3, dtype=complex), 3, 3)
    with pytest.raises(ValueError, match=r"shape \(3, k\)"):
        seed([1.0, 2.0, 3.0], np.eye(2))
    with pytest.raises(ValueError, match="1-dimensional"):
        seed(np.eye(2), np.eye(2))


@pytest.mark.parametrize("k", LANES)
def test_lane_major_c_api(k):
    rng = np.random.default_rng(11)
    n = 4
    v = rng.normal(size=n)
    PT = rng.normal(size=(k, n))                  # lane-major: partials[j * n + i]
    y = _seed_array_lane_major(v, PT)
    for i in range(n):
        assert_dual(y[i], v[i], PT[:, i], rtol=0)
    v2, PT2 = _split_lane_major(y, n, k)
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(PT2, PT)
    v2, PT2 = _split_lane_major([1.0, y[1], 2, y[3]], n, k)
    np.testing.assert_array_equal(PT2[:, [0, 2]], 0.0)
    np.testing.assert_array_equal(PT2[:, 1], PT[:, 1])
    # seed_into: elements held by the array alone are overwritten in place,
    # one held elsewhere (by the user's code) is replaced, never mutated
    held = y[2]
    ids = [id(e) for e in y]
    v_new, PT_new = v + 1.0, PT * 2.0
    _seed_into_lane_major(y, v_new, PT_new)
    assert [id(e) for e in y][:2] == ids[:2] and id(y[3]) == ids[3]
    assert y[2] is not held
    assert_dual(held, v[2], PT[:, 2], rtol=0)
    for i in range(n):
        assert_dual(y[i], v_new[i], PT_new[:, i], rtol=0)
    # a fresh object array (None-filled) and wrong arguments
    out = np.empty(n, dtype=object)
    _seed_into_lane_major(out, v, PT)
    assert_dual(out[1], v[1], PT[:, 1], rtol=0)
    with pytest.raises(ValueError, match="1-D object array of length"):
        _seed_into_lane_major(np.empty(n), v, PT)
    with pytest.raises(ValueError, match="1-D object array of length"):
        _seed_into_lane_major(np.empty(n + 1, dtype=object), v, PT)


def test_no_reference_leaks():
    x = Dual(1.0, np.ones(17))
    y = seed(np.ones(3), np.ones((3, 17)))
    rc = sys.getrefcount(x)
    for _ in range(100):
        x * y[0] + np.exp(x) - 2.0 ** x
        split(y, 3, 17)
        _seed_into_lane_major(y, np.ones(3), np.ones((17, 3)))
        np.float64(2.0) * x
    assert sys.getrefcount(x) == rc
