/*
 * Short vector loops (internal to the C kernels).
 *
 * The kernels' inner loops are short (a tape op's k derivative lanes, the
 * n components of a small system) and run over arrays the compiler cannot
 * prove apart: a stage sum writes one stage buffer while reading the others,
 * an op writes its lanes while reading its operands'.  Compilers then leave
 * the loops scalar, or add run-time overlap checks that cost more than a
 * ten-element loop saves.  DS_FOR_LANES states what the kernels know (the
 * output never overlaps an input other than itself, element for element)
 * with two-wide vectors where GCC/Clang vector extensions exist, and a
 * scalar loop elsewhere.
 *
 *   #define SCALED(AT) (c * AT(x) + AT(out))
 *   DS_FOR_LANES(k, out, SCALED);     // out[j] = c * x[j] + out[j], j < k
 *
 * EXPR is a macro of one argument, AT, where AT(x) stands for the element(s)
 * of x at hand; scalars mix freely with AT terms.  Each element gets the
 * scalar arithmetic in the written order, so results are bitwise those of
 * the plain loop.
 */
#ifndef DIFFSENS_LANES_H
#define DIFFSENS_LANES_H

#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
typedef double ds_pair __attribute__((vector_size(16)));

static inline __attribute__((always_inline)) ds_pair ds_pair_load(const double *x)
{
    ds_pair v;
    memcpy(&v, x, sizeof v);   /* an unaligned load */
    return v;
}

#define DS_PAIR_AT_(x) ds_pair_load((x) + j_)
#define DS_STORE_PAIRS_(k, out, EXPR)                          \
    for (; j_ + 2 <= (k); j_ += 2) {                           \
        const ds_pair r_ = EXPR(DS_PAIR_AT_);                  \
        memcpy((out) + j_, &r_, sizeof r_);                    \
    }
#else
#define DS_STORE_PAIRS_(k, out, EXPR)
#endif

#define DS_ONE_AT_(x) ((x)[j_])
#define DS_FOR_LANES(k, out, EXPR)                             \
    do {                                                       \
        int j_ = 0;                                            \
        DS_STORE_PAIRS_(k, out, EXPR)                          \
        for (; j_ < (k); ++j_)                                 \
            (out)[j_] = EXPR(DS_ONE_AT_);                      \
    } while (0)

#endif /* DIFFSENS_LANES_H */
