"""A hand-written C right-hand side, compiled at benchmark time, to measure
what the tape interpreter costs against compiled code.

Only the benchmarks use this.  It is built as compiled tapes are
(``diffsens._native.shared_library``), so it needs a C compiler at run time;
without one, ``compiled_pollu()`` returns None and the comparison is skipped.
"""
import ctypes

import numpy as np

from ._native import shared_library

# POLLU (Verwer 1994; Test Set for IVP Solvers), written out by hand exactly as
# the Test Set's Fortran does: 25 rates, then the 20 balances.
POLLU_C = r"""
static void pollu(const double *y, const double *k, double *dy)
{
    const double r1 = k[0] * y[0], r2 = k[1] * y[1] * y[3], r3 = k[2] * y[4] * y[1];
    const double r4 = k[3] * y[6], r5 = k[4] * y[6], r6 = k[5] * y[6] * y[5];
    const double r7 = k[6] * y[8], r8 = k[7] * y[8] * y[5], r9 = k[8] * y[10] * y[1];
    const double r10 = k[9] * y[10] * y[0], r11 = k[10] * y[12], r12 = k[11] * y[9] * y[1];
    const double r13 = k[12] * y[13], r14 = k[13] * y[0] * y[5], r15 = k[14] * y[2];
    const double r16 = k[15] * y[3], r17 = k[16] * y[3], r18 = k[17] * y[15];
    const double r19 = k[18] * y[15], r20 = k[19] * y[16] * y[5], r21 = k[20] * y[18];
    const double r22 = k[21] * y[18], r23 = k[22] * y[0] * y[3], r24 = k[23] * y[18] * y[0];
    const double r25 = k[24] * y[19];
    dy[0] = -r1 - r10 - r14 - r23 - r24 + r2 + r3 + r9 + r11 + r12 + r22 + r25;
    dy[1] = -r2 - r3 - r9 - r12 + r1 + r21;
    dy[2] = -r15 + r1 + r17 + r19 + r22;
    dy[3] = -r2 - r16 - r17 - r23 + r15;
    dy[4] = -r3 + r4 + r4 + r6 + r7 + r13 + r20;
    dy[5] = -r6 - r8 - r14 - r20 + r3 + r18 + r18;
    dy[6] = -r4 - r5 - r6 + r13;
    dy[7] = r4 + r5 + r6 + r7;
    dy[8] = -r7 - r8;
    dy[9] = -r12 + r7 + r9;
    dy[10] = -r9 - r10 + r8 + r11;
    dy[11] = r9;
    dy[12] = -r11 + r10;
    dy[13] = -r13 + r12;
    dy[14] = r14;
    dy[15] = -r18 - r19 + r16;
    dy[16] = -r20;
    dy[17] = r20;
    dy[18] = -r21 - r22 - r24 + r23 + r25;
    dy[19] = -r25 + r24;
}

void pollu_many(long count, const double *Y, const double *k, double *out)
{
    for (long i = 0; i < count; ++i)
        pollu(Y + 20 * i, k, out + 20 * i);
}
"""


def compiled_pollu():
    """``f(Y, k) -> dY`` for a batch of POLLU states, in hand-written C, or None."""
    try:
        _, library = shared_library(POLLU_C, ["-O3", "-fno-math-errno", "-shared", "-fPIC"])
    except RuntimeError:   # no compiler, or it failed
        return None
    return HandWrittenPollu(library)


class HandWrittenPollu:
    """The compiled POLLU: ``f(Y, k)`` for a batch of states, and
    ``bound(Y, k)``, a call with its arrays converted once (what a timing
    should see: converting arrays through ctypes on each call costs ~7 us,
    about as much as evaluating 1000 states)."""

    def __init__(self, dll):
        self._many = dll.pollu_many
        self._many.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._many.restype = None

    def bound(self, Y, k):
        """A function of no arguments that evaluates POLLU at every row of Y
        into one output array, which it returns."""
        Y = np.ascontiguousarray(Y, dtype=float)
        k = np.ascontiguousarray(k, dtype=float)
        if Y.ndim != 2 or Y.shape[1] != 20 or k.shape != (25,):
            raise ValueError("POLLU takes states of shape (count, 20) and 25 rate constants")
        out = np.empty_like(Y)
        many, count = self._many, Y.shape[0]
        addresses = (Y.ctypes.data, k.ctypes.data, out.ctypes.data)

        def evaluate():
            many(count, *addresses)
            return out

        evaluate.keep = (Y, k)    # the addresses stay valid while it lives
        return evaluate

    def __call__(self, Y, k):
        return self.bound(Y, k)().copy()
