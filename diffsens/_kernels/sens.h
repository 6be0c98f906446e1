/*
 * Forward sensitivities as one augmented right-hand side.
 *
 * With S = dy/dz for k directions z (parameters, initial values), the state
 * handed to the stepper is Y = [y, S] with S lane-major (column j of S, the
 * derivative along direction j, is the contiguous block Y[n + j n, n + (j+1) n)),
 * and
 *
 *     Y' = [ f(t, y, p),  J_y S + J_p P ]
 *
 * where P (m x k, lane-major) seeds the parameter directions (a column of the
 * identity for dy/dp_i, zero for dy/dy0_i).  One jvp call with k lanes gives
 * the whole derivative.  For an explicit Runge-Kutta method, stepping Y is
 * exactly differentiating the discrete solution (the stages are linear in
 * the stage derivatives), so the same vtable serves the discrete ("dual")
 * and the continuous (CVODES-style) strategies; they differ in error control.
 */
#ifndef DIFFSENS_SENS_H
#define DIFFSENS_SENS_H

#include "rhs.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ds_sens_ctx {
    const ds_rhs *base;     /* must have jvp */
    int k;                  /* sensitivity directions */
    const double *p_seed;   /* m * k, lane-major */
    double *scratch;        /* 2 n (1 + k) + 2 n^2: for the coupling */
    double *block;          /* n k x n: the coupling block (column-major) */
    int exact;              /* ds_sens_coupling by second-order passes too */
} ds_sens_ctx;

/* An rhs of size n (1 + k) over the base rhs of size n. */
void ds_sens_rhs_init(ds_rhs *aug, ds_sens_ctx *ctx, const ds_rhs *base, int k,
                      const double *p_seed);

/*
 * The block of the augmented Jacobian that couples S' to y, applied to a
 * state direction u (n): out (n k) = d/dy (J_y S + J_p) u at (t, Y), by a
 * forward difference of the augmented rhs (F: its value at (t, Y)), or with
 * ctx->exact by a second-order pass of the base rhs (which must have jvp2;
 * measured 1.2-1.7x slower solves on 2-D Brusselators).  A Rosenbrock step
 * on [y, S] needs it to keep its order and, exact, to be the derivative of
 * the step.
 */
int ds_sens_coupling(void *ctx, double t, const double *Y, const double *F,
                     const double *p, const double *u, double *out);

/* Forms the coupling block (ctx->block) at (t, Y): exactly, by one
 * second-order pass when the base rhs has jvp2, else by n forward
 * differences, one per state direction. */
int ds_sens_coupling_prepare(void *ctx, double t, const double *Y,
                             const double *F, const double *p);

/* The augmented rhs F (n (1 + k)) at (t, Y), the base Jacobian J (n x n,
 * column-major) and the coupling block, all from one second-order pass of
 * the base rhs (which must have jvp2). */
int ds_sens_coupling_evaluate(void *ctx, double t, const double *Y,
                              const double *p, double *F, double *J);

#ifdef __cplusplus
}
#endif

#endif /* DIFFSENS_SENS_H */
