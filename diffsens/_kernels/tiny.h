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

/* DS_WITH_TINY_N, with n_ a constant up to 16 as well: for a loop nest
 * over a small state that is cheap to compile many times (the explicit RK
 * step) and often runs on a few-state system augmented with its
 * sensitivities (n (1 + k) states: 10 for 2 states and 4 parameters). */
#define DS_WITH_SMALL_N(n, body)             \
    switch (n) {                             \
    case 1: { const int n_ = 1; body; }      \
    case 2: { const int n_ = 2; body; }      \
    case 3: { const int n_ = 3; body; }      \
    case 4: { const int n_ = 4; body; }      \
    case 5: { const int n_ = 5; body; }      \
    case 6: { const int n_ = 6; body; }      \
    case 7: { const int n_ = 7; body; }      \
    case 8: { const int n_ = 8; body; }      \
    case 9: { const int n_ = 9; body; }      \
    case 10: { const int n_ = 10; body; }    \
    case 11: { const int n_ = 11; body; }    \
    case 12: { const int n_ = 12; body; }    \
    case 13: { const int n_ = 13; body; }    \
    case 14: { const int n_ = 14; body; }    \
    case 15: { const int n_ = 15; body; }    \
    case 16: { const int n_ = 16; body; }    \
    default: { const int n_ = (n); body; }   \
    }

#endif /* DIFFSENS_TINY_H */
