# C-level API of diffsens._dual (ForwardDiff-style dual numbers), for the
# solver's Cython code:  ``from diffsens._dual cimport Dual, seed_into, ...``.
#
# A Dual holds a value and k partials ("lanes").  For k <= DUAL_INLINE_LANES
# the partials live inside the object (``der == buf``); beyond that they are
# on the heap (``der`` from PyMem_Malloc, freed by the object).  Duals are
# immutable from Python; C code may overwrite one only while it holds the
# sole reference to it.
#
# Layout of the partials buffers taken by seed_into / seed_array /
# split_into: LANE-MAJOR, partial j of element i at ``partials[j * n + i]``
# (an (k, n) C-order array; the solver's sensitivity matrix S^T).  The
# *_strided variants take explicit strides (in doubles): partial j of element
# i at ``partials[i * si + j * sj]``; lane-major is (si, sj) = (1, n),
# state-major (n, k) C-order is (si, sj) = (k, 1).

cimport cython

cdef enum:
    DUAL_INLINE_LANES = 8


@cython.final
cdef class Dual:
    cdef readonly double value      # the primal value
    cdef readonly Py_ssize_t nlanes # k, the number of partials
    cdef double *der                # the k partials: buf or a heap block
    cdef double buf[DUAL_INLINE_LANES]


# A new Dual with uninitialised partials (fill der[0:k]).
cdef Dual dual_new(double value, Py_ssize_t k)

# A new Dual from value and k partials at partials[j * stride], j < k.
cdef Dual dual_from(double value, const double *partials, Py_ssize_t k,
                    Py_ssize_t stride)

# A new 1-D object ndarray of n Duals, lane-major partials (see above).
cdef object seed_array(const double *values, const double *partials,
                       Py_ssize_t n, Py_ssize_t k)

# Fill an existing 1-D object ndarray `out` of length n with Duals from
# values / lane-major partials.  An element that is a Dual with k lanes and
# referenced by `out` alone is overwritten in place (no allocation); any
# other element is replaced by a new Dual.
cdef int seed_into(object out, const double *values, const double *partials,
                   Py_ssize_t n, Py_ssize_t k) except -1
cdef int seed_into_strided(object out, const double *values,
                           const double *partials, Py_ssize_t n,
                           Py_ssize_t k, Py_ssize_t si,
                           Py_ssize_t sj) except -1

# Values and lane-major partials of a right-hand side's result: an object
# array / list / tuple of Duals and real numbers (zero partials), or a real
# ndarray, with n elements (shape (n,), or () when n == 1).  ValueError on a
# wrong shape or a Dual with another lane count, TypeError on an element
# that is neither a Dual nor a real number.
cdef int split_into(object obj, double *values, double *partials,
                    Py_ssize_t n, Py_ssize_t k) except -1
cdef int split_into_strided(object obj, double *values, double *partials,
                            Py_ssize_t n, Py_ssize_t k, Py_ssize_t si,
                            Py_ssize_t sj) except -1
