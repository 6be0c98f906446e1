/*
 * Kernels specialized for tiny systems (internal to the C kernels).
 *
 * A Runge-Kutta step over n = 2 states spends more on loop control than on
 * arithmetic.  Compiled with n a constant, its sums live in registers and
 * its loops unroll.  DS_WITH_TINY_N instantiates a body for n = 1..4 and
 * once more for any n; the pieces it calls must be DS_TINY_INLINE so that
 * the constant reaches them.
 */
#ifndef DIFFSENS_TINY_H
#define DIFFSENS_TINY_H

#if defined(__GNUC__) || defined(__clang__)
#define DS_TINY_INLINE static inline __attribute__((always_inline))
#else
#define DS_TINY_INLINE static inline
#endif

/* Runs `body` with n_ a compile-time constant for the tiny systems (their
 * sums then live in registers), else with n_ = n.  `body` must end in
 * `return` or `break`: the cases do not fall through otherwise. */
#define DS_WITH_TINY_N(n, body)            \
    switch (n) {                           \
    case 1: { const int n_ = 1; body; }    \
    case 2: { const int n_ = 2; body; }    \
    case 3: { const int n_ = 3; body; }    \
    case 4: { const int n_ = 4; body; }    \
    default: { const int n_ = (n); body; } \
    }

#endif /* DIFFSENS_TINY_H */
