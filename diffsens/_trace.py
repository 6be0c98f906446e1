"""The tracer: run a right-hand side once on symbolic values and record a tape.

:func:`record` calls ``fun(t, y, p, *args)`` once with a traced scalar ``t``
and traced 1-D arrays ``y`` and ``p``.  Every arithmetic operation and NumPy
function applied to them appends a scalar operation to a static SSA program,
the :class:`Tape`, in exactly the layout of ``diffsens/_kernels/tape.h``
(the C interpreter evaluates it for values, dual lanes and reverse sweeps).

Slot layout of a tape (``first_op_slot = 1 + n + m + n_const``)::

    [0]                      t
    [1, 1 + n)               y
    [1 + n, 1 + n + m)       p
    [1 + n + m, +n_const)    constants
    [first_op_slot + i]      result of op i

Op ``i`` is ``ops[i] = (code, a, b, c)``: ``a``, ``b``, ``c`` are operand
slots, except for ``POWI`` (``c`` is the integer exponent) and ``LINCOMB``
(``a`` is the start and ``b`` the number of terms in ``lc_slot`` /
``lc_weight``).  Operand fields an op does not use are 0.  Every operand
slot is smaller than the op's own slot.

The recorder simplifies while it builds: hash-consing (common
subexpressions are recorded once; operands of commutative ops are sorted),
constant folding (with the interpreter's semantics), the exact identities
``x + 0 -> x``, ``x - 0 -> x``, ``x * 1 -> x``, ``x / 1 -> x``,
``x * -1 -> -x``, ``-(-x) -> x``, ``(-x) + y -> y - x``,
``x - (-y) -> x + y``, ``(-x) * y -> -(x * y)`` (likewise for ``/``),
``x * x -> x**2``, ``x**1 -> x``, ``x**0 -> 1``, and
dead-code elimination at the end.  ``x * 0`` and ``x - x`` are *not* folded
(they are not exact for inf/NaN).  Products with constant matrices (``@``,
``np.dot``) and sums become ``LINCOMB`` ops; terms with weight 0 are dropped,
constant terms are folded into one constant, and a following ``+ b`` /
``- b`` (a bias) is appended as one more term when it is the LINCOMB's only
use.

Python control flow cannot depend on traced values: ``bool()``, ``float()``,
``int()`` and ``operator.index()`` of a traced value raise :class:`TraceError`
pointing at the offending line of the user's code.
"""

from __future__ import annotations

import enum
import functools
import linecache
import math
import struct
import sys
import types
from dataclasses import dataclass

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

__all__ = [
    "TraceError",
    "Op",
    "OPS",
    "Tape",
    "Tracer",
    "TracedArray",
    "record",
]


class TraceError(Exception):
    """A right-hand side cannot be recorded as a static tape.

    Raised when ``fun`` branches on a traced value (``if``, ``while``,
    ``and``/``or``, ``min()``/``max()``), converts one to a Python number
    (``float()``, ``int()``, ``math.*``), indexes with one, or calls a NumPy
    function the tracer does not support.  The message names the offending
    line.  Use ``np.where(cond, a, b)`` (or ``np.maximum``, ``np.minimum``,
    ``np.clip``) for piecewise expressions, or pass the plain Python function
    instead of a traced one.
    """


# ---------------------------------------------------------------------------
# Op codes (tape.h: enum ds_op_code)
# ---------------------------------------------------------------------------


class Op(enum.IntEnum):
    """Tape op codes; the values are ``DS_OP_*`` of ``tape.h``."""

    ADD = 0       #: a + b
    SUB = 1       #: a - b
    MUL = 2       #: a * b
    DIV = 3       #: a / b
    NEG = 4       #: -a
    POW = 5       #: a ** b (both slots)
    POWI = 6      #: a ** c, c an integer stored in the op
    ABS = 7
    EXP = 8
    LOG = 9
    LOG1P = 10
    EXPM1 = 11
    SQRT = 12
    SIN = 13
    COS = 14
    TAN = 15
    TANH = 16
    SINH = 17
    COSH = 18
    ARCTAN = 19
    ARCSIN = 20
    ARCCOS = 21
    LT = 22       #: 1.0 if a < b else 0.0
    LE = 23
    GT = 24
    GE = 25
    EQ = 26
    NE = 27
    SELECT = 28   #: b if a != 0 else c  (np.where)
    MAX = 29      #: a if a >= b else b, NaN propagates (np.maximum)
    MIN = 30      #: a if a <= b else b, NaN propagates (np.minimum)
    LINCOMB = 31  #: sum_k lc_weight[a + k] * slot[lc_slot[a + k]], k < b
    SQUARE = 32   #: a * a
    SUM = 33      #: scheduler only (unit-weight LINCOMB); never in a Tape
    PROD = 34     #: scheduler only (chain of products); never in a Tape
    PROD3 = 35    #: C rows only (a PROD of three factors); never in a Tape
    COUNT = 36    #: number of op codes (not an op)


#: Op name -> code, as in ``enum ds_op_code`` of ``tape.h`` (SUM and PROD
#: are made by the scheduler, ``_schedule.py``; the tracer never records them).
OPS = types.MappingProxyType({op.name: int(op) for op in Op})

_UNARY = frozenset({
    Op.NEG, Op.ABS, Op.EXP, Op.LOG, Op.LOG1P, Op.EXPM1, Op.SQRT, Op.SIN,
    Op.COS, Op.TAN, Op.TANH, Op.SINH, Op.COSH, Op.ARCTAN, Op.ARCSIN,
    Op.ARCCOS, Op.SQUARE,
})
_BINARY = frozenset({
    Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW, Op.LT, Op.LE, Op.GT, Op.GE,
    Op.EQ, Op.NE, Op.MAX, Op.MIN,
})
_NOT_RECORDED = frozenset({Op.SUM, Op.PROD, Op.PROD3})   # scheduler's and C rows'
_COMMUTATIVE = frozenset({Op.ADD, Op.MUL, Op.MAX, Op.MIN, Op.EQ, Op.NE})
_COMPARISONS = frozenset({Op.LT, Op.LE, Op.GT, Op.GE, Op.EQ, Op.NE})

# ---------------------------------------------------------------------------
# Scalar semantics shared by constant folding and Tape.evaluate.  Values are
# np.float64 and callers run under np.errstate(all="ignore"), so domain
# errors give NaN/inf as in C.
# ---------------------------------------------------------------------------


def _pow(a, b):
    """C's pow(): like np.power, but pow(-inf, 0.5) is inf as in C99 (NumPy's
    vectorised power gives NaN there)."""
    r = np.power(a, b)
    if r != r and a == a and b == b:
        try:
            return np.float64(math.pow(a, b))
        except (ValueError, OverflowError):
            return r
    return r


def _max(a, b):
    return a if (a >= b or a != a) else b


def _min(a, b):
    return a if (a <= b or a != a) else b


_F1 = np.float64(1.0)
_F0 = np.float64(0.0)

_EVAL_UNARY = {
    Op.NEG: lambda a: -a,
    Op.ABS: np.abs,
    Op.EXP: np.exp,
    Op.LOG: np.log,
    Op.LOG1P: np.log1p,
    Op.EXPM1: np.expm1,
    Op.SQRT: np.sqrt,
    Op.SIN: np.sin,
    Op.COS: np.cos,
    Op.TAN: np.tan,
    Op.TANH: np.tanh,
    Op.SINH: np.sinh,
    Op.COSH: np.cosh,
    Op.ARCTAN: np.arctan,
    Op.ARCSIN: np.arcsin,
    Op.ARCCOS: np.arccos,
    Op.SQUARE: lambda a: a * a,
}
_EVAL_BINARY = {
    Op.ADD: lambda a, b: a + b,
    Op.SUB: lambda a, b: a - b,
    Op.MUL: lambda a, b: a * b,
    Op.DIV: lambda a, b: a / b,
    Op.POW: _pow,
    Op.LT: lambda a, b: _F1 if a < b else _F0,
    Op.LE: lambda a, b: _F1 if a <= b else _F0,
    Op.GT: lambda a, b: _F1 if a > b else _F0,
    Op.GE: lambda a, b: _F1 if a >= b else _F0,
    Op.EQ: lambda a, b: _F1 if a == b else _F0,
    Op.NE: lambda a, b: _F1 if a != b else _F0,
    Op.MAX: _max,
    Op.MIN: _min,
}


def _eval_powi(x, e):
    """x ** e for an integer e by binary powering, as ``powi`` in tape.c."""
    e = int(e)
    u = -e if e < 0 else e
    x = np.float64(x)
    r = _F1
    while u:
        if u & 1:
            r = r * x
        x = x * x
        u >>= 1
    return _F1 / r if e < 0 else r


def _bits(x):
    """The IEEE bit pattern of a float (distinguishes 0.0 from -0.0)."""
    return struct.unpack("<Q", struct.pack("<d", x))[0]


# ---------------------------------------------------------------------------
# The tape
# ---------------------------------------------------------------------------


def _frozen(value, dtype, ndim, what):
    arr = np.array(value, dtype=dtype, copy=True)
    if ndim == 2 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != ndim:
        raise ValueError(f"Tape.{what} must be {ndim}-D, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False, repr=False)
class Tape:
    """A recorded right-hand side: a static SSA program over scalar slots.

    The layout is the contract with the C interpreter (``tape.h``): slot 0
    is ``t``, slots ``1 .. n`` are ``y``, then ``m`` slots of ``p``,
    ``n_const`` constants and one slot per op.  All arrays are read-only
    copies; the constructor validates that every operand precedes its op.

    Attributes
    ----------
    n, m : int
        Number of states and parameters.
    consts : ndarray of float64, shape (n_const,)
    ops : ndarray of int32, shape (n_ops, 4)
        ``(code, a, b, c)`` per op, codes from :data:`OPS`.
    lc_slot : ndarray of int32
        Operand slots of ``LINCOMB`` terms.
    lc_weight : ndarray of float64
        Weights of ``LINCOMB`` terms.
    outputs : ndarray of int32, shape (n,)
        ``outputs[q]`` is the slot holding ``dy[q]``.
    """

    n: int
    m: int
    consts: np.ndarray
    ops: np.ndarray
    lc_slot: np.ndarray
    lc_weight: np.ndarray
    outputs: np.ndarray

    def __post_init__(self):
        n, m = int(self.n), int(self.m)
        if n < 0 or m < 0:
            raise ValueError(f"Tape needs n, m >= 0, got n={n}, m={m}")
        setf = object.__setattr__
        setf(self, "n", n)
        setf(self, "m", m)
        setf(self, "consts", _frozen(self.consts, np.float64, 1, "consts"))
        setf(self, "ops", _frozen(self.ops, np.int32, 2, "ops"))
        setf(self, "lc_slot", _frozen(self.lc_slot, np.int32, 1, "lc_slot"))
        setf(self, "lc_weight",
             _frozen(self.lc_weight, np.float64, 1, "lc_weight"))
        setf(self, "outputs", _frozen(self.outputs, np.int32, 1, "outputs"))
        self._validate()

    def _validate(self):
        ops = self.ops
        if ops.shape[1] != 4:
            raise ValueError(f"Tape.ops must have shape (n_ops, 4), got {ops.shape}")
        if self.lc_slot.shape != self.lc_weight.shape:
            raise ValueError("Tape.lc_slot and Tape.lc_weight differ in length")
        if self.outputs.shape != (self.n,):
            raise ValueError(f"Tape.outputs must have shape ({self.n},), "
                             f"got {self.outputs.shape}")
        n_slots = self.n_slots
        if self.outputs.size and (self.outputs.min() < 0
                                  or self.outputs.max() >= n_slots):
            raise ValueError("Tape.outputs holds a slot out of range")
        first = self.first_op_slot
        n_lc = self.lc_slot.size
        for i, (code, a, b, c) in enumerate(ops.tolist()):
            own = first + i
            if not 0 <= code < Op.COUNT:
                raise ValueError(f"op {i}: unknown code {code}")
            if code in _NOT_RECORDED:
                raise ValueError(f"op {i}: {Op(code).name} is made by the scheduler "
                                 "or the C interpreter; a Tape holds tracer ops only")
            code = Op(code)
            if code == Op.LINCOMB:
                if a < 0 or b < 0 or a + b > n_lc:
                    raise ValueError(f"op {i}: LINCOMB terms [{a}, {a + b}) "
                                     f"outside lc_slot (length {n_lc})")
                used = self.lc_slot[a:a + b].tolist()
            elif code == Op.POWI:
                used = [a]
            elif code == Op.SELECT:
                used = [a, b, c]
            elif code in _BINARY:
                used = [a, b]
            else:
                used = [a]
            for s in used:
                if not 0 <= s < own:
                    raise ValueError(f"op {i} ({code.name}, slot {own}) reads "
                                     f"slot {s}; operands must precede it")

    # -- sizes -----------------------------------------------------------------

    @property
    def n_const(self):
        """Number of constant slots."""
        return int(self.consts.shape[0])

    @property
    def n_ops(self):
        """Number of ops."""
        return int(self.ops.shape[0])

    @property
    def first_op_slot(self):
        """Slot of op 0's result: ``1 + n + m + n_const``."""
        return 1 + self.n + self.m + self.n_const

    @property
    def n_slots(self):
        """Total number of slots: ``first_op_slot + n_ops``."""
        return self.first_op_slot + self.n_ops

    # -- reference interpreter ------------------------------------------------

    def evaluate(self, t, y, p=None):
        """Interpret the tape in Python: return ``dy = f(t, y, p)``.

        A slow reference implementation of ``ds_tape_eval`` with the same
        semantics: ``SELECT`` is ``b if a != 0 else c``, ``MAX``/``MIN``
        propagate NaN like ``np.maximum``/``np.minimum``, comparisons give
        1.0/0.0, ``POWI`` is binary powering (``1 / x**-c`` for c < 0) and
        ``LINCOMB`` accumulates ``0.0 + w_0 x_0 + w_1 x_1 + ...`` in order.

        Parameters
        ----------
        t : float
        y : array_like, shape (n,)
        p : array_like, shape (m,), optional (may be None when m == 0)

        Returns
        -------
        ndarray of float64, shape (n,)
        """
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (self.n,):
            raise ValueError(f"y has shape {y.shape}, the tape expects ({self.n},)")
        if p is None:
            p = np.zeros(0)
        p = np.asarray(p, dtype=np.float64)
        if p.shape != (self.m,):
            raise ValueError(f"p has shape {p.shape}, the tape expects ({self.m},)")
        s = [np.float64(t)]
        s.extend(np.float64(v) for v in y.tolist())
        s.extend(np.float64(v) for v in p.tolist())
        s.extend(np.float64(v) for v in self.consts.tolist())
        lc_slot = self.lc_slot.tolist()
        lc_weight = [np.float64(w) for w in self.lc_weight.tolist()]
        unary, binary = _EVAL_UNARY, _EVAL_BINARY
        with np.errstate(all="ignore"):
            for code, a, b, c in self.ops.tolist():
                f = unary.get(code)
                if f is not None:
                    s.append(f(s[a]))
                    continue
                f = binary.get(code)
                if f is not None:
                    s.append(f(s[a], s[b]))
                elif code == Op.POWI:
                    s.append(_eval_powi(s[a], c))
                elif code == Op.SELECT:
                    s.append(s[b] if s[a] != 0 else s[c])
                elif code == Op.LINCOMB:
                    acc = _F0
                    for k in range(a, a + b):
                        acc = acc + lc_weight[k] * s[lc_slot[k]]
                    s.append(acc)
                else:  # pragma: no cover - _validate rejects these
                    raise ValueError(f"unknown op code {code}")
        return np.array([s[q] for q in self.outputs.tolist()], dtype=np.float64)

    # -- printing ---------------------------------------------------------------

    def _slot_name(self, s):
        return f"s{s}"

    def _op_line(self, i, row):
        code, a, b, c = row
        own = self.first_op_slot + i
        name = Op(code).name.lower()
        if code == Op.LINCOMB:
            terms = " + ".join(
                f"{w!r}*s{k}" for k, w in zip(self.lc_slot[a:a + b].tolist(),
                                              self.lc_weight[a:a + b].tolist()))
            return f"s{own} = lincomb {terms}"
        if code == Op.POWI:
            return f"s{own} = powi s{a} {c}"
        if code == Op.SELECT:
            return f"s{own} = select s{a} s{b} s{c}"
        if code in _BINARY:
            return f"s{own} = {name} s{a} s{b}"
        return f"s{own} = {name} s{a}"

    def _lines(self, max_ops=None):
        n, m = self.n, self.m
        lines = [f"Tape(n={n}, m={m}, n_const={self.n_const}, "
                 f"n_ops={self.n_ops}, n_slots={self.n_slots})"]
        inputs = ["s0 = t"]
        if n:
            inputs.append(f"s1 = y[0]" if n == 1 else f"s1..s{n} = y[0..{n - 1}]")
        if m:
            inputs.append(f"s{1 + n} = p[0]" if m == 1 else
                          f"s{1 + n}..s{n + m} = p[0..{m - 1}]")
        lines.append("  " + "; ".join(inputs))
        base = 1 + n + m
        for k, v in enumerate(self.consts.tolist()):
            lines.append(f"  s{base + k} = {v!r}")
        ops = self.ops.tolist()
        shown = ops if max_ops is None else ops[:max_ops]
        for i, row in enumerate(shown):
            lines.append("  " + self._op_line(i, row))
        if len(shown) < len(ops):
            lines.append(f"  ... {len(ops) - len(shown)} more ops "
                         "(tape.describe() prints all)")
        for q, s in enumerate(self.outputs.tolist()):
            lines.append(f"  dy[{q}] = s{s}")
        return lines

    def describe(self):
        """The program as text, one line per slot/op (e.g. ``s12 = mul s3 s7``)."""
        return "\n".join(self._lines())

    def __repr__(self):
        return "\n".join(self._lines(max_ops=200))

    # -- identity ----------------------------------------------------------------

    def _key(self):
        return (self.n, self.m, self.consts.tobytes(), self.ops.tobytes(),
                self.lc_slot.tobytes(), self.lc_weight.tobytes(),
                self.outputs.tobytes())

    def __eq__(self, other):
        if not isinstance(other, Tape):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __reduce__(self):
        return (Tape, (self.n, self.m, self.consts, self.ops, self.lc_slot,
                       self.lc_weight, self.outputs))


# ---------------------------------------------------------------------------
# Error messages
# ---------------------------------------------------------------------------

_WAY_OUT = ("Use np.where(cond, a, b) (or np.maximum / np.minimum / np.clip) "
            "for piecewise expressions, or pass the plain Python function "
            "instead of a traced one.")


def _is_internal(frame):
    name = frame.f_globals.get("__name__", "")
    return name == __name__ or name == "numpy" or name.startswith("numpy.")


def _user_frame(frame=None):
    """The innermost frame outside this module and NumPy (or None)."""
    f = sys._getframe(1) if frame is None else frame
    while f is not None and _is_internal(f):
        f = f.f_back
    return f


def _location(frame=None):
    f = _user_frame(frame)
    if f is None:
        return ""
    filename, lineno = f.f_code.co_filename, f.f_lineno
    source = linecache.getline(filename, lineno).strip()
    text = f'\n  File "{filename}", line {lineno}, in {f.f_code.co_name}'
    if source:
        text += f"\n    {source}"
    return text


def _trace_error(message, frame=None):
    return TraceError(message + _location(frame))


_CONTROL_HINTS = {
    "bool": (
        "\nIf this line applies np.where / np.maximum / a comparison to a "
        "NumPy object array (np.array([...]) of traced values), build that "
        "array with np.array([...], like=y) so that NumPy hands it to the "
        "tracer."),
    "float": (
        "\nmath.exp, math.sin, ... call float(): use np.exp, np.sin, ... "
        "instead.  Storing a traced value into a float array (np.zeros(n), "
        "np.empty(n)) also calls float(): create the array with "
        "np.zeros_like(y) (or np.zeros(n, like=y)) instead."),
}


def _control_flow_error(what, hint=""):
    return _trace_error(
        f"{what} of a traced value: `fun` is recorded once on symbolic "
        "values, so Python control flow and conversions to Python numbers "
        "cannot depend on t, y or p (if, while, and/or/not, min()/max(), "
        "float(), int(), math.*, indexing with a traced value).\n"
        + _WAY_OUT + _CONTROL_HINTS.get(hint, "") + "\nat:")


def _np_name(func):
    mod = getattr(func, "__module__", None) or "numpy"
    name = getattr(func, "__name__", repr(func))
    if mod == "numpy" or mod.startswith("numpy._core") or mod.startswith(
            "numpy.core") or mod.startswith("numpy.lib"):
        return f"np.{name}"
    if mod.startswith("numpy."):
        return "np." + mod[len("numpy."):] + "." + name
    return f"{mod}.{name}"


def _unsupported(what):
    return _trace_error(
        f"{what} is not supported on traced values.  Supported: arithmetic "
        "(+ - * / ** unary -, abs), comparisons, np." + ", np.".join(
            sorted(_UFUNC_NAMES)) + ", np.where, np.select, np.clip, sums, "
        "products, @ / np.dot, indexing, stacking and reshaping.  Rewrite "
        "the expression with these, or pass the plain Python function "
        "instead of a traced one (it is then called from C on NumPy "
        "values).\nat:")


# ---------------------------------------------------------------------------
# The recorder
# ---------------------------------------------------------------------------


class _Builder:
    """Records scalar ops with hash-consing, folding and identities.

    Nodes are identified by integer ids: ``0 .. n + m`` are the inputs (ids
    equal to their final slots); constants and ops get increasing ids in
    creation order, so an op's operands always have smaller ids.
    """

    def __init__(self, n, m):
        self.n, self.m = n, m
        self.n_in = 1 + n + m
        self.next_id = self.n_in
        self.const_value = {}     # id -> float
        self.const_id = {}        # bit pattern -> id
        self.op_of = {}           # id -> (code, a, b, c)
        self.lc_of = {}           # id -> (ids tuple, weights tuple)
        self.cse = {}             # key -> id
        self.boolean = set()      # ids whose value is always 0.0 or 1.0
        self.pyfuncs = {}

    # -- nodes -----------------------------------------------------------------

    def _new(self):
        i = self.next_id
        self.next_id += 1
        return i

    def const(self, v):
        v = float(v)
        key = _bits(v)
        i = self.const_id.get(key)
        if i is None:
            i = self._new()
            self.const_id[key] = i
            self.const_value[i] = v
            if v == 0.0 or v == 1.0:
                self.boolean.add(i)
        return i

    def emit(self, code, a, b=0, c=0):
        if code in _COMMUTATIVE and b < a:
            a, b = b, a
        key = (code, a, b, c)
        i = self.cse.get(key)
        if i is None:
            i = self._new()
            self.op_of[i] = key
            self.cse[key] = i
            if code in _COMPARISONS:
                self.boolean.add(i)
        return i

    def tracer(self, i):
        return Tracer(self, i)

    def id_of(self, v):
        """The node id of a traced value or Python/NumPy number."""
        if isinstance(v, Tracer):
            if v._b is not self:
                raise _trace_error(
                    "a traced value from another recording (or one kept "
                    "from an earlier call of `fun`) was used; traced values "
                    "exist only while `fun` is being recorded\nat:")
            return v._i
        if isinstance(v, (float, int, np.floating, np.integer, np.bool_)):
            return self.const(v)
        if v is None:
            raise _trace_error(
                "None where a number was expected (an element of np.empty(...) "
                "that was never assigned?)\nat:")
        if isinstance(v, (complex, np.complexfloating)):
            raise _trace_error("complex values are not supported by the "
                               "tracer\nat:")
        raise _trace_error(f"cannot use a {type(v).__name__} ({v!r:.60}) in "
                           "a traced expression\nat:")

    def _fold(self, fn, *vals):
        with np.errstate(all="ignore"):
            return self.const(fn(*(np.float64(v) for v in vals)))

    def _neg_operand(self, i):
        op = self.op_of.get(i)
        if op is not None and op[0] == Op.NEG:
            return op[1]
        return None

    # -- scalar ops on ids -------------------------------------------------------

    def unary(self, code, a):
        va = self.const_value.get(a)
        if va is not None:
            return self._fold(_EVAL_UNARY[code], va)
        if code == Op.NEG:
            inner = self._neg_operand(a)
            if inner is not None:
                return inner
        return self.emit(code, a)

    def neg(self, a):
        return self.unary(Op.NEG, a)

    def add(self, a, b):
        cv = self.const_value
        va, vb = cv.get(a), cv.get(b)
        if va is not None and vb is not None:
            return self._fold(_EVAL_BINARY[Op.ADD], va, vb)
        if vb is not None and vb == 0.0:
            return a
        if va is not None and va == 0.0:
            return b
        z = self._neg_operand(a)
        if z is not None:
            return self.sub(b, z)
        z = self._neg_operand(b)
        if z is not None:
            return self.sub(a, z)
        return self.emit(Op.ADD, a, b)

    def sub(self, a, b):
        cv = self.const_value
        va, vb = cv.get(a), cv.get(b)
        if va is not None and vb is not None:
            return self._fold(_EVAL_BINARY[Op.SUB], va, vb)
        if vb is not None and vb == 0.0:
            return a
        z = self._neg_operand(b)
        if z is not None:
            return self.add(a, z)
        return self.emit(Op.SUB, a, b)

    def mul(self, a, b):
        cv = self.const_value
        va, vb = cv.get(a), cv.get(b)
        if va is not None and vb is not None:
            return self._fold(_EVAL_BINARY[Op.MUL], va, vb)
        if vb is not None:
            if vb == 1.0:
                return a
            if vb == -1.0:
                return self.neg(a)
        if va is not None:
            if va == 1.0:
                return b
            if va == -1.0:
                return self.neg(b)
        if a == b:
            return self.emit(Op.SQUARE, a)
        # (-u) * v == -(u * v) exactly: move negations outwards, where a
        # following add/sub absorbs them.
        za, zb = self._neg_operand(a), self._neg_operand(b)
        if za is not None and zb is not None:
            return self.mul(za, zb)
        if za is not None:
            if vb is not None:
                return self.mul(za, self.const(-vb))
            return self.neg(self.mul(za, b))
        if zb is not None:
            if va is not None:
                return self.mul(self.const(-va), zb)
            return self.neg(self.mul(a, zb))
        return self.emit(Op.MUL, a, b)

    def div(self, a, b):
        cv = self.const_value
        va, vb = cv.get(a), cv.get(b)
        if va is not None and vb is not None:
            return self._fold(_EVAL_BINARY[Op.DIV], va, vb)
        if vb is not None:
            if vb == 1.0:
                return a
            if vb == -1.0:
                return self.neg(a)
        za, zb = self._neg_operand(a), self._neg_operand(b)
        if za is not None and zb is not None:
            return self.div(za, zb)
        if za is not None:
            if vb is not None:
                return self.div(za, self.const(-vb))
            return self.neg(self.div(za, b))
        if zb is not None:
            if va is not None:
                return self.div(self.const(-va), zb)
            return self.neg(self.div(a, zb))
        return self.emit(Op.DIV, a, b)

    def power(self, a, e):
        cv = self.const_value
        va, ve = cv.get(a), cv.get(e)
        if ve is not None:
            if math.isfinite(ve) and ve == int(ve) and abs(ve) < 2 ** 31:
                return self.powi(a, int(ve))
            if ve == 0.5:
                return self.unary(Op.SQRT, a)
            if va is not None:
                return self._fold(_pow, va, ve)
        return self.emit(Op.POW, a, e)

    def powi(self, a, k):
        if k == 0:
            return self.const(1.0)
        if k == 1:
            return a
        va = self.const_value.get(a)
        if va is not None:
            with np.errstate(all="ignore"):
                return self.const(_eval_powi(va, k))
        if k == 2:
            return self.emit(Op.SQUARE, a)
        return self.emit(Op.POWI, a, 0, k)

    def compare(self, code, a, b):
        cv = self.const_value
        va, vb = cv.get(a), cv.get(b)
        if va is not None and vb is not None:
            return self._fold(_EVAL_BINARY[code], va, vb)
        return self.emit(code, a, b)

    def maximum(self, a, b, code=Op.MAX):
        cv = self.const_value
        va, vb = cv.get(a), cv.get(b)
        if va is not None and vb is not None:
            return self._fold(_EVAL_BINARY[code], va, vb)
        if a == b:
            return a
        i = self.emit(code, a, b)
        if a in self.boolean and b in self.boolean:
            self.boolean.add(i)
        return i

    def minimum(self, a, b):
        return self.maximum(a, b, Op.MIN)

    def select(self, c, x, y):
        vc = self.const_value.get(c)
        if vc is not None:
            return x if vc != 0 else y
        if x == y:
            return x
        op = self.op_of.get(c)
        if op is not None and op[0] in (Op.NE, Op.EQ):
            # SELECT(x != 0, u, v) == SELECT(x, u, v), also for NaN;
            # SELECT(x == 0, u, v) == SELECT(x, v, u).
            _, p, q, _ = op
            other = None
            if self.const_value.get(q) == 0.0:
                other = p
            elif self.const_value.get(p) == 0.0:
                other = q
            if other is not None:
                if op[0] == Op.NE:
                    return self.select(other, x, y)
                return self.select(other, y, x)
        i = self.emit(Op.SELECT, c, x, y)
        if x in self.boolean and y in self.boolean:
            self.boolean.add(i)
        return i

    # logical ops on truth values (nonzero -> 1.0)

    def truth(self, a):
        if a in self.boolean:
            return a
        va = self.const_value.get(a)
        if va is not None:
            return self.const(1.0 if va != 0 else 0.0)
        return self.emit(Op.NE, a, self.const(0.0))

    def logical_not(self, a):
        va = self.const_value.get(a)
        if va is not None:
            return self.const(1.0 if va == 0 else 0.0)
        return self.emit(Op.EQ, a, self.const(0.0))

    def logical_and(self, a, b):
        ta, tb = self.truth(a), self.truth(b)
        for u, v in ((ta, tb), (tb, ta)):
            vu = self.const_value.get(u)
            if vu is not None:
                return v if vu != 0 else self.const(0.0)
        i = self.mul(ta, tb)
        self.boolean.add(i)
        return i

    def logical_or(self, a, b):
        ta, tb = self.truth(a), self.truth(b)
        for u, v in ((ta, tb), (tb, ta)):
            vu = self.const_value.get(u)
            if vu is not None:
                return self.const(1.0) if vu != 0 else v
        return self.maximum(ta, tb)

    def logical_xor(self, a, b):
        return self.compare(Op.NE, self.truth(a), self.truth(b))

    def lincomb(self, terms, c=0.0):
        """sum_k w_k x_k + c over (id, weight) terms; zero weights dropped."""
        kept = []
        cv = self.const_value
        for i, w in terms:
            w = float(w)
            if w == 0.0:
                continue
            v = cv.get(i)
            if v is not None:
                c = c + w * v
            else:
                kept.append((i, w))
        if not kept:
            return self.const(c)
        if c != 0.0:   # true for NaN
            kept.append((self.const(c), 1.0))
        if len(kept) == 1:
            i, w = kept[0]
            return self.mul(i, self.const(w))
        if len(kept) == 2:
            (i, w), (j, u) = kept
            if w == 1.0 and u == 1.0:
                return self.add(i, j)
            if w == 1.0 and u == -1.0:
                return self.sub(i, j)
            if w == -1.0 and u == 1.0:
                return self.sub(j, i)
        ids = tuple(i for i, _ in kept)
        weights = tuple(w for _, w in kept)
        key = (Op.LINCOMB, ids, tuple(_bits(w) for w in weights))
        i = self.cse.get(key)
        if i is None:
            i = self._new()
            self.lc_of[i] = (ids, weights)
            self.cse[key] = i
        return i

    # -- finishing -----------------------------------------------------------------

    def _operands(self, i):
        op = self.op_of.get(i)
        if op is not None:
            code, a, b, c = op
            if code == Op.SELECT:
                return (a, b, c)
            if code in _BINARY:
                return (a, b)
            return (a,)
        return self.lc_of[i][0]

    def _live(self, out_ids):
        live = set(out_ids)
        for i in range(self.next_id - 1, self.n_in - 1, -1):
            if i in live and i not in self.const_value:
                live.update(self._operands(i))
        return live

    def _fuse_lincombs(self, live, out_ids):
        """Absorb ``L + x``, ``x + L`` and ``L - x`` into the LINCOMB ``L``
        when that op is L's only user.  Exact: the interpreter then adds x as
        the last term, the same arithmetic as the ADD/SUB.  (Biases after
        ``W @ y`` become one op.)"""
        uses = dict.fromkeys(live, 0)
        for i in out_ids:
            uses[i] += 1
        for i in live:
            if i not in self.const_value and i >= self.n_in:
                for j in self._operands(i):
                    uses[j] += 1
        fused = False
        for i in sorted(live):
            op = self.op_of.get(i)
            if op is None or op[0] not in (Op.ADD, Op.SUB):
                continue
            code, a, b, _ = op
            cands = [(a, b, 1.0 if code == Op.ADD else -1.0)]
            if code == Op.ADD:
                cands.append((b, a, 1.0))
            for lc, other, w in cands:
                if lc in self.lc_of and uses[lc] == 1 and lc != other:
                    ids, weights = self.lc_of[lc]
                    del self.op_of[i]
                    self.lc_of[i] = (ids + (other,), weights + (w,))
                    fused = True
                    break
        return self._live(out_ids) if fused else live

    def finish(self, out_ids):
        live = self._fuse_lincombs(self._live(out_ids), out_ids)
        consts = sorted(i for i in live if i in self.const_value)
        ops = sorted(i for i in live
                     if i in self.op_of or i in self.lc_of)
        slot = {i: i for i in range(self.n_in)}
        for k, i in enumerate(consts):
            slot[i] = self.n_in + k
        first = self.n_in + len(consts)
        for k, i in enumerate(ops):
            slot[i] = first + k
        rows, lc_slot, lc_weight = [], [], []
        for i in ops:
            op = self.op_of.get(i)
            if op is None:
                ids, weights = self.lc_of[i]
                rows.append((Op.LINCOMB, len(lc_slot), len(ids), 0))
                lc_slot.extend(slot[j] for j in ids)
                lc_weight.extend(weights)
                continue
            code, a, b, c = op
            if code == Op.POWI:
                rows.append((code, slot[a], 0, c))
            elif code == Op.SELECT:
                rows.append((code, slot[a], slot[b], slot[c]))
            elif code in _BINARY:
                rows.append((code, slot[a], slot[b], 0))
            else:
                rows.append((code, slot[a], 0, 0))
        return Tape(
            n=self.n,
            m=self.m,
            consts=np.array([self.const_value[i] for i in consts],
                            dtype=np.float64),
            ops=np.array(rows, dtype=np.int32).reshape(len(rows), 4),
            lc_slot=np.array(lc_slot, dtype=np.int32),
            lc_weight=np.array(lc_weight, dtype=np.float64),
            outputs=np.array([slot[i] for i in out_ids], dtype=np.int32),
        )

    def pyfunc(self, key, fn, nin):
        """A cached np.frompyfunc over Tracer/number elements."""
        pf = self.pyfuncs.get(key)
        if pf is None:
            id_of, tracer = self.id_of, self.tracer

            def elem(*xs):
                return tracer(fn(self, *map(id_of, xs)))

            pf = np.frompyfunc(elem, nin, 1)
            self.pyfuncs[key] = pf
        return pf


# ---------------------------------------------------------------------------
# Element-wise functions (ufuncs) on ids
# ---------------------------------------------------------------------------

_LN10 = math.log(10.0)
_LN2 = math.log(2.0)


def _u(code):
    return lambda b, a: b.unary(code, a)


_UFUNC_IMPL = {
    # unary
    np.negative: (1, _u(Op.NEG)),
    np.positive: (1, lambda b, a: a),
    np.conjugate: (1, lambda b, a: a),
    np.absolute: (1, _u(Op.ABS)),
    np.fabs: (1, _u(Op.ABS)),
    np.exp: (1, _u(Op.EXP)),
    np.log: (1, _u(Op.LOG)),
    np.log1p: (1, _u(Op.LOG1P)),
    np.expm1: (1, _u(Op.EXPM1)),
    np.sqrt: (1, _u(Op.SQRT)),
    np.sin: (1, _u(Op.SIN)),
    np.cos: (1, _u(Op.COS)),
    np.tan: (1, _u(Op.TAN)),
    np.tanh: (1, _u(Op.TANH)),
    np.sinh: (1, _u(Op.SINH)),
    np.cosh: (1, _u(Op.COSH)),
    np.arctan: (1, _u(Op.ARCTAN)),
    np.arcsin: (1, _u(Op.ARCSIN)),
    np.arccos: (1, _u(Op.ARCCOS)),
    np.square: (1, _u(Op.SQUARE)),
    np.reciprocal: (1, lambda b, a: b.div(b.const(1.0), a)),
    np.log10: (1, lambda b, a: b.div(b.unary(Op.LOG, a), b.const(_LN10))),
    np.log2: (1, lambda b, a: b.div(b.unary(Op.LOG, a), b.const(_LN2))),
    np.exp2: (1, lambda b, a: b.power(b.const(2.0), a)),
    np.logical_not: (1, lambda b, a: b.logical_not(a)),
    np.invert: (1, lambda b, a: b.logical_not(a)),
    # binary
    np.add: (2, lambda b, x, y: b.add(x, y)),
    np.subtract: (2, lambda b, x, y: b.sub(x, y)),
    np.multiply: (2, lambda b, x, y: b.mul(x, y)),
    np.true_divide: (2, lambda b, x, y: b.div(x, y)),
    np.power: (2, lambda b, x, y: b.power(x, y)),
    np.float_power: (2, lambda b, x, y: b.power(x, y)),
    np.maximum: (2, lambda b, x, y: b.maximum(x, y)),
    np.minimum: (2, lambda b, x, y: b.minimum(x, y)),
    np.less: (2, lambda b, x, y: b.compare(Op.LT, x, y)),
    np.less_equal: (2, lambda b, x, y: b.compare(Op.LE, x, y)),
    np.greater: (2, lambda b, x, y: b.compare(Op.GT, x, y)),
    np.greater_equal: (2, lambda b, x, y: b.compare(Op.GE, x, y)),
    np.equal: (2, lambda b, x, y: b.compare(Op.EQ, x, y)),
    np.not_equal: (2, lambda b, x, y: b.compare(Op.NE, x, y)),
    np.logical_and: (2, lambda b, x, y: b.logical_and(x, y)),
    np.logical_or: (2, lambda b, x, y: b.logical_or(x, y)),
    np.logical_xor: (2, lambda b, x, y: b.logical_xor(x, y)),
    np.bitwise_and: (2, lambda b, x, y: b.logical_and(x, y)),
    np.bitwise_or: (2, lambda b, x, y: b.logical_or(x, y)),
    np.bitwise_xor: (2, lambda b, x, y: b.logical_xor(x, y)),
}
_UFUNC_NAMES = frozenset(u.__name__ for u in _UFUNC_IMPL) | {"matmul"}


def _ufunc_impl(ufunc):
    impl = _UFUNC_IMPL.get(ufunc)
    if impl is None:
        raise _unsupported(f"np.{ufunc.__name__}")
    return impl


def _obj0(x):
    a = np.empty((), dtype=object)
    a[()] = x
    return a


def _as_obj(x):
    """An operand for np.frompyfunc ufuncs: no tracer types at top level."""
    if isinstance(x, TracedArray):
        return x._a
    if isinstance(x, Tracer):
        return _obj0(x)
    if isinstance(x, (list, tuple)):
        return np.asarray(x, dtype=object)
    return x


def _objarray(x):
    """An object ndarray holding the elements of x."""
    if isinstance(x, TracedArray):
        return x._a
    if isinstance(x, Tracer):
        return _obj0(x)
    if isinstance(x, np.ndarray):
        return x if x.dtype == object else x.astype(object)
    return np.asarray(x, dtype=object)


def _lift_objarray(b, arr):
    """arr with every element a Tracer of b (arr itself when it already is)."""
    if arr.dtype == object:
        flat = arr.ravel().tolist()
        if all(isinstance(e, Tracer) and e._b is b for e in flat):
            return arr
    else:
        if arr.dtype.kind == "c":
            raise _trace_error("complex values are not supported by the "
                               "tracer\nat:")
        flat = arr.ravel().tolist()
    out = np.empty(len(flat), dtype=object)
    for k, e in enumerate(flat):
        out[k] = b.tracer(b.id_of(e))
    return out.reshape(arr.shape)


def _wrap(b, r):
    """Turn an object result into Tracer / TracedArray."""
    if isinstance(r, np.ndarray):
        if r.dtype != object:
            return r
        if r.ndim == 0:
            return b.tracer(b.id_of(r[()]))
        return TracedArray(b, _lift_objarray(b, r))
    if isinstance(r, Tracer):
        return r
    if isinstance(r, (list, tuple)) and not hasattr(r, "_fields"):
        return type(r)(_wrap(b, e) for e in r)
    return r


def _store(b, out, res):
    """Write res into the `out=` target of a ufunc call."""
    if isinstance(out, tuple):
        if len(out) != 1:
            raise _unsupported("a ufunc with several outputs")
        out = out[0]
    if isinstance(out, TracedArray):
        out._a[...] = _lift_objarray(b, _objarray(res))
        return out
    if isinstance(out, np.ndarray) and out.dtype == object:
        out[...] = _objarray(res)
        return out
    dtype = getattr(out, "dtype", type(out).__name__)
    raise _trace_error(
        f"cannot store traced values in a {dtype} array (an in-place "
        "operation such as `a += y` or `out=`); create the array with "
        "np.zeros_like(y) (or np.zeros(shape, like=y)) instead\nat:")


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        axes = tuple(int(a) for a in axis)
    else:
        axes = (int(axis),)
    norm = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(a, ndim)
        norm.append(a % ndim if ndim else a)
    if len(set(norm)) != len(norm):
        raise ValueError("duplicate value in 'axis'")
    return tuple(sorted(norm))


def _reduce(b, x, axis, keepdims, rowfn):
    """Reduce the object array of x over `axis` with rowfn(list) -> Tracer."""
    arr = _objarray(x)
    nd = arr.ndim
    axes = _normalize_axes(axis, nd)
    keep = [i for i in range(nd) if i not in axes]
    kshape = tuple(arr.shape[i] for i in keep)
    K = int(np.prod([arr.shape[i] for i in axes], dtype=np.int64))
    rows = arr.transpose(keep + list(axes)).reshape(
        int(np.prod(kshape, dtype=np.int64)), K)
    res = np.empty(rows.shape[0], dtype=object)
    for r in range(rows.shape[0]):
        res[r] = rowfn(rows[r].tolist())
    res = res.reshape(kshape)
    if keepdims:
        res = res.reshape(tuple(1 if i in axes else arr.shape[i]
                                for i in range(nd)))
    return _wrap(b, res)


def _binary_rowfn(b, fn, name, initial=None):
    def rowfn(elems):
        ids = [b.id_of(e) for e in elems]
        if initial is not None:
            ids.insert(0, b.id_of(initial))
        if not ids:
            raise ValueError(f"zero-size array to reduction operation {name} "
                             "which has no identity")
        return b.tracer(functools.reduce(lambda u, v: fn(b, u, v), ids))
    return rowfn


def _sum_rowfn(b, initial=None):
    def rowfn(elems):
        if initial is not None:
            elems = [initial] + elems
        return b.tracer(b.lincomb([(b.id_of(e), 1.0) for e in elems]))
    return rowfn


_REDUCIBLE = {np.multiply: 1.0, np.maximum: None, np.minimum: None,
              np.logical_and: 1.0, np.logical_or: 0.0}


def _array_ufunc(b, ufunc, method, inputs, kwargs):
    for v in inputs:
        if not isinstance(v, (Tracer, TracedArray, np.ndarray, np.generic,
                              float, int, list, tuple)):
            if hasattr(v, "__array_ufunc__") or hasattr(v, "__array_function__"):
                return NotImplemented
    out = kwargs.pop("out", None)
    dtype = kwargs.pop("dtype", None)
    if dtype is not None and np.dtype(dtype) != np.dtype(object):
        raise _unsupported(f"np.{ufunc.__name__}(..., dtype={dtype!r})")
    if kwargs.pop("where", True) is not True:
        raise _unsupported(f"np.{ufunc.__name__}(..., where=...)")
    for k in ("casting", "order", "subok"):
        kwargs.pop(k, None)
    name = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    if method == "__call__":
        if kwargs:
            raise _unsupported(f"{name}(..., {', '.join(kwargs)}=...)")
        if ufunc is np.matmul:
            res = _matmul(b, *inputs)
        else:
            nin, fn = _ufunc_impl(ufunc)
            pf = b.pyfunc(ufunc, fn, nin)
            res = _wrap(b, pf(*map(_as_obj, inputs)))
    elif method == "reduce":
        axis = kwargs.pop("axis", 0)
        keepdims = kwargs.pop("keepdims", False)
        initial = kwargs.pop("initial", None)
        if kwargs:
            raise _unsupported(f"{name}(..., {', '.join(kwargs)}=...)")
        if ufunc is np.add:
            rowfn = _sum_rowfn(b, initial)
        elif ufunc in _REDUCIBLE:
            if initial is None:
                initial = _REDUCIBLE[ufunc]
            rowfn = _binary_rowfn(b, _UFUNC_IMPL[ufunc][1], ufunc.__name__,
                                  initial)
        else:
            raise _unsupported(name)
        (x,) = inputs
        res = _reduce(b, x, axis, keepdims, rowfn)
    elif method in ("accumulate", "outer", "at"):
        nin, fn = _ufunc_impl(ufunc)
        if ufunc is np.matmul:
            raise _unsupported(name)
        pf = b.pyfunc(ufunc, fn, nin)
        if method == "at":
            target = inputs[0]
            if isinstance(target, TracedArray):
                target = target._a
            elif not (isinstance(target, np.ndarray) and target.dtype == object):
                _store(b, target, None)   # raises the TraceError
            pf.at(target, inputs[1], *[_as_obj(v) for v in inputs[2:]],
                  **kwargs)
            return None
        res = _wrap(b, getattr(pf, method)(*map(_as_obj, inputs), **kwargs))
    else:
        raise _unsupported(name)
    if out is not None:
        return _store(b, out, res)
    return res


# ---------------------------------------------------------------------------
# Products with (constant) matrices -> LINCOMB
# ---------------------------------------------------------------------------


def _operand(b, x):
    """(shape, ids, values): per element a node id (traced) or a float."""
    if isinstance(x, (TracedArray, Tracer)):
        arr = _objarray(x)
    else:
        arr = np.asarray(x)
    if arr.dtype.kind == "c":
        raise _trace_error("complex values are not supported by the tracer\nat:")
    if arr.dtype != object:
        vals = arr.astype(np.float64).ravel().tolist()
        return arr.shape, [None] * len(vals), vals
    ids, vals = [], []
    cv = b.const_value
    for e in arr.ravel().tolist():
        i = b.id_of(e)
        v = cv.get(i)
        if v is None:
            ids.append(i)
            vals.append(None)
        else:
            ids.append(None)
            vals.append(v)
    return arr.shape, ids, vals


def _contract(b, A, B, IA, IB, out_shape):
    """out[o] = sum_j A[IA[o, j]] * B[IB[o, j]] as LINCOMB ops."""
    _, ia, va = A
    _, ib, vb = B
    N = int(np.prod(out_shape, dtype=np.int64))
    k = IA.shape[-1]
    IA = IA.reshape(N, k).tolist()
    IB = IB.reshape(N, k).tolist()
    res = np.empty(N, dtype=object)
    for r in range(N):
        terms = []
        c = 0.0
        for ja, jb in zip(IA[r], IB[r]):
            xa, xb = ia[ja], ib[jb]
            if xa is None:
                if xb is None:
                    c = c + va[ja] * vb[jb]
                else:
                    terms.append((xb, va[ja]))
            elif xb is None:
                terms.append((xa, vb[jb]))
            else:
                terms.append((b.mul(xa, xb), 1.0))
        res[r] = b.tracer(b.lincomb(terms, c))
    return _wrap(b, res.reshape(out_shape))


def _matmul(b, x1, x2):
    A, B = _operand(b, x1), _operand(b, x2)
    sa, sb = A[0], B[0]
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError("matmul: Input operand does not have enough "
                         "dimensions (a scalar; use * instead)")
    PA = np.arange(len(A[1])).reshape(sa)
    PB = np.arange(len(B[1])).reshape(sb)
    if len(sa) == 1:
        PA = PA[None, :]
    if len(sb) == 1:
        PB = PB[:, None]
    if PA.shape[-1] != PB.shape[-2]:
        raise ValueError(f"matmul: mismatch in the core dimension: shapes "
                         f"{sa} and {sb}")
    batch = np.broadcast_shapes(PA.shape[:-2], PB.shape[:-2])
    n1, k = PA.shape[-2:]
    m2 = PB.shape[-1]
    full = batch + (n1, m2, k)
    IA = np.broadcast_to(PA[..., :, None, :], full)
    IB = np.broadcast_to(np.swapaxes(PB, -1, -2)[..., None, :, :], full)
    out_shape = batch + ((n1,) if len(sa) > 1 else ()) + (
        (m2,) if len(sb) > 1 else ())
    return _contract(b, A, B, IA, IB, out_shape)


def _dot(b, a, c, out=None):
    A, B = _operand(b, a), _operand(b, c)
    sa, sb = A[0], B[0]
    if len(sa) == 0 or len(sb) == 0:
        res = _array_ufunc(b, np.multiply, "__call__", (a, c), {})
    else:
        k = sa[-1]
        kb = sb[-2] if len(sb) >= 2 else sb[0]
        if k != kb:
            raise ValueError(f"shapes {sa} and {sb} not aligned: {k} (dim "
                             f"{len(sa) - 1}) != {kb} (dim {max(len(sb) - 2, 0)})")
        PA = np.arange(len(A[1])).reshape(sa)
        PB = np.arange(len(B[1])).reshape(sb)
        if len(sb) == 1:
            PBt, bout = PB, ()
        else:
            PBt, bout = np.moveaxis(PB, -2, -1), sb[:-2] + sb[-1:]
        out_shape = sa[:-1] + bout
        full = out_shape + (k,)
        IA = np.broadcast_to(PA.reshape(sa[:-1] + (1,) * len(bout) + (k,)), full)
        IB = np.broadcast_to(PBt.reshape((1,) * (len(sa) - 1) + bout + (k,)), full)
        res = _contract(b, A, B, IA, IB, out_shape)
    if out is not None:
        return _store(b, out, res)
    return res


# ---------------------------------------------------------------------------
# NumPy functions (__array_function__)
# ---------------------------------------------------------------------------

_MISSING = object()


def _where(b, condition, x=_MISSING, y=_MISSING):
    if x is _MISSING or y is _MISSING:
        raise _trace_error(
            "np.where(cond) with one argument returns indices that depend on "
            "traced values, which a static tape cannot represent; use "
            "np.where(cond, a, b)\nat:")
    pf = b.pyfunc("where", lambda bb, c, u, v: bb.select(c, u, v), 3)
    return _wrap(b, pf(_as_obj(condition), _as_obj(x), _as_obj(y)))


def _select(b, condlist, choicelist, default=0):
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of "
                         "conditions")
    res = default
    for cond, choice in zip(reversed(list(condlist)), reversed(list(choicelist))):
        res = _where(b, cond, choice, res)
    return res


def _clip(b, a, a_min=_MISSING, a_max=_MISSING, out=None, *, min=_MISSING,
          max=_MISSING, **kwargs):
    lo = a_min if a_min is not _MISSING else min
    hi = a_max if a_max is not _MISSING else max
    if kwargs:
        raise _unsupported(f"np.clip(..., {', '.join(kwargs)}=...)")
    res = a
    if lo is not _MISSING and lo is not None:
        res = _array_ufunc(b, np.maximum, "__call__", (res, lo), {})
    if hi is not _MISSING and hi is not None:
        res = _array_ufunc(b, np.minimum, "__call__", (res, hi), {})
    if isinstance(res, (int, float, np.ndarray)) and not isinstance(
            res, TracedArray):
        res = _wrap(b, _lift_objarray(b, np.asarray(res)))
    if out is not None:
        return _store(b, out, res)
    return res


def _check_reduce_kwargs(name, dtype, out, where):
    if dtype is not None and np.dtype(dtype) not in (np.dtype(object),
                                                      np.dtype(np.float64)):
        raise _unsupported(f"{name}(..., dtype={dtype!r})")
    if where is not _MISSING and where is not True:
        raise _unsupported(f"{name}(..., where=...)")


def _sum(b, a, axis=None, dtype=None, out=None, keepdims=False,
         initial=_MISSING, where=_MISSING):
    _check_reduce_kwargs("np.sum", dtype, out, where)
    init = None if initial is _MISSING else initial
    res = _reduce(b, a, axis, keepdims, _sum_rowfn(b, init))
    return res if out is None else _store(b, out, res)


def _prod(b, a, axis=None, dtype=None, out=None, keepdims=False,
          initial=_MISSING, where=_MISSING):
    _check_reduce_kwargs("np.prod", dtype, out, where)
    init = 1.0 if initial is _MISSING else initial
    res = _reduce(b, a, axis, keepdims,
                  _binary_rowfn(b, _UFUNC_IMPL[np.multiply][1], "multiply", init))
    return res if out is None else _store(b, out, res)


def _extremum(ufunc):
    def handler(b, a, axis=None, out=None, keepdims=False, initial=_MISSING,
                where=_MISSING):
        _check_reduce_kwargs(f"np.{ufunc.__name__}", None, out, where)
        init = None if initial is _MISSING else initial
        res = _reduce(b, a, axis, keepdims,
                      _binary_rowfn(b, _UFUNC_IMPL[ufunc][1], ufunc.__name__,
                                    init))
        return res if out is None else _store(b, out, res)
    return handler


def _mean(b, a, axis=None, dtype=None, out=None, keepdims=False,
          where=_MISSING):
    _check_reduce_kwargs("np.mean", dtype, out, where)
    arr = _objarray(a)
    axes = _normalize_axes(axis, arr.ndim)
    count = int(np.prod([arr.shape[i] for i in axes], dtype=np.int64))
    total = _reduce(b, arr, axis, keepdims, _sum_rowfn(b))
    res = _array_ufunc(b, np.true_divide, "__call__", (total, float(count)), {})
    return res if out is None else _store(b, out, res)


def _norm(b, x, ord=None, axis=None, keepdims=False):
    arr = _objarray(x)
    if axis is not None or not (ord is None or (ord == 2 and arr.ndim == 1)):
        raise _unsupported("np.linalg.norm with ord/axis (only the 2-norm of "
                           "all elements is traced)")
    sq = _array_ufunc(b, np.square, "__call__", (arr,), {})
    total = _reduce(b, sq, None, keepdims, _sum_rowfn(b))
    return _array_ufunc(b, np.sqrt, "__call__", (total,), {})


def _empty_like(b, prototype, *args, **kwargs):
    return _generic(b, np.zeros_like, (prototype,) + args, kwargs)


def _unwrap(x, top=True):
    """Traced arrays -> their object arrays (at any depth); a traced scalar
    argument -> a 0-d object array (elements of lists stay as they are)."""
    if isinstance(x, TracedArray):
        return x._a
    if top and isinstance(x, Tracer):
        return _obj0(x)
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(_unwrap(e, False) for e in x)
    return x


def _generic(b, func, args, kwargs):
    """Run a structural NumPy function on the object arrays of the tracers."""
    impl = getattr(func, "_implementation", func)
    res = impl(*[_unwrap(a) for a in args],
               **{k: _unwrap(v) for k, v in kwargs.items()})
    return _wrap(b, res)


def _like(b, func, args, kwargs):
    """np.array(..., like=y) and friends: an array of traced values."""
    if func is np.empty:
        func = np.zeros
    res = np.asarray(func(*[_unwrap(a, False) for a in args],
                          **{k: _unwrap(v, False) for k, v in kwargs.items()}))
    out = _lift_objarray(b, res)
    if out.ndim == 0:
        return out[()]
    return TracedArray(b, out)


_FUNCTIONS = {
    np.where: _where,
    np.select: _select,
    np.clip: _clip,
    np.sum: _sum,
    np.prod: _prod,
    np.max: _extremum(np.maximum),
    np.min: _extremum(np.minimum),
    np.mean: _mean,
    np.dot: _dot,
    np.linalg.norm: _norm,
    np.empty_like: _empty_like,
}
for _alias, _target in (("amax", np.max), ("amin", np.min)):
    if hasattr(np, _alias):
        _FUNCTIONS.setdefault(getattr(np, _alias), _FUNCTIONS[_target])

_GENERIC_NAMES = (
    # structure
    "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "rollaxis",
    "squeeze", "expand_dims", "flip", "fliplr", "flipud", "roll",
    "atleast_1d", "atleast_2d", "atleast_3d", "broadcast_to",
    "broadcast_arrays", "concatenate", "stack", "hstack", "vstack",
    "dstack", "column_stack", "block", "append", "split", "array_split",
    "hsplit", "vsplit", "tile", "repeat", "take", "copy", "copyto", "diag",
    "diagonal", "diagflat", "tril", "triu", "shape", "ndim", "size",
    "result_type", "zeros_like", "ones_like", "full_like",
    # arithmetic that NumPy evaluates with the elements' operators
    "diff", "cumsum", "cumprod", "outer", "inner", "tensordot", "einsum",
    "trace", "polyval",
)
_GENERIC = frozenset(getattr(np, name) for name in _GENERIC_NAMES
                     if hasattr(np, name))

_LIKE_NAMES = ("array", "asarray", "asanyarray", "ascontiguousarray",
               "asfortranarray", "require", "zeros", "ones", "empty", "full",
               "identity", "eye", "arange", "fromiter")
_LIKE = frozenset(getattr(np, name) for name in _LIKE_NAMES if hasattr(np, name))


def _array_function(b, func, types_, args, kwargs):
    for t in types_:
        if not issubclass(t, (Tracer, TracedArray, np.ndarray)):
            return NotImplemented
    handler = _FUNCTIONS.get(func)
    if handler is not None:
        return handler(b, *args, **kwargs)
    if func in _GENERIC:
        return _generic(b, func, args, kwargs)
    if func in _LIKE:
        return _like(b, func, args, kwargs)
    raise _unsupported(_np_name(func))


# ---------------------------------------------------------------------------
# Traced values
# ---------------------------------------------------------------------------

_NUMBER = (float, int, np.floating, np.integer, np.bool_)


def _scalar_binary(fn):
    def forward(self, other):
        if isinstance(other, (Tracer,) + _NUMBER):
            b = self._b
            return Tracer(b, fn(b, self._i, b.id_of(other)))
        return _UFUNC_OF[fn](self, other)

    def reflected(self, other):
        if isinstance(other, _NUMBER):
            b = self._b
            return Tracer(b, fn(b, b.id_of(other), self._i))
        return _UFUNC_OF[fn](other, self)

    return forward, reflected


class Tracer:
    """A traced scalar: one slot of the tape being recorded.

    Supports Python arithmetic, comparisons (giving traced 1.0/0.0),
    ``abs``, NumPy ufuncs (``__array_ufunc__``) and functions such as
    ``np.where`` (``__array_function__``), and the methods ``exp()``,
    ``sin()``, ... that NumPy calls on the elements of object arrays.
    ``bool()``, ``float()``, ``int()`` and ``operator.index()`` raise
    :class:`TraceError` (unless the value is a constant).
    """

    __slots__ = ("_b", "_i")

    shape = ()
    ndim = 0
    size = 1

    def __init__(self, builder, i):
        self._b = builder
        self._i = i

    def _const(self):
        return self._b.const_value.get(self._i)

    # -- arithmetic ---------------------------------------------------------------

    __add__, __radd__ = _scalar_binary(_Builder.add)
    __sub__, __rsub__ = _scalar_binary(_Builder.sub)
    __mul__, __rmul__ = _scalar_binary(_Builder.mul)
    __truediv__, __rtruediv__ = _scalar_binary(_Builder.div)
    __pow__, __rpow__ = _scalar_binary(_Builder.power)
    __and__, __rand__ = _scalar_binary(_Builder.logical_and)
    __or__, __ror__ = _scalar_binary(_Builder.logical_or)
    __xor__, __rxor__ = _scalar_binary(_Builder.logical_xor)

    def _cmp(self, other, code, ufunc):
        if isinstance(other, (Tracer,) + _NUMBER):
            b = self._b
            return Tracer(b, b.compare(code, self._i, b.id_of(other)))
        if isinstance(other, (np.ndarray, TracedArray, list, tuple)):
            return ufunc(self, other)
        return NotImplemented

    def __lt__(self, other):
        return self._cmp(other, Op.LT, np.less)

    def __le__(self, other):
        return self._cmp(other, Op.LE, np.less_equal)

    def __gt__(self, other):
        return self._cmp(other, Op.GT, np.greater)

    def __ge__(self, other):
        return self._cmp(other, Op.GE, np.greater_equal)

    def __eq__(self, other):
        return self._cmp(other, Op.EQ, np.equal)

    def __ne__(self, other):
        return self._cmp(other, Op.NE, np.not_equal)

    __hash__ = object.__hash__

    def __neg__(self):
        return Tracer(self._b, self._b.neg(self._i))

    def __pos__(self):
        return self

    def __abs__(self):
        return Tracer(self._b, self._b.unary(Op.ABS, self._i))

    def __invert__(self):
        return Tracer(self._b, self._b.logical_not(self._i))

    def __floordiv__(self, other):
        return np.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return np.floor_divide(other, self)

    def __mod__(self, other):
        return np.remainder(self, other)

    def __rmod__(self, other):
        return np.remainder(other, self)

    def __divmod__(self, other):
        return np.divmod(self, other)

    def __rdivmod__(self, other):
        return np.divmod(other, self)

    # -- methods NumPy's object loops call ------------------------------------------

    def _unary(code):
        def method(self):
            return Tracer(self._b, self._b.unary(code, self._i))
        method.__name__ = code.name.lower()
        return method

    exp = _unary(Op.EXP)
    log = _unary(Op.LOG)
    log1p = _unary(Op.LOG1P)
    expm1 = _unary(Op.EXPM1)
    sqrt = _unary(Op.SQRT)
    sin = _unary(Op.SIN)
    cos = _unary(Op.COS)
    tan = _unary(Op.TAN)
    tanh = _unary(Op.TANH)
    sinh = _unary(Op.SINH)
    cosh = _unary(Op.COSH)
    arctan = _unary(Op.ARCTAN)
    arcsin = _unary(Op.ARCSIN)
    arccos = _unary(Op.ARCCOS)
    square = _unary(Op.SQUARE)
    absolute = _unary(Op.ABS)
    fabs = _unary(Op.ABS)
    del _unary

    def log10(self):
        return np.log10(self)

    def log2(self):
        return np.log2(self)

    def exp2(self):
        return np.exp2(self)

    def conjugate(self):
        return self

    conj = conjugate

    @property
    def real(self):
        return self

    # -- NumPy protocols ---------------------------------------------------------------

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _array_ufunc(self._b, ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _array_function(self._b, func, types, args, kwargs)

    # -- conversions (control flow) ------------------------------------------------------

    def __bool__(self):
        v = self._const()
        if v is None:
            raise _control_flow_error("bool() (an `if`, `while`, `and`, `or`, "
                                      "`not`, min() or max())", "bool")
        return bool(v)

    def __float__(self):
        v = self._const()
        if v is None:
            raise _control_flow_error("float()", "float")
        return v

    def __int__(self):
        v = self._const()
        if v is None:
            raise _control_flow_error("int()", "float")
        return int(v)

    def __index__(self):
        v = self._const()
        if v is None or v != int(v):
            raise _control_flow_error("indexing with (operator.index())")
        return int(v)

    def __complex__(self):
        v = self._const()
        if v is None:
            raise _control_flow_error("complex()", "float")
        return complex(v)

    def __round__(self, ndigits=None):
        v = self._const()
        if v is None:
            raise _control_flow_error("round()", "float")
        return round(v, ndigits)

    def _intlike(name, fn):
        def method(self):
            v = self._const()
            if v is None:
                raise _control_flow_error(f"{name}()", "float")
            return fn(v)
        return method

    __trunc__ = _intlike("math.trunc", math.trunc)
    __floor__ = _intlike("math.floor", math.floor)
    __ceil__ = _intlike("math.ceil", math.ceil)
    del _intlike

    def __repr__(self):
        b, i = self._b, self._i
        if i == 0:
            return "Tracer(t)"
        if i <= b.n:
            return f"Tracer(y[{i - 1}])"
        if i < b.n_in:
            return f"Tracer(p[{i - 1 - b.n}])"
        v = b.const_value.get(i)
        if v is not None:
            return f"Tracer(const {v!r})"
        op = b.op_of.get(i)
        if op is None:
            ids, ws = b.lc_of[i]
            return f"Tracer(#{i} = lincomb of {len(ids)} terms)"
        code, a, bb, c = op
        if code == Op.POWI:
            args = f"#{a} {c}"
        elif code == Op.SELECT:
            args = f"#{a} #{bb} #{c}"
        elif code in _BINARY:
            args = f"#{a} #{bb}"
        else:
            args = f"#{a}"
        return f"Tracer(#{i} = {Op(code).name.lower()} {args})"


_UFUNC_OF = {
    _Builder.add: np.add,
    _Builder.sub: np.subtract,
    _Builder.mul: np.multiply,
    _Builder.div: np.true_divide,
    _Builder.power: np.power,
    _Builder.logical_and: np.bitwise_and,
    _Builder.logical_or: np.bitwise_or,
    _Builder.logical_xor: np.bitwise_xor,
}


class TracedArray(NDArrayOperatorsMixin):
    """A traced array: an object ndarray of :class:`Tracer` elements.

    Operators and NumPy ufuncs work element-wise (``__array_ufunc__``),
    products with constant matrices record ``LINCOMB`` ops, and the
    supported NumPy functions (``np.where``, ``np.sum``, ``np.stack``, ...)
    dispatch through ``__array_function__``.  Indexing, slicing (views),
    item assignment, ``len`` and iteration behave as for ndarrays.
    """

    __slots__ = ("_b", "_a")
    __hash__ = None

    def __init__(self, builder, arr):
        self._b = builder
        self._a = arr

    # -- ndarray-like attributes ------------------------------------------------------------

    @property
    def shape(self):
        return self._a.shape

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def T(self):
        return TracedArray(self._b, self._a.T)

    @property
    def real(self):
        return self

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for k in range(len(self._a)):
            yield self[k]

    def _check_index(self, idx):
        parts = idx if isinstance(idx, tuple) else (idx,)
        for part in parts:
            if isinstance(part, TracedArray):
                raise _control_flow_error("indexing with")

    def __getitem__(self, idx):
        self._check_index(idx)
        r = self._a[idx]
        if isinstance(r, np.ndarray):
            return TracedArray(self._b, r)
        return self._b.tracer(self._b.id_of(r))

    def __setitem__(self, idx, value):
        self._check_index(idx)
        b = self._b
        if isinstance(value, Tracer):
            b.id_of(value)
            self._a[idx] = value
        elif isinstance(value, _NUMBER):
            self._a[idx] = b.tracer(b.id_of(value))
        else:
            if isinstance(value, TracedArray):
                arr = value._a
            else:
                arr = np.asarray(value, dtype=object) if isinstance(
                    value, (list, tuple)) else np.asarray(value)
            self._a[idx] = _lift_objarray(b, arr)

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return TracedArray(self._b, self._a.reshape(shape, order=order))

    def ravel(self, order="C"):
        return TracedArray(self._b, self._a.ravel(order=order))

    def flatten(self, order="C"):
        return TracedArray(self._b, self._a.flatten(order=order))

    def transpose(self, *axes):
        return TracedArray(self._b, self._a.transpose(*axes))

    def swapaxes(self, a1, a2):
        return TracedArray(self._b, self._a.swapaxes(a1, a2))

    def squeeze(self, axis=None):
        return TracedArray(self._b, self._a.squeeze(axis=axis))

    def copy(self, order="C"):
        return TracedArray(self._b, self._a.copy(order=order))

    def astype(self, dtype, copy=True, **kwargs):
        if np.dtype(dtype) != np.dtype(object):
            raise _control_flow_error(f"astype({np.dtype(dtype).name})", "float")
        return self.copy() if copy else self

    def tolist(self):
        return _wrap(self._b, self._a.tolist()) if self.ndim else self[()]

    def item(self, *args):
        if not args and self.size != 1:
            raise ValueError("can only convert an array of size 1 to a "
                             "Python scalar")
        r = self._a.item(*args)
        return self._b.tracer(self._b.id_of(r))

    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return _sum(self._b, self, axis, dtype, out, keepdims, **kw)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return _prod(self._b, self, axis, dtype, out, keepdims, **kw)

    def max(self, axis=None, out=None, keepdims=False, **kw):
        return _FUNCTIONS[np.max](self._b, self, axis, out, keepdims, **kw)

    def min(self, axis=None, out=None, keepdims=False, **kw):
        return _FUNCTIONS[np.min](self._b, self, axis, out, keepdims, **kw)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return _mean(self._b, self, axis, dtype, out, keepdims, **kw)

    def cumsum(self, axis=None):
        return np.cumsum(self, axis=axis)

    def cumprod(self, axis=None):
        return np.cumprod(self, axis=axis)

    def dot(self, other, out=None):
        return _dot(self._b, self, other, out)

    def clip(self, min=None, max=None, out=None):
        return _clip(self._b, self, min, max, out)

    def conjugate(self):
        return self

    conj = conjugate

    # -- NumPy protocols --------------------------------------------------------------------

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and np.dtype(dtype) != np.dtype(object):
            raise _control_flow_error(
                f"conversion to a {np.dtype(dtype).name} array", "float")
        return self._a.copy() if copy else self._a

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _array_ufunc(self._b, ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _array_function(self._b, func, types, args, kwargs)

    # -- conversions ----------------------------------------------------------------------------

    def _scalar(self, what):
        if self.size != 1:
            raise ValueError(f"{what} of a traced array with {self.size} "
                             "elements is ambiguous")
        return self._b.tracer(self._b.id_of(self._a.reshape(-1)[0]))

    def __bool__(self):
        return bool(self._scalar("The truth value"))

    def __float__(self):
        return float(self._scalar("float()"))

    def __int__(self):
        return int(self._scalar("int()"))

    def __index__(self):
        raise _control_flow_error("indexing with (operator.index())")

    def __complex__(self):
        return complex(self._scalar("complex()"))

    def __repr__(self):
        body = ", ".join(repr(e) for e in self._a.ravel()[:8].tolist())
        more = ", ..." if self.size > 8 else ""
        return f"TracedArray(shape={self.shape}, [{body}{more}])"


# ---------------------------------------------------------------------------
# record()
# ---------------------------------------------------------------------------


def _flatten(res, flat):
    if isinstance(res, TracedArray):
        flat.extend(res._a.ravel().tolist())
    elif isinstance(res, np.ndarray):
        flat.extend(res.ravel().tolist())
    elif isinstance(res, (list, tuple)):
        for e in res:
            _flatten(e, flat)
    else:
        flat.append(res)


def _shape_of(res):
    if isinstance(res, (TracedArray, np.ndarray)):
        return tuple(res.shape)
    if isinstance(res, (list, tuple)):
        return (len(res),)
    return ()


def _innermost_user_frame(tb):
    frame = None
    while tb is not None:
        if not _is_internal(tb.tb_frame):
            frame = tb.tb_frame
        tb = tb.tb_next
    return frame


def record(fun, y0, p=None, args=()):
    """Record ``fun`` as a :class:`Tape` by running it once on tracers.

    Parameters
    ----------
    fun : callable
        ``fun(t, y, *args)`` when `p` is None, else ``fun(t, y, p, *args)``.
        It receives a traced scalar ``t``, a traced 1-D array ``y`` of length
        ``n = len(y0)`` and a traced 1-D array ``p`` of length ``m``, and
        returns ``n`` values: a list/tuple of scalars, a traced array, or a
        NumPy (object) array.
    y0 : array_like, shape (n,)
        Only its length is used.
    p : array_like, shape (m,), optional
        Only its length is used; None means no parameters (m = 0).
    args : tuple, optional
        Extra arguments passed unchanged; they are constants of the tape.

    Returns
    -------
    Tape

    Raises
    ------
    TraceError
        If ``fun`` branches on or converts a traced value, or calls an
        unsupported NumPy function.
    ValueError
        If ``fun`` returns a number of values other than ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> from diffsens._trace import record
    >>> tape = record(lambda t, y, p: [p[0] * y[0] - y[0] * y[1],
    ...                                np.exp(-t) * y[1]], [1.0, 1.0], [2.0])
    >>> tape.evaluate(0.0, [1.0, 2.0], [3.0])
    array([1., 2.])
    """
    y0 = np.asarray(y0)
    if y0.ndim != 1:
        raise ValueError(f"y0 must be one-dimensional, got shape {y0.shape}")
    n = y0.shape[0]
    if p is None:
        m = 0
    else:
        p_arr = np.asarray(p)
        if p_arr.ndim != 1:
            raise ValueError(f"p must be one-dimensional, got shape {p_arr.shape}")
        m = p_arr.shape[0]
    try:
        args = tuple(args)
    except TypeError:
        raise TypeError("`args` must be a tuple of extra arguments") from None

    b = _Builder(n, m)

    def inputs(start, count):
        arr = np.empty(count, dtype=object)
        for k in range(count):
            arr[k] = Tracer(b, start + k)
        return TracedArray(b, arr)

    t = Tracer(b, 0)
    y = inputs(1, n)
    try:
        if p is None:
            res = fun(t, y, *args)
        else:
            res = fun(t, y, inputs(1 + n, m), *args)
    except TypeError as exc:
        if "which has no callable" not in str(exc):
            raise
        frame = _innermost_user_frame(exc.__traceback__)
        raise _trace_error(
            f"{exc}: NumPy applies that function element by element to an "
            "object array that mixes traced values and plain numbers (as "
            "np.array([...]) gives).  Build the array with "
            "np.array([...], like=y) so that it stays traced, or apply the "
            "function before building the array.\nat:", frame) from exc

    flat = []
    _flatten(res, flat)
    if len(flat) != n:
        raise ValueError(
            f"`fun` returned {len(flat)} values (shape {_shape_of(res)}) but "
            f"y0 has {n} (shape ({n},))")
    out_ids = [b.id_of(v) for v in flat]
    return b.finish(out_ids)
