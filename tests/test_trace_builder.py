"""Tests for the tracer, ``diffsens._trace``: recording, simplification, errors.

Pure Python: tapes are checked with ``Tape.evaluate``, the reference
interpreter, against calling the right-hand side on NumPy values.  Nothing
here needs the C tape interpreter.
"""

import math
import pathlib
import pickle
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffsens import problems
from diffsens._trace import (
    OPS,
    Op,
    Tape,
    TracedArray,
    TraceError,
    Tracer,
    record,
)

TAPE_H = (pathlib.Path(__file__).resolve().parents[1] / "diffsens" / "_kernels"
          / "tape.h")
THIS_FILE = pathlib.Path(__file__).read_text().splitlines()


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def check_invariants(tape):
    """The layout contract of tape.h, checked independently of Tape._validate."""
    assert tape.ops.dtype == np.int32 and tape.ops.shape == (tape.n_ops, 4)
    assert tape.consts.dtype == np.float64 and tape.consts.ndim == 1
    assert tape.lc_slot.dtype == np.int32 and tape.lc_weight.dtype == np.float64
    assert tape.outputs.dtype == np.int32 and tape.outputs.shape == (tape.n,)
    assert tape.first_op_slot == 1 + tape.n + tape.m + tape.n_const
    assert tape.n_slots == tape.first_op_slot + tape.n_ops
    for arr in (tape.consts, tape.ops, tape.lc_slot, tape.lc_weight, tape.outputs):
        assert not arr.flags.writeable
    # constants are unique by bit pattern
    bits = tape.consts.view(np.uint64)
    assert len(set(bits.tolist())) == len(bits)
    used_lc = 0
    for i, (code, a, b, c) in enumerate(tape.ops.tolist()):
        own = tape.first_op_slot + i
        assert code in TRACER_OPS
        if code == Op.LINCOMB:
            assert a == used_lc and b >= 2 and c == 0   # consecutive terms
            used_lc += b
            reads = tape.lc_slot[a:a + b].tolist()
            assert all(w != 0.0 for w in tape.lc_weight[a:a + b])
        elif code == Op.POWI:
            reads = [a]
            assert b == 0 and c not in (0, 1, 2)
        elif code == Op.SELECT:
            reads = [a, b, c]
        elif code in (Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW, Op.LT, Op.LE,
                      Op.GT, Op.GE, Op.EQ, Op.NE, Op.MAX, Op.MIN):
            reads = [a, b]
            assert c == 0
        else:
            reads = [a]
            assert b == 0 and c == 0
        assert all(0 <= s < own for s in reads), (i, code, reads, own)
    assert used_lc == tape.lc_slot.size
    assert all(0 <= s < tape.n_slots for s in tape.outputs.tolist())
    # dead-code elimination: every op and constant is used
    used = set(tape.outputs.tolist())
    for code, a, b, c in tape.ops.tolist():
        if code == Op.LINCOMB:
            used.update(tape.lc_slot[a:a + b].tolist())
        elif code in (Op.POWI,) or code not in _BINARY_CODES | {Op.SELECT}:
            used.add(a)
        elif code == Op.SELECT:
            used.update((a, b, c))
        else:
            used.update((a, b))
    for s in range(1 + tape.n + tape.m, tape.n_slots):
        assert s in used, f"slot {s} is dead"


#: what the tracer records (SUM and PROD are made by the scheduler, PROD3 by the C rows)
TRACER_OPS = {op for op in Op if op not in (Op.SUM, Op.PROD, Op.PROD3, Op.COUNT)}

_BINARY_CODES = {Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW, Op.LT, Op.LE, Op.GT,
                 Op.GE, Op.EQ, Op.NE, Op.MAX, Op.MIN}


def counts(tape):
    """{op name: number of ops} for the ops present."""
    codes, n = np.unique(tape.ops[:, 0], return_counts=True)
    return {Op(c).name: int(k) for c, k in zip(codes, n)}


def assert_matches(got, ref, rtol=1e-13):
    """Equal to rtol, relative to each value and to the output's scale."""
    got = np.asarray(got, dtype=float)
    ref = np.asarray(ref, dtype=float).ravel()
    scale = np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale + 1e-300,
                               equal_nan=True)


def record_and_compare(fun, n, m, points, args=(), rtol=1e-13):
    tape = record(fun, np.zeros(n), None if m is None else np.zeros(m), args)
    check_invariants(tape)
    for t, y, p in points:
        ref = fun(t, y, *args) if m is None else fun(t, y, p, *args)
        assert_matches(tape.evaluate(t, y, p), ref, rtol)
    return tape


def lineno_of(marker):
    return next(i + 1 for i, line in enumerate(THIS_FILE) if marker in line
                and "lineno_of" not in line and "MARKERS" not in line)


# ---------------------------------------------------------------------------
# op codes: the contract with tape.h
# ---------------------------------------------------------------------------


def test_op_codes_match_tape_h():
    text = TAPE_H.read_text()
    enum_body = re.search(r"enum ds_op_code \{(.*?)\};", text, re.S).group(1)
    header = {name: int(code) for name, code in
              re.findall(r"DS_OP_(\w+)\s*=\s*(\d+)", enum_body)}
    assert header == dict(OPS)
    assert {op.name: int(op) for op in Op} == dict(OPS)
    assert OPS["ADD"] == 0 and OPS["SQUARE"] == 32
    assert OPS["COUNT"] == max(v for k, v in OPS.items() if k != "COUNT") + 1
    with pytest.raises(TypeError):
        OPS["ADD"] = 5


# ---------------------------------------------------------------------------
# Tape.evaluate == fun on NumPy values
# ---------------------------------------------------------------------------

PROBLEM_NAMES = ["lotka_volterra", "rober", "hires", "pollu", "brusselator_1d"]


@pytest.mark.parametrize("name", sorted(set(PROBLEM_NAMES) | set(problems.PROBLEMS)))
def test_builtin_problems(name):
    prob = problems.get(name)
    rng = np.random.default_rng(7)
    tape = record(prob.fun, prob.y0, prob.p)
    check_invariants(tape)
    assert (tape.n, tape.m) == (prob.n, prob.m)
    points = [(0.0, prob.y0, prob.p)]
    for _ in range(4):
        y = np.abs(prob.y0) * rng.uniform(0.5, 1.5, prob.n) + rng.uniform(0, 0.1, prob.n)
        p = prob.p * rng.uniform(0.5, 1.5, prob.m)
        points.append((rng.uniform(0, 10), y, p))
    for t, y, p in points:
        assert_matches(tape.evaluate(t, y, p), prob.fun(t, y, p))


def test_builtin_problem_tapes_use_lincomb_and_no_dead_code():
    pollu = record(problems.POLLU.fun, problems.POLLU.y0, problems.POLLU.p)
    # S @ r with the 20 x 25 stoichiometry: one LINCOMB (or simpler op) per row
    assert counts(pollu)["LINCOMB"] >= 10
    assert pollu.lc_slot.size < 20 * 25      # zero weights dropped
    assert set(np.unique(pollu.lc_weight)) <= {-1.0, 1.0, 2.0}
    lv = record(problems.LOTKA_VOLTERRA.fun, [1.0, 1.0], np.ones(4))
    # a*x - b*x*z, -c*z + d*x*z: negation absorbed into a subtraction
    assert counts(lv) == {"MUL": 6, "SUB": 2}


def test_neural_network():
    rng = np.random.default_rng(3)
    n, h = 5, 16
    W1 = rng.standard_normal((h, n))
    b1 = rng.standard_normal(h)
    W2 = rng.standard_normal((n, h)) / 4
    b2 = rng.standard_normal(n)

    def nn(t, y, p):
        return W2 @ np.tanh(W1 @ y + b1) * p[0] + b2

    points = [(0.0, rng.standard_normal(n), rng.uniform(0.5, 2, 1)) for _ in range(5)]
    tape = record_and_compare(nn, n, 1, points)
    c = counts(tape)
    assert c["TANH"] == h and c["LINCOMB"] == h + n
    # the bias is folded into the LINCOMB as one constant term of weight 1
    assert tape.lc_slot.size == h * (n + 1) + n * h
    # second layer: np.dot and the method form record the same tape
    tape2 = record(lambda t, y, p: (np.dot(W2, np.tanh(np.dot(W1, y) + b1)) * p[0]
                                    + b2), np.zeros(n), [1.0])
    assert tape2 == tape
    # ndarray.dot(traced) is not dispatched by NumPy: it runs NumPy's object
    # loops (MUL/ADD per term), slower to evaluate but the same values
    tape3 = record(lambda t, y, p: W2.dot(np.tanh(W1.dot(y) + b1)) * p[0] + b2,
                   np.zeros(n), [1.0])
    check_invariants(tape3)
    for t, y, p in points:
        assert_matches(tape3.evaluate(t, y, p), nn(t, y, p))


def test_piecewise_model():
    def piecewise(t, y, p):
        x, z, w = y
        k, lo, hi = p
        sat = np.clip(x, lo, hi)
        relu = np.maximum(z, 0.0)
        cap = np.minimum(w, k)
        step = np.where(x > z, x * z, -x)
        both = np.where((x > 0) & (z < 1.0), 1.0, 2.0) + np.where(~(w >= 0), w, 0.5)
        cmp = (x <= w) * 3.0 + (z == z) + (x != z) - (t < 1.0)
        sel = np.select([x < -1, x < 1], [x ** 2, np.sin(x)], default=np.exp(-x))
        arr = np.where(y > 0.5, y, 0.5 * y)
        return [sat + relu * cap + step + both + cmp + sel, abs(z - w) + arr[1], arr[2]]

    rng = np.random.default_rng(11)
    points = [(rng.uniform(0, 2), rng.uniform(-3, 3, 3), np.array([0.4, -1.0, 1.5]))
              for _ in range(40)]
    tape = record_and_compare(piecewise, 3, 3, points)
    c = counts(tape)
    for op in ("MAX", "MIN", "SELECT", "GT", "LT", "LE", "GE", "EQ", "NE", "ABS"):
        assert c.get(op, 0) >= 1, op


def test_clip_is_min_of_max():
    tape = record(lambda t, y, p: [np.clip(y[0], p[0], p[1])], [0.0], [0.0, 1.0])
    # operands of commutative ops are sorted (by recording order)
    assert tape.ops.tolist() == [[Op.MAX, 1, 2, 0], [Op.MIN, 3, 4, 0]]
    for x in (-2.0, 0.5, 3.0, np.nan):
        assert_matches(tape.evaluate(0, [x], [0.0, 1.0]), [np.clip(x, 0.0, 1.0)])


def test_time_dependence_and_baked_args():
    A = np.array([[0.0, 1.0], [-2.0, -0.1]])

    def forced(t, y, p, A, omega):
        return A @ y + np.array([0.0, p[0] * np.cos(omega * t)])

    rng = np.random.default_rng(0)
    points = [(rng.uniform(0, 5), rng.standard_normal(2), [1.3]) for _ in range(5)]
    tape = record_and_compare(forced, 2, 1, points, args=(A, 2.5))
    assert 2.5 in tape.consts.tolist()
    # scipy order without parameters: fun(t, y, *args)
    tape = record(lambda t, y, c: [c * t * y[0]], [1.0], None, (4.0,))
    assert tape.m == 0
    assert tape.evaluate(2.0, [3.0]) == pytest.approx([24.0])
    assert tape.evaluate(2.0, [3.0], None) == pytest.approx([24.0])


def test_every_op_code_is_recorded_and_evaluated():
    W = np.array([[1.0, -2.0, 0.5]])

    def kitchen(t, y, p):
        a, b, c = y[0], y[1], y[2]
        k0 = p[0]
        out = [a + b, a - b, a * b, a / b, -a, b ** k0, a ** 3, abs(a),
               np.exp(a), np.log(b), np.log1p(b), np.expm1(a), np.sqrt(b),
               np.sin(a), np.cos(a), np.tan(a), np.tanh(a), np.sinh(a),
               np.cosh(a), np.arctan(a), np.arcsin(c), np.arccos(c),
               a < b, a <= b, a > b, a >= b, a == b, a != b,
               np.where(a > 0, b, c), np.maximum(a, b), np.minimum(a, b),
               (W @ y[:3])[0], a ** 2]
        return out + [y[k] for k in range(len(out), len(y))]

    n = 36
    tape = record(kitchen, np.zeros(n), [1.0])
    check_invariants(tape)
    assert set(counts(tape)) == {op.name for op in TRACER_OPS}
    rng = np.random.default_rng(5)
    for _ in range(10):
        y = rng.uniform(-1, 1, n)
        y[1] = rng.uniform(0.1, 3.0)
        p = rng.uniform(-2, 2, 1)
        ref = [float(v) for v in kitchen(0.0, y, p)]
        # x**3 is POWI (binary powering, as tape.c); numpy uses pow(): 1 ulp
        assert_matches(tape.evaluate(0.0, y, p), ref, rtol=1e-15 * 4)


# ---------------------------------------------------------------------------
# hypothesis: random expression trees
# ---------------------------------------------------------------------------

N_Y, N_P = 3, 2
LEAF_CONSTS = [1.0, -1.0, 2.0, 3.0, -2.5, 0.5, 1e-3, 7.25, 0.1, -0.75]


def _ipow(x, k):
    """Binary powering, as the tape's POWI (tape.c) computes x ** k."""
    u, r = abs(k), np.float64(1.0)
    x = np.float64(x)
    while u:
        if u & 1:
            r = r * x
        x = x * x
        u >>= 1
    return np.float64(1.0) / r if k < 0 else r


def _scalar(v):
    return np.float64(v[()]) if isinstance(v, np.ndarray) else v


UNARY = {
    "neg": lambda x: -x,
    "pos": lambda x: +x,
    "abs": abs,
    "np.abs": np.abs,
    "np.negative": np.negative,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "tanh": np.tanh,
    "arctan": np.arctan,
    "exp": np.exp,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "expm1": np.expm1,
    "square": np.square,
    "log_exp": lambda x: np.log(np.exp(x)),
    "sqrt_1px2": lambda x: np.sqrt(1.0 + x ** 2),
    "log1p_x2": lambda x: np.log1p(x * x),
    "arcsin_tanh": lambda x: np.arcsin(np.tanh(x)),
    "arccos_tanh": lambda x: np.arccos(np.tanh(x)),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "div_safe": lambda a, b: a / (1.0 + b * b),
    "np.add": np.add,
    "np.subtract": np.subtract,
    "np.multiply": np.multiply,
    "np.divide": np.divide,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "pow_exp": lambda a, b: np.exp(a) ** b,
    "np.power_1px2": lambda a, b: np.power(1.0 + a * a, b),
}
COMPARE = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
}


LOGIC = {
    "and": lambda p, q, x: p & q,
    "or": lambda p, q, x: p | q,
    "xor": lambda p, q, x: p ^ q,
    "not": lambda p, q, x: ~p,
    "logical_and": lambda p, q, x: np.logical_and(p, q),
    "logical_or": lambda p, q, x: np.logical_or(p, q),
    "logical_not": lambda p, q, x: np.logical_not(q),
    "eq0": lambda p, q, x: np.sin(x) * 0.0 == 0.0,
    "ne0": lambda p, q, x: (x > 0) != 0.0,
    "not_eq0": lambda p, q, x: ~((x < 1.0) == 0.0),
}


def evaluate_tree(node, t, y, p, numeric):
    """(value, is_constant) of an expression tree on tracers or on NumPy values.

    The same code runs on both; the only NumPy-side adjustments mirror what
    the tape documents: integer constant exponents are POWI (binary powering)
    and the exponent 0.5 is SQRT.
    """
    kind = node[0]
    if kind == "y":
        return y[node[1]], False
    if kind == "p":
        return p[node[1]], False
    if kind == "t":
        return t, False
    if kind == "c":
        return node[1], True
    if kind == "nc":
        return np.float64(node[1]), True
    ev = lambda sub: evaluate_tree(sub, t, y, p, numeric)  # noqa: E731
    if kind in UNARY:
        x, c = ev(node[1])
        return _scalar(UNARY[kind](x)), c
    if kind in BINARY:
        (a, ca), (b, cb) = ev(node[1]), ev(node[2])
        if numeric and cb and kind in ("pow_exp", "np.power_1px2"):
            base = np.exp(a) if kind == "pow_exp" else 1.0 + a * a
            e = float(b)
            if e == int(e):
                return _ipow(base, int(e)), ca
            if e == 0.5:
                return np.sqrt(base), ca
        return _scalar(BINARY[kind](a, b)), ca and cb
    if kind == "powi":
        x, c = ev(node[1])
        k = node[2]
        # (a constant base is a number in both modes: the same number, so
        # that ``~(c ** k > ...)`` sees NumPy's bool in both, not -2 in one)
        return (_ipow(x, k) if numeric or c else x ** k), c
    if kind == "cmp":
        (a, ca), (b, cb) = ev(node[2]), ev(node[3])
        v = COMPARE[node[1]](a, b)
        # a comparison of tracers is a traced 1.0/0.0; of numbers a bool
        return (v if isinstance(v, Tracer) else np.float64(v)), ca and cb
    if kind == "where":
        (a, ca), (b, cb) = ev(node[2]), ev(node[3])
        (u, cu), (v, cv) = ev(node[4]), ev(node[5])
        r = _scalar(np.where(COMPARE[node[1]](a, b), u, v))
        return r, ca and cb and cu and cv
    if kind == "where_logic":
        (a, ca), (b, cb), (c, cc) = ev(node[2]), ev(node[3]), ev(node[4])
        (u, cu), (v, cv) = ev(node[5]), ev(node[6])
        cond = LOGIC[node[1]](a > b, b <= c, a)
        r = _scalar(np.where(cond, u, v))
        return r, ca and cb and cc and cu and cv
    if kind == "clip":
        x, c = ev(node[1])
        return _scalar(np.clip(x, *node[2])), c
    raise AssertionError(kind)


leaves = st.one_of(
    st.tuples(st.just("y"), st.integers(0, N_Y - 1)),
    st.tuples(st.just("p"), st.integers(0, N_P - 1)),
    st.just(("t",)),
    st.tuples(st.sampled_from(["c", "nc"]), st.sampled_from(LEAF_CONSTS)),
)


def _extend(children):
    return st.one_of(
        st.tuples(st.sampled_from(sorted(UNARY)), children),
        st.tuples(st.sampled_from(sorted(BINARY)), children, children),
        st.tuples(st.just("powi"), children, st.sampled_from([-3, -2, -1, 0, 1, 2, 3, 5])),
        st.tuples(st.just("cmp"), st.sampled_from(sorted(COMPARE)), children, children),
        st.tuples(st.just("where"), st.sampled_from(sorted(COMPARE)), children,
                  children, children, children),
        st.tuples(st.just("where_logic"), st.sampled_from(sorted(LOGIC)), children,
                  children, children, children, children),
        st.tuples(st.sampled_from(["neg", "np.negative"]), children),
        st.tuples(st.sampled_from(["mul", "div", "add", "sub", "div_safe"]),
                  st.tuples(st.sampled_from(["neg", "np.negative"]), children),
                  st.one_of(children, st.tuples(st.just("neg"), children))),
        st.tuples(st.just("clip"), children,
                  st.sampled_from([(-1.0, 1.0), (0.25, 2.0), (-3.0, -0.5)])),
    )


trees = st.recursive(leaves, _extend, max_leaves=10)
values = st.floats(1e-3, 3.0).flatmap(
    lambda v: st.sampled_from([v, -v]))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(exprs=st.lists(trees, min_size=N_Y, max_size=N_Y),
       y=st.lists(values, min_size=N_Y, max_size=N_Y),
       p=st.lists(values, min_size=N_P, max_size=N_P),
       t=values)
def test_random_expressions(exprs, y, p, t):
    def fun(t, y, p):
        numeric = not isinstance(t, Tracer)
        return [evaluate_tree(e, t, y, p, numeric)[0] for e in exprs]

    tape = record(fun, np.zeros(N_Y), np.zeros(N_P))
    check_invariants(tape)
    y, p, t = np.array(y), np.array(p), np.float64(t)
    with np.errstate(all="ignore"):
        ref = np.array([float(v) for v in fun(t, y, p)])
    got = tape.evaluate(t, y, p)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-300, equal_nan=True)


# ---------------------------------------------------------------------------
# simplification: CSE, folding, identities, DCE
# ---------------------------------------------------------------------------


def test_cse_records_repeated_subexpressions_once():
    tape = record(lambda t, y: [y[0] * y[1] + y[0] * y[1], y[1]], [1.0, 2.0])
    assert counts(tape) == {"MUL": 1, "ADD": 1}
    # commutative operands are sorted: y0*y1 and y1*y0 are one MUL
    tape = record(lambda t, y: [y[0] * y[1] - y[1] * y[0],
                                np.maximum(y[0], y[1]) + np.maximum(y[1], y[0])],
                  [1.0, 2.0])
    assert counts(tape) == {"MUL": 1, "SUB": 1, "MAX": 1, "ADD": 1}
    # non-commutative ops keep their order
    tape = record(lambda t, y: [y[0] - y[1], y[1] - y[0]], [1.0, 2.0])
    assert counts(tape) == {"SUB": 2}
    # whole subtrees are shared
    tape = record(lambda t, y: [np.exp(np.sin(y[0]) * 2.0),
                                np.exp(np.sin(y[0]) * 2.0) + 1.0], [0.0, 0.0])
    assert counts(tape) == {"SIN": 1, "MUL": 1, "EXP": 1, "ADD": 1}
    assert tape.outputs[0] == tape.first_op_slot + 2


def test_dead_code_is_eliminated():
    def fun(t, y, p):
        unused = np.exp(y[0]) * p[1] + np.sin(t)     # never returned
        unused2 = W @ y                               # noqa: F841
        return [y[1] * p[0], y[0]]

    W = np.ones((3, 2))
    tape = record(fun, [1.0, 2.0], [1.0, 2.0])
    assert tape.ops.tolist() == [[Op.MUL, 2, 3, 0]]
    assert tape.n_const == 0 and tape.lc_slot.size == 0
    assert tape.outputs.tolist() == [tape.first_op_slot, 1]
    # outputs may be inputs or constants
    tape = record(lambda t, y, p: [p[1], 4.0, t], [0.0, 0.0, 0.0], [0.0, 0.0])
    assert tape.n_ops == 0
    assert tape.consts.tolist() == [4.0]
    assert tape.outputs.tolist() == [5, 6, 0]
    np.testing.assert_array_equal(tape.evaluate(9.0, [1, 2, 3], [7, 8]), [8, 4, 9])


def _const_tracers(y, *values):
    """Traced constants (elements of a traced array that are plain numbers)."""
    arr = np.concatenate((y, np.array(values, dtype=float)))
    return [arr[len(y) + k] for k in range(len(values))]


def test_constant_folding():
    def fun(t, y):
        two, three = _const_tracers(y, 2.0, 3.0)
        six = two * three
        return [y[0] * six, np.exp(two) - three ** 2 + np.maximum(two, three)]

    tape = record(fun, [1.0, 1.0])
    assert tape.consts.tolist() == [6.0, float(np.exp(2.0) - 9.0 + 3.0)]
    assert tape.ops.tolist() == [[Op.MUL, 1, 3, 0]]
    # comparisons and np.where of constants fold too
    tape = record(lambda t, y: [np.where(_const_tracers(y, 1.0)[0] > 0, y[0], -y[0])],
                  [1.0])
    assert tape.n_ops == 0 and tape.outputs.tolist() == [1]


def test_constants_are_deduplicated_by_bit_pattern():
    tape = record(lambda t, y: [y[0] * 0.0 + y[1] * -0.0 + y[2] * 0.0 + 2.5,
                                y[0] - 2.5, y[1]], [0.0, 0.0, 0.0])
    consts = tape.consts.tolist()
    assert len(consts) == 3
    assert sorted(map(str, consts)) == ["-0.0", "0.0", "2.5"]
    # x * 0 is not folded (inf * 0 is NaN)
    assert counts(tape)["MUL"] == 3
    y = np.array([np.inf, 1.0, 1.0])
    assert np.isnan(tape.evaluate(0.0, y)[0])


@pytest.mark.parametrize("expr", [
    lambda x: x + 0.0, lambda x: 0.0 + x, lambda x: x + -0.0, lambda x: x - 0.0,
    lambda x: x * 1.0, lambda x: 1 * x, lambda x: x / 1.0, lambda x: -(-x),
    lambda x: x ** 1, lambda x: np.power(x, 1.0), lambda x: +x,
    lambda x: np.positive(x), lambda x: x * np.float64(1.0),
])
def test_exact_identities_record_no_op(expr):
    tape = record(lambda t, y: [expr(y[0])], [1.0])
    assert tape.n_ops == 0 and tape.outputs.tolist() == [1]


def test_inexact_rewrites_are_not_done():
    tape = record(lambda t, y: [y[0] - y[0], y[0] * 0.0, y[0] / y[0]], [0.0] * 3)
    assert counts(tape) == {"SUB": 1, "MUL": 1, "DIV": 1}
    assert np.isnan(tape.evaluate(0.0, [np.inf, 0, 0])).all()


def test_negation_is_absorbed_exactly():
    def fun(t, y):
        a, b, c = y[0], y[1], y[2]
        return [-a + b, a - (-b), -a * b, (-a) * (-b), -a * 3.0 + 0 * c,
                (-a) / b, a / (-b), (-a) / (-b), (-a) / 3.0, 3.0 / (-b),
                3.0 * (-a), -(a * b) + c, c - a * (-b)]

    tape = record(fun, [0.0] * 13)
    check_invariants(tape)
    # NEG(a*b) and NEG(a/b) remain; -a*3 and 3*(-a) are both a*(-3); the rest
    # become SUB / ADD / DIV by a negated constant
    assert counts(tape) == {"ADD": 3, "SUB": 2, "MUL": 3, "DIV": 3, "NEG": 2}
    rng = np.random.default_rng(1)
    for _ in range(5):
        y = rng.standard_normal(13)
        np.testing.assert_array_equal(tape.evaluate(0.0, y), fun(0.0, y))


def test_powers():
    def fun(t, y, p):
        x = y[0]
        return [x ** 2, x ** 3, x ** -2, x ** 0.5, x ** 1.7, x ** p[0], 2.0 ** x,
                np.power(x, 4.0), np.square(x), x ** 0, x * x]

    tape = record(fun, np.zeros(11), [1.0])
    check_invariants(tape)
    ops = tape.ops.tolist()
    first = tape.first_op_slot
    out = [tape.outputs[q] for q in range(11)]
    row = {q: ops[out[q] - first] for q in range(11) if out[q] >= first}
    assert row[0] == [Op.SQUARE, 1, 0, 0]
    assert row[1] == [Op.POWI, 1, 0, 3]
    assert row[2] == [Op.POWI, 1, 0, -2]
    assert row[3] == [Op.SQRT, 1, 0, 0]
    assert row[4][0] == Op.POW and tape.consts[row[4][2] - 13] == 1.7
    assert row[5] == [Op.POW, 1, 12, 0]
    assert row[6][0] == Op.POW and row[6][2] == 1
    assert row[7] == [Op.POWI, 1, 0, 4]
    assert out[8] == out[0] and out[10] == out[0]     # x*x and np.square(x)
    assert tape.consts[out[9] - 13] == 1.0             # x**0 -> 1
    for x in (0.3, 1.7, 4.0):
        ref = [float(v) for v in fun(0.0, np.full(11, x), np.array([0.7]))]
        assert_matches(tape.evaluate(0.0, np.full(11, x), [0.7]), ref, rtol=1e-15)


def test_lincomb_encoding_for_constant_matrices():
    W = np.array([[1.0, 0.0, -2.0],
                  [0.5, 3.0, 0.25],
                  [0.0, 0.0, 0.0],
                  [0.0, 4.0, 0.0],
                  [1.0, -1.0, 0.0],
                  [0.0, 1.0, 0.0]])

    def fun(t, y):
        return W @ y[:3]

    tape = record(fun, np.zeros(6))
    check_invariants(tape)
    # slots: 0 t, 1..6 y, 7 const 0.0, 8 const 4.0, ops from 9
    assert tape.consts.tolist() == [0.0, 4.0]
    assert tape.ops.tolist() == [[Op.LINCOMB, 0, 2, 0],    # s9  = y0 - 2 y2
                                 [Op.LINCOMB, 2, 3, 0],    # s10 = .5 y0 + 3 y1 + .25 y2
                                 [Op.MUL, 2, 8, 0],        # s11 = 4 y1
                                 [Op.SUB, 1, 2, 0]]        # s12 = y0 - y1
    assert tape.lc_slot.tolist() == [1, 3, 1, 2, 3]
    assert tape.lc_weight.tolist() == [1.0, -2.0, 0.5, 3.0, 0.25]
    assert tape.outputs.tolist() == [9, 10, 7, 11, 12, 2]
    assert "s10 = lincomb 0.5*s1 + 3.0*s2 + 0.25*s3" in tape.describe()
    y = np.array([0.3, -1.2, 2.0, 5.0, 6.0, 7.0])
    assert_matches(tape.evaluate(0.0, y), fun(0.0, y))


def test_lincomb_terms_and_constant_inputs():
    W = np.array([[1.0, 0.0, -2.0, 0.25],
                  [0.0, 0.0, 0.0, 0.0],
                  [0.0, 0.0, 4.0, 0.0],
                  [1.0, -1.0, 0.0, 0.0]])

    def fun(t, y):
        v = np.concatenate((y[:3], [10.0]))   # a constant input element
        return W @ v

    tape = record(fun, np.zeros(4))
    check_invariants(tape)
    # row 0: y0 - 2 y2 + 0.25 * 10 -> LINCOMB with a constant term of weight 1
    code, a, b, c = tape.ops[[k for k in range(tape.n_ops)
                              if tape.ops[k, 0] == Op.LINCOMB][0]].tolist()
    assert (b, c) == (3, 0)
    assert tape.lc_slot[a:a + b].tolist() == [1, 3, 5]
    assert tape.lc_weight[a:a + b].tolist() == [1.0, -2.0, 1.0]
    assert tape.consts[tape.lc_slot[a + 2] - 5] == 2.5
    # row 1 is all zeros: the constant 0.0; row 2 a MUL by 4; row 3 a SUB
    assert tape.consts[tape.outputs[1] - 5] == 0.0
    assert counts(tape) == {"LINCOMB": 1, "MUL": 1, "SUB": 1}
    y = np.array([0.3, -1.2, 2.0, 9.0])
    assert_matches(tape.evaluate(0.0, y), fun(0.0, y))


@pytest.mark.parametrize("form", ["matmul", "rmatmul", "dot", "dot_method",
                                  "2d", "traced_both", "batched", "scalar_dot"])
def test_products(form):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((4, 4))
    B = rng.standard_normal((2, 2, 4))

    def fun(t, y):
        if form == "matmul":
            return A @ y
        if form == "rmatmul":
            return y @ A
        if form == "dot":
            return np.dot(A, y)
        if form == "dot_method":
            return y.dot(A.T)
        if form == "2d":
            return (y.reshape(2, 2) @ A[:2, :2]).ravel()
        if form == "traced_both":
            M = y.reshape(2, 2)
            return np.concatenate([(M @ M).ravel()[:2], np.matmul(y[:2], M)])
        if form == "batched":
            return np.matmul(B, y).ravel()
        return np.dot(2.0, y) + np.dot(y[0], A[0])

    y = rng.standard_normal(4)
    record_and_compare(fun, 4, None, [(0.0, y, None)])


# ---------------------------------------------------------------------------
# the array API the tracer supports
# ---------------------------------------------------------------------------


def test_indexing_iteration_and_array_construction():
    idx = np.array([2, 0, 2])

    def fun(t, y, p):
        a, b, c, d = y                                 # unpacking
        assert len(y) == 4 and y.shape == (4,) and y.ndim == 1
        first = [v for v in y][0]                      # iteration
        fancy = y[idx] * p[-1]                         # fancy + negative index
        rev = y[::-1]
        obj = np.array([a * b, c])                     # object array
        obj2 = np.asarray([np.exp(d), 1.0], dtype=object)
        stacked = np.stack([a, c]) + np.hstack([b, d]) + np.concatenate([y[:1], y[3:]])
        mat = np.vstack([y, rev]).T                   # (4, 2)
        z = np.zeros_like(y)
        z[1] = a * 3.0
        z[2:] = y[:2]
        z[0] += t
        e = np.empty_like(y)
        e[:] = 1.0
        e *= y
        return [
            first + fancy.sum() + rev[0],
            np.exp(obj).sum() + np.sin(obj2[0]) + obj[0] * obj2[1],
            stacked.prod() + np.sum(mat, axis=0)[1] + mat.sum(axis=1)[2],
            z.sum() + e.mean() + np.max(y) - np.min(y) + y.max() + y.min(),
        ]

    rng = np.random.default_rng(4)
    points = [(rng.uniform(), rng.standard_normal(4), rng.standard_normal(2))
              for _ in range(5)]
    record_and_compare(fun, 4, 2, points)


def test_like_keeps_object_arrays_traced():
    def fun(t, y):
        a = np.array([y[0] - 1.0, y[1], 0.5], like=y)
        b = np.zeros(3, like=y)
        b[0] = y[2]
        return np.maximum(a, 0.0) + np.where(a > b, a, b)

    rng = np.random.default_rng(6)
    points = [(0.0, rng.standard_normal(3), None) for _ in range(8)]
    record_and_compare(fun, 3, None, points)


def test_reductions_and_reshaping():
    def fun(t, y):
        M = y.reshape(2, 3)
        return np.concatenate([
            M.sum(axis=0), np.sum(M, axis=1, keepdims=True).ravel(),
            [np.prod(M[:, :2]), M.mean(), np.mean(M, axis=0)[1],
             np.max(M, axis=1)[0], np.min(M.T, axis=0)[1], np.sum(M, initial=2.0),
             sum(y), np.cumsum(y)[-1], np.diff(y)[2], np.linalg.norm(y),
             np.sum(np.transpose(M)[1]), np.flip(y)[0], np.roll(y, 1)[0],
             np.squeeze(M[None, :1, :])[2]],
        ])[:6]

    rng = np.random.default_rng(8)
    record_and_compare(fun, 6, None, [(0.0, rng.standard_normal(6), None)])

    def fun2(t, y):
        M = y[:6].reshape(2, 3)
        return [np.prod(M[:, :2]), M.mean(), np.max(M, axis=1)[0],
                np.min(M.T, axis=0)[1], np.sum(M, initial=2.0), sum(y),
                np.cumsum(y)[-1], np.diff(y)[2], np.linalg.norm(y),
                np.flip(y)[0] + np.roll(y, 1)[0], np.squeeze(M[None, :1, :])[2],
                np.einsum("ij->", M)]

    record_and_compare(fun2, 12, None,
                       [(0.0, rng.standard_normal(12), None) for _ in range(3)])


def test_ufunc_methods():
    def fun(t, y):
        z = np.zeros_like(y)
        np.add.at(z, [0, 0, 2], y[:3])
        acc = np.add.accumulate(y)
        outer = np.multiply.outer(y[:2], y[1:3])
        red = np.maximum.reduce(y) + np.add.reduce(y, initial=t) + np.multiply.reduce(y)
        return z + acc + outer.ravel()[:3] + red + np.sum(y[:2], initial=y[2])

    rng = np.random.default_rng(12)
    record_and_compare(fun, 3, None, [(0.7, rng.standard_normal(3), None)])


def test_inputs_are_traced():
    seen = {}

    def fun(t, y, p):
        seen.update(t=t, y=y, p=p)
        return y

    record(fun, [1.0, 2.0], [3.0])
    assert isinstance(seen["t"], Tracer)
    assert isinstance(seen["y"], TracedArray) and seen["y"].shape == (2,)
    assert isinstance(seen["p"], TracedArray) and seen["p"].shape == (1,)
    assert repr(seen["y"][1]) == "Tracer(y[1])" and repr(seen["p"][0]) == "Tracer(p[0])"


def test_output_forms():
    forms = {
        "list": (lambda t, y: [y[0], 2.0 * y[1]], [0.5, -6.0]),
        "tuple": (lambda t, y: (y[0], np.float64(3.0)), [0.5, 3.0]),
        "traced_array": (lambda t, y: 2.0 * y, [1.0, -6.0]),
        "object_array": (lambda t, y: np.array([y[1], y[0]]), [-3.0, 0.5]),
        "float_array": (lambda t, y: np.array([1.0, 2.0]), [1.0, 2.0]),
        "column": (lambda t, y: (2.0 * y).reshape(2, 1), [1.0, -6.0]),
        "nested": (lambda t, y: [y[:1], [y[1] * y[0]]], [0.5, -1.5]),
    }
    for name, (fun, expected) in forms.items():
        tape = record(fun, [1.0, 2.0])
        check_invariants(tape)
        np.testing.assert_array_equal(tape.evaluate(0.0, [0.5, -3.0]), expected,
                                      err_msg=name)


def test_scalar_tracer_numpy_dispatch():
    def fun(t, y):
        x = y[0]
        return [np.float64(2.0) * x + np.exp(x) + np.where(x > 0, x, 0.0),
                np.maximum(x, 1.0) * np.ones(1)[0] + np.clip(x, -1, 1)
                + np.arctan(x) + np.sum(x) + np.mean(x) + np.float64(3.0) ** x]

    rng = np.random.default_rng(9)
    pts = [(0.0, np.abs(rng.standard_normal(2)), None) for _ in range(5)]
    tape = record_and_compare(fun, 2, None, pts)
    assert counts(tape)["SELECT"] == 1
    tape2 = record(lambda t, y: [np.where(y[0] > 0, y[0], 0.0), y[1]], [0.0, 0.0])
    assert counts(tape2) == {"GT": 1, "SELECT": 1}


# ---------------------------------------------------------------------------
# Tape: evaluate semantics, layout, printing
# ---------------------------------------------------------------------------


def _tape(n, m, consts, ops, outputs, lc_slot=(), lc_weight=()):
    return Tape(n=n, m=m, consts=np.array(consts, dtype=float),
                ops=np.array(ops, dtype=np.int32).reshape(-1, 4),
                lc_slot=np.array(lc_slot, dtype=np.int32),
                lc_weight=np.array(lc_weight, dtype=float),
                outputs=np.array(outputs, dtype=np.int32))


def test_evaluate_semantics_match_the_c_interpreter():
    # slots: 0 t, 1 a = y0, 2 b = y1, 3..10 unused states; ops from slot 11
    ops = [[Op.MAX, 1, 2, 0],        # 11
           [Op.MIN, 1, 2, 0],        # 12
           [Op.SELECT, 1, 2, 0],     # 13 = b if a != 0 else t
           [Op.LT, 1, 2, 0],         # 14
           [Op.NE, 1, 2, 0],         # 15
           [Op.DIV, 1, 2, 0],        # 16
           [Op.LOG, 1, 0, 0],        # 17
           [Op.POWI, 1, 0, -3],      # 18
           [Op.LINCOMB, 0, 2, 0],    # 19 = 2 a - b
           [Op.ABS, 1, 0, 0]]        # 20
    tape = _tape(10, 0, [], ops, list(range(11, 21)), lc_slot=[1, 2],
                 lc_weight=[2.0, -1.0])

    def run(a, b):
        y = np.zeros(10)
        y[:2] = a, b
        return tape.evaluate(7.0, y)

    nan = np.nan
    r = run(nan, 1.0)
    assert np.isnan(r[0]) and np.isnan(r[1])      # MAX/MIN propagate NaN
    assert r[2] == 1.0                            # SELECT: NaN != 0 -> b
    assert r[3] == 0.0 and r[4] == 1.0            # NaN < 1 false, NaN != 1 true
    r = run(1.0, nan)
    assert np.isnan(r[0]) and np.isnan(r[1])
    r = run(-0.0, 0.0)
    assert r[2] == 7.0 and np.isnan(r[5])         # SELECT(-0.0) -> c; 0/0 NaN
    r = run(-2.0, 0.0)
    assert r[5] == -np.inf and np.isnan(r[6])     # division by zero, log(-2)
    assert r[7] == -1 / 8 and r[8] == -4.0 and r[9] == 2.0
    assert run(3.0, 3.0)[0] == 3.0 and run(2.0, 5.0)[1] == 2.0
    assert run(2.0, 5.0)[0] == 5.0 and run(2.0, 5.0)[3] == 1.0
    # POW is C's pow(): pow(-inf, 0.5) = inf, pow(-8, 1/3) = NaN
    pw = _tape(2, 0, [], [[Op.POW, 1, 2, 0]], [3, 2])
    assert pw.evaluate(0.0, [-np.inf, 0.5])[0] == np.inf
    assert np.isnan(pw.evaluate(0.0, [-8.0, 1 / 3])[0])
    assert pw.evaluate(0.0, [2.0, 0.5])[0] == math.sqrt(2.0)


def test_evaluate_lincomb_powi_select():
    # s0 t, s1 y0, s2 y1, s3 p0, s4 const 2.0
    ops = [[Op.LINCOMB, 0, 3, 0],        # s5 = 2 y0 - y1 + 0.5 t
           [Op.POWI, 1, 0, -3],          # s6 = y0 ** -3
           [Op.GT, 1, 4, 0],             # s7 = y0 > 2
           [Op.SELECT, 7, 5, 6],         # s8
           [Op.POW, 2, 3, 0]]            # s9 = y1 ** p0
    tape = _tape(2, 1, [2.0], ops, [8, 9], lc_slot=[1, 2, 0],
                 lc_weight=[2.0, -1.0, 0.5])
    assert (tape.n_const, tape.n_ops, tape.first_op_slot, tape.n_slots) == (1, 5, 5, 10)
    np.testing.assert_allclose(tape.evaluate(4.0, [3.0, 1.5], [2.0]),
                               [2 * 3 - 1.5 + 2.0, 1.5 ** 2])
    np.testing.assert_allclose(tape.evaluate(4.0, [1.0, 1.5], [2.0]), [1.0, 2.25])
    np.testing.assert_allclose(tape.evaluate(0.0, [0.5, 4.0], [0.5]), [8.0, 2.0])
    text = tape.describe()
    assert "s5 = lincomb 2.0*s1 + -1.0*s2 + 0.5*s0" in text
    assert "s6 = powi s1 -3" in text and "s8 = select s7 s5 s6" in text
    assert "s9 = pow s2 s3" in text and "s4 = 2.0" in text
    assert "dy[1] = s9" in text
    assert repr(tape) == text


def test_tape_is_immutable_and_validated():
    tape = record(lambda t, y, p: [y[0] * p[0] + t, np.exp(y[1])], [1.0, 2.0], [3.0])
    for name in ("consts", "ops", "lc_slot", "lc_weight", "outputs"):
        with pytest.raises(ValueError):
            getattr(tape, name)[...] = 0
    with pytest.raises(AttributeError):
        tape.n = 3
    assert "s4 = mul s1 s3" in tape.describe()
    assert tape == record(lambda t, y, p: [y[0] * p[0] + t, np.exp(y[1])],
                          [1.0, 2.0], [3.0])
    assert hash(tape) == hash(pickle.loads(pickle.dumps(tape)))
    clone = pickle.loads(pickle.dumps(tape))
    assert clone == tape and not clone.ops.flags.writeable
    with pytest.raises(ValueError, match="precede"):
        _tape(1, 0, [], [[Op.EXP, 2, 0, 0]], [1])          # reads itself
    with pytest.raises(ValueError, match="precede"):
        _tape(1, 0, [], [[Op.LINCOMB, 0, 1, 0]], [1], [5], [1.0])
    with pytest.raises(ValueError, match="unknown code"):
        _tape(1, 0, [], [[Op.COUNT, 0, 0, 0]], [1])
    with pytest.raises(ValueError, match="scheduler"):
        _tape(1, 0, [], [[Op.SUM, 0, 1, 0]], [1], [1], [1.0])
    with pytest.raises(ValueError, match="outputs"):
        _tape(1, 0, [], [], [7])
    with pytest.raises(ValueError, match="shape"):
        tape.evaluate(0.0, [1.0], [3.0])


def test_large_tape_repr_is_truncated():
    tape = record(lambda t, y: np.sin(y * 2.0) * y, np.zeros(150))
    assert tape.n_ops == 450
    assert "tape.describe() prints all" in repr(tape)
    assert len(tape.describe().splitlines()) > len(repr(tape).splitlines())


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def f_if(t, y):
    if y[0] > 0:  # MARK-if
        return [y[0]]
    return [-y[0]]


def f_while(t, y):
    x = y[0]
    while x < 10.0:  # MARK-while
        x = x * 2.0
    return [x]


def f_and(t, y):
    return [y[0] if (y[0] > 0 and y[1] > 0) else 0.0, y[1]]  # MARK-and


def f_or(t, y):
    flag = y[0] > 0 or y[1] > 0  # MARK-or
    return [flag, y[1]]


def f_not(t, y):
    return [0.0 if not y[0] else 1.0]  # MARK-not


def f_min(t, y):
    return [min(y[0], y[1]), y[1]]  # MARK-min


def f_float(t, y):
    return [float(y[0])]  # MARK-float


def f_int(t, y):
    return [int(y[0]) * 1.0]  # MARK-int


def f_index(t, y):
    return [[1.0, 2.0][y[0]]]  # MARK-index


def f_math(t, y):
    return [math.exp(y[0])]  # MARK-math


def f_fill(t, y):
    dy = np.zeros(1)
    dy[0] = y[0] * 2.0  # MARK-fill
    return dy


def f_objmax(t, y):
    return np.maximum(np.array([y[0], y[1]]), 0.0)  # MARK-objmax


def f_traced_index(t, y):
    return y[y]  # MARK-tindex


MARKERS = {
    "if": f_if, "while": f_while, "and": f_and, "or": f_or, "not": f_not,
    "min": f_min, "float": f_float, "int": f_int, "index": f_index,
    "math": f_math, "fill": f_fill, "objmax": f_objmax, "tindex": f_traced_index,
}


@pytest.mark.parametrize("marker", sorted(MARKERS))
def test_control_flow_raises_trace_error_naming_the_line(marker):
    fun = MARKERS[marker]
    n = 2 if marker in ("and", "or", "min", "objmax", "tindex") else 1
    with pytest.raises(TraceError) as info:
        record(fun, np.ones(n))
    msg = str(info.value)
    line = lineno_of(f"# MARK-{marker}")
    assert THIS_FILE[line - 1].strip() in msg
    assert f'File "{__file__}", line {line}' in msg
    assert fun.__name__ in msg
    assert "np.where(cond, a, b)" in msg
    assert "plain Python function" in msg
    if marker in ("math", "fill"):
        assert "np.zeros_like(y)" in msg and "np.exp" in msg
    if marker == "objmax":
        assert "like=y" in msg


def f_floor(t, y):
    return [np.floor(y[0])]  # MARK-floor


def f_sort(t, y):
    return np.sort(y)  # MARK-sort


def f_arctan2(t, y):
    return np.arctan2(y, 1.0)  # MARK-arctan2


def f_where1(t, y):
    return [np.where(y > 0)[0], y[0]]  # MARK-where1


def f_mixed_object(t, y):
    return [np.exp(np.array([y[0], 1.0]))[0]]  # MARK-mixed


def f_float_out(t, y):
    out = np.ones(1)
    out += y[0]  # MARK-inplace
    return out


@pytest.mark.parametrize("fun, marker, name", [
    (f_floor, "floor", "np.floor"), (f_sort, "sort", "np.sort"),
    (f_arctan2, "arctan2", "np.arctan2"), (f_where1, "where1", "np.where"),
    (f_mixed_object, "mixed", "like=y"), (f_float_out, "inplace", "np.zeros_like"),
])
def test_unsupported_operations_raise_trace_error(fun, marker, name):
    with pytest.raises(TraceError) as info:
        record(fun, np.ones(1))
    msg = str(info.value)
    assert name in msg
    line = lineno_of(f"# MARK-{marker}")
    assert THIS_FILE[line - 1].strip() in msg and f"line {line}" in msg
    if marker in ("floor", "sort", "arctan2"):
        assert "plain Python function" in msg and "np.where" in msg


def test_trace_error_is_exported_and_an_exception():
    import diffsens
    assert issubclass(TraceError, Exception)
    assert getattr(diffsens, "TraceError", TraceError) is TraceError


def test_constant_tracers_may_be_used_in_control_flow():
    def fun(t, y):
        (c,) = _const_tracers(y, 2.0)
        scale = 3.0 if c > 1 else 0.0            # a constant: fine
        return [y[0] * scale * float(c) * int(c)]

    tape = record(fun, [1.0])
    assert tape.evaluate(0.0, [1.5]) == pytest.approx([1.5 * 3 * 2 * 2])


def test_wrong_output_length():
    with pytest.raises(ValueError, match=r"returned 3 values .* y0 has 2"):
        record(lambda t, y: [y[0], y[1], t], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"returned 1 values \(shape \(1,\)\) "
                                         r"but y0 has 3 \(shape \(3,\)\)"):
        record(lambda t, y: y[:1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        record(lambda t, y: np.outer(y, y), [1.0, 2.0])


def test_misuse_errors():
    kept = []

    def leak(t, y):
        kept.append(y[0])
        return [y[0]]

    record(leak, [1.0])
    with pytest.raises(TraceError, match="another recording"):
        record(lambda t, y: [y[0] + kept[0]], [1.0])
    with pytest.raises(TraceError, match="None"):
        record(lambda t, y: np.empty(1, dtype=object), [1.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        record(lambda t, y: y, [[1.0]])
    with pytest.raises(ValueError, match="one-dimensional"):
        record(lambda t, y, p: y, [1.0], 2.0)
    assert isinstance(record(lambda t, y: y, [1.0]), Tape)
