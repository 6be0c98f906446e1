#include <math.h>
#include <string.h>

#include "lanes.h"
#include "tape.h"
#include "tape_ops.h"
#include "tiny.h"

/* The interpreter's inner pieces must inline into their loops. */
#if defined(__GNUC__) || defined(__clang__)
#define DS_INLINE static inline __attribute__((always_inline))
#else
#define DS_INLINE static inline
#endif

/* (inline here: the exported one is called through the PLT) */
static inline int slot_count(const ds_tape *tape)
{
    return 1 + tape->n + tape->m + tape->n_const + tape->n_ops;
}

int ds_tape_slot_count(const ds_tape *tape)
{
    return slot_count(tape);
}

static int first_op_slot(const ds_tape *tape)
{
    return 1 + tape->n + tape->m + tape->n_const;
}

size_t ds_tape_value_scratch(const ds_tape *tape)
{
    return (size_t)slot_count(tape);
}

size_t ds_tape_jvp_scratch(const ds_tape *tape, int k)
{
    return (size_t)slot_count(tape) * (size_t)(k + 1);
}

size_t ds_tape_vjp_scratch(const ds_tape *tape)
{
    return 2 * (size_t)slot_count(tape);
}

/* How many operand arrays a block of this code has (LINCOMB: see tape.h). */
static inline int arity(int code)
{
    switch (code) {
    case DS_OP_NEG: case DS_OP_ABS: case DS_OP_EXP:
    case DS_OP_LOG: case DS_OP_LOG1P: case DS_OP_EXPM1: case DS_OP_SQRT:
    case DS_OP_SIN: case DS_OP_COS: case DS_OP_TAN: case DS_OP_TANH:
    case DS_OP_SINH: case DS_OP_COSH: case DS_OP_ARCTAN: case DS_OP_ARCSIN:
    case DS_OP_ARCCOS: case DS_OP_SQUARE:
        return 1;
    case DS_OP_SELECT:
        return 3;
    default:   /* binary ops, and POWI (operand, exponent) */
        return 2;
    }
}

/* The reverse sweep's seeds on the output slots (an output may repeat a
 * slot, so they add). */
DS_TINY_INLINE void seed_outputs(int n, const int32_t *outputs, const double *w,
                                 double *adj)
{
    for (int q = 0; q < n; ++q)
        adj[outputs[q]] += w[q];
}

/* The constants into their slots (a solve's scratch keeps them: loaded
 * once by ds_tape_rhs_init). */
static void load_consts(const ds_tape *tape, double *v)
{
    memcpy(v + 1 + tape->n + tape->m, tape->consts,
           (size_t)tape->n_const * sizeof(double));
}

/* One block's operands, decoded. */
typedef struct block {
    int code, count;
    const int32_t *a, *b, *c;   /* operand slots (b: POWI exponents) */
} block;

DS_INLINE block decode(const ds_tape *tape, int index)
{
    const int32_t *bk = tape->blocks + 3 * (size_t)index;
    block B;
    B.code = bk[0];
    B.count = bk[1];
    B.a = tape->args + bk[2];
    B.b = B.a + B.count;
    B.c = B.b + B.count;
    return B;
}


void ds_tape_linearize(const ds_tape *tape, int32_t *rows)
{
    int32_t *ops = rows;
    ops[0] = DS_OP_COUNT;   /* the reverse sweep's end */
    ops[1] = ops[2] = ops[3] = 0;
    ops += 4;
    for (int bi = 0; bi < tape->n_blocks; ++bi) {
        const block B = decode(tape, bi);
        for (int i = 0; i < B.count; ++i, ops += 4) {
            ops[0] = B.code;
            ops[1] = ops[2] = ops[3] = 0;   /* slot 0 (t): a harmless read */
            switch (B.code) {
            case DS_OP_PROD:
                if (B.a[i + 1] - B.a[i] == 3) {
                    ops[0] = DS_OP_PROD3;
                    for (int j = 0; j < 3; ++j)
                        ops[1 + j] = tape->lc_slot[B.a[i] + j];
                    break;
                }
                /* fall through */
            case DS_OP_LINCOMB:
                ops[2] = B.a[i];
                ops[3] = B.a[i + 1];
                break;
            case DS_OP_SUM:
                ops[1] = B.a[i];
                break;
            case DS_OP_SELECT:
                ops[3] = B.c[i];
                /* fall through */
            default:
                ops[1] = B.a[i];
                if (B.code == DS_OP_POWI || arity(B.code) > 1)
                    ops[2] = B.b[i];
                break;
            }
        }
    }
    ops[0] = DS_OP_COUNT;   /* the end */
    ops[1] = ops[2] = ops[3] = 0;
}

/* Every pass runs the ops rows one by one (tape.h); each op computes exactly
 * what its block's loop computes.
 *
 * With GCC or Clang each op jumps straight to the next op's code (threaded
 * dispatch through a label table): a switch in a loop pays a bounds check
 * and a shared indirect jump per op, which for a small tape is much of the
 * cost.  Not inlined, so that the label table has one home. */
#if defined(__GNUC__) || defined(__clang__)
#define DS_THREADED 1
#else
#define DS_THREADED 0
#endif

/* The label table of a threaded loop (all three passes): the common ops have
 * handlers op_<NAME>, the rest share op_other, the end row jumps to done. */
#define DS_OP_LABELS {                                                              \
        [DS_OP_ADD] = &&op_ADD, [DS_OP_SUB] = &&op_SUB, [DS_OP_MUL] = &&op_MUL,       \
        [DS_OP_DIV] = &&op_DIV, [DS_OP_NEG] = &&op_NEG, [DS_OP_POW] = &&op_other,     \
        [DS_OP_POWI] = &&op_POWI, [DS_OP_ABS] = &&op_other, [DS_OP_EXP] = &&op_other, \
        [DS_OP_LOG] = &&op_other, [DS_OP_LOG1P] = &&op_other,                        \
        [DS_OP_EXPM1] = &&op_other, [DS_OP_SQRT] = &&op_other,                       \
        [DS_OP_SIN] = &&op_other, [DS_OP_COS] = &&op_other, [DS_OP_TAN] = &&op_other, \
        [DS_OP_TANH] = &&op_other, [DS_OP_SINH] = &&op_other,                        \
        [DS_OP_COSH] = &&op_other, [DS_OP_ARCTAN] = &&op_other,                      \
        [DS_OP_ARCSIN] = &&op_other, [DS_OP_ARCCOS] = &&op_other,                    \
        [DS_OP_LT] = &&op_other, [DS_OP_LE] = &&op_other, [DS_OP_GT] = &&op_other,    \
        [DS_OP_GE] = &&op_other, [DS_OP_EQ] = &&op_other, [DS_OP_NE] = &&op_other,    \
        [DS_OP_SELECT] = &&op_other, [DS_OP_MAX] = &&op_other,                       \
        [DS_OP_MIN] = &&op_other, [DS_OP_LINCOMB] = &&op_LINCOMB,                    \
        [DS_OP_SQUARE] = &&op_SQUARE, [DS_OP_SUM] = &&op_SUM,                        \
        [DS_OP_PROD] = &&op_PROD, [DS_OP_PROD3] = &&op_PROD3,                        \
        [DS_OP_COUNT] = &&done,                                                      \
    }

/* The frame of one pass's loop over the ops rows, shared by the three passes:
 *   DS_OPS_BEGIN(step)  enter at row `op`; `step` advances op and the pass's
 *                       own pointers by one row (its first operand)
 *   DS_OP_CASE(NAME)    the handler of one op code
 *   DS_RUN_OF(NAME) body DS_END_RUN(NAME, step)
 *                       a handler that runs `body` for this row and each
 *                       next row of the same code, then dispatches: the
 *                       scheduler groups ops of a kind, so a block of rates
 *                       or sums costs one jump, not one per op
 *   DS_OTHER_OP         the handler of the codes without their own
 *   DS_OP_NEXT(step)    ends a handler: step, then the next row's handler
 *   DS_OPS_END          after the last handler (the end row lands here)
 * Threaded: a label table and a jump per row; otherwise a switch in a loop. */
#if DS_THREADED
#define DS_OPS_BEGIN(...)                                                    \
    static const void *const next_[DS_OP_COUNT + 1] = DS_OP_LABELS;         \
    goto *next_[op[0]];
#define DS_OP_CASE(name) op_##name:
#define DS_OTHER_OP op_other:
#define DS_OP_NEXT(...) __VA_ARGS__; goto *next_[op[0]]
#define DS_RUN_OF(name) do {
#define DS_END_RUN(name, ...)                                                \
    __VA_ARGS__; } while (op[0] == DS_OP_##name);                            \
    goto *next_[op[0]]
#define DS_OPS_END done:;
#else
#define DS_OPS_BEGIN(...) for (; op[0] != DS_OP_COUNT; __VA_ARGS__) switch (op[0]) {
#define DS_OP_CASE(name) case DS_OP_##name:
#define DS_OTHER_OP default:
#define DS_OP_NEXT(...) break
#define DS_RUN_OF(name)
#define DS_END_RUN(name, ...) break
#define DS_OPS_END }
#endif

/* The value pass (tape_value_ops.inc), once per tiny state count and once
 * for any; value_pass picks one, or the tape's compiled pass. */
#define VALUE_FN value_pass_1
#define VALUE_N 1
#include "tape_value_ops.inc"
#define VALUE_FN value_pass_2
#define VALUE_N 2
#include "tape_value_ops.inc"
#define VALUE_FN value_pass_3
#define VALUE_N 3
#include "tape_value_ops.inc"
#define VALUE_FN value_pass_4
#define VALUE_N 4
#include "tape_value_ops.inc"
#define VALUE_FN value_pass_any
#define VALUE_N tape->n
#include "tape_value_ops.inc"

static ds_tape_value_fn value_pass(const ds_tape *tape)
{
    if (tape->native_value != NULL)
        return tape->native_value;
    switch (tape->n) {
    case 1: return value_pass_1;
    case 2: return value_pass_2;
    case 3: return value_pass_3;
    case 4: return value_pass_4;
    default: return value_pass_any;
    }
}

/* A value pass for dy alone: the compiled one that skips the slots. */
static ds_tape_value_fn f_pass(const ds_tape *tape)
{
    return tape->native_f != NULL ? tape->native_f : value_pass(tape);
}

void ds_tape_eval(const ds_tape *tape, double *scratch, double t,
                  const double *y, const double *p, double *dy)
{
    load_consts(tape, scratch);
    f_pass(tape)(tape, scratch, t, y, p, dy);
}

void ds_tape_eval_many(const ds_tape *tape, double *scratch, long k,
                       const double *t, const double *Y, const double *p,
                       double *out)
{
    const int n = tape->n;
    const ds_tape_value_fn value = f_pass(tape);
    load_consts(tape, scratch);
    for (long i = 0; i < k; ++i)   /* p loaded once */
        value(tape, scratch, t[i], Y + (size_t)i * n, i == 0 ? p : NULL,
              out + (size_t)i * n);
}

/* Whether an ops row's b is an operand slot (not unused, not an exponent). */
static inline int reads_b_slot(int code)
{
    return code == DS_OP_SELECT || (code != DS_OP_POWI && arity(code) > 1);
}

/* An ops row's value and partials through op_eval (the ops without their
 * own loops in the jvp and the reverse sweep). */
static inline local row_partials(const int32_t *op, const double *v)
{
    const int code = op[0];
    return op_eval(code, v[op[1]], reads_b_slot(code) ? v[op[2]] : 0.0,
                   code == DS_OP_SELECT ? v[op[3]] : 0.0,
                   code == DS_OP_POWI ? op[2] : 0, 1);
}

/* The jvp's inputs: t and y, the lanes of t (zero) and of y (the seeds,
 * lane-major yd[j n + i], transposed into slot-major lanes), and its
 * outputs back out lane-major.  Compiled with n a constant for tiny systems
 * (tiny.h), where loop control costs more than the moves (measured). */
DS_TINY_INLINE void jvp_inputs(int n, int k, double t, const double *y,
                               const double *yd, double *v, double *d)
{
    v[0] = t;
    for (int j = 0; j < k; ++j)
        d[j] = 0.0;
    for (int i = 0; i < n; ++i)
        v[1 + i] = y[i];
    if (yd == NULL) {
        memset(d + k, 0, (size_t)n * k * sizeof(double));
        return;
    }
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < k; ++j)
            d[(size_t)(1 + i) * k + j] = yd[(size_t)j * n + i];
}

DS_TINY_INLINE void jvp_outputs(int n, int k, const int32_t *outputs, const double *v,
                                const double *d, double *dy, double *dyd)
{
    for (int q = 0; q < n; ++q) {
        const double *src = d + (size_t)outputs[q] * k;
        dy[q] = v[outputs[q]];
        for (int j = 0; j < k; ++j)
            dyd[(size_t)j * n + q] = src[j];
    }
}

/* The jvp (inputs, ops, outputs), compiled once per small lane count (a
 * known k lets the compiler unroll and vectorize the lane arithmetic) and
 * once for any k: tape_jvp_ops.inc.  (An include, not an inline function:
 * GCC does not copy a function that keeps a table of its labels.) */
#define JVP_OPS jvp_ops_1
#define JVP_K 1
#include "tape_jvp_ops.inc"
#define JVP_OPS jvp_ops_2
#define JVP_K 2
#include "tape_jvp_ops.inc"
#define JVP_OPS jvp_ops_3
#define JVP_K 3
#include "tape_jvp_ops.inc"
#define JVP_OPS jvp_ops_4
#define JVP_K 4
#include "tape_jvp_ops.inc"
#define JVP_OPS jvp_ops_5
#define JVP_K 5
#include "tape_jvp_ops.inc"
#define JVP_OPS jvp_ops_6
#define JVP_K 6
#include "tape_jvp_ops.inc"
#define JVP_OPS jvp_ops_8
#define JVP_K 8
#include "tape_jvp_ops.inc"
#define JVP_OPS jvp_ops_any
#define JVP_K k_arg
#include "tape_jvp_ops.inc"

DS_INLINE void jvp(const ds_tape *tape, double *scratch, double t, const double *y,
                   const double *p, int k, const double *yd, const double *pd,
                   double *dy, double *dyd, int inputs_ready)
{
#define JVP_WITH(K) jvp_ops_##K(tape, scratch, t, y, p, K, yd, pd, dy, dyd, inputs_ready)
    switch (k) {
    case 1: JVP_WITH(1); break;
    case 2: JVP_WITH(2); break;
    case 3: JVP_WITH(3); break;
    case 4: JVP_WITH(4); break;
    case 5: JVP_WITH(5); break;
    case 6: JVP_WITH(6); break;
    case 8: JVP_WITH(8); break;
    default:
        jvp_ops_any(tape, scratch, t, y, p, k, yd, pd, dy, dyd, inputs_ready);
        break;
    }
#undef JVP_WITH
}

void ds_tape_jvp(const ds_tape *tape, double *scratch, double t,
                 const double *y, const double *p, int k, const double *yd,
                 const double *pd, double *dy, double *dyd)
{
    jvp(tape, scratch, t, y, p, k, yd, pd, dy, dyd, 0);
}

/* The adjoints of every slot, op by op from the last to the first (ops[-4]
 * ends them), with the forward passes' threaded dispatch: each op adds its
 * adjoint times its partials into its operands' adjoints. */
static void reverse_ops(const ds_tape *tape, const double *v, double *adj)
{
    const int32_t *ls = tape->lc_slot;
    const int32_t *op = tape->ops + 4 * ((ptrdiff_t)tape->n_ops - 1);
    const double *g = adj + first_op_slot(tape) + tape->n_ops - 1;  /* op's adjoint */
    double gv;   /* *g, read once: the op's operands are other slots */
#define OP(name) DS_OP_CASE(name) gv = *g;
#define NEXT DS_OP_NEXT(op -= 4, --g)
#define RUN_OF(name) DS_RUN_OF(name) gv = *g;
#define END_RUN(name) DS_END_RUN(name, op -= 4, --g)
    DS_OPS_BEGIN(op -= 4, --g)
    OP(ADD) RUN_OF(ADD) {
        adj[op[1]] += gv;
        adj[op[2]] += gv;
    } END_RUN(ADD);
    OP(SUB) RUN_OF(SUB) {
        adj[op[1]] += gv;
        adj[op[2]] -= gv;
    } END_RUN(SUB);
    OP(MUL) RUN_OF(MUL) {
        const double va = v[op[1]], vb = v[op[2]];
        if (gv != 0.0) {   /* no 0 * inf from an unused infinite operand */
            adj[op[1]] += vb * gv;
            adj[op[2]] += va * gv;
        }
    } END_RUN(MUL);
    OP(NEG) adj[op[1]] -= gv; NEXT;
    OP(SQUARE) {
        if (gv != 0.0)
            adj[op[1]] += 2.0 * v[op[1]] * gv;
    } NEXT;
    OP(LINCOMB) {
        for (int j = op[2]; j < op[3]; ++j)
            adj[ls[j]] += tape->lc_weight[j] * gv;
    } NEXT;
    OP(SUM) RUN_OF(SUM) {
        const int32_t *term = ls + op[1];
        for (int s = *term; s != DS_SUM_END; s = *++term)
            adj[s] += gv;
        for (int s = *++term; s != DS_SUM_END; s = *++term)
            adj[s] -= gv;
    } END_RUN(SUM);
    OP(PROD3) RUN_OF(PROD3) {
        if (gv != 0.0) {
            const double x0 = v[op[1]], x1 = v[op[2]], x2 = v[op[3]];
            adj[op[1]] += x1 * x2 * gv;
            adj[op[2]] += x0 * x2 * gv;
            adj[op[3]] += x0 * x1 * gv;
        }
    } END_RUN(PROD3);
    OP(PROD) {
        const int32_t *f = ls + op[2];
        const int nf = op[3] - op[2];
        if (gv != 0.0) {
            /* d/dx_k = the product of the others, without dividing */
            double suffix[DS_PROD_MAX + 1];
            suffix[nf] = 1.0;
            for (int q = nf - 1; q >= 0; --q)
                suffix[q] = suffix[q + 1] * v[f[q]];
            double prefix = gv;
            for (int q = 0; q < nf; ++q) {
                adj[f[q]] += prefix * suffix[q + 1];
                prefix *= v[f[q]];
            }
        }
    } NEXT;
    /* the rest through op_eval's partials */
    OP(DIV) OP(POWI) DS_OTHER_OP gv = *g;
    if (gv != 0.0) {
        const int code = op[0];
        const local r = row_partials(op, v);
        if (r.ca != 0.0)
            adj[op[1]] += r.ca * gv;
        if (code == DS_OP_SELECT)
            adj[r.cb != 0.0 ? op[2] : op[3]] += gv;
        else if (reads_b_slot(code) && r.cb != 0.0)
            adj[op[2]] += r.cb * gv;
    }
    NEXT;
    DS_OPS_END
#undef OP
#undef NEXT
#undef RUN_OF
#undef END_RUN
}

/* The reverse sweep after `value` (the value pass for this n), which loads
 * p unless it is NULL (a solve's scratch keeps it, as for the value). */
static void vjp_sweep(const ds_tape *tape, ds_tape_value_fn value, double *scratch,
                      double t, const double *y, const double *p, const double *w,
                      double *dy, double *wy, double *wp)
{
    const int n = tape->n, m = tape->m, slots = slot_count(tape);
    double *v = scratch, *adj = scratch + slots;
    value(tape, v, t, y, p, dy);
    memset(adj, 0, (size_t)slots * sizeof(double));
    DS_WITH_TINY_N(n, seed_outputs(n_, tape->outputs, w, adj); break);

    reverse_ops(tape, v, adj);
    DS_WITH_TINY_N(n, ds_tiny_copy(n_, adj + 1, wy); break);
    if (wp && m)
        DS_WITH_TINY_N(m, ds_tiny_copy(n_, adj + 1 + n, wp); break);
}

void ds_tape_vjp(const ds_tape *tape, double *scratch, double t,
                 const double *y, const double *p, const double *w,
                 double *dy, double *wy, double *wp)
{
    load_consts(tape, scratch);
    vjp_sweep(tape, value_pass(tape), scratch, t, y, p, w, dy, wy, wp);
}

/* ---- second order: two sets of directions and their mixed derivatives ----
 *
 * Each slot carries its value and a record of W = ka + kb + ka kb numbers:
 * its derivatives along the ka directions A, along the kb directions B, and
 * the mixed second derivatives d^2/(dA_a dB_b) (a-major).  An op
 * x = g(x_1, ..., x_r) gives
 *     x_A  = sum_i g_i x_i,A          x_B = sum_i g_i x_i,B
 *     x_AB = sum_i g_i x_i,AB + sum_i sum_l g_il x_i,A x_l,B
 * so the first sum is one axpy over the whole record per operand, and the
 * second a rank-one update of the AB block per nonzero second partial g_il.
 * Runs once per Rosenbrock step of a sensitivity solve (the coupling block
 * of the augmented Jacobian, exactly), so it is written for clarity: a
 * switch over the ops rows, no runs. */

/* An op's second partials with respect to its operands a and b (the unary
 * and binary ops of op_eval; r: op_eval's value and first partials). */
typedef struct second {
    double aa, ab, bb;
} second;

static inline second op_second(int code, double a, double b, int ci, local r)
{
    second s = {0.0, 0.0, 0.0};
    switch (code) {
    case DS_OP_MUL: s.ab = 1.0; break;
    case DS_OP_EXP: case DS_OP_SINH: case DS_OP_COSH: s.aa = r.v; break;
    case DS_OP_DIV: s.ab = -1.0 / (b * b); s.bb = 2.0 * r.v / (b * b); break;
    case DS_OP_POW:   /* the first partials' conventions: none in b for a <= 0 */
        s.aa = b == 0.0 || b == 1.0 ? 0.0 : b * (b - 1.0) * pow(a, b - 2.0);
        if (a > 0.0) {
            const double la = log(a);
            s.ab = pow(a, b - 1.0) * (1.0 + b * la);
            s.bb = r.v * la * la;
        }
        break;
    case DS_OP_POWI:
        s.aa = ci == 0 || ci == 1 ? 0.0 : (double)ci * (ci - 1) * powi(a, ci - 2);
        break;
    case DS_OP_EXPM1: s.aa = r.ca; break;
    case DS_OP_LOG: s.aa = -1.0 / (a * a); break;
    case DS_OP_LOG1P: s.aa = -r.ca * r.ca; break;
    case DS_OP_SQRT: s.aa = -0.5 * r.ca / a; break;
    case DS_OP_SIN: case DS_OP_COS: s.aa = -r.v; break;
    case DS_OP_TAN: s.aa = 2.0 * r.v * r.ca; break;
    case DS_OP_TANH: s.aa = -2.0 * r.v * r.ca; break;
    case DS_OP_ARCTAN: s.aa = -2.0 * a * r.ca * r.ca; break;
    case DS_OP_ARCSIN: case DS_OP_ARCCOS: s.aa = a * r.ca * r.ca * r.ca; break;
    case DS_OP_SQUARE: s.aa = 2.0; break;
    default: break;   /* linear, piecewise linear, or constant */
    }
    return s;
}

/* out = ca xa + cb xb over a whole record (xb NULL: the first term only).
 * A zero partial adds nothing, and an infinite one nothing along zero lanes
 * (the jvp's conventions). */
DS_INLINE void record_lin(int W, double ca, const double *xa, double cb,
                          const double *xb, double *out)
{
    if (xb == NULL)
        cb = 0.0;
    if (isfinite(ca) && isfinite(cb)) {
        if (cb == 0.0)
            for (int w = 0; w < W; ++w)
                out[w] = ca == 0.0 ? 0.0 : ca * xa[w];
        else if (ca == 0.0)
            for (int w = 0; w < W; ++w)
                out[w] = cb * xb[w];
        else
            for (int w = 0; w < W; ++w)
                out[w] = ca * xa[w] + cb * xb[w];
        return;
    }
    for (int w = 0; w < W; ++w) {
        double sum = 0.0;
        if (ca != 0.0 && xa[w] != 0.0)
            sum += ca * xa[w];
        if (cb != 0.0 && xb[w] != 0.0)
            sum += cb * xb[w];
        out[w] = sum;
    }
}

/* out += c x over a whole record, with record_lin's conventions. */
DS_INLINE void record_axpy(int W, double c, const double *x, double *out)
{
    if (c == 0.0)
        return;
    if (isfinite(c)) {
        for (int w = 0; w < W; ++w)
            out[w] += c * x[w];
    } else {
        for (int w = 0; w < W; ++w)
            if (x[w] != 0.0)
                out[w] += c * x[w];
    }
}

/* out_AB += g (xi_A xl_B^T + xl_A xi_B^T) (ka x kb, a-major): both terms
 * of a second partial g_il = g_li of two operands i != l.  For i = l the
 * one term g_ii xi_A xi_B^T is this with xi = xl and g = g_ii / 2. */
DS_INLINE void record_cross(int ka, int kb, double g, const double *xi,
                            const double *xl, double *out)
{
    if (g == 0.0)
        return;
    const double *ib = xi + ka, *lb = xl + ka;
    double *ab = out + ka + kb;
    if (isfinite(g)) {
        for (int a = 0; a < ka; ++a) {
            const double gi = g * xi[a], gl = g * xl[a];
            for (int b = 0; b < kb; ++b)
                ab[(size_t)a * kb + b] += gi * lb[b] + gl * ib[b];
        }
        return;
    }
    for (int a = 0; a < ka; ++a)
        for (int b = 0; b < kb; ++b) {
            if (xi[a] != 0.0 && lb[b] != 0.0)
                ab[(size_t)a * kb + b] += g * xi[a] * lb[b];
            if (xl[a] != 0.0 && ib[b] != 0.0)
                ab[(size_t)a * kb + b] += g * xl[a] * ib[b];
        }
}

/* A whole second-order pass, with the lane counts as parameters so that
 * small ones compile as constants (ds_tape_jvp2). */
DS_INLINE void jvp2_pass(const ds_tape *tape, double *v, double *rec, double t,
                         const double *y, const double *p, int ka, const double *ya,
                         int kb, const double *yb, const double *pb, double *f,
                         double *fa, double *fb, double *fab)
{
    const int n = tape->n, m = tape->m, W = ka + kb + ka * kb;
    const int first = first_op_slot(tape);
    const int32_t *ls = tape->lc_slot;
#define REC(slot) (rec + (size_t)(slot) * W)
    /* the inputs: t and the constants have no derivatives; y moves along A
     * and B, p along B */
    memset(rec, 0, (size_t)first * W * sizeof(double));
    v[0] = t;
    for (int i = 0; i < n; ++i) {
        double *r = REC(1 + i);
        v[1 + i] = y[i];
        if (ya)
            for (int a = 0; a < ka; ++a)
                r[a] = ya[(size_t)a * n + i];
        if (yb)
            for (int b = 0; b < kb; ++b)
                r[ka + b] = yb[(size_t)b * n + i];
    }
    for (int i = 0; i < m; ++i) {
        v[1 + n + i] = p[i];
        if (pb)
            for (int b = 0; b < kb; ++b)
                REC(1 + n + i)[ka + b] = pb[(size_t)b * m + i];
    }
    load_consts(tape, v);

    const int32_t *op = tape->ops;
    for (int s = first; op[0] != DS_OP_COUNT; op += 4, ++s) {
        double *out = REC(s);
        switch (op[0]) {
        case DS_OP_ADD:
            v[s] = v[op[1]] + v[op[2]];
            for (int w = 0; w < W; ++w)
                out[w] = REC(op[1])[w] + REC(op[2])[w];
            break;
        case DS_OP_SUB:
            v[s] = v[op[1]] - v[op[2]];
            for (int w = 0; w < W; ++w)
                out[w] = REC(op[1])[w] - REC(op[2])[w];
            break;
        case DS_OP_MUL: {
            const double va = v[op[1]], vb = v[op[2]];
            v[s] = va * vb;
            record_lin(W, vb, REC(op[1]), va, REC(op[2]), out);
            record_cross(ka, kb, 1.0, REC(op[1]), REC(op[2]), out);
            break;
        }
        case DS_OP_PROD3: {
            const double x0 = v[op[1]], x1 = v[op[2]], x2 = v[op[3]];
            const double *r0 = REC(op[1]), *r1 = REC(op[2]), *r2 = REC(op[3]);
            v[s] = x0 * x1 * x2;
            record_lin(W, x1 * x2, r0, x0 * x2, r1, out);
            record_axpy(W, x0 * x1, r2, out);
            record_cross(ka, kb, x2, r0, r1, out);
            record_cross(ka, kb, x1, r0, r2, out);
            record_cross(ka, kb, x0, r1, r2, out);
            break;
        }
        case DS_OP_SUM: {
            const int32_t *term = ls + op[1];
            double plus = 0.0, minus = 0.0;
            memset(out, 0, (size_t)W * sizeof(double));
            for (int a = *term; a != DS_SUM_END; a = *++term) {
                plus += v[a];
                for (int w = 0; w < W; ++w)
                    out[w] += REC(a)[w];
            }
            for (int a = *++term; a != DS_SUM_END; a = *++term) {
                minus += v[a];
                for (int w = 0; w < W; ++w)
                    out[w] -= REC(a)[w];
            }
            v[s] = plus - minus;
            break;
        }
        case DS_OP_LINCOMB: {
            double acc = 0.0;
            memset(out, 0, (size_t)W * sizeof(double));
            for (int j = op[2]; j < op[3]; ++j) {
                const double w = tape->lc_weight[j];
                acc += w * v[ls[j]];
                record_axpy(W, w, REC(ls[j]), out);
            }
            v[s] = acc;
            break;
        }
        case DS_OP_PROD: {
            const int32_t *fs = ls + op[2];
            const int nf = op[3] - op[2];
            double prod = 1.0;
            for (int i = 0; i < nf; ++i)
                prod *= v[fs[i]];
            v[s] = prod;
            memset(out, 0, (size_t)W * sizeof(double));
            /* g_i: the product of the other factors; g_il: of all but two
             * (no divisions: a factor may be zero) */
            for (int i = 0; i < nf; ++i) {
                double gi = 1.0;
                for (int q = 0; q < nf; ++q)
                    if (q != i)
                        gi *= v[fs[q]];
                record_axpy(W, gi, REC(fs[i]), out);
                for (int l = i + 1; l < nf; ++l) {
                    double gil = 1.0;
                    for (int q = 0; q < nf; ++q)
                        if (q != i && q != l)
                            gil *= v[fs[q]];
                    record_cross(ka, kb, gil, REC(fs[i]), REC(fs[l]), out);
                }
            }
            break;
        }
        default: {
            const int code = op[0];
            const int two = reads_b_slot(code);
            const local r = row_partials(op, v);
            v[s] = r.v;
            if (code == DS_OP_SELECT) {   /* the chosen branch's derivatives */
                memcpy(out, REC(r.cb != 0.0 ? op[2] : op[3]), (size_t)W * sizeof(double));
                break;
            }
            const double *xa = REC(op[1]), *xb = two ? REC(op[2]) : NULL;
            const second g = op_second(code, v[op[1]], two ? v[op[2]] : 0.0,
                                       code == DS_OP_POWI ? op[2] : 0, r);
            record_lin(W, r.ca, xa, r.cb, xb, out);
            /* (the pair (a, a) once: record_cross adds it twice) */
            record_cross(ka, kb, 0.5 * g.aa, xa, xa, out);
            if (two) {
                record_cross(ka, kb, g.ab, xa, xb, out);
                record_cross(ka, kb, 0.5 * g.bb, xb, xb, out);
            }
            break;
        }
        }
    }
    for (int q = 0; q < n; ++q) {
        const int o = tape->outputs[q];
        const double *r = REC(o);
        f[q] = v[o];
        for (int a = 0; a < ka; ++a)
            fa[(size_t)a * n + q] = r[a];
        for (int b = 0; b < kb; ++b)
            fb[(size_t)b * n + q] = r[ka + b];
        for (int ab = 0; ab < ka * kb; ++ab)
            fab[(size_t)ab * n + q] = r[ka + kb + ab];
    }
#undef REC
}

size_t ds_tape_jvp2_scratch(const ds_tape *tape, int ka, int kb)
{
    return (size_t)slot_count(tape) * (size_t)(1 + ka + kb + ka * kb);
}

void ds_tape_jvp2(const ds_tape *tape, double *scratch, double t, const double *y,
                  const double *p, int ka, const double *ya, int kb, const double *yb,
                  const double *pb, double *f, double *fa, double *fb, double *fab)
{
    double *v = scratch, *rec = scratch + slot_count(tape);
#define PASS(KA, KB) jvp2_pass(tape, v, rec, t, y, p, KA, ya, KB, yb, pb, f, fa, fb, fab)
    /* constant lane counts for a tiny system's sensitivities (n = k: the
     * common case of as many parameters as states) */
    if (ka == kb && ka <= 4) {
        DS_WITH_TINY_N(ka, PASS(n_, n_); break);
    } else {
        PASS(ka, kb);
    }
#undef PASS
}

/* ---- the ds_rhs vtable over a tape ---- */

static int tape_f(void *ctx, double t, const double *y, const double *p,
                  double *dy)
{
    ds_tape_ctx *c = (ds_tape_ctx *)ctx;
    const double *load = p != c->p_loaded ? p : NULL;
    c->p_loaded = p;
    return c->f(c->tape, c->scratch, t, y, load, dy);
}

static int tape_jvp(void *ctx, double t, const double *y, const double *p,
                    int k, const double *yd, const double *pd, double *dy,
                    double *dyd)
{
    ds_tape_ctx *c = (ds_tape_ctx *)ctx;
    if (k > c->k_max)
        return 1;   /* the caller sized the scratch for fewer lanes */
    /* p, its seeds and the constants stay in the scratch between calls of
     * one solve (lanes of the constants: zero) */
    const int ready = p == c->p_loaded && pd == c->pd_loaded && k == c->k_loaded;
    jvp(c->tape, c->scratch, t, y, p, k, yd, pd, dy, dyd, ready);
    c->p_loaded = p;
    c->pd_loaded = pd;
    c->k_loaded = k;
    return 0;
}

static int tape_vjp(void *ctx, double t, const double *y, const double *p,
                    const double *w, double *dy, double *wy, double *wp)
{
    ds_tape_ctx *c = (ds_tape_ctx *)ctx;
    vjp_sweep(c->tape, c->value, c->scratch, t, y, p != c->p_loaded ? p : NULL, w,
              dy, wy, wp);
    c->p_loaded = p;
    /* the adjoint lanes overwrote the jvp lanes: no jvp may reuse them (a
     * NULL pd is a valid seed, so the lane count is what marks it) */
    c->k_loaded = -1;
    return 0;
}

static int tape_jvp2(void *ctx, double t, const double *y, const double *p, int ka,
                     const double *ya, int kb, const double *yb, const double *pb,
                     double *dy, double *fa, double *fb, double *fab)
{
    ds_tape_ctx *c = (ds_tape_ctx *)ctx;
    if (ka > c->tape->n || kb > c->k2_max)
        return 1;   /* the caller sized the scratch for fewer lanes */
    ds_tape_jvp2(c->tape, c->scratch, t, y, p, ka, ya, kb, yb, pb, dy, fa, fb, fab);
    /* the values of p and the constants are in place; the jvp's lanes are not */
    c->p_loaded = p;
    c->k_loaded = -1;
    return 0;
}

size_t ds_tape_rhs_scratch(const ds_tape *tape, int k_max, int k2_max)
{
    size_t size = ds_tape_jvp_scratch(tape, k_max);
    const size_t vjp = ds_tape_vjp_scratch(tape);
    const size_t jvp2 = k2_max > 0 ? ds_tape_jvp2_scratch(tape, tape->n, k2_max) : 0;
    size = vjp > size ? vjp : size;
    return jvp2 > size ? jvp2 : size;
}

void ds_tape_rhs_init(ds_rhs *rhs, ds_tape_ctx *ctx, const ds_tape *tape,
                      double *scratch, int k_max, int k2_max)
{
    ctx->tape = tape;
    ctx->scratch = scratch;
    ctx->k_max = k_max;
    ctx->k2_max = k2_max;
    ctx->p_loaded = NULL;
    ctx->pd_loaded = NULL;
    ctx->k_loaded = 0;
    ctx->value = value_pass(tape);
    ctx->f = f_pass(tape);
    load_consts(tape, scratch);
    rhs->ctx = ctx;
    rhs->n = tape->n;
    rhs->m = tape->m;
    rhs->f = tape_f;
    rhs->jvp = tape_jvp;
    rhs->vjp = tape_vjp;
    rhs->jac = NULL;
    rhs->jvp2 = k2_max > 0 ? tape_jvp2 : NULL;
    rhs->autonomous = 0;   /* the Cython layer knows from the program */
}
