/*
 * Adjoint sensitivities: the backward systems, as right-hand sides the one
 * driver (integrate.h) integrates like any other.
 *
 * For y' = f(t, y, p) and a loss L = sum_i g_i(y(t_i)), the adjoint
 * lambda(t) solves, backward from lambda(T) = 0,
 *
 *     lambda' = -J_y^T lambda,        lambda jumps by dg_i/dy at each t_i,
 *     mu'     = -J_p^T lambda,        mu(T) = 0,
 *
 * and then dL/dp = mu(t0) = int_t0^T J_p^T lambda dt, dL/dy0 = lambda(t0).
 * J_y and J_p are taken at the forward solution y(t), which the backward
 * pass reads from a stored stretch of the forward dense output (ds_interp),
 * or -- backsolve -- re-integrates backward alongside lambda.
 *
 * Every product J^T w is one reverse sweep (the vtable's vjp); a front end
 * without one (a Python function on dual numbers) is served by n + m
 * forward lanes instead.
 */
#ifndef DIFFSENS_ADJOINT_H
#define DIFFSENS_ADJOINT_H

#include <stddef.h>

#include "erk.h"
#include "rosenbrock.h"
#include "integrate.h"
#include "rhs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A stretch of the forward solution: consecutive steps' interpolants,
 * y(t) = y_old + sum_j Q_j theta^(j+1), theta = (t - t_old) / h. */
typedef struct ds_interp {
    int n, d;
    long len;
    const double *t_old, *h, *y_old, *Q;   /* len, len, len * n, len * n * d */
    long cursor;                           /* the step used last */
} ds_interp;

/* y(t); t outside the stretch extrapolates its first or last step. */
void ds_interp_eval(ds_interp *interp, double t, double *y);

enum ds_adjoint_mode {
    DS_ADJ_LAMBDA = 0,     /* z = lambda (n); mu by quadrature */
    DS_ADJ_LAMBDA_MU = 1,  /* z = [lambda, mu] (n + m) */
    DS_ADJ_BACKSOLVE = 2   /* z = [y, lambda, mu] (2 n + m), y integrated back */
};

typedef struct ds_adjoint_ctx {
    const ds_rhs *base;    /* the forward system */
    const double *p;
    ds_interp *interp;     /* the forward solution (unused by backsolve) */
    int mode;
    double *scratch;       /* ds_adjoint_scratch(n, m) doubles */
} ds_adjoint_ctx;

size_t ds_adjoint_scratch(int n, int m);

/* The backward system as a vtable of size 2n + m, n + m or n (by mode); its
 * jac (modes LAMBDA and LAMBDA_MU) is the exact [-J_y^T, 0; -J_p^T, 0], so a
 * Rosenbrock method can integrate it (one LU of the transposed W per step). */
void ds_adjoint_rhs_init(ds_rhs *adj, ds_adjoint_ctx *ctx, const ds_rhs *base,
                         const double *p, ds_interp *interp, int mode,
                         double *scratch);

/* wy = w^T J_y, wp = w^T J_p (m; may be NULL) at (t, y); dy = f(t, y). */
int ds_adjoint_vjp(ds_adjoint_ctx *ctx, double t, const double *y,
                   const double *w, double *dy, double *wy, double *wp);

/*
 * mu += int J_p^T lambda dt over each stored backward step of lambda
 * (`lam`, an interpolant of the lambda-only system), by Gauss-Legendre
 * quadrature with `nodes` points per step (1..5), y(t) from ctx->interp.
 */
int ds_adjoint_quadrature(ds_adjoint_ctx *ctx, ds_interp *lam, int nodes,
                          double *mu, long *nvjp);

/*
 * The discrete adjoint of one explicit RK step of size h from (t, y): the
 * step's stages are recomputed (stage_y, K: stage-count * n each), then
 * swept in reverse.  On entry lam holds dL/dy_new; on return dL/dy.  Each of
 * the n_out outputs at theta[e] in [0, 1) of the step adds w[e * n ..] to
 * the derivative of y(t + theta h).  pbar (m) accumulates dL/dp; kbar (stage
 * count * n) is scratch.  The step size is held fixed, as forward-mode dual
 * numbers hold it.  K_known (stage count * n; may be NULL) holds the
 * step's stages as the forward pass computed them: then none is recomputed.
 */
int ds_erk_step_adjoint(const ds_erk_tableau *tab, ds_adjoint_ctx *ctx,
                        double t, const double *y, double h, const double *K_known,
                        double *K,
                        double *stage_y, double *kbar, int n_out,
                        const double *theta, const double *w, double *lam,
                        double *pbar, long *nfev);

/*
 * The discrete adjoint of one Rosenbrock step of size h from (t, y) (the
 * step ds_ros_step took, with W = M / (gamma h) - J(t, y); M NULL: the
 * identity): the step is recomputed (J, W's LU, the stages), then swept in
 * reverse, each stage through one solve with W^T.  J's own dependence on y
 * and p (second derivatives of f) enters by a directional difference of
 * vector-Jacobian products along each stage, as does df/dt's, which the
 * forward step itself takes by a difference in t.  lam, pbar, n_out, theta
 * and w as for ds_erk_step_adjoint.  work: ds_ros_step_adjoint_scratch
 * doubles; ipiv: n ints.
 */
size_t ds_ros_step_adjoint_scratch(const ds_ros_tableau *tab, int n, int m);

int ds_ros_step_adjoint(const ds_ros_tableau *tab, ds_adjoint_ctx *ctx,
                        const ds_lapack *lapack, const double *M, double t,
                        const double *y, double h, double *work, int *ipiv,
                        int n_out, const double *theta, const double *w,
                        double *lam, double *pbar, long *nfev);

/*
 * ds_ros_step_adjoint over a stretch of stored steps, as
 * ds_erk_stretch_adjoint (below) walks one.
 */
int ds_ros_stretch_adjoint(const ds_ros_tableau *tab, ds_adjoint_ctx *ctx,
                           const ds_lapack *lapack, long len, const double *t_old,
                           const double *h, const double *t_end, const double *y_old,
                           const double *t_eval, const double *Wt, long *i_out,
                           double sign, double *work, int *ipiv, double *theta,
                           double *lam, double *pbar, long *nfev);

/*
 * ds_erk_step_adjoint over a stretch of stored steps (t_old, h, t_end,
 * y_old: len entries; K_known: their stages, or NULL), last step first.  Outputs t_eval[0 .. *i_out] not yet
 * taken, with weights Wt (n_eval x n, row i for t_eval[i]), are consumed from
 * *i_out downward as the stretch covers them: those at a step's end jump
 * lam, those inside it enter the step's adjoint.  sign: +1 when the forward
 * pass ran forward in time.  theta: n_eval doubles of scratch.
 */
int ds_erk_stretch_adjoint(const ds_erk_tableau *tab, ds_adjoint_ctx *ctx,
                           long len, const double *t_old, const double *h,
                           const double *t_end, const double *y_old,
                           const double *K_known, const double *t_eval, const double *Wt, long *i_out,
                           double sign, double *K, double *stage_y, double *kbar,
                           double *theta, double *lam, double *pbar, long *nfev);

/*
 * The continuous backward pass over one stretch [t_lo, t_hi] of the forward
 * solution (ctx->interp covers it; backsolve needs none), run by the driver
 * from t_hi down to t_lo.  It stops at every output t_eval[i] on the way to
 * add that output's jump Wt[i] to lambda, and restarts the adjoint solve
 * there (lambda is discontinuous).  With nodes > 0, mu gains the Gauss rule
 * over each accepted backward step (the 'gauss' strategy).
 *
 * Resumable like ds_run: DS_NEED_SPACE and DS_YIELD hand back to the caller,
 * who grows `out` or checks for signals and calls again.  DS_FINISHED once
 * t_lo is reached; DS_FAILED (message in solver->message) or
 * DS_CALLBACK_STOP otherwise.
 */
typedef struct ds_backward {
    ds_problem *pb;           /* the adjoint problem; t0, t_bound, y0, first_step
                               * and on_step are set here */
    ds_solver *solver;
    void *work;               /* ds_workspace_size(pb) bytes */
    ds_adjoint_ctx *ctx;
    double *z;                /* the backward state, pb->rhs->n */
    int jump_at;              /* jumps add to z[jump_at .. jump_at + n) */
    const double *t_eval;     /* outputs, in forward order */
    const double *Wt;         /* their jumps: row i (n) for t_eval[i] */
    long i_out;               /* outputs t_eval[0 .. i_out] not yet passed */
    double sign;              /* +1 when the forward pass ran forward in time */
    int nodes;                /* Gauss points per backward step; 0: none */
    double *mu;               /* m: the parameter integral (nodes > 0) */
    /* backsolve: y (z[0 .. n)) against the forward outputs y_ref (row i for
     * t_eval[i]) at each jump, in units of atol + rtol |y_ref|; NULL: no check */
    const double *y_ref;
    double rtol, atol, drift;
    long nfev, nvjp;          /* backward evaluations so far */
    long n_accepted, n_rejected;  /* backward steps so far */
    double t_lo, tau, target; /* the stretch, where lambda is, the next stop */
    double h_next;            /* the step size the last solve reached; 0: none */
    int running;              /* a solve towards target is under way */
} ds_backward;

void ds_backward_begin(ds_backward *B, double t_lo, double t_hi);
int ds_backward_run(ds_backward *B, ds_output *out);

#ifdef __cplusplus
}
#endif

#endif /* DIFFSENS_ADJOINT_H */
