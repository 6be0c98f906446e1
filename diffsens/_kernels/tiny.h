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

/* One case of the switches below: `body` with n_ the constant K. */
#define DS_N_CASE_(K, body) case K: { const int n_ = K; body; }

/* Runs `body` with n_ a compile-time constant for the tiny systems (their
 * sums then live in registers), else with n_ = n.  `body` must end in
 * `return` or `break`: the cases do not fall through otherwise. */
#define DS_WITH_TINY_N(n, body)                                              \
    switch (n) {                                                             \
    DS_N_CASE_(1, body) DS_N_CASE_(2, body) DS_N_CASE_(3, body)              \
    DS_N_CASE_(4, body)                                                      \
    default: { const int n_ = (n); body; }                                   \
    }

/* The largest n DS_WITH_SMALL_N makes a constant. */
#define DS_SMALL_N_MAX 16

/* DS_WITH_TINY_N, with n_ a constant up to DS_SMALL_N_MAX as well: for a loop nest
 * over a small state that is cheap to compile many times (the explicit RK
 * step) and often runs on a few-state system augmented with its
 * sensitivities (n (1 + k) states: 10 for 2 states and 4 parameters). */
#define DS_WITH_SMALL_N(n, body)                                             \
    switch (n) {                                                             \
    DS_N_CASE_(1, body) DS_N_CASE_(2, body) DS_N_CASE_(3, body)              \
    DS_N_CASE_(4, body) DS_N_CASE_(5, body) DS_N_CASE_(6, body)              \
    DS_N_CASE_(7, body) DS_N_CASE_(8, body) DS_N_CASE_(9, body)              \
    DS_N_CASE_(10, body) DS_N_CASE_(11, body) DS_N_CASE_(12, body)           \
    DS_N_CASE_(13, body) DS_N_CASE_(14, body) DS_N_CASE_(15, body)           \
    DS_N_CASE_(16, body)                                                     \
    default: { const int n_ = (n); body; }                                   \
    }

/* Short copies and sums over n doubles, for use inside DS_WITH_TINY_N: with
 * n a constant they become a few moves (a libc call or a loop costs more at
 * that size). */
DS_TINY_INLINE void ds_tiny_copy(int n, const double *src, double *dst)
{
    for (int i = 0; i < n; ++i)
        dst[i] = src[i];
}

DS_TINY_INLINE void ds_tiny_add(int n, const double *x, double *acc)
{
    for (int i = 0; i < n; ++i)
        acc[i] += x[i];
}

#endif /* DIFFSENS_TINY_H */
