"""The C tape interpreter (``diffsens/_kernels/tape.c``) against independent routes.

A traced right-hand side is evaluated by the C interpreter for values, dual
lanes (JVPs) and reverse sweeps (VJPs).  Here those results are checked
against routes that share nothing with it:

* values: the traced Python function called on NumPy floats;
* JVPs: complex-step derivatives of the Python function (analytic
  expressions) and central finite differences (any expression);
* VJPs and dense Jacobians: the dot-product identity and each other;
* the built-in problems: their plain NumPy ``fun`` and analytic ``jac``.

Random right-hand sides are expression trees drawn by hypothesis.  Each
node's value range is tracked with interval arithmetic while the tree is
drawn, and arguments are wrapped where needed (``1 + x**2``, ``exp(tanh x)``,
``0.8 tanh x``, ...) so that every function stays well inside its domain and
every value stays moderate.  Tolerances are relative to a first-order
round-off scale computed alongside (``_Scale``): the magnitude a result's
round-off error is proportional to, which equals ``|value|`` unless terms
cancel.
"""

import concurrent.futures
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import diffsens
from diffsens import problems
from diffsens._kernels import _core

EPS = np.finfo(float).eps

# Domains of the inputs of random right-hand sides.
Y_RANGE = (-1.5, 1.5)
P_RANGE = (0.5, 2.0)
T_RANGE = (0.0, 2.0)


def _settings(max_examples):
    # derandomize: CI runs the same examples every time
    return settings(max_examples=max_examples, deadline=None, derandomize=True)


# ---------------------------------------------------------------------------
# Expression trees with tracked value intervals
# ---------------------------------------------------------------------------
#
# A node is a tuple:
#   ("y", i) ("p", j) ("t",) ("c", value)
#   ("u", name, a)                 np.<name>(a); "neg": -a; "pyabs": abs(a)
#   ("b", op, a, b)                a op b, op in + - * /
#   ("powi", a, k)                 a ** k, k a Python int
#   ("powf", a, c)                 a ** c, c a float constant (a > 0)
#   ("powt", a, b)                 a ** b (a > 0)
#   ("npow", a, b)                 np.power(a, b) (a > 0; b a node or float)
#   ("max", a, b) ("min", a, b)    np.maximum / np.minimum
#   ("where", cmp, a, b, x, z)     np.where(a cmp b, x, z)
#   ("clip", x, lo, hi)            np.clip(x, lo, hi), constant bounds
#   ("ysum", i, j, w)              np.sum(y[i:j] * w)  (w None: y[i:j].sum())
#   ("ydot", i, j, w)              w @ y[i:j], w a constant vector
#   ("yprod", i, j)                np.prod(y[i:j])
#
# A right-hand side is (n, m, trees, combine) where combine is one of
#   ("list",) ("array",) ("stack",) ("concat", k) ("matmul", A, b)

_MONOTONE_UP = {"exp": np.exp, "log": np.log, "log1p": np.log1p,
                "expm1": np.expm1, "sqrt": np.sqrt, "tanh": np.tanh,
                "sinh": np.sinh, "arctan": np.arctan, "arcsin": np.arcsin,
                "tan": np.tan}
ANALYTIC_UNARY = ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan",
                  "tanh", "sinh", "cosh", "arctan", "arcsin", "arccos", "neg")
CMP = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
       ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
       "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


class E:
    """A node and an interval [lo, hi] holding its value for all inputs."""
    __slots__ = ("node", "lo", "hi")

    def __init__(self, node, lo, hi):
        lo, hi = float(lo), float(hi)
        assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi, (node, lo, hi)
        # widen a little: the bounds are computed in floating point
        pad = 1e-9 * (1.0 + max(abs(lo), abs(hi)))
        self.node, self.lo, self.hi = node, lo - pad, hi + pad

    @property
    def mag(self):
        return max(abs(self.lo), abs(self.hi))


def _const(v):
    return E(("c", float(v)), v, v)


def _hull(*vals):
    return min(vals), max(vals)


def e_unary(name, a):
    lo, hi = a.lo, a.hi
    if name in _MONOTONE_UP:
        f = _MONOTONE_UP[name]
        return E(("u", name, a.node), f(lo), f(hi))
    if name == "arccos":
        return E(("u", name, a.node), np.arccos(hi), np.arccos(lo))
    if name == "neg":
        return E(("u", name, a.node), -hi, -lo)
    if name in ("sin", "cos"):
        return E(("u", name, a.node), -1.0, 1.0)
    if name in ("cosh", "abs", "pyabs"):
        f = np.cosh if name == "cosh" else abs
        top = max(f(lo), f(hi))
        bottom = f(0.0) if lo <= 0.0 <= hi else min(f(lo), f(hi))
        return E(("u", name, a.node), bottom, top)
    raise AssertionError(name)


def e_binary(op, a, b):
    if op == "+":
        lo, hi = a.lo + b.lo, a.hi + b.hi
    elif op == "-":
        lo, hi = a.lo - b.hi, a.hi - b.lo
    elif op == "*":
        lo, hi = _hull(a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi)
    else:
        assert b.lo > 0 or b.hi < 0
        lo, hi = _hull(a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi)
    return E(("b", op, a.node, b.node), lo, hi)


def e_powi(a, k):
    if k < 0:
        assert a.lo > 0 or a.hi < 0
    cands = [a.lo ** k, a.hi ** k]
    if a.lo <= 0.0 <= a.hi and k > 0:
        cands.append(0.0)
    return E(("powi", a.node, k), min(cands), max(cands))


def e_pow(a, b, kind):
    """a ** b for a > 0, b a node or a float; monotone in each argument."""
    assert a.lo > 0
    if isinstance(b, E):
        cands = [x ** y for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
        node = (kind, a.node, b.node)
    else:
        cands = [a.lo ** b, a.hi ** b]
        node = (kind, a.node, b)
    return E(node, min(cands), max(cands))


# -- domain guards: return a node whose interval satisfies a condition ------

def bounded(draw, a, bound):
    """|value| <= bound."""
    if a.mag <= bound:
        return a
    how = draw(st.sampled_from(["tanh", "sin", "scale"]))
    if how == "scale":
        return e_binary("*", _const(bound / a.mag), a)
    return e_binary("*", _const(0.95 * bound), e_unary(how, a))


def positive(draw, a, low):
    """value >= low > 0 (a is bounded first)."""
    if a.lo >= low:
        return a
    a = bounded(draw, a, 3.0)
    if draw(st.booleans()):
        return e_binary("+", _const(1.0), e_powi(a, 2))            # 1 + a**2
    return e_unary("exp", e_unary("tanh", a))                      # exp(tanh a)


def nonzero(draw, a, low):
    """|value| >= low."""
    if a.lo >= low or a.hi <= -low:
        return a
    return positive(draw, a, low)


# -- the strategy -------------------------------------------------------------

@st.composite
def leaves(draw, n, m):
    kinds = ["y", "y", "y", "t", "c", "vec"] + (["p", "p"] if m else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "y":
        return E(("y", draw(st.integers(0, n - 1))), *Y_RANGE)
    if kind == "p":
        return E(("p", draw(st.integers(0, m - 1))), *P_RANGE)
    if kind == "t":
        return E(("t",), *T_RANGE)
    if kind == "c":
        return _const(draw(st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5, -3.0])
                           | st.floats(-3.0, 3.0, allow_subnormal=False)))
    i = draw(st.integers(0, n - 1))
    j = draw(st.integers(i + 1, n))
    vkind = draw(st.sampled_from(["ysum", "ydot", "yprod"]))
    if vkind == "yprod":
        bound = Y_RANGE[1] ** (j - i)
        return E(("yprod", i, j), -bound, bound)
    w = None
    if vkind == "ydot" or draw(st.booleans()):
        w = tuple(draw(st.lists(st.sampled_from([0.0, 1.0, -2.0])
                                | st.floats(-2.0, 2.0, allow_subnormal=False),
                                min_size=j - i, max_size=j - i)))
    bound = Y_RANGE[1] * (j - i if w is None else sum(abs(x) for x in w))
    return E((vkind, i, j, w), -bound, bound)


@st.composite
def expressions(draw, n, m, depth, analytic):
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(leaves(n, m))
    sub = expressions(n, m, depth - 1, analytic)
    kinds = ["unary", "unary", "binary", "binary", "binary", "pow"]
    if not analytic:
        kinds += ["abs", "maxmin", "where", "clip"]
    kind = draw(st.sampled_from(kinds))
    if kind == "unary":
        name = draw(st.sampled_from(ANALYTIC_UNARY))
        a = draw(sub)
        if name in ("exp", "expm1", "sinh", "cosh"):
            a = bounded(draw, a, 3.0)
        elif name in ("log", "sqrt"):
            a = positive(draw, a, 0.2)
        elif name == "log1p":
            a = a if a.lo >= -0.7 else positive(draw, a, 0.1)
        elif name == "tan":
            a = bounded(draw, a, 1.0)
        elif name in ("arcsin", "arccos"):
            a = bounded(draw, a, 0.8)
        else:
            a = bounded(draw, a, 20.0)
        out = e_unary(name, a)
    elif kind == "binary":
        op = draw(st.sampled_from("+-*/"))
        a, b = draw(sub), draw(sub)
        if op == "/":
            b = nonzero(draw, b, 0.5)
        out = e_binary(op, a, b)
    elif kind == "pow":
        pkind = draw(st.sampled_from(["powi", "powi", "powf", "powt", "npow"]))
        a = draw(sub)
        if pkind == "powi":
            k = draw(st.sampled_from([2, 3, -1, -2, 4, 0, 1, 5]))
            a = bounded(draw, a, 2.5)
            if k < 0:
                a = nonzero(draw, a, 0.5)
            out = e_powi(a, k)
        else:
            a = positive(draw, bounded(draw, a, 3.0), 0.3)
            if pkind == "powf" or (pkind == "npow" and draw(st.booleans())):
                b = draw(st.sampled_from([0.5, -1.5, 2.5, 1.0 / 3.0])
                         | st.floats(-2.5, 2.5, allow_subnormal=False))
            else:
                b = bounded(draw, draw(sub), 2.0)
            out = e_pow(a, b, pkind)
    elif kind == "abs":
        out = e_unary(draw(st.sampled_from(["abs", "pyabs"])), bounded(draw, draw(sub), 20.0))
    elif kind == "maxmin":
        which = draw(st.sampled_from(["max", "min"]))
        a, b = draw(sub), draw(sub)
        f = max if which == "max" else min
        out = E((which, a.node, b.node), f(a.lo, b.lo), f(a.hi, b.hi))
    elif kind == "where":
        cmp = draw(st.sampled_from(sorted(CMP)))
        a, b, x, z = draw(sub), draw(sub), draw(sub), draw(sub)
        out = E(("where", cmp, a.node, b.node, x.node, z.node),
                min(x.lo, z.lo), max(x.hi, z.hi))
    else:
        x = draw(sub)
        lo = draw(st.floats(-2.0, 1.0, allow_subnormal=False))
        hi = lo + draw(st.floats(0.1, 2.0))
        out = E(("clip", x.node, lo, hi), min(max(x.lo, lo), hi), min(max(x.hi, lo), hi))
    # keep values moderate so that nothing downstream overflows
    return bounded(draw, out, 30.0) if out.mag > 30.0 else out


@st.composite
def rhs_cases(draw, analytic):
    """A random right-hand side, a point and tangents."""
    n = draw(st.integers(3, 6))
    m = draw(st.integers(0, 4))
    depth = draw(st.integers(1, 5))
    trees = tuple(draw(expressions(n, m, depth, analytic)).node for _ in range(n))
    ckind = draw(st.sampled_from(["list", "array", "stack", "concat", "matmul"]))
    if ckind == "concat":
        combine = ("concat", draw(st.integers(1, n - 1)))
    elif ckind == "matmul":
        entry = st.sampled_from([0.0, 1.0, -1.0]) | st.floats(-1.0, 1.0, allow_subnormal=False)
        A = np.array(draw(st.lists(entry, min_size=n * n, max_size=n * n))).reshape(n, n)
        b = np.array(draw(st.lists(entry, min_size=n, max_size=n)))
        combine = ("matmul", A, b)
    else:
        combine = (ckind,)

    def vec(size, lo, hi):
        return np.array(draw(st.lists(st.floats(lo, hi, allow_subnormal=False),
                                      min_size=size, max_size=size)), dtype=float)

    return dict(
        spec=(n, m, trees, combine),
        t=draw(st.floats(*T_RANGE)), y=vec(n, *Y_RANGE), p=vec(m, *P_RANGE),
        yd=vec(n, -1.0, 1.0), pd=vec(m, -1.0, 1.0), w=vec(n, -1.0, 1.0))


# ---------------------------------------------------------------------------
# Interpreting a tree: NumPy (floats, complex, tracers), logged, round-off scale
# ---------------------------------------------------------------------------

class NumpyOps:
    """Plain NumPy: the same code runs on floats, complex numbers and tracers."""

    def unary(self, name, a):
        if name == "neg":
            return -a
        if name == "pyabs":
            return abs(a)
        return getattr(np, name)(a)

    def power(self, a, b):
        return np.power(a, b)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def minimum(self, a, b):
        return np.minimum(a, b)

    def where(self, cmp, a, b, x, z):
        return np.where(CMP[cmp](a, b), x, z)

    def clip(self, x, lo, hi):
        return np.clip(x, lo, hi)


class LoggedOps(NumpyOps):
    """NumPy on floats, recording every branch decision and its margin."""

    def __init__(self):
        self.decisions = []   # (decision, margin)

    def _log(self, decision, a, b):
        self.decisions.append((decision, abs(float(a) - float(b))))

    def unary(self, name, a):
        if name in ("abs", "pyabs"):
            self._log(np.sign(a), a, 0.0)
        return super().unary(name, a)

    def maximum(self, a, b):
        self._log(bool(a >= b), a, b)
        return super().maximum(a, b)

    def minimum(self, a, b):
        self._log(bool(a <= b), a, b)
        return super().minimum(a, b)

    def where(self, cmp, a, b, x, z):
        self._log(bool(CMP[cmp](a, b)), a, b)
        return super().where(cmp, a, b, x, z)

    def clip(self, x, lo, hi):
        self._log(bool(x < lo), x, lo)
        self._log(bool(x > hi), x, hi)
        return super().clip(x, lo, hi)


class _Scale:
    """A value with its first-order round-off scale and |d value / d inputs|.

    ``e`` bounds the accumulated round-off in units of eps (each op adds its
    own |result| once, libm calls twice); ``g`` is the Jacobian row with every
    partial replaced by its absolute value.  ``e`` and ``g`` only set
    tolerances; they check nothing themselves.
    """
    __slots__ = ("v", "e", "g")

    def __init__(self, v, e, g):
        self.v, self.e, self.g = float(v), float(e), g

    @staticmethod
    def lift(x, width):
        if isinstance(x, _Scale):
            return x
        return _Scale(float(np.asarray(x)), 0.0, np.zeros(width))

    def _w(self):
        return self.g.shape[0]

    def __add__(self, o):
        o = _Scale.lift(o, self._w())
        v = self.v + o.v
        return _Scale(v, self.e + o.e + abs(v), self.g + o.g)

    __radd__ = __add__

    def __sub__(self, o):
        o = _Scale.lift(o, self._w())
        v = self.v - o.v
        return _Scale(v, self.e + o.e + abs(v), self.g + o.g)

    def __rsub__(self, o):
        return _Scale.lift(o, self._w()) - self

    def __mul__(self, o):
        o = _Scale.lift(o, self._w())
        v = self.v * o.v
        return _Scale(v, abs(o.v) * self.e + abs(self.v) * o.e + abs(v),
                      abs(o.v) * self.g + abs(self.v) * o.g)

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = _Scale.lift(o, self._w())
        v = self.v / o.v
        q = abs(v / o.v)
        return _Scale(v, self.e / abs(o.v) + q * o.e + abs(v),
                      self.g / abs(o.v) + q * o.g)

    def __rtruediv__(self, o):
        return _Scale.lift(o, self._w()) / self

    def __neg__(self):
        return _Scale(-self.v, self.e, self.g)

    def __pow__(self, o):
        if isinstance(o, int) and not isinstance(o, bool):
            v = self.v ** o
            d = abs(o * self.v ** (o - 1)) if o else 0.0
            ulps = 1 + abs(o).bit_length()
            return _Scale(v, d * self.e + ulps * abs(v), d * self.g)
        o = _Scale.lift(o, self._w())
        v = self.v ** o.v
        da, db = abs(o.v * self.v ** (o.v - 1.0)), abs(math.log(self.v) * v)
        return _Scale(v, da * self.e + db * o.e + 2 * abs(v), da * self.g + db * o.g)

    def __rpow__(self, o):
        return _Scale.lift(o, self._w()) ** self


_DERIV = {"exp": np.exp, "log": lambda a: 1 / a, "log1p": lambda a: 1 / (1 + a),
          "expm1": np.exp, "sqrt": lambda a: 0.5 / np.sqrt(a), "sin": np.cos,
          "cos": np.sin, "tan": lambda a: 1 + np.tan(a) ** 2,
          "tanh": lambda a: 1 / np.cosh(a) ** 2, "sinh": np.cosh, "cosh": np.sinh,
          "arctan": lambda a: 1 / (1 + a * a),
          "arcsin": lambda a: 1 / np.sqrt(1 - a * a),
          "arccos": lambda a: 1 / np.sqrt(1 - a * a),
          "abs": lambda a: 1.0, "pyabs": lambda a: 1.0}


class ScaleOps:
    def __init__(self, width):
        self.width = width

    def unary(self, name, a):
        a = _Scale.lift(a, self.width)
        if name == "neg":
            return -a
        v = NumpyOps().unary(name, a.v)
        d = abs(float(_DERIV[name](a.v)))
        return _Scale(v, d * a.e + 2 * abs(v), d * a.g)

    def power(self, a, b):
        return _Scale.lift(a, self.width) ** b

    def _choose(self, first, a, b, tie=False):
        a, b = _Scale.lift(a, self.width), _Scale.lift(b, self.width)
        if tie:   # either branch's derivative is a valid choice: cover both
            v = a.v if first else b.v
            return _Scale(v, max(a.e, b.e), np.maximum(a.g, b.g))
        return a if first else b

    def maximum(self, a, b):
        va, vb = _Scale.lift(a, 1).v, _Scale.lift(b, 1).v
        return self._choose(va >= vb, a, b, va == vb)

    def minimum(self, a, b):
        va, vb = _Scale.lift(a, 1).v, _Scale.lift(b, 1).v
        return self._choose(va <= vb, a, b, va == vb)

    def where(self, cmp, a, b, x, z):
        return self._choose(CMP[cmp](_Scale.lift(a, 1).v, _Scale.lift(b, 1).v), x, z)

    def clip(self, x, lo, hi):
        v = _Scale.lift(x, 1).v
        if v < lo or v > hi:
            return _Scale.lift(lo if v < lo else hi, self.width)
        return self._choose(True, x, 0.0, v == lo or v == hi)


def _run(node, y, p, t, ops):
    kind = node[0]
    if kind == "y":
        return y[node[1]]
    if kind == "p":
        return p[node[1]]
    if kind == "t":
        return t
    if kind == "c":
        return node[1]
    if kind == "ysum":
        _, i, j, w = node
        return y[i:j].sum() if w is None else np.sum(y[i:j] * np.array(w))
    if kind == "ydot":
        _, i, j, w = node
        return np.array(w) @ y[i:j]
    if kind == "yprod":
        return np.prod(y[node[1]:node[2]])

    def r(k):
        return _run(node[k], y, p, t, ops)

    if kind == "u":
        return ops.unary(node[1], r(2))
    if kind == "b":
        a, b = r(2), r(3)
        return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                "/": lambda: a / b}[node[1]]()
    if kind == "powi":
        return r(1) ** node[2]
    if kind == "powf":
        return r(1) ** node[2]
    if kind == "powt":
        return r(1) ** r(2)
    if kind == "npow":
        return ops.power(r(1), node[2] if isinstance(node[2], float) else r(2))
    if kind == "max":
        return ops.maximum(r(1), r(2))
    if kind == "min":
        return ops.minimum(r(1), r(2))
    if kind == "where":
        return ops.where(node[1], r(2), r(3), r(4), r(5))
    if kind == "clip":
        return ops.clip(r(1), node[2], node[3])
    raise AssertionError(kind)


def _combine(values, combine):
    kind = combine[0]
    if kind == "list":
        return list(values)
    if kind == "array":
        return np.array(values)
    if kind == "stack":
        return np.stack(values)
    if kind == "concat":
        k = combine[1]
        return np.concatenate((np.stack(values[:k]), np.stack(values[k:])))
    _, A, b = combine
    return A @ np.stack(values) + b


def make_fun(spec, ops=None):
    """The Python right-hand side ``fun(t, y, p)`` of a drawn spec."""
    n, m, trees, combine = spec
    ops = NumpyOps() if ops is None else ops

    def fun(t, y, p=None):
        return _combine([_run(tr, y, p, t, ops) for tr in trees], combine)
    return fun


def trace_spec(spec):
    n, m, _, _ = spec
    fun = make_fun(spec)
    return diffsens.trace(fun, np.zeros(n), np.zeros(m) if m else None)


def numpy_value(spec, t, y, p, ops=None):
    """f on NumPy float64 scalars (and the decision log, if ops logs)."""
    with np.errstate(all="raise", under="ignore"):
        out = make_fun(spec, ops)(np.float64(t), np.asarray(y, float),
                                  np.asarray(p, float))
    return np.array([float(np.real(v)) for v in np.asarray(out, dtype=object).ravel()])


def scale_of(spec, t, y, p):
    """(values, round-off scale e in eps units, |J| of shape (n, n + m))."""
    n, m, _, _ = spec
    width = n + m
    eye = np.eye(width)
    ys = np.empty(n, dtype=object)
    ps = np.empty(m, dtype=object)
    for i in range(n):
        ys[i] = _Scale(y[i], 0.0, eye[i])
    for j in range(m):
        ps[j] = _Scale(p[j], 0.0, eye[n + j])
    with np.errstate(all="raise", under="ignore"):
        out = make_fun(spec, ScaleOps(width))(float(t), ys, ps)
    out = [_Scale.lift(v, width) for v in np.asarray(out, dtype=object).ravel()]
    return (np.array([s.v for s in out]), np.array([s.e for s in out]),
            np.array([s.g for s in out]).reshape(n, width))


def complex_step(spec, t, y, p, yd, pd, h=1e-20):
    """J_y yd + J_p pd = Im f(y + i h yd, p + i h pd) / h."""
    yc = y + 1j * h * yd
    pc = p + 1j * h * pd
    out = make_fun(spec)(t, yc, pc)
    return np.array([complex(v).imag for v in np.asarray(out, dtype=object).ravel()]) / h


def value_tolerance(v, e):
    return 1e-13 * np.abs(v) + 64 * EPS * e + 1e-300


def assert_close(actual, expected, tol, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    err = np.abs(actual - expected)
    bad = ~(err <= tol)
    assert not bad.any(), (
        f"{what}: mismatch at {np.flatnonzero(bad).tolist()}\n"
        f"actual   {actual!r}\nexpected {expected!r}\nerror    {err!r}\ntol      {tol!r}")


# ---------------------------------------------------------------------------
# Property tests on random right-hand sides
# ---------------------------------------------------------------------------


@_settings(200)
@given(case=rhs_cases(analytic=False))
def test_value_matches_numpy(case):
    spec, t, y, p = case["spec"], case["t"], case["y"], case["p"]
    n, m = spec[0], spec[1]
    log = LoggedOps()
    ref = numpy_value(spec, t, y, p, log)
    _, e, _ = scale_of(spec, t, y, p)
    # a branch taken on a near tie may go either way under round-off: such a
    # point says nothing about the interpreter (exact ties are fine: both
    # routes see the same operands then)
    assume(not any(0.0 < mg < 1e-9 for _, mg in log.decisions))
    rhs = trace_spec(spec)
    assert (rhs.n, rhs.m) == (n, m)
    tol = value_tolerance(ref, e)
    assert_close(rhs(t, y, p) if m else rhs(t, y), ref, tol, "rhs(t, y, p)")
    assert_close(rhs.function.value(t, y, p if m else None), ref, tol, "TapeFunction.value")
    assert_close(rhs.tape.evaluate(t, y, p if m else None), ref, tol, "Tape.evaluate")
    # value_batch: rows at other points, and the same point between them
    rows = np.stack([y, np.clip(y[::-1] * 0.7, *Y_RANGE), y, -y])
    ts = np.array([t, 0.3, t, 1.7])
    batch = rhs.function.value_batch(ts, rows, p if m else None)
    assert batch.shape == (4, n)
    for k in range(4):
        single = rhs.function.value(ts[k], rows[k], p if m else None)
        np.testing.assert_array_equal(batch[k], single)
    assert_close(batch[0], ref, tol, "value_batch row 0")
    assert_close(batch[2], ref, tol, "value_batch row 2")
    # a scalar t broadcasts over the rows
    np.testing.assert_array_equal(rhs.function.value_batch(t, rows, p if m else None)[[0, 2]],
                                  batch[[0, 2]])
    # the value pass runs op by op, the jvp block by block: the same values
    pv = p if m else np.zeros(0)
    single = rhs.function.value(t, y, pv)
    np.testing.assert_array_equal(rhs.function.jvp(t, y, pv, np.ones(n))[0], single)
    np.testing.assert_array_equal(rhs.function.vjp(t, y, pv, np.ones(n))[0], single)


@_settings(200)
@given(case=rhs_cases(analytic=True))
def test_jvp_matches_complex_step(case):
    spec, t, y, p = case["spec"], case["t"], case["y"], case["p"]
    yd, pd = case["yd"], case["pd"]
    n, m = spec[0], spec[1]
    _, _, G = scale_of(spec, t, y, p)
    rhs = trace_spec(spec)
    f, jv = rhs.jvp(t, y, p if m else None, yd, pd if m else None)
    ref = complex_step(spec, t, y, p, yd, pd)
    scale = G @ np.abs(np.concatenate((yd, pd)))
    # complex step is exact up to O(h^2) = 1e-40 terms: a tiny absolute floor
    assert_close(jv, ref, 1e-12 * (np.abs(ref) + scale) + 1e-30, "jvp vs complex step")
    # the value returned alongside is the plain value
    np.testing.assert_array_equal(f, rhs.function.value(t, y, p if m else None))
    # y and p tangents separately
    if m:
        _, jy = rhs.jvp(t, y, p, yd=yd)
        _, jp = rhs.jvp(t, y, p, pd=pd)
        ref_y = complex_step(spec, t, y, p, yd, 0 * pd)
        ref_p = complex_step(spec, t, y, p, 0 * yd, pd)
        assert_close(jy, ref_y, 1e-12 * (np.abs(ref_y) + G[:, :n] @ np.abs(yd)) + 1e-30,
                     "jvp (y tangent) vs complex step")
        assert_close(jp, ref_p, 1e-12 * (np.abs(ref_p) + G[:, n:] @ np.abs(pd)) + 1e-30,
                     "jvp (p tangent) vs complex step")


@_settings(100)
@given(case=rhs_cases(analytic=True))
def test_second_order_pass_matches_jvp_and_complex_step(case):
    """jvp2's first-order lanes are the jvp's; its mixed second derivatives
    d/dA (J_y yb + J_p pb) match a complex step along A differenced along B."""
    spec, t, y, p = case["spec"], case["t"], case["y"], case["p"]
    yd, pd = case["yd"], case["pd"]
    n, m = spec[0], spec[1]
    _, _, G = scale_of(spec, t, y, p)
    fn = trace_spec(spec).function
    pp = p if m else np.zeros(0)
    ya = np.column_stack((np.eye(n), yd))                # ka = n + 1
    yb = np.column_stack((yd[::-1], np.eye(n)[:, 0]))    # kb = 2
    pb = np.column_stack((pd, -pd)) if m else None
    f, fa, fb, fab = fn.jvp2(t, y, pp, ya, yb, pb)
    assert fa.shape == (n, n + 1) and fb.shape == (n, 2) and fab.shape == (n, n + 1, 2)
    np.testing.assert_array_equal(f, fn.value(t, y, pp))
    _, ja = fn.jvp(t, y, pp, ya)
    _, jb = fn.jvp(t, y, pp, yb, pb)
    assert_close(fa, ja, 1e-14 * (np.abs(ja) + G[:, :n] @ np.abs(ya)) + 1e-300, "fa vs jvp")
    pbz = pb if m else np.zeros((0, 2))
    assert_close(fb, jb, 1e-14 * (np.abs(jb) + G @ np.abs(np.vstack((yb, pbz)))) + 1e-300,
                 "fb vs jvp")
    # d/dB of (J_y a) by central differences of complex steps along a, with
    # its own truncation estimate (the same difference at half the spacing)
    for b in range(2):
        db_y, db_p = yb[:, b], (pb[:, b] if m else np.zeros(0))

        def mixed(delta):
            return np.column_stack([
                (complex_step(spec, t, y + delta * db_y, p + delta * db_p, ya[:, a], 0 * p)
                 - complex_step(spec, t, y - delta * db_y, p - delta * db_p, ya[:, a], 0 * p))
                / (2 * delta) for a in range(n + 1)])

        coarse, fine = mixed(1e-3), mixed(5e-4)
        tol = 4 * np.abs(coarse - fine) + 1e-9 * (np.abs(fine) + 1.0)
        assert_close(fab[:, :, b], fine, tol, f"mixed second derivatives, lane {b}")


@pytest.mark.parametrize("y", [[0.2, 0.5, 0.3], [0.9, 0.1, 1.5], [-2.0, -3.0, -0.8]])
def test_second_order_pass_follows_branches(y):
    """Piecewise ops (where, max, min, clip) pass the chosen branch's second
    derivatives on; checked by differencing the jvp away from the switches."""
    def fun(t, y, p):
        x, u, v = y
        return np.array([np.where(x > p[0], x ** 2 * u, -3.0 * x * v),
                         np.maximum(u * u, 0.5 * x) + np.minimum(v * x, 1.0),
                         np.clip(v * p[1] * u, -1.0, 1.0) + abs(x - 2.0) * u])
    y, p = np.array(y), np.array([0.5, 2.0])
    fn = diffsens.trace(fun, y, p).function
    yb, pb = np.array([[0.3], [-0.7], [0.2]]), np.array([[0.1], [0.5]])
    _, _, _, fab = fn.jvp2(0.0, y, p, np.eye(3), yb, pb)
    h = 1e-6
    for a in range(3):
        e = np.eye(3)[a] * h
        fd = (fn.jvp(0.0, y + e, p, yb, pb)[1] - fn.jvp(0.0, y - e, p, yb, pb)[1]) / (2 * h)
        np.testing.assert_allclose(fab[:, a, 0], fd[:, 0], rtol=1e-7, atol=1e-8)


def test_second_order_pass_bad_directions():
    fn = diffsens.trace(lambda t, y, p: p[0] * y * y, np.ones(2), np.ones(1)).function
    with pytest.raises(ValueError, match="`ya` must have shape"):
        fn.jvp2(0.0, np.ones(2), np.ones(1), np.eye(3), np.ones((2, 1)))
    with pytest.raises(ValueError, match="`yb` must have shape"):
        fn.jvp2(0.0, np.ones(2), np.ones(1), np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="`pb` must have shape"):
        fn.jvp2(0.0, np.ones(2), np.ones(1), np.eye(2), np.ones((2, 1)), np.ones((2, 1)))


def _fd_points(spec, t, y, p, yd, pd, h):
    """f at y + k h yd, p + k h pd for k = -2..2, and their decision logs."""
    vals, logs = [], []
    for k in (-2, -1, 0, 1, 2):
        log = LoggedOps()
        vals.append(numpy_value(spec, t, y + k * h * yd, p + k * h * pd, log))
        logs.append([d for d, _ in log.decisions])
    return vals, logs


@_settings(150)
@given(case=rhs_cases(analytic=False))
def test_jvp_matches_finite_differences(case):
    spec, t, y, p = case["spec"], case["t"], case["y"], case["p"]
    yd, pd = case["yd"], case["pd"]
    n, m = spec[0], spec[1]
    h = 1e-4
    vals, logs = _fd_points(spec, t, y, p, yd, pd, h)
    # no kink (abs, max, where, clip) inside the stencil
    assume(all(lg == logs[2] for lg in logs))
    # over the stencil's points: the round-off scale of the values, and the
    # size of the derivative (which may vanish at the centre only)
    v = np.abs(np.concatenate((yd, pd)))
    e, scale = np.max([(np.abs(vk) + sc[1], sc[2] @ v)
                       for k, vk in zip((-2, -1, 0, 1, 2), vals)
                       for sc in [scale_of(spec, t, y + k * h * yd, p + k * h * pd)]],
                      axis=0)
    # five-point central difference: truncation h^4 f^(5) / 30 (the 1e-10
    # floor, for derivatives that are tiny next to f^(5)), round-off eps e / h
    fd = (vals[0] - 8 * vals[1] + 8 * vals[3] - vals[4]) / (12 * h)
    rhs = trace_spec(spec)
    _, jv = rhs.jvp(t, y, p if m else None, yd, pd if m else None)
    tol = 1e-6 * (np.abs(fd) + scale) + 1e-10 + 100 * EPS * e / h
    assert_close(jv, fd, tol, "jvp vs central differences")


@_settings(150)
@given(case=rhs_cases(analytic=False))
def test_dot_product_identity(case):
    """<w, J v> == <J^T w, v> for y and p tangents, jvp against vjp."""
    spec, t, y, p = case["spec"], case["t"], case["y"], case["p"]
    yd, pd, w = case["yd"], case["pd"], case["w"]
    n, m = spec[0], spec[1]
    _, _, G = scale_of(spec, t, y, p)
    rhs = trace_spec(spec)
    pp = p if m else None
    f_v, wy, wp = rhs.vjp(t, y, pp, w)
    assert wy.shape == (n,) and wp.shape == (m,)
    np.testing.assert_array_equal(f_v, rhs.function.value(t, y, pp))
    _, jy = rhs.jvp(t, y, pp, yd=yd)
    scale_y = np.abs(w) @ G[:, :n] @ np.abs(yd) + np.linalg.norm(w) * np.linalg.norm(jy)
    assert abs(w @ jy - wy @ yd) <= 1e-12 * scale_y + 1e-300, (w @ jy, wy @ yd)
    if m:
        _, jp = rhs.jvp(t, y, p, pd=pd)
        scale_p = np.abs(w) @ G[:, n:] @ np.abs(pd) + np.linalg.norm(w) * np.linalg.norm(jp)
        assert abs(w @ jp - wp @ pd) <= 1e-12 * scale_p + 1e-300, (w @ jp, wp @ pd)
        _, jboth = rhs.jvp(t, y, p, yd, pd)
        lhs, rhs_ = w @ jboth, wy @ yd + wp @ pd
        assert abs(lhs - rhs_) <= 1e-12 * (scale_y + scale_p) + 1e-300, (lhs, rhs_)


@_settings(100)
@given(case=rhs_cases(analytic=False))
def test_jacobian_matches_jvp_columns_and_vjp_rows(case):
    spec, t, y, p = case["spec"], case["t"], case["y"], case["p"]
    n, m = spec[0], spec[1]
    _, _, G = scale_of(spec, t, y, p)
    rhs = trace_spec(spec)
    pp = p if m else None
    Jy, Jp = rhs.jacobian(t, y, pp)
    assert Jy.shape == (n, n) and Jp.shape == (n, m)
    J = np.hstack((Jy, Jp))
    # |J| never exceeds the absolute-value propagation of the partials
    assert (np.abs(J) <= G * (1 + 1e-12) + 1e-300).all(), (J, G)
    eye_n, eye_m = np.eye(n), np.eye(m)
    cols = [rhs.jvp(t, y, pp, yd=eye_n[j])[1] for j in range(n)]
    cols += [rhs.jvp(t, y, p, pd=eye_m[j])[1] for j in range(m)]
    assert_close(J, np.array(cols).T.reshape(n, n + m), 1e-14 * G + 1e-300,
                 "jacobian vs jvp columns")
    rows = []
    for i in range(n):
        _, wy, wp = rhs.vjp(t, y, pp, eye_n[i])
        rows.append(np.concatenate((wy, wp)))
    assert_close(J, np.array(rows), 1e-12 * G + 1e-300, "jacobian vs vjp rows")


# ---------------------------------------------------------------------------
# Derivatives of the elementary functions, over their whole range
# ---------------------------------------------------------------------------

# (function, derivative in a form accurate to a few ulps, points)
_ELEMENTARY = [
    ("exp", np.exp, np.exp, [-30.0, 0.5, 30.0]),
    ("log", np.log, lambda x: 1 / x, [1e-3, 0.5, 1e3]),
    ("log1p", np.log1p, lambda x: 1 / (1 + x), [-0.999999, 0.5, 1e3]),
    ("expm1", np.expm1, np.exp, [-40.0, -20.0, -1e-3, 0.5, 20.0]),
    ("sqrt", np.sqrt, lambda x: 0.5 / np.sqrt(x), [1e-6, 2.0, 1e6]),
    ("sin", np.sin, np.cos, [0.3, 3.0]),
    ("cos", np.cos, lambda x: -np.sin(x), [0.3, 3.0]),
    ("tan", np.tan, lambda x: 1 / np.cos(x) ** 2, [0.3, 1.5, -1.57]),
    ("tanh", np.tanh, lambda x: 1 / np.cosh(x) ** 2, [0.3, 5.0, 10.0, -15.0, 19.0, 20.0]),
    ("sinh", np.sinh, np.cosh, [0.3, -20.0]),
    ("cosh", np.cosh, np.sinh, [0.3, -20.0]),
    ("arctan", np.arctan, lambda x: 1 / (1 + x * x), [0.3, 1e8]),
    ("arcsin", np.arcsin, lambda x: 1 / np.sqrt((1 - x) * (1 + x)), [0.3, 0.999999, -0.9999999]),
    ("arccos", np.arccos, lambda x: -1 / np.sqrt((1 - x) * (1 + x)), [0.3, 0.999999, -0.9999999]),
    ("pow2.5", lambda x: x ** 2.5, lambda x: 2.5 * x ** 1.5, [1e-3, 3.0]),
    ("powi-3", lambda x: x ** -3, lambda x: -3 * x ** -4.0, [0.1, -7.0]),
]


@pytest.mark.parametrize("f, df, x", [
    pytest.param(f, df, x, id=f"{name}({x})")
    for name, f, df, xs in _ELEMENTARY for x in xs])
def test_elementary_derivative_relative_accuracy(f, df, x):
    """jvp and vjp of one op are as accurate as its value: a few ulps, relative.

    A partial written as ``1 - tanh(x)**2`` or ``expm1(x) + 1`` cancels where
    the function saturates and loses all relative accuracy (derivative 0
    instead of 1.7e-17 for tanh(20)); ODE sensitivities of saturating models
    live exactly there.
    """
    rhs = diffsens.trace(lambda t, y: [f(y[0])], [0.0])
    value = rhs(0.0, np.array([x]))[0]
    np.testing.assert_allclose(value, f(x), rtol=1e-14)
    ref = df(x)
    _, jv = rhs.jvp(0.0, [x], None, [1.0])
    _, wy, _ = rhs.vjp(0.0, [x], None, [1.0])
    np.testing.assert_allclose(jv[0], ref, rtol=1e-13, atol=0, err_msg="jvp")
    np.testing.assert_allclose(wy[0], ref, rtol=1e-13, atol=0, err_msg="vjp")


# ---------------------------------------------------------------------------
# Built-in problems
# ---------------------------------------------------------------------------

PROBLEM_NAMES = ["lotka_volterra", "rober", "pollu", "hires", "brusselator_1d",
                 "pleiades", "arenstorf", "lorenz96", "one_compartment_oral"]


def _random_states(prob, count, seed):
    rng = np.random.default_rng(seed)
    typical = np.abs(prob.y0) + 0.1 * (np.abs(prob.y0).max() + 1e-3)
    t0, tf = prob.t_span
    for _ in range(count):
        y = prob.y0 + 0.2 * typical * rng.standard_normal(prob.n)
        p = prob.p * (1.0 + 0.1 * rng.standard_normal(prob.m))
        yield t0 + (tf - t0) * rng.random(), y, p


def _term_scale(prob, t, y, p):
    """sum_j |J_ij y_j| + |f_i|: the size of f's terms (the analytic jac)."""
    return np.abs(prob.jac(t, y, p)) @ np.abs(y) + np.abs(prob.fun(t, y, p))


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_problem_value_and_jacobian(name):
    prob = problems.get(name)
    rhs = diffsens.trace(prob.fun, prob.y0, prob.p)
    assert (rhs.n, rhs.m) == (prob.n, prob.m)
    for t, y, p in _random_states(prob, 5, seed=PROBLEM_NAMES.index(name)):
        ref = prob.fun(t, y, p)
        # 1e-13 relative; the floor covers components whose terms cancel
        tol = 1e-13 * np.abs(ref) + 16 * EPS * _term_scale(prob, t, y, p) + 1e-300
        assert_close(rhs(t, y, p), ref, tol, f"{name}: value")
        assert_close(rhs.function.value_batch(t, y[None, :], p)[0], ref, tol,
                     f"{name}: value_batch")
        Jy, Jp = rhs.jacobian(t, y, p)
        Jref = prob.jac(t, y, p)
        assert Jy.shape == Jref.shape and Jp.shape == (prob.n, prob.m)
        row_scale = np.abs(Jref).max(axis=1, keepdims=True)
        assert_close(Jy, Jref, 1e-12 * (np.abs(Jref) + row_scale) + 1e-300,
                     f"{name}: jacobian")


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_problem_parameter_jacobian(name):
    """J_p against central differences of the plain function in p."""
    prob = problems.get(name)
    rhs = diffsens.trace(prob.fun, prob.y0, prob.p)
    t, y, p = next(_random_states(prob, 1, seed=100 + PROBLEM_NAMES.index(name)))
    _, Jp = rhs.jacobian(t, y, p)
    for j in range(prob.m):
        h = 1e-4 * abs(p[j])
        dp = np.zeros(prob.m)
        dp[j] = h
        fd = (-prob.fun(t, y, p + 2 * dp) + 8 * prob.fun(t, y, p + dp)
              - 8 * prob.fun(t, y, p - dp) + prob.fun(t, y, p - 2 * dp)) / (12 * h)
        scale = np.abs(Jp[:, j]).max() + np.abs(prob.fun(t, y, p)).max() / abs(p[j])
        assert_close(Jp[:, j], fd, 1e-7 * scale + 1e-300, f"{name}: J_p[:, {j}]")


# ---------------------------------------------------------------------------
# Piecewise models
# ---------------------------------------------------------------------------


def _piecewise(t, y, p):
    x, u, v = y
    return np.array([
        np.where(x > p[0], x ** 2, -3.0 * x),           # switch at x = p0
        np.maximum(u, 0.5 * x) + np.minimum(v, 1.0),    # max / min
        np.clip(v * p[1], -1.0, 1.0),                   # saturation
    ])


def _piecewise_jac(y, p):
    """(J_y, J_p) of _piecewise by hand, away from the switches."""
    x, u, v = y
    Jy = np.zeros((3, 3))
    Jp = np.zeros((3, 2))
    Jy[0, 0] = 2 * x if x > p[0] else -3.0
    if u >= 0.5 * x:
        Jy[1, 1] = 1.0
    else:
        Jy[1, 0] = 0.5
    Jy[1, 2] = 1.0 if v < 1.0 else 0.0
    if -1.0 < v * p[1] < 1.0:
        Jy[2, 2] = p[1]
        Jp[2, 1] = v
    return Jy, Jp


@pytest.mark.parametrize("y, p", [
    ([0.2, 0.5, 0.3], [0.5, 2.0]),     # x below its switch, u above 0.5 x, clip inside
    ([0.9, 0.1, 0.3], [0.5, 2.0]),     # x above, u below 0.5 x
    ([0.9, 0.1, 1.5], [0.5, 2.0]),     # v above 1 and the clip saturated high
    ([-2.0, -3.0, -0.8], [0.5, 2.0]),  # the clip saturated low
    ([0.49, 0.3, 0.1], [0.5, 2.0]),    # just below the switch of x
    ([0.51, 0.3, 0.1], [0.5, 2.0]),    # just above
])
def test_piecewise_value_and_derivatives(y, p):
    y, p = np.array(y), np.array(p)
    rhs = diffsens.trace(_piecewise, y, p)
    ref = _piecewise(0.0, y, p)
    np.testing.assert_allclose(rhs(0.0, y, p), ref, rtol=1e-15, atol=0)
    Jy, Jp = rhs.jacobian(0.0, y, p)
    Jy_ref, Jp_ref = _piecewise_jac(y, p)
    np.testing.assert_allclose(Jy, Jy_ref, rtol=1e-15, atol=0)
    np.testing.assert_allclose(Jp, Jp_ref, rtol=1e-15, atol=0)
    # and the reverse sweep picks the same branches
    for i in range(3):
        _, wy, wp = rhs.vjp(0.0, y, p, np.eye(3)[i])
        np.testing.assert_allclose(wy, Jy_ref[i], rtol=1e-15, atol=0)
        np.testing.assert_allclose(wp, Jp_ref[i], rtol=1e-15, atol=0)


def test_piecewise_switch_moves_with_parameter():
    """The np.where threshold is p[0], a traced input, not a baked constant."""
    rhs = diffsens.trace(_piecewise, np.zeros(3), np.array([0.5, 2.0]))
    y = np.array([0.7, 0.0, 0.0])
    below = rhs(0.0, y, np.array([0.5, 2.0]))[0]
    above = rhs(0.0, y, np.array([1.0, 2.0]))[0]
    assert below == 0.7 ** 2 and above == -3.0 * 0.7


def test_relu_network_value_and_jacobian_by_side():
    """A ReLU (np.maximum(z, 0)) layer: each unit is on or off by its pre-activation."""
    rng = np.random.default_rng(7)
    W = rng.standard_normal((4, 4))

    def relu(t, y):
        return W @ np.maximum(W @ y, 0.0)

    rhs = diffsens.trace(relu, np.zeros(4))
    for _ in range(5):
        y = rng.standard_normal(4)
        z = W @ y
        on = (z > 0).astype(float)
        np.testing.assert_allclose(rhs(0.0, y), W @ np.maximum(z, 0.0), rtol=1e-13,
                                   atol=1e-13 * np.abs(W).sum() * np.abs(y).sum())
        Jy, Jp = rhs.jacobian(0.0, y)
        assert Jp.shape == (4, 0)
        np.testing.assert_allclose(Jy, W @ (on[:, None] * W), rtol=1e-13,
                                   atol=1e-13 * (np.abs(W) @ np.abs(W)).max())


# ---------------------------------------------------------------------------
# Multi-lane JVPs
# ---------------------------------------------------------------------------


def _lanes_fun(t, y, p):
    a, b, c = p
    return np.array([
        a * y[0] * y[1] - np.exp(-b * y[2]),
        np.sin(y[1] + t) * c + y[3] ** 3,
        np.where(y[2] > 0.0, np.sqrt(1.0 + y[4] ** 2), np.tanh(y[0])),
        np.maximum(y[3], y[4]) * a + np.log1p(y[0] ** 2),
        y[0] / (2.0 + np.cos(y[4] * b)),
    ])


# every lane count the C jvp is compiled for (1-6, 8) and the general one
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7, 8, 17])
def test_multilane_jvp_equals_single_lanes(k):
    rng = np.random.default_rng(k)
    n, m = 5, 3
    p = np.array([1.3, 0.7, -0.4])
    rhs = diffsens.trace(_lanes_fun, np.zeros(n), p)
    y = rng.standard_normal(n)
    yd = rng.standard_normal((n, k))
    pd = rng.standard_normal((m, k))
    f, lanes = rhs.jvp(0.3, y, p, yd, pd)
    assert lanes.shape == (n, k)
    np.testing.assert_array_equal(f, rhs(0.3, y, p))
    Jy, Jp = rhs.jacobian(0.3, y, p)
    scale = np.abs(Jy) @ np.abs(yd) + np.abs(Jp) @ np.abs(pd)
    for j in range(k):
        _, single = rhs.jvp(0.3, y, p, yd[:, j], pd[:, j])
        assert single.shape == (n,)
        assert_close(lanes[:, j], single, 1e-15 * scale[:, j], f"lane {j} of {k}")
        assert_close(lanes[:, j], Jy @ yd[:, j] + Jp @ pd[:, j], 1e-13 * scale[:, j],
                     f"lane {j} of {k} vs J v")
    # only y lanes, only p lanes
    _, ylanes = rhs.jvp(0.3, y, p, yd=yd)
    _, planes = rhs.jvp(0.3, y, p, pd=pd)
    for j in range(k):
        assert_close(ylanes[:, j], rhs.jvp(0.3, y, p, yd=yd[:, j])[1],
                     1e-15 * scale[:, j], f"y lane {j} of {k}")
        assert_close(planes[:, j], rhs.jvp(0.3, y, p, pd=pd[:, j])[1],
                     1e-15 * scale[:, j], f"p lane {j} of {k}")
    assert_close(ylanes + planes, lanes, 1e-13 * scale, "y lanes + p lanes")


# ---------------------------------------------------------------------------
# A dense layer network
# ---------------------------------------------------------------------------


def test_dense_network_value_and_jacobian():
    rng = np.random.default_rng(42)
    n, hidden = 6, 12
    W1 = rng.standard_normal((hidden, n)) / np.sqrt(n)
    b1 = rng.standard_normal(hidden)
    W2 = rng.standard_normal((n, hidden)) / np.sqrt(hidden)
    b2 = rng.standard_normal(n)

    def net(t, y):
        return W2 @ np.tanh(W1 @ y + b1) + b2

    rhs = diffsens.trace(net, np.zeros(n))
    assert (rhs.n, rhs.m) == (n, 0)
    for _ in range(4):
        y = rng.standard_normal(n)
        z = W1 @ y + b1
        a = np.tanh(z)
        scale = np.abs(W2) @ np.abs(a) + np.abs(b2)
        assert_close(rhs(0.0, y), net(0.0, y), 1e-13 * scale, "network value")
        Jy, _ = rhs.jacobian(0.0, y)
        J_ref = W2 @ ((1 - a ** 2)[:, None] * W1)
        J_scale = np.abs(W2) @ np.abs(W1)
        assert_close(Jy, J_ref, 1e-12 * J_scale, "network jacobian vs analytic")
        fd = np.empty((n, n))
        for j in range(n):
            e = np.zeros(n)
            e[j] = 1e-6
            fd[:, j] = (net(0.0, y + e) - net(0.0, y - e)) / 2e-6
        assert_close(Jy, fd, 1e-6 * J_scale, "network jacobian vs central differences")


# ---------------------------------------------------------------------------
# Thread safety
# ---------------------------------------------------------------------------


def _work(rhs, p, seed):
    """value, value_batch, jvp, vjp and jacobian at inputs of one seed."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(30):
        y = rng.standard_normal(rhs.n)
        Y = rng.standard_normal((400, rhs.n))
        out.append(rhs(0.1, y, p))
        out.append(rhs.function.value_batch(np.linspace(0, 1, 400), Y, p))
        out.append(rhs.jvp(0.1, y, p, rng.standard_normal((rhs.n, 4)),
                           rng.standard_normal((rhs.m, 4)))[1])
        out.extend(rhs.vjp(0.1, y, p, rng.standard_normal(rhs.n)))
        out.extend(rhs.jacobian(0.1, y, p))
    return out


def test_concurrent_evaluation_matches_sequential():
    prob = problems.get("brusselator_1d")
    rhs = diffsens.trace(prob.fun, prob.y0, prob.p)
    seeds = [11, 12, 13, 14]
    sequential = [_work(rhs, prob.p, s) for s in seeds]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            concurrent_ = list(pool.map(lambda s: _work(rhs, prob.p, s), seeds))
            for a, b in zip(sequential, concurrent_):
                assert len(a) == len(b)
                for x, z in zip(a, b):
                    np.testing.assert_array_equal(x, z)


def test_concurrent_solves_match_sequential():
    prob = problems.get("pleiades")
    rhs = diffsens.trace(prob.fun, prob.y0, prob.p)
    p_list = [prob.p, prob.p * 1.01]

    def solve(p):
        return diffsens.solve_ivp(rhs, prob.t_span, prob.y0, method="DOP853",
                                  args=(p,), rtol=1e-10, atol=1e-10,
                                  t_eval=np.linspace(*prob.t_span, 31))

    sequential = [solve(p) for p in p_list]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        concurrent_ = list(pool.map(solve, p_list))
    for a, b in zip(sequential, concurrent_):
        assert a.status == b.status == 0
        assert a.nfev == b.nfev
        np.testing.assert_array_equal(a.t, b.t)
        np.testing.assert_array_equal(a.y, b.y)
    # the two parameter sets really gave different trajectories
    assert not np.array_equal(sequential[0].y, sequential[1].y)


# ---------------------------------------------------------------------------
# The program check: the C interpreter follows no index it was not shown
# ---------------------------------------------------------------------------


def _pollu_program():
    prob = problems.get("pollu")
    return diffsens.trace(prob.fun, prob.y0, prob.p).function.tape


def _with(program, **arrays):
    return dataclasses.replace(program, **{k: np.asarray(v) for k, v in arrays.items()})


def test_program_check_accepts_the_scheduler_output():
    program = _pollu_program()
    assert program.blocks[:, 0].tolist().count(33) >= 1      # it has SUMs to check
    _core.TapeFunction(_with(program))


@pytest.mark.parametrize("corrupt, message", [
    # a SUM list's end mark replaced by a slot: the walk would run on
    (lambda ls, end: np.where(np.arange(ls.size) == end, 1, ls), "end with -1"),
    # a third end mark inside a list
    (lambda ls, end: np.where(np.arange(ls.size) == end - 2, -1, ls), "end with -1"),
    # an operand slot not computed yet
    (lambda ls, end: np.where(np.arange(ls.size) == end - 2, 10 ** 6, ls), "not computed"),
])
def test_program_check_refuses_a_broken_sum_list(corrupt, message):
    program = _pollu_program()
    blocks = program.blocks
    first = next(first for code, _, first in blocks if code == 33)
    end = int(program.args[first + 1]) - 1     # the first op's closing end mark
    assert program.lc_slot[end] == -1 and program.lc_slot[end - 2] != -1
    with pytest.raises(ValueError, match=message):
        _core.TapeFunction(_with(program, lc_slot=corrupt(program.lc_slot, end)))


def test_program_check_refuses_bad_blocks_and_outputs():
    program = _pollu_program()
    bad_code = program.blocks.copy()
    bad_code[0, 0] = 99
    with pytest.raises(ValueError, match="bad block"):
        _core.TapeFunction(_with(program, blocks=bad_code))
    with pytest.raises(ValueError, match="bad outputs"):
        _core.TapeFunction(_with(program, outputs=program.outputs[:-1]))
    with pytest.raises(ValueError, match="n_ops"):
        _core.TapeFunction(dataclasses.replace(program, n_ops=program.n_ops + 1))
