# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The one module that owns the GIL boundary.

Python objects are validated and turned into C structs here; the plain C
kernels (``erk.c``, ``integrate.c``) never see a Python object.  A Python
right-hand side is reached through the ``ds_rhs`` vtable: its C entry copies
the state into a reused NumPy array, calls ``fun`` and copies the result out.
An exception raised by ``fun`` is caught here, the kernel is told to stop, and
the exception is re-raised (with its traceback) once the kernel has unwound.
"""
import hashlib

import numpy as np

cimport numpy as cnp
from cpython.ref cimport PyObject
from cpython.exc cimport PyErr_CheckSignals
from cpython.float cimport PyFloat_AsDouble, PyFloat_Check
from cpython.list cimport PyList_CheckExact
from cpython.long cimport PyLong_Check
from cpython.tuple cimport PyTuple_CheckExact
from libc.stdlib cimport free, malloc
from libc.math cimport isfinite
from libc.stdint cimport int32_t, uintptr_t
from libc.string cimport memcpy, memset

from diffsens._kernels.kernels cimport (
    DS_CALLBACK_STOP, DS_FAILED, DS_FINISHED, DS_NEED_SPACE, DS_TERMINATED,
    DS_YIELD, ds_solver_init, ds_problem, ds_run, ds_solver,
    ds_erk_tableau, DS_ERK_MAX_STAGES, ds_workspace_size, ds_events, ds_output, ds_rhs,
    ds_tape, ds_tape_ctx, ds_tape_value_fn, ds_tape_eval, ds_tape_eval_many, ds_tape_jvp, ds_tape_jvp_scratch,
    ds_tape_jvp2, ds_tape_jvp2_scratch,
    ds_tape_linearize, ds_tape_rhs_init, ds_tape_rhs_scratch, ds_tape_slot_count,
    ds_tape_value_scratch, ds_tape_vjp, ds_tape_vjp_scratch, ds_sens_ctx,
    ds_sens_rhs_init, ds_sens_coupling, ds_sens_coupling_evaluate, ds_sens_coupling_prepare, ds_ros_tableau, ds_lapack, ds_coupling,
)
from scipy.linalg.cython_lapack cimport dgetrf, dgetrs

from diffsens._dual cimport seed_into, split_into

cnp.import_array()

cdef extern from "Python.h":
    object PyObject_Vectorcall(object callable, PyObject **args, size_t nargsf,
                               PyObject *kwnames)


# ---------------------------------------------------------------------------
# Python callable front end of the RHS vtable
# ---------------------------------------------------------------------------

cdef class RHSFrontEnd:
    """Owner of one solve's ``ds_rhs`` vtable."""
    cdef ds_rhs c
    cdef public object error    # exception raised inside a callback


cdef class PythonRHS(RHSFrontEnd):
    """``fun(t, y, *args)`` behind the C ``ds_rhs`` vtable.

    ``y`` handed to ``fun`` is one array reused for every call (it views a
    private copy of the kernel's stage vector, so writing to it cannot corrupt
    the solve); a ``fun`` that keeps references to ``y`` must copy it.
    """
    cdef object fun
    cdef tuple args
    cdef cnp.ndarray ybuf       # float64, length n_real: what the kernel writes
    cdef object ycall           # what fun receives (ybuf, a complex view, a column)
    cdef Py_ssize_t n_user      # len(y0) as the user sees it
    cdef Py_ssize_t n_real      # doubles the kernel sees (2 n_user if complex)
    cdef bint is_complex
    cdef bint vectorized
    cdef object out_dtype
    cdef PyObject **stack       # vectorcall arguments: t, y, *args
    cdef Py_ssize_t nargs
    cdef object jac
    # dual-number evaluation (sensitivities): fun(t, y_dual, p_dual, *extra)
    cdef object y_dual, p_dual
    cdef cnp.ndarray p_values
    cdef tuple extra_args

    def __cinit__(self, fun, Py_ssize_t n_user, bint is_complex=False,
                  bint vectorized=False, tuple args=()):
        self.fun = fun
        self.args = args
        self.n_user = n_user
        self.is_complex = is_complex
        self.vectorized = vectorized
        self.n_real = 2 * n_user if is_complex else n_user
        self.ybuf = np.zeros(self.n_real)
        y = self.ybuf.view(np.complex128) if is_complex else self.ybuf
        self.ycall = y[:, None] if vectorized else y
        self.out_dtype = np.complex128 if is_complex else np.float64
        self.nargs = 2 + len(args)
        self.stack = <PyObject **>malloc(self.nargs * sizeof(PyObject *))
        if self.stack == NULL:
            raise MemoryError()
        self.stack[1] = <PyObject *>self.ycall
        for i, a in enumerate(args):
            self.stack[2 + i] = <PyObject *>a   # kept alive by self.args
        self.c.ctx = <void *>self
        self.c.n = <int>self.n_real
        self.c.m = 0
        self.c.f = _python_f
        self.c.jvp = NULL
        self.c.vjp = NULL
        self.error = None

    def __dealloc__(self):
        free(self.stack)

    def enable_jac(self, jac):
        """A user's ``jac(t, y, *args)`` (array (n, n)) as the vtable's jac."""
        self.jac = jac
        self.c.jac = _python_jac

    cdef int evaluate_jac(self, double t, const double *y, double *J) except -1:
        memcpy(cnp.PyArray_DATA(self.ybuf), y, self.n_real * sizeof(double))
        # jac always sees a 1-D y (scipy's convention, also for vectorized funs)
        out = np.asarray(self.jac(t, self.ybuf, *self.args), dtype=np.float64)
        if out.shape != (self.n_user, self.n_user):
            raise ValueError(f"`jac` is expected to have shape "
                             f"({self.n_user}, {self.n_user}), but actually "
                             f"has {out.shape}.")
        cdef cnp.ndarray colmajor = np.asfortranarray(out)
        memcpy(J, cnp.PyArray_DATA(colmajor), self.n_user * self.n_user * sizeof(double))
        return 0

    def enable_duals(self, p, tuple extra_args):
        """Offer jvp by running fun on `diffsens.Dual` arrays for y and p
        (``p`` None: fun(t, y, *args) with duals for y alone)."""
        self.extra_args = extra_args
        self.y_dual = np.empty(self.n_user, dtype=object)
        if p is not None:
            self.p_values = np.ascontiguousarray(p, dtype=np.float64)
            self.p_dual = np.empty(self.p_values.shape[0], dtype=object)
            self.c.m = <int>self.p_values.shape[0]
        self.c.jvp = _python_jvp

    cdef int evaluate_dual(self, double t, const double *y, int k,
                           const double *yd, const double *pd, double *dy,
                           double *dyd) except -1:
        cdef cnp.ndarray zeros
        if yd == NULL or (pd == NULL and self.p_values is not None):
            zeros = np.zeros(max(self.n_user, self.c.m) * k)   # unseeded lanes
            if yd == NULL:
                yd = <const double *>cnp.PyArray_DATA(zeros)
            if pd == NULL:
                pd = <const double *>cnp.PyArray_DATA(zeros)
        seed_into(self.y_dual, y, yd, self.n_user, k)
        if self.p_values is not None:
            seed_into(self.p_dual, <const double *>cnp.PyArray_DATA(self.p_values), pd,
                      self.p_values.shape[0], k)
        try:
            if self.p_values is None:
                out = self.fun(t, self.y_dual, *self.extra_args)
            else:
                out = self.fun(t, self.y_dual, self.p_dual, *self.extra_args)
        except (TypeError, ValueError) as exc:
            if "Dual" not in str(exc) and not self._works_on_floats(t, y):
                raise       # the user's own error, unchanged
            raise TypeError(
                "`fun` could not be evaluated on diffsens.Dual numbers, which "
                f"sensitivities need: {exc}. Keep the duals flowing (no float(), "
                "no float arrays filled in place: build the result with "
                "np.array([...]) instead), or trace it: "
                "diffsens.trace(fun, y0, p).") from exc
        split_into(out, dy, dyd, self.n_user, k)
        return 0

    cdef bint _works_on_floats(self, double t, const double *y):
        """Whether fun runs on plain floats where it failed on duals (then
        the duals are what it cannot take: np.interp, scipy.special, ...)."""
        y_values = np.array(<double[:self.n_user]>y)
        try:
            if self.p_values is None:
                self.fun(t, y_values, *self.extra_args)
            else:
                self.fun(t, y_values, self.p_values.copy(), *self.extra_args)
        except Exception:
            return False
        return True

    cdef int evaluate(self, double t, const double *y, double *dy) except -1:
        memcpy(cnp.PyArray_DATA(self.ybuf), y, self.n_real * sizeof(double))
        cdef object t_obj = t
        self.stack[0] = <PyObject *>t_obj
        out = PyObject_Vectorcall(self.fun, self.stack, self.nargs, NULL)
        store_vector(out, dy, self.n_user, self.n_real, self.out_dtype,
                     self.vectorized, "fun")
        return 0


cdef int store_vector(object out, double *dst, Py_ssize_t n_user,
                      Py_ssize_t n_real, object dtype, bint vectorized,
                      str name) except -1:
    """Copy a callback's result (array or sequence of length n) into dst."""
    cdef cnp.ndarray arr
    cdef Py_ssize_t i
    cdef object item
    if (PyList_CheckExact(out) or PyTuple_CheckExact(out)) and dtype is np.float64:
        # [expr, expr, ...] is the most common return: skip np.asarray
        if len(out) == n_user:
            for i in range(n_user):
                item = out[i]
                if not (PyFloat_Check(item) or PyLong_Check(item)):
                    break
                dst[i] = PyFloat_AsDouble(item)
            else:
                return 0
    if (cnp.PyArray_CheckExact(out) and dtype is np.float64
            and cnp.PyArray_TYPE(<cnp.ndarray>out) == cnp.NPY_DOUBLE
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>out)
            and cnp.PyArray_NDIM(<cnp.ndarray>out) == 1
            and cnp.PyArray_DIM(<cnp.ndarray>out, 0) == n_user):
        memcpy(dst, cnp.PyArray_DATA(<cnp.ndarray>out), n_real * sizeof(double))
        return 0
    arr = np.asarray(out, dtype=dtype)
    shape = (<object>arr).shape
    if not (shape == (n_user,) or (shape == () and n_user == 1)
            or (vectorized and shape == (n_user, 1))):
        raise ValueError(
            f"`{name}` must return an array of shape ({n_user},) like `y0`, "
            f"but it returned an array of shape {shape}.")
    arr = np.ascontiguousarray(arr).reshape(-1)
    if dtype is np.complex128:
        arr = arr.view(np.float64)
    memcpy(dst, cnp.PyArray_DATA(arr), n_real * sizeof(double))
    return 0


cdef int _python_jvp(void *ctx, double t, const double *y, const double *p,
                     int k, const double *yd, const double *pd, double *dy,
                     double *dyd) noexcept:
    cdef PythonRHS rhs = <PythonRHS>ctx
    try:
        rhs.evaluate_dual(t, y, k, yd, pd, dy, dyd)
    except BaseException as exc:
        rhs.error = exc
        return 1
    return 0


cdef int _python_jac(void *ctx, double t, const double *y, const double *p,
                     double *J) noexcept:
    cdef PythonRHS rhs = <PythonRHS>ctx
    try:
        rhs.evaluate_jac(t, y, J)
    except BaseException as exc:
        rhs.error = exc
        return 1
    return 0


def _duals_work(fun, double t0, y0, tuple args):
    """Whether fun(t, y, *args) evaluates on dual numbers (one trial call)."""
    from diffsens._dual import seed, split
    n = y0.shape[0]
    try:
        split(fun(t0, seed(np.asarray(y0, dtype=np.float64), np.eye(n)), *args), n, n)
    except Exception:
        return False
    return True


cdef class DualFunction:
    """A Python ``fun(t, y, p, *args)`` that solves evaluate on dual numbers."""
    cdef readonly object fun
    cdef readonly tuple extra_args

    def __cinit__(self, fun, tuple extra_args=()):
        self.fun = fun
        self.extra_args = extra_args


cdef int _python_f(void *ctx, double t, const double *y, const double *p,
                   double *dy) noexcept:
    cdef PythonRHS rhs = <PythonRHS>ctx
    try:
        rhs.evaluate(t, y, dy)
    except BaseException as exc:
        rhs.error = exc
        return 1
    return 0



# ---------------------------------------------------------------------------
# Traced right-hand sides: the tape interpreter
# ---------------------------------------------------------------------------

cdef void *hold(list keep, a, dtype) except NULL:
    """A contiguous copy of ``a`` kept alive in ``keep``; its data pointer is
    valid even when ``a`` is empty (the kernels never read it then)."""
    cdef cnp.ndarray arr = np.ascontiguousarray(a, dtype=dtype).reshape(-1)
    if arr.size == 0:
        arr = np.zeros(1, dtype=dtype)
    keep.append(arr)
    return cnp.PyArray_DATA(arr)


cdef class TapeFunction:
    """A scheduled tape (``diffsens._schedule.Program``) bound to the C interpreter.

    Immutable and shareable between threads: every evaluation and every solve
    brings its own scratch.  The program's indices are checked here, with the
    GIL, so the interpreter can trust them.
    """
    cdef ds_tape c
    cdef list keep
    cdef readonly int n, m
    cdef readonly object tape
    cdef readonly object rows         # the program op by op (n_ops, 4): tape.h's `ops`
    cdef readonly object native       # the compiled value pass, or None

    def __cinit__(self, program, native=None):
        """``native``: None, or the value pass compiled from this program's
        ``rows`` (``diffsens._native.NativeValue``: the addresses of its two
        functions, and the library they live in, kept alive here)."""
        _check_program(program)
        self.tape = program
        self.keep = []
        self.c.n = self.n = program.n
        self.c.m = self.m = program.m
        self.c.n_const = program.consts.shape[0]
        self.c.n_ops = program.n_ops
        self.c.n_blocks = program.blocks.shape[0]
        self.c.consts = <const double *>self._hold(program.consts, np.float64)
        self.c.blocks = <const int32_t *>self._hold(program.blocks, np.int32)
        self.c.args = <const int32_t *>self._hold(program.args, np.int32)
        self.c.lc_slot = <const int32_t *>self._hold(program.lc_slot, np.int32)
        self.c.lc_weight = <const double *>self._hold(program.lc_weight, np.float64)
        self.c.outputs = <const int32_t *>self._hold(program.outputs, np.int32)
        rows = np.empty(4 * (program.n_ops + 2), dtype=np.int32)
        ds_tape_linearize(&self.c, <int32_t *>cnp.PyArray_DATA(rows))
        self.c.ops = <const int32_t *>self._hold(rows, np.int32) + 4
        self.rows = rows[4:-4].reshape(-1, 4)
        self.rows.flags.writeable = False
        self.native = native
        self.c.native_value = self.c.native_f = NULL
        if native is not None:
            if native.rows_digest != _rows_digest(program, self.rows):
                raise ValueError("`native` was compiled from another program")
            self.c.native_value = <ds_tape_value_fn><uintptr_t>native.address
            self.c.native_f = <ds_tape_value_fn><uintptr_t>native.address_f

    cdef void *_hold(self, a, dtype) except NULL:
        return hold(self.keep, a, dtype)

    cdef tuple _inputs(self, y, p):
        cdef cnp.ndarray yc = _vector(y, self.n, "y")
        if p is None and self.m:
            raise ValueError(f"This tape has m = {self.m} parameters: pass `p` "
                             f"(shape ({self.m},)).")
        cdef cnp.ndarray pc = _vector(p if self.m else np.zeros(0), self.m, "p")
        return yc, pc

    def value(self, double t, y, p=None):
        """``f(t, y, p)`` evaluated by the interpreter."""
        cdef cnp.ndarray yc, pc
        yc, pc = self._inputs(y, p)
        cdef cnp.ndarray scratch = np.empty(ds_tape_value_scratch(&self.c))
        cdef cnp.ndarray dy = np.empty(self.n)
        ds_tape_eval(&self.c, <double *>cnp.PyArray_DATA(scratch), t,
                     <const double *>cnp.PyArray_DATA(yc),
                     <const double *>cnp.PyArray_DATA(pc),
                     <double *>cnp.PyArray_DATA(dy))
        return dy

    def value_batch(self, t, Y, p=None):
        """``f(t_i, Y[i], p)`` for every row of Y (k, n), in one C loop."""
        cdef cnp.ndarray Yc = np.ascontiguousarray(Y, dtype=np.float64)
        if Yc.ndim != 2 or Yc.shape[1] != self.n:
            raise ValueError(f"`Y` must have shape (k, {self.n}); got {(<object>Yc).shape}.")
        cdef Py_ssize_t k = Yc.shape[0]
        cdef cnp.ndarray tc = np.ascontiguousarray(np.broadcast_to(t, (k,)), dtype=np.float64)
        cdef cnp.ndarray pc = _vector(p if self.m else np.zeros(0), self.m, "p")
        cdef cnp.ndarray scratch = np.empty(ds_tape_value_scratch(&self.c))
        cdef cnp.ndarray out = np.empty((k, self.n))
        cdef double *sp = <double *>cnp.PyArray_DATA(scratch)
        cdef const double *tp = <const double *>cnp.PyArray_DATA(tc)
        cdef const double *yp = <const double *>cnp.PyArray_DATA(Yc)
        cdef const double *pp = <const double *>cnp.PyArray_DATA(pc)
        cdef double *op = <double *>cnp.PyArray_DATA(out)
        with nogil:
            ds_tape_eval_many(&self.c, sp, k, tp, yp, pp, op)
        return out

    def jvp(self, double t, y, p, yd=None, pd=None):
        """``(f, J_y yd + J_p pd)``; tangents of shape (n,)/(m,) or (n, k)/(m, k)."""
        cdef cnp.ndarray yc, pc
        yc, pc = self._inputs(y, p)
        single = (yd is None or np.ndim(yd) == 1) and (pd is None or np.ndim(pd) == 1)
        k = 1
        for d_, rows, name in ((yd, self.n, "yd"), (pd, self.m, "pd")):
            if d_ is not None:
                d_ = np.asarray(d_, dtype=float)
                if d_.shape[0] != rows or d_.ndim > 2:
                    raise ValueError(f"`{name}` must have shape ({rows},) or "
                                     f"({rows}, k); got {d_.shape}.")
                k = d_.shape[1] if d_.ndim == 2 else 1
        ydl = _lanes(yd, self.n, k, "yd")
        pdl = _lanes(pd, self.m, k, "pd")
        cdef cnp.ndarray scratch = np.empty(ds_tape_jvp_scratch(&self.c, k))
        cdef cnp.ndarray dy = np.empty(self.n)
        cdef cnp.ndarray dyd = np.empty((k, self.n))
        ds_tape_jvp(&self.c, <double *>cnp.PyArray_DATA(scratch), t,
                    <const double *>cnp.PyArray_DATA(yc),
                    <const double *>cnp.PyArray_DATA(pc), k,
                    <const double *>cnp.PyArray_DATA(ydl),
                    <const double *>cnp.PyArray_DATA(pdl),
                    <double *>cnp.PyArray_DATA(dy),
                    <double *>cnp.PyArray_DATA(dyd))
        return dy, (dyd[0] if single else dyd.T.copy())

    def jvp2(self, double t, y, p, ya, yb, pb=None):
        """Second order along two sets of directions: ``ya`` (n, ka) in y and
        ``(yb, pb)`` ((n, kb), (m, kb)) in (y, p).  Returns ``(f, fa, fb,
        fab)``: ``fa = J_y ya`` (n, ka), ``fb = J_y yb + J_p pb`` (n, kb) and
        ``fab[:, a, b]``, the derivative of lane b along direction a (n, ka,
        kb).  The Rosenbrock sensitivity solves take their coupling block
        from it."""
        cdef cnp.ndarray yc, pc
        yc, pc = self._inputs(y, p)
        ya2 = np.asarray(ya, dtype=np.float64)
        yb2 = np.asarray(yb, dtype=np.float64)
        if ya2.ndim != 2 or ya2.shape[0] != self.n:
            raise ValueError(f"`ya` must have shape ({self.n}, ka); got {ya2.shape}.")
        if yb2.ndim != 2 or yb2.shape[0] != self.n:
            raise ValueError(f"`yb` must have shape ({self.n}, kb); got {yb2.shape}.")
        if pb is not None and np.shape(pb) != (self.m, yb2.shape[1]):
            raise ValueError(f"`pb` must have shape ({self.m}, {yb2.shape[1]}) like `yb`; "
                             f"got {np.shape(pb)}.")
        cdef int ka = ya2.shape[1], kb = yb2.shape[1]
        yal = _lanes(ya2, self.n, ka, "ya")
        ybl = _lanes(yb2, self.n, kb, "yb")
        pbl = _lanes(pb, self.m, kb, "pb")
        cdef cnp.ndarray scratch = np.empty(ds_tape_jvp2_scratch(&self.c, ka, kb))
        cdef cnp.ndarray f = np.empty(self.n)
        cdef cnp.ndarray fa = np.empty((max(ka, 1), self.n))
        cdef cnp.ndarray fb = np.empty((max(kb, 1), self.n))
        cdef cnp.ndarray fab = np.empty((max(ka * kb, 1), self.n))
        ds_tape_jvp2(&self.c, <double *>cnp.PyArray_DATA(scratch), t,
                     <const double *>cnp.PyArray_DATA(yc),
                     <const double *>cnp.PyArray_DATA(pc), ka,
                     <const double *>cnp.PyArray_DATA(yal), kb,
                     <const double *>cnp.PyArray_DATA(ybl),
                     <const double *>cnp.PyArray_DATA(pbl),
                     <double *>cnp.PyArray_DATA(f), <double *>cnp.PyArray_DATA(fa),
                     <double *>cnp.PyArray_DATA(fb), <double *>cnp.PyArray_DATA(fab))
        return (f, fa[:ka].T.copy(), fb[:kb].T.copy(),
                fab[:ka * kb].reshape(ka, kb, self.n).transpose(2, 0, 1).copy())

    def vjp(self, double t, y, p, w):
        """``(f, w^T J_y, w^T J_p)`` by one reverse sweep."""
        cdef cnp.ndarray yc, pc
        yc, pc = self._inputs(y, p)
        cdef cnp.ndarray wc = _vector(w, self.n, "w")
        cdef cnp.ndarray scratch = np.empty(ds_tape_vjp_scratch(&self.c))
        cdef cnp.ndarray dy = np.empty(self.n)
        cdef cnp.ndarray wy = np.empty(self.n)
        cdef cnp.ndarray wp = np.empty(max(self.m, 1))
        ds_tape_vjp(&self.c, <double *>cnp.PyArray_DATA(scratch), t,
                    <const double *>cnp.PyArray_DATA(yc),
                    <const double *>cnp.PyArray_DATA(pc),
                    <const double *>cnp.PyArray_DATA(wc),
                    <double *>cnp.PyArray_DATA(dy),
                    <double *>cnp.PyArray_DATA(wy),
                    <double *>cnp.PyArray_DATA(wp))
        return dy, wy, wp[:self.m]

    def jacobian(self, double t, y, p=None):
        """Dense ``(J_y, J_p)`` from one pass of n + m dual lanes."""
        k = self.n + self.m
        seeds = np.eye(k)
        _, lanes = self.jvp(t, y, p, seeds[:self.n], seeds[self.n:])
        return lanes[:, :self.n].copy(), lanes[:, self.n:].copy()


# Operand arrays per block code (see tape.h); list ops and POWI are special.
_ONE_OPERAND = frozenset((4, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
                          20, 21, 32))
# (codes from DS_OP_PROD3 on are made by ds_tape_linearize, never in blocks)
_SELECT, _POWI, _LINCOMB, _SUM, _PROD, _N_CODES = 28, 6, 31, 33, 34, 35
_SUM_END = -1
_PROD_MAX = 8


def _rows_digest(program, rows):
    """What a compiled value pass is compiled from: the program op by op, its
    SUM/PROD/LINCOMB lists, constants and outputs."""
    h = hashlib.sha256()
    for a in (np.int32(program.n), np.int32(program.m), rows, program.lc_slot,
              program.lc_weight, program.consts, program.outputs):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _check_program(program):
    """Every index the interpreter will follow stays inside its array."""
    n_inputs = 1 + program.n + program.m + program.consts.shape[0]
    slot = n_inputs
    blocks = np.asarray(program.blocks).reshape(-1, 3)
    args = np.asarray(program.args)
    lc_slot = np.asarray(program.lc_slot)
    if lc_slot.shape != np.shape(program.lc_weight):
        raise ValueError("tape program: lc_slot and lc_weight differ in length")
    for code, count, first in blocks:
        if not 0 <= code < _N_CODES or count < 1:
            raise ValueError(f"tape program: bad block ({code}, {count})")
        if code in (_LINCOMB, _PROD, _SUM):
            width = count + 1
        else:
            width = count * (1 if code in _ONE_OPERAND else 3 if code == _SELECT else 2)
        if first < 0 or first + width > args.shape[0]:
            raise ValueError("tape program: block operands out of range")
        operands = args[first:first + width]
        if code in (_LINCOMB, _PROD, _SUM):
            if (operands[0] < 0 or np.any(np.diff(operands) < 0)
                    or operands[-1] > lc_slot.shape[0]):
                raise ValueError("tape program: bad list-op offsets")
            if code == _PROD and (np.diff(operands).min() < 1
                                  or np.diff(operands).max() > _PROD_MAX):
                raise ValueError("tape program: bad PROD size")
            offsets = operands
            operands = lc_slot[offsets[0]:offsets[-1]]
            if code == _SUM:
                # each op's list: plus slots, end mark, minus slots, end mark
                ends = np.flatnonzero(operands == _SUM_END)
                if (ends.size != 2 * count
                        or not np.array_equal(ends[1::2] + 1, offsets[1:] - offsets[0])):
                    raise ValueError("tape program: a SUM's lists must each end with -1")
                operands = np.delete(operands, ends)
        elif code == _POWI:
            operands = operands[:count]
        if operands.size and (operands.min() < 0 or operands.max() >= slot):
            raise ValueError("tape program: an operand is not computed before use")
        slot += count
    if slot != n_inputs + program.n_ops:
        raise ValueError("tape program: block sizes do not add up to n_ops")
    outputs = np.asarray(program.outputs)
    if outputs.shape != (program.n,) or (outputs.size and (outputs.min() < 0 or outputs.max() >= slot)):
        raise ValueError("tape program: bad outputs")


cdef cnp.ndarray _vector(x, Py_ssize_t size, str name):
    cdef cnp.ndarray arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != size:
        raise ValueError(f"`{name}` must have shape ({size},); got {(<object>arr).shape}.")
    return arr


cdef cnp.ndarray _lanes(d, Py_ssize_t rows, Py_ssize_t k, str name):
    """Tangents (rows,) or (rows, k) as the kernels' lane-major block."""
    if d is None or rows == 0:
        return np.zeros(max(rows * k, 1))
    arr = np.asarray(d, dtype=np.float64).reshape(rows, -1)
    if arr.shape[1] != k:
        raise ValueError(f"`{name}` has {arr.shape[1]} lanes, expected {k}.")
    return np.ascontiguousarray(arr.T).reshape(-1)


cdef class TapeRHS(RHSFrontEnd):
    """One solve's view of a TapeFunction: its context and scratch."""
    cdef TapeFunction fn
    cdef ds_tape_ctx ctx
    cdef cnp.ndarray scratch

    def __cinit__(self, TapeFunction fn, int k_max=1, int k2_max=0):
        self.fn = fn
        self.scratch = np.empty(ds_tape_rhs_scratch(&fn.c, k_max, k2_max))
        ds_tape_rhs_init(&self.c, &self.ctx, &fn.c,
                         <double *>cnp.PyArray_DATA(self.scratch), k_max, k2_max)
        self.error = None

# ---------------------------------------------------------------------------
# Input checks that are loops (cheaper here than as NumPy expressions)
# ---------------------------------------------------------------------------

def all_finite(cnp.ndarray x):
    """Whether every element of a float64 array is finite."""
    cdef cnp.ndarray c = np.ascontiguousarray(x, dtype=np.float64)
    cdef const double *v = <const double *>cnp.PyArray_DATA(c)
    cdef Py_ssize_t i, size = c.size
    for i in range(size):
        if not isfinite(v[i]):
            return False
    return True


def t_eval_problem(cnp.ndarray t_eval, double t0, double tf):
    """None if t_eval (float64, 1-D) lies in the span and is sorted in the
    direction of integration, else which of the two it violates."""
    cdef cnp.ndarray c = np.ascontiguousarray(t_eval, dtype=np.float64)
    cdef const double *v = <const double *>cnp.PyArray_DATA(c)
    cdef Py_ssize_t i, size = c.shape[0]
    cdef double lo = min(t0, tf), hi = max(t0, tf)
    for i in range(size):
        if not (lo <= v[i] <= hi):
            return "span"
    for i in range(1, size):
        if (tf > t0 and v[i] <= v[i - 1]) or (tf < t0 and v[i] >= v[i - 1]):
            return "order"
    return None


# ---------------------------------------------------------------------------
# Python event functions
# ---------------------------------------------------------------------------

cdef class PythonEvents:
    """Event functions ``g_i(t, y, *args)`` behind ``ds_events``."""
    cdef list funcs
    cdef tuple args
    cdef cnp.ndarray ybuf
    cdef object ycall
    cdef Py_ssize_t n_real
    cdef cnp.ndarray direction
    cdef cnp.ndarray max_count
    cdef ds_events c
    cdef public object error

    def __cinit__(self, list funcs, Py_ssize_t n_user, bint is_complex,
                  tuple args, cnp.ndarray direction, cnp.ndarray max_count):
        self.funcs = funcs
        self.args = args
        self.n_real = 2 * n_user if is_complex else n_user
        self.ybuf = np.zeros(self.n_real)
        self.ycall = self.ybuf.view(np.complex128) if is_complex else self.ybuf
        self.direction = np.ascontiguousarray(direction, dtype=np.float64)
        self.max_count = np.ascontiguousarray(max_count, dtype=np.float64)
        self.c.ctx = <void *>self
        self.c.count = <int>len(funcs)
        self.c.g = _python_g
        self.c.direction = <const double *>cnp.PyArray_DATA(self.direction)
        self.c.max_count = <const double *>cnp.PyArray_DATA(self.max_count)
        self.error = None

    cdef int evaluate(self, int which, double t, const double *y,
                      double *value) except -1:
        memcpy(cnp.PyArray_DATA(self.ybuf), y, self.n_real * sizeof(double))
        value[0] = float(self.funcs[which](t, self.ycall, *self.args))
        return 0


cdef int _python_g(void *ctx, int which, double t, const double *y,
                   double *value) noexcept:
    cdef PythonEvents ev = <PythonEvents>ctx
    try:
        ev.evaluate(which, t, y, value)
    except BaseException as exc:
        ev.error = exc
        return 1
    return 0


# ---------------------------------------------------------------------------
# Tableaus as C structs
# ---------------------------------------------------------------------------

cdef class CTableau:
    """Keeps a tableau's arrays alive and points a ``ds_erk_tableau`` at them."""
    cdef ds_erk_tableau c
    cdef list keep
    cdef public object source

    def __cinit__(self, tableau):
        self.source = tableau
        self.keep = []
        s = tableau.c.shape[0]
        self.c.s = <int>s
        self.c.r = <int>tableau.c_extra.shape[0]
        self.c.d = <int>tableau.P.shape[1]
        if s + 1 + self.c.r > DS_ERK_MAX_STAGES:
            raise ValueError(f"tableau {tableau.name!r} has more than "
                             f"{DS_ERK_MAX_STAGES} stages")
        self.c.order = tableau.order
        self.c.error_order = tableau.error_order
        self.c.c = self._hold(tableau.c)
        self.c.A = self._hold(tableau.A)
        self.c.b = self._hold(tableau.b)
        self.c.e = self._hold(tableau.e)
        self.c.e_low = (NULL if tableau.e_low is None
                        else self._hold(tableau.e_low))
        self.c.c_extra = self._hold(tableau.c_extra)
        self.c.A_extra = self._hold(tableau.A_extra)
        self.c.P = self._hold(tableau.P)
        self.c.stiffness_stage = tableau.stiffness_stage
        self.c.stability_boundary = tableau.stability_boundary

    cdef const double *_hold(self, a) except NULL:
        return <const double *>hold(self.keep, a, np.float64)


cdef class CRosTableau:
    """A Rosenbrock tableau (``diffsens._rosenbrock_tableaus``) as a C struct."""
    cdef ds_ros_tableau c
    cdef list keep
    cdef public object source

    def __cinit__(self, tableau):
        self.source = tableau
        self.keep = []
        self.c.s = <int>tableau.a.shape[0]
        self.c.q = <int>tableau.H.shape[0]
        self.c.order = tableau.order
        self.c.error_order = tableau.error_order
        self.c.gamma = tableau.gamma
        self.c.a = self._hold(tableau.a)
        self.c.c = self._hold(tableau.c)
        self.c.alpha = self._hold(tableau.alpha)
        self.c.gammas = self._hold(tableau.gammas)
        self.c.m = self._hold(tableau.m)
        self.c.e = self._hold(tableau.e)
        self.c.H = self._hold(tableau.H)
        self.c.argument_steps = <const int *>hold(self.keep, tableau.argument_steps,
                                                  np.intc)
        self.c.stiffly_accurate = tableau.stiffly_accurate
        self.c.error_is_last_stage = tableau.error_is_last_stage

    cdef const double *_hold(self, a) except NULL:
        return <const double *>hold(self.keep, a, np.float64)


_tableau_cache = {}


cdef object c_tableau(tableau):
    """The C struct of a tableau (explicit RK or Rosenbrock), cached."""
    key = tableau.name
    cached = _tableau_cache.get(key)
    if cached is None or cached.source is not tableau:
        cached = CRosTableau(tableau) if hasattr(tableau, "gamma") else CTableau(tableau)
        _tableau_cache[key] = cached
    return cached


# scipy's LAPACK, handed to the C kernels as function pointers
cdef ds_lapack LAPACK
LAPACK.dgetrf = dgetrf
LAPACK.dgetrs = dgetrs


# ---------------------------------------------------------------------------
# Output buffers: grown between kernel calls, never inside the step loop
# ---------------------------------------------------------------------------

cdef class OutputBuffers:
    cdef ds_output c
    cdef Py_ssize_t n, d
    cdef Py_ssize_t stage_width   # doubles of stages kept per step (0: none)
    cdef public cnp.ndarray t, y
    cdef public cnp.ndarray seg_t_old, seg_h, seg_t_end, seg_y_old, seg_Q, seg_K
    cdef public cnp.ndarray ev_which, ev_t, ev_y

    def __cinit__(self, Py_ssize_t n, Py_ssize_t d, Py_ssize_t points,
                  bint store_dense, Py_ssize_t segments, Py_ssize_t n_events,
                  Py_ssize_t stage_width=0, bint interpolants=True):
        """``stage_width``: keep each step's stages too (explicit RK, that
        many doubles a step); without ``interpolants``, only them (d = 0):
        the discrete adjoint needs no interpolant, and building one costs d
        combinations of the stages."""
        self.n = n
        self.d = d if interpolants else 0
        self.c.store_dense = store_dense
        self.c.len = self.c.seg_len = self.c.ev_len = 0
        self.c.seg_K = NULL
        self.stage_width = stage_width
        self._points(points)
        # the C side never touches these buffers at zero capacity: skip them
        if store_dense:
            self._segments(segments)
        if n_events:
            self._events(4 * n_events)

    cdef void _points(self, Py_ssize_t cap):
        self.t = grow(self.t, cap, None)
        self.y = grow(self.y, cap, self.n)
        self.c.t = <double *>cnp.PyArray_DATA(self.t)
        self.c.y = <double *>cnp.PyArray_DATA(self.y)
        self.c.cap = cap

    cdef void _segments(self, Py_ssize_t cap):
        self.seg_t_old = grow(self.seg_t_old, cap, None)
        self.seg_h = grow(self.seg_h, cap, None)
        self.seg_t_end = grow(self.seg_t_end, cap, None)
        self.seg_y_old = grow(self.seg_y_old, cap, self.n)
        self.seg_Q = grow(self.seg_Q, cap, self.n * self.d)
        self.c.seg_t_old = <double *>cnp.PyArray_DATA(self.seg_t_old)
        self.c.seg_h = <double *>cnp.PyArray_DATA(self.seg_h)
        self.c.seg_t_end = <double *>cnp.PyArray_DATA(self.seg_t_end)
        self.c.seg_y_old = <double *>cnp.PyArray_DATA(self.seg_y_old)
        # d = 0: stages only, no interpolants (the C side then builds none)
        self.c.seg_Q = <double *>cnp.PyArray_DATA(self.seg_Q) if self.d else NULL
        if self.stage_width:
            self.seg_K = grow(self.seg_K, cap, self.stage_width)
            self.c.seg_K = <double *>cnp.PyArray_DATA(self.seg_K)
        self.c.seg_cap = cap

    cdef void _events(self, Py_ssize_t cap):
        self.ev_which = grow(self.ev_which, cap, None, np.intc)
        self.ev_t = grow(self.ev_t, cap, None)
        self.ev_y = grow(self.ev_y, cap, self.n)
        self.c.ev_which = <int *>cnp.PyArray_DATA(self.ev_which)
        self.c.ev_t = <double *>cnp.PyArray_DATA(self.ev_t)
        self.c.ev_y = <double *>cnp.PyArray_DATA(self.ev_y)
        self.c.ev_cap = cap

    cdef void make_room(self, int n_events):
        if self.c.len >= self.c.cap:
            self._points(2 * self.c.cap + 16)
        if self.c.store_dense and self.c.seg_len >= self.c.seg_cap:
            self._segments(2 * self.c.seg_cap + 16)
        if self.c.ev_len + n_events > self.c.ev_cap:
            self._events(2 * self.c.ev_cap + n_events)


cdef cnp.ndarray grow(cnp.ndarray old, Py_ssize_t rows, object width,
                      dtype=np.float64):
    """A (rows,) array (width None) or (rows, width) one holding old's rows."""
    cdef object shape = (rows,) if width is None else (rows, width)
    new = np.empty(shape, dtype=dtype)
    if old is not None and old.shape[0] > 0:
        new[:old.shape[0]] = old
    return new


# ---------------------------------------------------------------------------
# The solve
# ---------------------------------------------------------------------------

cdef tuple front_end(fun, Py_ssize_t n_user, bint is_complex, bint vectorized,
                     tuple args, p, jac, int lanes, bint rosenbrock, double t0, y0,
                     int second_lanes=0):
    """The vtable owner for ``fun`` and its parameters as a C array (or None).

    A `TapeFunction` gets scratch for ``lanes`` dual lanes (and for second
    order with ``second_lanes`` B directions, see rhs.h); a `DualFunction`
    evaluates on dual numbers; a plain callable gets the user's ``jac``, or
    duals for exact Rosenbrock Jacobians when it takes them."""
    cdef RHSFrontEnd rhs
    cdef cnp.ndarray pc = None
    if isinstance(fun, TapeFunction):
        rhs = TapeRHS(fun, lanes, second_lanes)
        rhs.c.autonomous = (<TapeFunction>fun).tape.autonomous
        if (<TapeFunction>fun).m:
            pc = _vector(p, (<TapeFunction>fun).m, "p")
    elif isinstance(fun, DualFunction):
        rhs = PythonRHS((<DualFunction>fun).fun, n_user, False, False, args)
        (<PythonRHS>rhs).enable_duals(p, (<DualFunction>fun).extra_args)
        if p is not None:
            pc = np.ascontiguousarray(p, dtype=np.float64)
    else:
        rhs = PythonRHS(fun, n_user, is_complex, vectorized, args)
        if jac is not None:
            (<PythonRHS>rhs).enable_jac(jac)
        elif rosenbrock and not is_complex and _duals_work(fun, t0, y0, args):
            (<PythonRHS>rhs).enable_duals(None, args)   # exact Jacobians
    return rhs, pc


def solve(tableau, fun, double t0, double t_bound,
          cnp.ndarray y0, tuple args, bint is_complex,
          bint vectorized, cnp.ndarray rtol, cnp.ndarray atol,
          double max_step, double first_step, t_eval,
          bint dense_output, events, event_direction,
          event_max_count, long max_steps, bint stiffness_check,
          p=None, int sens_lanes=0, p_seed=None, int norm_n=0, jac=None,
          mass=None, double nonstiff_bound=0.0, cancel=None,
          bint exact_coupling=False):
    """Run a solve in C (explicit RK or Rosenbrock tableau); inputs are
    validated by the caller.

    ``fun`` is a Python callable or a `TapeFunction` (then ``p`` holds its
    parameters and, without Python events, the GIL is released for the whole
    solve).  ``y0`` is float64 (complex states already viewed as pairs of
    reals) and ``t_eval`` is either None or float64 in integration order.
    Returns a dict of raw arrays that ``diffsens._ivp`` turns into an
    ``OdeResult``.

    With ``sens_lanes = k > 0`` the state is ``[y, S]`` (S lane-major, see
    ``sens.h``), ``y0`` holds all n (1 + k) initial values, ``p_seed`` (k, m)
    the parameter directions, and error control covers ``y[:norm_n]`` (0: all).
    A Rosenbrock solve's coupling of S to y is then exact with
    ``exact_coupling`` (a traced ``fun``: the step's derivative), else by
    differences where it goes stage by stage (n >= stages).

    ``jac`` (a user's ``jac(t, y, *args)``) and ``mass`` (an (n, n) matrix)
    serve the Rosenbrock methods; ``nonstiff_bound > 0`` makes a Rosenbrock
    solve stop once an explicit method could take its steps (method='auto').
    ``cancel`` (a `threading.Event`) stops a solve on a worker thread, where
    Ctrl-C never arrives: it raises KeyboardInterrupt once the event is set.
    """
    method = c_tableau(tableau)
    cdef Py_ssize_t n_user = y0.shape[0] // ((2 if is_complex else 1) * (1 + sens_lanes))
    cdef RHSFrontEnd rhs
    cdef cnp.ndarray pc = None
    cdef bint release_gil = False
    cdef ds_sens_ctx sens_ctx
    cdef ds_rhs sens_rhs
    cdef ds_coupling coupling
    cdef cnp.ndarray seed = None, coupling_scratch = None
    cdef bint rosenbrock = isinstance(method, CRosTableau)
    cdef cnp.ndarray massc = None
    # a Rosenbrock Jacobian is one jvp of n lanes
    rhs, pc = front_end(fun, n_user, is_complex, vectorized, args, p, jac,
                        max(sens_lanes, n_user if rosenbrock else 1, 1),
                        rosenbrock, t0, y0, sens_lanes if rosenbrock else 0)
    release_gil = isinstance(fun, TapeFunction) and not events
    if mass is not None:
        massc = np.asfortranarray(mass, dtype=np.float64)
    cdef PythonEvents ev = None
    cdef int n_events = 0
    cdef ds_problem pb
    cdef ds_solver S
    cdef cnp.ndarray y0c = np.ascontiguousarray(y0, dtype=np.float64)
    cdef cnp.ndarray rtolc = np.ascontiguousarray(rtol, dtype=np.float64)
    cdef cnp.ndarray atolc = np.ascontiguousarray(atol, dtype=np.float64)
    cdef cnp.ndarray t_evalc = None
    cdef cnp.ndarray y_last
    cdef int rc

    if events:
        ev = PythonEvents(list(events), n_user, is_complex, args,
                          np.asarray(event_direction, dtype=np.float64),
                          np.asarray(event_max_count, dtype=np.float64))
        n_events = len(events)
    if t_eval is not None:
        t_evalc = np.ascontiguousarray(t_eval, dtype=np.float64)

    if rosenbrock:
        pb.erk = NULL
        pb.ros = &(<CRosTableau>method).c
        pb.lapack = &LAPACK
        pb.mass = NULL if massc is None else <const double *>cnp.PyArray_DATA(massc)
        pb.jac_rhs = &rhs.c    # for sensitivities: the base system's Jacobian
        pb.coupling = NULL
        dense_degree = pb.ros.q + 1
    else:
        pb.erk = &(<CTableau>method).c
        pb.ros = NULL
        pb.lapack = NULL
        pb.mass = NULL
        pb.jac_rhs = NULL
        pb.coupling = NULL
        dense_degree = pb.erk.d
    pb.rhs = &rhs.c
    if sens_lanes > 0:
        if rhs.c.jvp == NULL:
            raise TypeError("this right-hand side cannot give Jacobian-vector products")
        seed = np.ascontiguousarray(p_seed, dtype=np.float64).reshape(-1)
        if seed.size == 0:
            seed = np.zeros(1)
        ds_sens_rhs_init(&sens_rhs, &sens_ctx, &rhs.c, sens_lanes,
                         <const double *>cnp.PyArray_DATA(seed))
        pb.rhs = &sens_rhs
        if rosenbrock:
            # 2 N + 2 n^2 for its evaluations (sens.h), (N - n) n for the block
            coupling_scratch = np.empty(2 * y0.shape[0] + 2 * rhs.c.n * rhs.c.n
                                        + (y0.shape[0] - rhs.c.n) * rhs.c.n)
            sens_ctx.scratch = <double *>cnp.PyArray_DATA(coupling_scratch)
            sens_ctx.block = sens_ctx.scratch + 2 * y0.shape[0] + 2 * rhs.c.n * rhs.c.n
            coupling.ctx = &sens_ctx
            coupling.block = sens_ctx.block
            coupling.prepare = ds_sens_coupling_prepare
            # (a traced rhs: f, J and the block in one exact pass per step)
            coupling.evaluate = NULL
            if rhs.c.jvp2 != NULL:
                coupling.evaluate = ds_sens_coupling_evaluate
                sens_ctx.exact = exact_coupling
            elif exact_coupling:
                raise TypeError("an exact coupling needs a traced right-hand side")
            coupling.apply = ds_sens_coupling
            pb.coupling = &coupling
    pb.p = NULL if pc is None else <const double *>cnp.PyArray_DATA(pc)
    pb.t0 = t0
    pb.t_bound = t_bound
    pb.y0 = <const double *>cnp.PyArray_DATA(y0c)
    pb.norm_n = norm_n
    pb.rtol = <const double *>cnp.PyArray_DATA(rtolc)
    pb.rtol_len = <int>rtolc.shape[0]
    pb.atol = <const double *>cnp.PyArray_DATA(atolc)
    pb.atol_len = <int>atolc.shape[0]
    pb.max_step = max_step
    pb.first_step = first_step
    pb.max_steps = max_steps
    pb.stiffness_check = stiffness_check
    pb.nonstiff_bound = nonstiff_bound
    # A Python fun answers Ctrl-C itself; a GIL-free solve stops to check.
    pb.yield_every = 1000 if release_gil else 0
    pb.t_eval = NULL if t_evalc is None else <const double *>cnp.PyArray_DATA(t_evalc)
    pb.n_eval = 0 if t_evalc is None else t_evalc.shape[0]
    pb.events = NULL if ev is None else &ev.c
    pb.on_step = NULL
    pb.on_step_ctx = NULL
    pb.tstops = NULL
    pb.n_tstops = 0

    n_real = y0c.shape[0]
    points = max(t_evalc.shape[0], 1) if t_evalc is not None else 64
    cdef OutputBuffers out = OutputBuffers(n_real, dense_degree, points,
                                           dense_output, 64, n_events)
    cdef void *work = malloc(ds_workspace_size(&pb))
    if work == NULL:
        raise MemoryError()
    try:
        ds_solver_init(&S, &pb, work)
        while True:
            if release_gil:
                with nogil:
                    rc = ds_run(&S, &out.c)
            else:   # every stage calls back into Python anyway
                rc = ds_run(&S, &out.c)
            if rc == DS_NEED_SPACE:
                out.make_room(n_events)
            elif rc == DS_YIELD:
                PyErr_CheckSignals()
                if cancel is not None and cancel.is_set():
                    raise KeyboardInterrupt("solve cancelled")
            else:
                break
        # where the solve stands (a stiff stop, say), for a restart elsewhere
        y_last = np.empty(S.n)
        memcpy(<double *>cnp.PyArray_DATA(y_last), S.y, S.n * sizeof(double))
    finally:
        free(work)

    if rc == DS_CALLBACK_STOP:
        error = rhs.error if rhs.error is not None else (
            ev.error if ev is not None else None)
        if error is None:
            raise RuntimeError("a callback stopped the solver without an error")
        raise error

    # Views, not copies: the buffers belong to this solve alone.
    n_pts, n_seg, n_ev = out.c.len, out.c.seg_len, out.c.ev_len
    raw = {
        "status": {DS_FINISHED: 0, DS_TERMINATED: 1}.get(rc, -1),
        "message": S.message.decode("utf-8", "replace") if rc == DS_FAILED else None,
        "t": out.t[:n_pts],
        "y": out.y[:n_pts],
        "nfev": S.nfev,
        "njev": S.njev,
        "nlu": S.nlu,
        "n_accepted": S.n_accepted,
        "n_rejected": S.n_rejected,
        "stopped_stiff": bool(S.stopped_stiff),
        "stopped_nonstiff": bool(S.stopped_nonstiff),
        "t_last": S.t,
        "y_last": y_last,
    }
    if dense_output:
        raw.update(seg_t_old=out.seg_t_old[:n_seg], seg_h=out.seg_h[:n_seg],
                   seg_t_end=out.seg_t_end[:n_seg], seg_y_old=out.seg_y_old[:n_seg],
                   seg_Q=out.seg_Q[:n_seg].reshape(n_seg, n_real, dense_degree))
    if n_events:
        raw.update(ev_which=out.ev_which[:n_ev], ev_t=out.ev_t[:n_ev],
                   ev_y=out.ev_y[:n_ev])
    return raw


include "_adjoint.pxi"
include "_reversible.pxi"
