# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, auto_pickle=False
"""ForwardDiff-style dual numbers for unmodified Python right-hand sides.

A :class:`Dual` is a value plus ``k`` partial derivatives ("lanes").  The
solver hands a user's ``fun(t, y, p)`` NumPy *object* arrays whose elements
are Duals; NumPy's object loops call the elements' operators and methods, so
whatever NumPy/Python arithmetic ``fun`` does propagates the derivatives.

Semantics follow ForwardDiff.jl: comparisons (and so ``if``, ``max``,
``np.where``, ``np.maximum``, ``np.clip``) look at the value only; arithmetic
is IEEE (``1 / Dual(0, ...)`` is ``inf``, ``np.log(Dual(-1, ...))`` is nan,
as for float64 arrays).  A derivative factor that is not finite (``sqrt`` at
0, ``log`` at 0, ...) multiplies a zero partial into zero rather than nan.
Converting a Dual to ``float``/``int`` raises TypeError (the derivative
would silently be lost).

The arithmetic runs in C: partials are a C array inside the object for up to
8 lanes (on the heap beyond), and freed objects are recycled.

Performance note for callers: ``float * Dual`` (a Python float on the left)
goes straight to the Dual's C operator, but ``np.float64 * Dual`` first goes
through NumPy's scalar machinery and ``Dual.__array_ufunc__`` (several times
slower).  Parameters that are not differentiated are best passed as an
object array of Python floats (``p.astype(object)``) or as zero-partial
Duals, not as a float64 array.
"""
import math
import numbers

import numpy as np

cimport cython
cimport numpy as cnp
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check
from cpython.long cimport PyLong_AsDouble, PyLong_Check
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport Py_EQ, Py_GE, Py_GT, Py_LE, Py_LT, Py_NE
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc cimport math as cm
from libc.string cimport memcpy

cnp.import_array()

cdef extern from "Python.h":
    ctypedef struct PyTypeObject
    Py_ssize_t _refcnt "Py_REFCNT"(PyObject *o)
    PyTypeObject *_type_of "Py_TYPE"(PyObject *o)

__all__ = ["Dual", "seed", "split"]

cdef double LN2 = 0.693147180559945309417232121458
cdef double LN10 = 2.30258509299404568401799145468
cdef double DEG = 0.0174532925199432957692369076849   # pi / 180
cdef double RAD = 57.2957795130823208767981548141     # 180 / pi

cdef tuple _NP_REAL = (np.floating, np.integer, np.bool_)
_Real = numbers.Real


# ---------------------------------------------------------------------------
# The type
# ---------------------------------------------------------------------------

@cython.final
@cython.freelist(1024)
cdef class Dual:
    """Dual(value, partials)

    A dual number: ``value`` plus ``k = len(partials)`` partial derivatives.

    Parameters
    ----------
    value : float
    partials : array_like, shape (k,)

    Examples
    --------
    >>> import numpy as np
    >>> from diffsens._dual import Dual
    >>> x = Dual(1.5, [1.0, 0.0])
    >>> y = Dual(2.0, [0.0, 1.0])
    >>> x * y + np.sin(x)
    Dual(3.9974949866040546, [2.0707372 1.5      ])
    """
    __array_priority__ = 1000.0

    def __init__(self, double value, partials):
        cdef cnp.ndarray arr = np.ascontiguousarray(partials, dtype=np.float64)
        if cnp.PyArray_NDIM(arr) != 1:
            raise ValueError("`partials` must be 1-dimensional; got shape "
                             f"{(<object>arr).shape}.")
        cdef Py_ssize_t k = cnp.PyArray_DIM(arr, 0)
        if self.der != NULL and self.der != self.buf:
            PyMem_Free(self.der)
        self.der = NULL
        self.nlanes = 0
        _alloc_partials(self, k)
        self.value = value
        if k:
            memcpy(self.der, cnp.PyArray_DATA(arr), k * sizeof(double))

    def __dealloc__(self):
        if self.der != NULL and self.der != self.buf:
            PyMem_Free(self.der)

    @property
    def partials(self):
        """The k partial derivatives (a new float64 array)."""
        cdef cnp.npy_intp dim = self.nlanes
        cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, &dim, cnp.NPY_DOUBLE, 0)
        if self.nlanes:
            memcpy(cnp.PyArray_DATA(out), self.der, self.nlanes * sizeof(double))
        return out

    def __repr__(self):
        return f"Dual({self.value!r}, {self.partials})"

    def __reduce__(self):
        return (Dual, (self.value, self.partials))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    # -- no silent loss of the derivative --------------------------------------

    def __float__(self):
        raise TypeError(_conversion_message(self, "float"))

    def __int__(self):
        raise TypeError(_conversion_message(self, "int"))

    def __index__(self):
        raise TypeError(_conversion_message(self, "int"))

    def __complex__(self):
        raise TypeError(_conversion_message(self, "complex"))

    def __bool__(self):
        return self.value != 0.0

    def __hash__(self):
        return hash(self.value)

    # Piecewise-constant functions: the derivative is zero, give the number.
    def __floor__(self):
        return math.floor(self.value)

    def __ceil__(self):
        return math.ceil(self.value)

    def __trunc__(self):
        return math.trunc(self.value)

    def __round__(self, ndigits=None):
        return round(self.value, ndigits)

    # -- comparisons: on the value (ForwardDiff semantics) -----------------------

    def __richcmp__(Dual self, other, int op):
        cdef double a = self.value
        cdef double b
        if type(other) is Dual:
            b = (<Dual>other).value
        elif not _real(other, &b):
            return NotImplemented
        if op == Py_LT:
            return a < b
        if op == Py_LE:
            return a <= b
        if op == Py_GT:
            return a > b
        if op == Py_GE:
            return a >= b
        if op == Py_EQ:
            return a == b
        return a != b

    # -- arithmetic ------------------------------------------------------------

    def __add__(self, other):
        return _add(self, other)

    def __radd__(self, other):
        return _add(other, self)

    def __sub__(self, other):
        return _sub(self, other)

    def __rsub__(self, other):
        return _sub(other, self)

    def __mul__(self, other):
        return _mul(self, other)

    def __rmul__(self, other):
        return _mul(other, self)

    def __truediv__(self, other):
        return _div(self, other)

    def __rtruediv__(self, other):
        return _div(other, self)

    def __pow__(self, other, mod):
        if mod is not None:
            return NotImplemented
        return _pow(self, other)

    def __rpow__(self, other, mod):
        if mod is not None:
            return NotImplemented
        return _pow(other, self)

    def __neg__(self):
        return _neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _abs(self)

    # -- math methods, named as NumPy's object loops look them up --------------

    def exp(self):
        return _exp(self)

    def exp2(self):
        cdef double v = cm.exp2(self.value)
        return _chain(self, v, v * LN2)

    def expm1(self):
        return _chain(self, cm.expm1(self.value), cm.exp(self.value))

    def log(self):
        return _log(self)

    def log2(self):
        return _chain(self, cm.log2(self.value), 1.0 / (self.value * LN2))

    def log10(self):
        return _chain(self, cm.log10(self.value), 1.0 / (self.value * LN10))

    def log1p(self):
        return _chain(self, cm.log1p(self.value), 1.0 / (1.0 + self.value))

    def sqrt(self):
        return _sqrt(self)

    def cbrt(self):
        cdef double c = cm.cbrt(self.value)
        return _chain(self, c, 1.0 / (3.0 * c * c))

    def square(self):
        return _chain(self, self.value * self.value, 2.0 * self.value)

    def sin(self):
        return _chain(self, cm.sin(self.value), cm.cos(self.value))

    def cos(self):
        return _chain(self, cm.cos(self.value), -cm.sin(self.value))

    def tan(self):
        cdef double t = cm.tan(self.value)
        return _chain(self, t, 1.0 + t * t)

    def arcsin(self):
        cdef double x = self.value
        return _chain(self, cm.asin(x), 1.0 / cm.sqrt(1.0 - x * x))

    def arccos(self):
        cdef double x = self.value
        return _chain(self, cm.acos(x), -1.0 / cm.sqrt(1.0 - x * x))

    def arctan(self):
        cdef double x = self.value
        return _chain(self, cm.atan(x), 1.0 / (1.0 + x * x))

    def sinh(self):
        return _chain(self, cm.sinh(self.value), cm.cosh(self.value))

    def cosh(self):
        return _chain(self, cm.cosh(self.value), cm.sinh(self.value))

    def tanh(self):
        cdef double t = cm.tanh(self.value)
        return _chain(self, t, 1.0 - t * t)

    def arcsinh(self):
        cdef double x = self.value
        return _chain(self, cm.asinh(x), 1.0 / cm.sqrt(x * x + 1.0))

    def arccosh(self):
        cdef double x = self.value
        return _chain(self, cm.acosh(x), 1.0 / cm.sqrt(x * x - 1.0))

    def arctanh(self):
        cdef double x = self.value
        return _chain(self, cm.atanh(x), 1.0 / (1.0 - x * x))

    def deg2rad(self):
        return _chain(self, self.value * DEG, DEG)

    def rad2deg(self):
        return _chain(self, self.value * RAD, RAD)

    def radians(self):
        return _chain(self, self.value * DEG, DEG)

    def degrees(self):
        return _chain(self, self.value * RAD, RAD)

    def fabs(self):
        return _abs(self)

    def conjugate(self):
        return self

    def arctan2(self, other):
        """``arctan2(self, other)``: the angle of the point (other, self)."""
        return _atan2(self, other)

    def hypot(self, other):
        return _hypot(self, other)

    # -- NumPy ufuncs on Dual scalars ------------------------------------------

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        cdef int code
        if not kwargs and method == "__call__":
            code = _UFUNC_CODES.get(ufunc, 0)
            if code:
                result = _ufunc_scalar(code, inputs)
                if result is not _NOT_SCALAR:
                    return result
        return _ufunc_generic(ufunc, method, inputs, kwargs)


cdef str _conversion_message(Dual x, str target):
    return (f"{x!r}: a Dual cannot be converted to {target}: the derivative "
            "would be lost.  The right-hand side is being evaluated on dual "
            "numbers to differentiate it; keep the computation in NumPy "
            "arithmetic (no float(), int(), np.asarray(..., dtype=float), "
            "math.* or preallocated float arrays on the state or the "
            "parameters), or use `.value` where the derivative is not wanted.")


# ---------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------

cdef inline int _alloc_partials(Dual r, Py_ssize_t k) except -1:
    if k <= DUAL_INLINE_LANES:
        r.der = r.buf
    else:
        r.der = <double *>PyMem_Malloc(k * sizeof(double))
        if r.der == NULL:
            raise MemoryError()
    r.nlanes = k
    return 0


cdef inline Dual _new(double v, Py_ssize_t k):
    cdef Dual r = Dual.__new__(Dual)
    r.value = v
    if k <= DUAL_INLINE_LANES:
        r.der = r.buf
        r.nlanes = k
    else:
        _alloc_partials(r, k)
    return r


cdef Dual dual_new(double value, Py_ssize_t k):
    if k < 0:
        raise ValueError("negative number of lanes")
    return _new(value, k)


cdef Dual dual_from(double value, const double *partials, Py_ssize_t k,
                    Py_ssize_t stride):
    cdef Dual r = dual_new(value, k)
    cdef Py_ssize_t j
    if stride == 1:
        memcpy(r.der, partials, k * sizeof(double))
    else:
        for j in range(k):
            r.der[j] = partials[j * stride]
    return r


cdef inline Dual _copy(Dual x, double v):
    """value v, partials those of x"""
    cdef Dual r = _new(v, x.nlanes)
    memcpy(r.der, x.der, x.nlanes * sizeof(double))
    return r


cdef inline Dual _chain(Dual x, double v, double s):
    """value v, partials s * x'; a non-finite s times a zero partial is 0"""
    cdef Py_ssize_t j, k = x.nlanes
    cdef Dual r = _new(v, k)
    cdef double *a = x.der
    cdef double *o = r.der
    if cm.isfinite(s):
        for j in range(k):
            o[j] = s * a[j]
    else:
        for j in range(k):
            o[j] = s * a[j] if a[j] != 0.0 else 0.0
    return r


cdef inline Dual _chain2(Dual x, double sx, Dual y, double sy, double v):
    """value v, partials sx * x' + sy * y' (lanes already checked)"""
    cdef Py_ssize_t j, k = x.nlanes
    cdef Dual r = _new(v, k)
    cdef double *a = x.der
    cdef double *b = y.der
    cdef double *o = r.der
    for j in range(k):
        o[j] = sx * a[j] + sy * b[j]
    return r


# ---------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------

cdef inline int _real(object x, double *out) except -1:
    """1 and the number in out if x is a real number (not a Dual), else 0."""
    if PyFloat_Check(x):
        out[0] = PyFloat_AS_DOUBLE(x)
        return 1
    if PyLong_Check(x):
        out[0] = PyLong_AsDouble(x)
        return 1
    return _real_slow(x, out)


cdef int _real_slow(object x, double *out) except -1:
    if isinstance(x, _NP_REAL) or (isinstance(x, _Real) and type(x) is not Dual):
        out[0] = float(x)
        return 1
    return 0


cdef inline int _check_lanes(Dual a, Dual b) except -1:
    if a.nlanes != b.nlanes:
        raise ValueError(f"cannot combine Duals with different numbers of "
                         f"partials (lanes): {a.nlanes} and {b.nlanes}")
    return 0


# ---------------------------------------------------------------------------
# Arithmetic kernels.  The dispatchers take two objects of which at least one
# is a Dual and return NotImplemented for an operand that is not a number.
# ---------------------------------------------------------------------------

cdef object _add(object a, object b):
    cdef double c
    cdef Dual x, y, r
    cdef Py_ssize_t j
    if type(a) is Dual:
        x = <Dual>a
        if type(b) is Dual:
            y = <Dual>b
            _check_lanes(x, y)
            r = _new(x.value + y.value, x.nlanes)
            for j in range(x.nlanes):
                r.der[j] = x.der[j] + y.der[j]
            return r
        if _real(b, &c):
            return _copy(x, x.value + c)
        return NotImplemented
    y = <Dual>b
    if _real(a, &c):
        return _copy(y, c + y.value)
    return NotImplemented


cdef object _sub(object a, object b):
    cdef double c
    cdef Dual x, y, r
    cdef Py_ssize_t j
    if type(a) is Dual:
        x = <Dual>a
        if type(b) is Dual:
            y = <Dual>b
            _check_lanes(x, y)
            r = _new(x.value - y.value, x.nlanes)
            for j in range(x.nlanes):
                r.der[j] = x.der[j] - y.der[j]
            return r
        if _real(b, &c):
            return _copy(x, x.value - c)
        return NotImplemented
    y = <Dual>b
    if _real(a, &c):
        r = _new(c - y.value, y.nlanes)
        for j in range(y.nlanes):
            r.der[j] = -y.der[j]
        return r
    return NotImplemented


cdef object _mul(object a, object b):
    cdef double c
    cdef Dual x, y, r
    cdef Py_ssize_t j
    cdef double xv, yv
    if type(a) is Dual:
        x = <Dual>a
        if type(b) is Dual:
            y = <Dual>b
            _check_lanes(x, y)
            xv = x.value
            yv = y.value
            r = _new(xv * yv, x.nlanes)
            for j in range(x.nlanes):
                r.der[j] = x.der[j] * yv + xv * y.der[j]
            return r
        if _real(b, &c):
            r = _new(x.value * c, x.nlanes)
            for j in range(x.nlanes):
                r.der[j] = x.der[j] * c
            return r
        return NotImplemented
    y = <Dual>b
    if _real(a, &c):
        r = _new(c * y.value, y.nlanes)
        for j in range(y.nlanes):
            r.der[j] = c * y.der[j]
        return r
    return NotImplemented


cdef object _div(object a, object b):
    cdef double c, v, s
    cdef Dual x, y, r
    cdef Py_ssize_t j
    if type(a) is Dual:
        x = <Dual>a
        if type(b) is Dual:
            y = <Dual>b
            _check_lanes(x, y)
            v = x.value / y.value
            s = 1.0 / y.value
            r = _new(v, x.nlanes)
            for j in range(x.nlanes):
                r.der[j] = (x.der[j] - v * y.der[j]) * s
            return r
        if _real(b, &c):
            r = _new(x.value / c, x.nlanes)
            for j in range(x.nlanes):
                r.der[j] = x.der[j] / c
            return r
        return NotImplemented
    y = <Dual>b
    if _real(a, &c):
        v = c / y.value
        return _chain(y, v, -v / y.value)
    return NotImplemented


cdef Dual _pow_dc(Dual x, double c):
    """x ** c for a constant exponent (exact for integers, negative bases ok)"""
    cdef double v = x.value
    if c == 2.0:
        return _chain(x, v * v, 2.0 * v)
    if c == 1.0:
        return _copy(x, v)
    if c == 0.0:
        return _chain(x, 1.0, 0.0)
    if c == 3.0:
        return _chain(x, v * v * v, 3.0 * v * v)
    if c == 0.5:
        v = cm.sqrt(v)
        return _chain(x, v, 0.5 / v)
    if c == -1.0:
        v = 1.0 / v
        return _chain(x, v, -v * v)
    return _chain(x, cm.pow(v, c), c * cm.pow(v, c - 1.0))


cdef Dual _pow_cd(double c, Dual y):
    """c ** y: partials c**y log(c) y' (0 for c == 0, y > 0)"""
    cdef double v = cm.pow(c, y.value)
    if v == 0.0:
        return _chain(y, v, 0.0)
    return _chain(y, v, v * cm.log(c))


cdef Dual _pow_dd(Dual x, Dual y):
    """x ** y = exp(y log x); the log term only where y' != 0"""
    _check_lanes(x, y)
    cdef double xv = x.value, yv = y.value
    cdef double v = cm.pow(xv, yv)
    cdef double s1 = 0.0 if yv == 0.0 else yv * cm.pow(xv, yv - 1.0)
    cdef double s2 = 0.0 if v == 0.0 else v * cm.log(xv)
    cdef Py_ssize_t j, k = x.nlanes
    cdef Dual r = _new(v, k)
    cdef double a, b, t
    for j in range(k):
        a = x.der[j]
        b = y.der[j]
        t = s1 * a if a != 0.0 else 0.0
        if b != 0.0:
            t += s2 * b
        r.der[j] = t
    return r


cdef object _pow(object a, object b):
    cdef double c
    if type(a) is Dual:
        if type(b) is Dual:
            return _pow_dd(<Dual>a, <Dual>b)
        if _real(b, &c):
            return _pow_dc(<Dual>a, c)
        return NotImplemented
    if _real(a, &c):
        return _pow_cd(c, <Dual>b)
    return NotImplemented


cdef object _atan2(object a, object b):
    """arctan2(a, b) = angle of (b, a); partials (b a' - a b') / (a^2 + b^2)"""
    cdef double c, av, bv, q
    cdef Dual x, y
    if type(a) is Dual:
        x = <Dual>a
        av = x.value
        if type(b) is Dual:
            y = <Dual>b
            _check_lanes(x, y)
            bv = y.value
            q = av * av + bv * bv
            return _chain2(x, bv / q, y, -av / q, cm.atan2(av, bv))
        if _real(b, &c):
            return _chain(x, cm.atan2(av, c), c / (av * av + c * c))
        return NotImplemented
    y = <Dual>b
    if _real(a, &c):
        bv = y.value
        return _chain(y, cm.atan2(c, bv), -c / (c * c + bv * bv))
    return NotImplemented


cdef object _hypot(object a, object b):
    """hypot(a, b); partials (a a' + b b') / h"""
    cdef double c, h
    cdef Dual x, y
    if type(a) is Dual:
        x = <Dual>a
        if type(b) is Dual:
            y = <Dual>b
            _check_lanes(x, y)
            h = cm.hypot(x.value, y.value)
            return _chain2(x, x.value / h, y, y.value / h, h)
        if _real(b, &c):
            h = cm.hypot(x.value, c)
            return _chain(x, h, x.value / h)
        return NotImplemented
    y = <Dual>b
    if _real(a, &c):
        h = cm.hypot(c, y.value)
        return _chain(y, h, y.value / h)
    return NotImplemented


cdef inline Dual _neg(Dual x):
    cdef Py_ssize_t j
    cdef Dual r = _new(-x.value, x.nlanes)
    for j in range(x.nlanes):
        r.der[j] = -x.der[j]
    return r


cdef inline Dual _abs(Dual x):
    if cm.signbit(x.value):
        return _neg(x)
    return x


cdef inline Dual _exp(Dual x):
    cdef double v = cm.exp(x.value)
    return _chain(x, v, v)


cdef inline Dual _log(Dual x):
    return _chain(x, cm.log(x.value), 1.0 / x.value)


cdef inline Dual _sqrt(Dual x):
    cdef double v = cm.sqrt(x.value)
    return _chain(x, v, 0.5 / v)


# ---------------------------------------------------------------------------
# __array_ufunc__
# ---------------------------------------------------------------------------

cdef enum:
    # unary
    U_NEG = 1
    U_POS
    U_ABS
    U_EXP
    U_EXP2
    U_EXPM1
    U_LOG
    U_LOG2
    U_LOG10
    U_LOG1P
    U_SQRT
    U_CBRT
    U_SQUARE
    U_RECIP
    U_SIN
    U_COS
    U_TAN
    U_ARCSIN
    U_ARCCOS
    U_ARCTAN
    U_SINH
    U_COSH
    U_TANH
    U_ARCSINH
    U_ARCCOSH
    U_ARCTANH
    U_DEG2RAD
    U_RAD2DEG
    U_CONJ
    U_ISFINITE
    U_ISNAN
    U_ISINF
    U_SIGNBIT
    U_SIGN
    U_LAST_UNARY
    # binary
    B_ADD
    B_SUB
    B_MUL
    B_DIV
    B_POW
    B_MAX
    B_MIN
    B_FMAX
    B_FMIN
    B_ARCTAN2
    B_HYPOT
    B_LT
    B_LE
    B_GT
    B_GE
    B_EQ
    B_NE


cdef dict _UFUNC_CODES = {
    np.negative: U_NEG, np.positive: U_POS, np.absolute: U_ABS,
    np.fabs: U_ABS, np.exp: U_EXP, np.exp2: U_EXP2, np.expm1: U_EXPM1,
    np.log: U_LOG, np.log2: U_LOG2, np.log10: U_LOG10, np.log1p: U_LOG1P,
    np.sqrt: U_SQRT, np.cbrt: U_CBRT, np.square: U_SQUARE,
    np.reciprocal: U_RECIP, np.sin: U_SIN, np.cos: U_COS, np.tan: U_TAN,
    np.arcsin: U_ARCSIN, np.arccos: U_ARCCOS, np.arctan: U_ARCTAN,
    np.sinh: U_SINH, np.cosh: U_COSH, np.tanh: U_TANH,
    np.arcsinh: U_ARCSINH, np.arccosh: U_ARCCOSH, np.arctanh: U_ARCTANH,
    np.deg2rad: U_DEG2RAD, np.radians: U_DEG2RAD,
    np.rad2deg: U_RAD2DEG, np.degrees: U_RAD2DEG,
    np.conjugate: U_CONJ, np.isfinite: U_ISFINITE, np.isnan: U_ISNAN,
    np.isinf: U_ISINF, np.signbit: U_SIGNBIT, np.sign: U_SIGN,
    np.add: B_ADD, np.subtract: B_SUB, np.multiply: B_MUL,
    np.true_divide: B_DIV, np.power: B_POW, np.float_power: B_POW,
    np.maximum: B_MAX, np.minimum: B_MIN, np.fmax: B_FMAX, np.fmin: B_FMIN,
    np.arctan2: B_ARCTAN2, np.hypot: B_HYPOT,
    np.less: B_LT, np.less_equal: B_LE, np.greater: B_GT,
    np.greater_equal: B_GE, np.equal: B_EQ, np.not_equal: B_NE,
}

cdef object _NOT_SCALAR = object()
cdef dict _OBJECT_LOOP = {}


cdef object _ufunc_unary(int code, Dual x):
    cdef double v = x.value
    if code == U_NEG:
        return _neg(x)
    if code == U_POS or code == U_CONJ:
        return x
    if code == U_ABS:
        return _abs(x)
    if code == U_EXP:
        return _exp(x)
    if code == U_LOG:
        return _log(x)
    if code == U_SQRT:
        return _sqrt(x)
    if code == U_SQUARE:
        return _chain(x, v * v, 2.0 * v)
    if code == U_RECIP:
        v = 1.0 / v
        return _chain(x, v, -v * v)
    if code == U_ISFINITE:
        return bool(cm.isfinite(v))
    if code == U_ISNAN:
        return bool(cm.isnan(v))
    if code == U_ISINF:
        return bool(cm.isinf(v))
    if code == U_SIGNBIT:
        return bool(cm.signbit(v))
    if code == U_SIGN:
        return 1.0 if v > 0.0 else (-1.0 if v < 0.0 else (0.0 if v == 0.0 else v))
    return getattr(x, _UNARY_METHOD[code])()


cdef dict _UNARY_METHOD = {
    U_EXP2: "exp2", U_EXPM1: "expm1", U_LOG2: "log2", U_LOG10: "log10",
    U_LOG1P: "log1p", U_CBRT: "cbrt", U_SIN: "sin", U_COS: "cos",
    U_TAN: "tan", U_ARCSIN: "arcsin", U_ARCCOS: "arccos", U_ARCTAN: "arctan",
    U_SINH: "sinh", U_COSH: "cosh", U_TANH: "tanh", U_ARCSINH: "arcsinh",
    U_ARCCOSH: "arccosh", U_ARCTANH: "arctanh", U_DEG2RAD: "deg2rad",
    U_RAD2DEG: "rad2deg",
}


cdef inline int _is_scalar(object x) except -1:
    cdef double c
    return type(x) is Dual or _real(x, &c)


cdef object _ufunc_scalar(int code, tuple inputs):
    """A supported ufunc on Dual / real scalars, or _NOT_SCALAR."""
    cdef Py_ssize_t nin = len(inputs)
    cdef double av, bv
    if code < U_LAST_UNARY:
        if nin == 1 and type(inputs[0]) is Dual:
            return _ufunc_unary(code, <Dual>inputs[0])
        return _NOT_SCALAR
    if nin != 2:
        return _NOT_SCALAR
    a = inputs[0]
    b = inputs[1]
    if not (_is_scalar(a) and _is_scalar(b)) or (type(a) is not Dual and type(b) is not Dual):
        return _NOT_SCALAR
    if code == B_ADD:
        return _add(a, b)
    if code == B_SUB:
        return _sub(a, b)
    if code == B_MUL:
        return _mul(a, b)
    if code == B_DIV:
        return _div(a, b)
    if code == B_POW:
        return _pow(a, b)
    if code == B_ARCTAN2:
        return _atan2(a, b)
    if code == B_HYPOT:
        return _hypot(a, b)
    av = (<Dual>a).value if type(a) is Dual else _as_double(a)
    bv = (<Dual>b).value if type(b) is Dual else _as_double(b)
    if code == B_MAX:            # as NumPy's object loop: a if a >= b else b
        return a if av >= bv else b
    if code == B_MIN:
        return a if av <= bv else b
    if code == B_FMAX:
        return a if (av >= bv or cm.isnan(bv)) else b
    if code == B_FMIN:
        return a if (av <= bv or cm.isnan(bv)) else b
    if code == B_LT:
        return av < bv
    if code == B_LE:
        return av <= bv
    if code == B_GT:
        return av > bv
    if code == B_GE:
        return av >= bv
    if code == B_EQ:
        return av == bv
    if code == B_NE:
        return av != bv
    return _NOT_SCALAR


cdef double _as_double(object x) except? -1.0:
    cdef double c
    _real(x, &c)
    return c


cdef bint _has_object_loop(object ufunc) except -1:
    cached = _OBJECT_LOOP.get(ufunc)
    if cached is None:
        try:
            cached = any("O" in t.split("->")[0] for t in ufunc.types)
        except AttributeError:
            cached = False
        _OBJECT_LOOP[ufunc] = cached
    return cached


cdef object _as_object_0d(object x):
    cdef cnp.ndarray a = cnp.PyArray_EMPTY(0, NULL, cnp.NPY_OBJECT, 0)
    a[()] = x
    return a


cdef object _ufunc_generic(object ufunc, object method, tuple inputs, dict kwargs):
    """Arrays (or unsupported scalar cases): NumPy's own object loops, with
    each Dual wrapped in a 0-d object array so that no override recurs."""
    if not _has_object_loop(ufunc):
        return NotImplemented
    out = kwargs.get("out")
    if out is not None:
        for o in (out if isinstance(out, tuple) else (out,)):
            if type(o) is Dual:
                return NotImplemented
    conv = tuple([_as_object_0d(x) if type(x) is Dual else x for x in inputs])
    return getattr(ufunc, method)(*conv, **kwargs)


# ---------------------------------------------------------------------------
# seed / split
# ---------------------------------------------------------------------------

cdef int seed_into_strided(object out, const double *values,
                           const double *partials, Py_ssize_t n,
                           Py_ssize_t k, Py_ssize_t si,
                           Py_ssize_t sj) except -1:
    if not (cnp.PyArray_Check(out)
            and cnp.PyArray_TYPE(<cnp.ndarray>out) == cnp.NPY_OBJECT
            and cnp.PyArray_NDIM(<cnp.ndarray>out) == 1
            and cnp.PyArray_DIM(<cnp.ndarray>out, 0) == n):
        raise ValueError(f"seed_into: `out` must be a 1-D object array of "
                         f"length {n}")
    if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out):
        raise ValueError("seed_into: `out` is read-only")
    if k < 0:
        raise ValueError("negative number of lanes")
    cdef char *data = <char *>cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef Py_ssize_t stride = cnp.PyArray_STRIDE(<cnp.ndarray>out, 0)
    cdef PyObject **slot
    cdef PyObject *old
    cdef PyTypeObject *dual_type = <PyTypeObject *>Dual
    cdef Dual d
    cdef const double *src
    cdef Py_ssize_t i, j
    for i in range(n):
        slot = <PyObject **>(data + i * stride)
        old = slot[0]
        src = partials + i * si
        if (old != NULL and _type_of(old) == dual_type and _refcnt(old) == 1
                and (<Dual>old).nlanes == k):
            d = <Dual><object>old   # ours alone: overwrite in place
            d.value = values[i]
        else:
            d = _new(values[i], k)
            Py_INCREF(d)
            slot[0] = <PyObject *>d
            Py_XDECREF(old)
        if sj == 1:
            memcpy(d.der, src, k * sizeof(double))
        else:
            for j in range(k):
                d.der[j] = src[j * sj]
    return 0


cdef int seed_into(object out, const double *values, const double *partials,
                   Py_ssize_t n, Py_ssize_t k) except -1:
    return seed_into_strided(out, values, partials, n, k, 1, n)


cdef object seed_array(const double *values, const double *partials,
                       Py_ssize_t n, Py_ssize_t k):
    cdef cnp.npy_intp dim = n
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, &dim, cnp.NPY_OBJECT, 0)
    seed_into_strided(out, values, partials, n, k, 1, n)
    return out


def seed(values, partials):
    """Dual numbers from values (n,) and partials (n, k).

    Returns
    -------
    ndarray of object, shape (n,)
        Element i is ``Dual(values[i], partials[i])``.

    Examples
    --------
    >>> import numpy as np
    >>> from diffsens._dual import seed
    >>> y = seed([1.0, 2.0], np.eye(2))
    >>> y[0] * y[1]
    Dual(2.0, [2. 1.])
    """
    cdef cnp.ndarray v = np.ascontiguousarray(values, dtype=np.float64)
    cdef cnp.ndarray P = np.ascontiguousarray(partials, dtype=np.float64)
    if cnp.PyArray_NDIM(v) != 1:
        raise ValueError(f"`values` must be 1-dimensional; got shape {(<object>v).shape}.")
    cdef Py_ssize_t n = cnp.PyArray_DIM(v, 0)
    if cnp.PyArray_NDIM(P) != 2 or cnp.PyArray_DIM(P, 0) != n:
        raise ValueError(f"`partials` must have shape ({n}, k); got "
                         f"{(<object>P).shape}.")
    cdef Py_ssize_t k = cnp.PyArray_DIM(P, 1)
    cdef cnp.npy_intp dim = n
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, &dim, cnp.NPY_OBJECT, 0)
    seed_into_strided(out, <double *>cnp.PyArray_DATA(v),
                      <double *>cnp.PyArray_DATA(P), n, k, k, 1)
    return out


cdef inline void _zero_lanes(double *p, Py_ssize_t k, Py_ssize_t sj) noexcept:
    cdef Py_ssize_t j
    for j in range(k):
        p[j * sj] = 0.0


cdef int _store(object x, Py_ssize_t i, double *values, double *partials,
                Py_ssize_t k, Py_ssize_t si, Py_ssize_t sj) except -1:
    """Element i: 1 if stored, 0 if x is a nested sequence; TypeError else."""
    cdef Dual d
    cdef double c
    cdef double *p = partials + i * si
    cdef Py_ssize_t j
    if type(x) is Dual:
        d = <Dual>x
        if d.nlanes != k:
            raise ValueError(f"element {i} of the result is a Dual with "
                             f"{d.nlanes} partials; expected {k}")
        values[i] = d.value
        if sj == 1:
            memcpy(p, d.der, k * sizeof(double))
        else:
            for j in range(k):
                p[j * sj] = d.der[j]
        return 1
    if _real(x, &c):
        values[i] = c
        _zero_lanes(p, k, sj)
        return 1
    if cnp.PyArray_Check(x):
        if cnp.PyArray_NDIM(<cnp.ndarray>x) == 0:
            return _store(x[()], i, values, partials, k, si, sj)
        return 0
    if isinstance(x, (list, tuple)):
        return 0
    raise TypeError(f"element {i} of the result is of type "
                    f"{type(x).__name__!r}; expected a Dual or a real number")


cdef int _split_array(cnp.ndarray arr, double *values, double *partials,
                      Py_ssize_t n, Py_ssize_t k, Py_ssize_t si,
                      Py_ssize_t sj) except -1:
    cdef int nd = cnp.PyArray_NDIM(arr)
    cdef Py_ssize_t i, stride
    cdef char *data
    cdef PyObject *item
    if not ((nd == 1 and cnp.PyArray_DIM(arr, 0) == n) or (nd == 0 and n == 1)):
        raise ValueError(f"the result must have shape ({n},) like the state, "
                         f"but it has shape {(<object>arr).shape}")
    cdef int typenum = cnp.PyArray_TYPE(arr)
    if typenum == cnp.NPY_OBJECT:
        data = <char *>cnp.PyArray_DATA(arr)
        stride = cnp.PyArray_STRIDE(arr, 0) if nd == 1 else 0
        for i in range(n):
            item = (<PyObject **>(data + i * stride))[0]
            if item == NULL:
                raise TypeError(f"element {i} of the result is missing")
            if not _store(<object>item, i, values, partials, k, si, sj):
                raise TypeError(f"element {i} of the result is of type "
                                f"{type(<object>item).__name__!r}; expected a "
                                f"Dual or a real number")
        return 0
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"the result has dtype {arr.dtype}; expected real "
                        f"numbers or Duals")
    cdef cnp.ndarray v = np.ascontiguousarray(arr, dtype=np.float64).reshape(-1)
    cdef double *src = <double *>cnp.PyArray_DATA(v)
    for i in range(n):
        values[i] = src[i]
        _zero_lanes(partials + i * si, k, sj)
    return 0


cdef int split_into_strided(object obj, double *values, double *partials,
                            Py_ssize_t n, Py_ssize_t k, Py_ssize_t si,
                            Py_ssize_t sj) except -1:
    cdef Py_ssize_t i
    cdef double c
    if isinstance(obj, (list, tuple)):
        if len(obj) == n:
            for i in range(n):
                if not _store(obj[i], i, values, partials, k, si, sj):
                    break
            else:
                return 0
        return _split_array(np.array(obj, dtype=object), values, partials,
                            n, k, si, sj)
    if cnp.PyArray_Check(obj):
        return _split_array(<cnp.ndarray>obj, values, partials, n, k, si, sj)
    if type(obj) is Dual or _real(obj, &c):
        if n != 1:
            raise ValueError(f"the result must have shape ({n},) like the "
                             f"state, but it is a scalar (shape ())")
        _store(obj, 0, values, partials, k, si, sj)
        return 0
    return _split_array(np.asarray(obj, dtype=object), values, partials,
                        n, k, si, sj)


cdef int split_into(object obj, double *values, double *partials,
                    Py_ssize_t n, Py_ssize_t k) except -1:
    return split_into_strided(obj, values, partials, n, k, 1, n)


def split(obj, Py_ssize_t n, Py_ssize_t k):
    """Values and partials of a right-hand side's result.

    Parameters
    ----------
    obj : object ndarray, list or tuple of Duals and real numbers, or ndarray
        The result; numbers have zero partials.
    n, k : int
        Expected number of elements and of lanes.

    Returns
    -------
    values : ndarray, shape (n,)
    partials : ndarray, shape (n, k)

    Raises
    ------
    ValueError
        If `obj` does not have shape (n,) (or () for n == 1), or an element
        is a Dual with another number of lanes.
    TypeError
        If an element is neither a Dual nor a real number.
    """
    if n < 0 or k < 0:
        raise ValueError("`n` and `k` must be non-negative")
    cdef cnp.npy_intp dims[2]
    dims[0] = n
    dims[1] = k
    cdef cnp.ndarray values = cnp.PyArray_EMPTY(1, dims, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray partials = cnp.PyArray_EMPTY(2, dims, cnp.NPY_DOUBLE, 0)
    split_into_strided(obj, <double *>cnp.PyArray_DATA(values),
                       <double *>cnp.PyArray_DATA(partials), n, k, k, 1)
    return values, partials


# ---------------------------------------------------------------------------
# Python hooks onto the lane-major C API (for the tests)
# ---------------------------------------------------------------------------

def _seed_into_lane_major(out, values, partials_t):
    """seed_into(out, values, partials_t) with partials_t of shape (k, n)."""
    cdef cnp.ndarray v = np.ascontiguousarray(values, dtype=np.float64)
    cdef cnp.ndarray P = np.ascontiguousarray(partials_t, dtype=np.float64)
    cdef Py_ssize_t n = v.shape[0]
    if P.ndim != 2 or P.shape[1] != n:
        raise ValueError("`partials_t` must have shape (k, n)")
    seed_into(out, <double *>cnp.PyArray_DATA(v), <double *>cnp.PyArray_DATA(P),
              n, P.shape[0])
    return out


def _seed_array_lane_major(values, partials_t):
    """seed_array(values, partials_t) with partials_t of shape (k, n)."""
    cdef cnp.ndarray v = np.ascontiguousarray(values, dtype=np.float64)
    cdef cnp.ndarray P = np.ascontiguousarray(partials_t, dtype=np.float64)
    cdef Py_ssize_t n = v.shape[0]
    if P.ndim != 2 or P.shape[1] != n:
        raise ValueError("`partials_t` must have shape (k, n)")
    return seed_array(<double *>cnp.PyArray_DATA(v),
                      <double *>cnp.PyArray_DATA(P), n, P.shape[0])


def _split_lane_major(obj, Py_ssize_t n, Py_ssize_t k):
    """split_into(obj, ...): (values (n,), partials_t (k, n))."""
    cdef cnp.ndarray values = np.empty(n)
    cdef cnp.ndarray partials_t = np.empty((k, n))
    split_into(obj, <double *>cnp.PyArray_DATA(values),
               <double *>cnp.PyArray_DATA(partials_t), n, k)
    return values, partials_t
