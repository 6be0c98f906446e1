/*
 * The tape interpreter: a traced right-hand side evaluated in C.
 *
 * The tracer records a static SSA program of scalar ops (diffsens/_trace.py);
 * the scheduler (diffsens/_schedule.py) fuses products and unit-weight sums
 * and groups independent ops of the same kind into blocks, the format below.
 * The interpreter runs the blocks' ops one by one (see `ops`).
 *
 * Slot layout:
 *
 *   [0]                      t
 *   [1, 1 + n)               y
 *   [1 + n, 1 + n + m)       p
 *   [1 + n + m, +n_const)    constants (consts[])
 *   then each block's results, contiguous, blocks in order
 *
 * Block b is blocks[3 b .. 3 b + 2] = {code, count, arg}: `count` ops of one
 * kind whose operand slots are read from args[] operand-major:
 *   unary      a[count]                      at args[arg]
 *   binary     a[count], b[count]
 *   SELECT     a[count], b[count], c[count]  (a != 0 ? b : c)
 *   POWI       a[count], exponent[count]     (integer exponents)
 *   LINCOMB    off[count + 1]: op i = sum of lc_weight[j] * slot[lc_slot[j]]
 *              for j in [off[i], off[i + 1])
 *   SUM        off[count + 1]: op i's list lc_slot[off[i] .. off[i + 1]) is
 *              its plus slots, DS_SUM_END, its minus slots, DS_SUM_END;
 *              op i = (sum of the plus slots) - (sum of the minus slots),
 *              each summed left to right
 *   PROD       off[count + 1]: op i = product of slot[lc_slot[j]] over
 *              [off[i], off[i + 1]), left to right (at most DS_PROD_MAX)
 * SUM and PROD are made by the scheduler (a LINCOMB with unit weights, a
 * chain of products); the tracer records neither.
 * Every operand comes from an earlier block or an input, never from its own
 * block.  outputs[q] is the slot of dy[q].
 *
 * All three evaluations run the program op by op, from `ops` (n_ops rows
 * of {code, a, b, c}, made by ds_tape_linearize from the blocks): for a
 * small tape, whose blocks hold an op or two, entering a block costs more
 * than its loop saves.  Rows read like a block's operands: a, b, c slots
 * (POWI: b the exponent); LINCOMB and PROD: terms [b, c) of lc_slot; SUM:
 * its list from lc_slot[a] (b, c unused); PROD3 (a PROD of three factors, the
 * k y_a y_b of mass action): its factors a, b, c, without lc_slot.
 *
 * Three evaluations share the program:
 *   value            dy = f(t, y, p)
 *   k dual lanes     dy and dyd = J_y yd + J_p pd, all lanes in one pass
 *   reverse sweep    wy = w^T J_y, wp = w^T J_p
 * None allocates: the caller passes scratch of ds_tape_*_scratch() doubles.
 */
#ifndef DIFFSENS_TAPE_H
#define DIFFSENS_TAPE_H

#include <stddef.h>
#include <stdint.h>

#include "rhs.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ds_op_code {
    DS_OP_ADD = 0,      /* a + b */
    DS_OP_SUB = 1,      /* a - b */
    DS_OP_MUL = 2,      /* a * b */
    DS_OP_DIV = 3,      /* a / b */
    DS_OP_NEG = 4,      /* -a */
    DS_OP_POW = 5,      /* a ** b (both slots) */
    DS_OP_POWI = 6,     /* a ** e, e an integer exponent */
    DS_OP_ABS = 7,
    DS_OP_EXP = 8,
    DS_OP_LOG = 9,
    DS_OP_LOG1P = 10,
    DS_OP_EXPM1 = 11,
    DS_OP_SQRT = 12,
    DS_OP_SIN = 13,
    DS_OP_COS = 14,
    DS_OP_TAN = 15,
    DS_OP_TANH = 16,
    DS_OP_SINH = 17,
    DS_OP_COSH = 18,
    DS_OP_ARCTAN = 19,
    DS_OP_ARCSIN = 20,
    DS_OP_ARCCOS = 21,
    DS_OP_LT = 22,      /* comparisons give 1.0 or 0.0, derivative 0 */
    DS_OP_LE = 23,
    DS_OP_GT = 24,
    DS_OP_GE = 25,
    DS_OP_EQ = 26,
    DS_OP_NE = 27,
    DS_OP_SELECT = 28,  /* a != 0 ? b : c  (np.where) */
    DS_OP_MAX = 29,     /* a >= b ? a : b  (np.maximum; NaN propagates) */
    DS_OP_MIN = 30,     /* a <= b ? a : b */
    DS_OP_LINCOMB = 31, /* sum_j lc_weight[j] * slot[lc_slot[j]] */
    DS_OP_SQUARE = 32,  /* a * a */
    DS_OP_SUM = 33,     /* sum of some slots minus sum of others */
    DS_OP_PROD = 34,    /* product of slots */
    DS_OP_PROD3 = 35,   /* a * b * c: ops rows only (a PROD of three factors) */
    DS_OP_COUNT = 36
};

#define DS_PROD_MAX 8       /* factors in one PROD op */
#define DS_SUM_END (-1)     /* ends each of a SUM's two lists of slots */

/* One value pass: dy = f(t, y, p) with every slot into v; p NULL: v holds
 * it already (the constants it always does). */
struct ds_tape;
typedef int (*ds_tape_value_fn)(const struct ds_tape *tape, double *v, double t,
                                const double *y, const double *p, double *dy);

typedef struct ds_tape {
    int n, m;               /* states, parameters */
    int n_const;
    int n_ops;              /* scalar op results (all blocks) */
    int n_blocks;
    const double *consts;   /* n_const */
    const int32_t *blocks;  /* 3 * n_blocks */
    const int32_t *args;
    const int32_t *lc_slot;   /* LINCOMB / SUM / PROD operand slots */
    const double *lc_weight;  /* LINCOMB weights (indexed like lc_slot) */
    const int32_t *outputs;   /* n */
    const int32_t *ops;       /* 4 * n_ops: the program op by op (see above),
                               * between two rows with code DS_OP_COUNT (ops[-4]
                               * and ops[4 n_ops]: the reverse sweep's end and
                               * the forward passes') */
    /* NULL, or this program's value pass compiled to machine code
     * (diffsens/_native.py), run in place of the interpreter's: native_value
     * fills every slot (the reverse sweep reads them), native_f only dy
     * (and p's slots, which later calls may reuse) */
    ds_tape_value_fn native_value;
    ds_tape_value_fn native_f;
} ds_tape;

/* Fills rows (4 * (n_ops + 2)) from the blocks: an end row, the program,
 * an end row; tape->ops is then rows + 4.  All three passes run it. */
void ds_tape_linearize(const ds_tape *tape, int32_t *rows);

int ds_tape_slot_count(const ds_tape *tape);

/* Doubles of scratch each evaluation needs. */
size_t ds_tape_value_scratch(const ds_tape *tape);
size_t ds_tape_jvp_scratch(const ds_tape *tape, int k);
size_t ds_tape_vjp_scratch(const ds_tape *tape);
size_t ds_tape_jvp2_scratch(const ds_tape *tape, int ka, int kb);

/* dy = f(t, y, p). */
void ds_tape_eval(const ds_tape *tape, double *scratch, double t,
                  const double *y, const double *p, double *dy);

/* Row i of out (k, n) = f(t[i], Y[i], p); constants loaded once. */
void ds_tape_eval_many(const ds_tape *tape, double *scratch, long k,
                       const double *t, const double *Y, const double *p,
                       double *out);

/* k lanes, lane-major as in rhs.h: yd[j * n + i], pd[j * m + i],
 * dyd[j * n + i].  yd or pd may be NULL (zero seeds). */
void ds_tape_jvp(const ds_tape *tape, double *scratch, double t,
                 const double *y, const double *p, int k, const double *yd,
                 const double *pd, double *dy, double *dyd);

/* Second order (ds_jvp2_fn in rhs.h): dy = f, its lanes along ka directions
 * ya in y and kb directions (yb, pb) in (y, p), and their mixed second
 * derivatives fab.  ya, yb, pb may be NULL (zero seeds). */
void ds_tape_jvp2(const ds_tape *tape, double *scratch, double t, const double *y,
                  const double *p, int ka, const double *ya, int kb, const double *yb,
                  const double *pb, double *dy, double *fa, double *fb, double *fab);

/* dy = f, wy = w^T J_y (n), wp = w^T J_p (m; may be NULL). */
void ds_tape_vjp(const ds_tape *tape, double *scratch, double t,
                 const double *y, const double *p, const double *w,
                 double *dy, double *wy, double *wp);

/* The tape behind the ds_rhs vtable.  Each solve owns one context and its
 * scratch (ds_tape_rhs_scratch() doubles), so solves may run concurrently.
 * The parameters (and their jvp seeds) are copied into the scratch when
 * their pointers change: the contents behind one pointer must stay fixed
 * while the context is used (true of a solve, which owns those arrays). */
typedef struct ds_tape_ctx {
    const ds_tape *tape;
    double *scratch;
    int k_max;              /* widest jvp the scratch was sized for */
    int k2_max;             /* widest B of a jvp2 with n A directions (0: none) */
    const double *p_loaded; /* the p whose values the scratch holds */
    const double *pd_loaded;/* the jvp seeds of p the scratch holds */
    int k_loaded;           /* ... for this many lanes */
    ds_tape_value_fn value; /* the value pass: the tape's compiled one, or
                             * the interpreter's for its n */
    ds_tape_value_fn f;     /* the same for dy alone (may skip the slots) */
} ds_tape_ctx;

size_t ds_tape_rhs_scratch(const ds_tape *tape, int k_max, int k2_max);
void ds_tape_rhs_init(ds_rhs *rhs, ds_tape_ctx *ctx, const ds_tape *tape,
                      double *scratch, int k_max, int k2_max);

#ifdef __cplusplus
}
#endif

#endif /* DIFFSENS_TAPE_H */
