/*
 * The algebraically reversible solver of McCallum & Foster ("Efficient,
 * Accurate and Stable Gradients for Neural ODEs", arXiv 2410.11648, 2024)
 * around an explicit Runge-Kutta method, and the exact discrete adjoint of
 * its solution (adjoint='reversible').
 *
 * With Psi_h(t, y) = y_new - y the increment of one step of the base method
 * and a coupling 0 < lambda <= 1, the solver advances a pair (y, z),
 * z_0 = y_0:
 *
 *     y_{n+1} = lambda y_n + (1 - lambda) z_n + Psi_h(t_n, z_n)
 *     z_{n+1} = z_n - Psi_{-h}(t_{n+1}, y_{n+1})
 *
 * and the pair is recovered from its successor in closed form:
 *
 *     z_n = z_{n+1} + Psi_{-h}(t_{n+1}, y_{n+1})
 *     y_n = (y_{n+1} - (1 - lambda) z_n - Psi_h(t_n, z_n)) / lambda
 *
 * The solution is y_n.  The step size is chosen from the base method's
 * embedded error estimate of Psi_h(t_n, z_n) by the driver's PI controller
 * (integrate.c); steps are clipped to land on every t_eval point and on
 * t_bound, so outputs are states y_n, never interpolated.
 *
 * The forward pass keeps only the accepted step times (O(steps) scalars);
 * the backward pass rebuilds every (y_n, z_n) from the final pair, last step
 * first, and sweeps each step's two assignments in reverse with the step
 * sizes held fixed (ds_erk_step_adjoint), so its result is the exact
 * derivative of the discrete solution the forward pass returned, up to the
 * round-off of the reconstruction.
 *
 * Both passes are resumable, like ds_run(): they return DS_YIELD every
 * `yield_every` steps (the caller checks for Ctrl-C, then calls again) and
 * the forward pass DS_NEED_SPACE before a step when the step-time buffer is
 * full (grow it, call again).  Nothing is allocated here: one workspace of
 * ds_reversible_scratch() doubles is carved up by ds_reversible_init().
 */
#ifndef DIFFSENS_REVERSIBLE_H
#define DIFFSENS_REVERSIBLE_H

#include <stddef.h>

#include "adjoint.h"
#include "erk.h"
#include "integrate.h"
#include "rhs.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ds_reversible_problem {
    const ds_erk_tableau *erk;
    const ds_rhs *rhs;
    const double *p;
    double t0, t_bound;
    const double *y0;
    const double *rtol;
    int rtol_len;
    const double *atol;
    int atol_len;
    double max_step;
    double first_step;         /* 0: Hairer's initial step */
    long max_steps;
    double coupling;           /* lambda in (0, 1] */
    const double *t_eval;      /* n_eval, sorted along the direction of time */
    long n_eval;
    /* replay: take exactly the steps t_fixed[0] = t0, t_fixed[1], ... (no
     * error control; a step sequence frozen from an earlier solve) */
    const double *t_fixed;
    long n_fixed;
    long yield_every;          /* > 0: return DS_YIELD this often */
} ds_reversible_problem;

typedef struct ds_reversible {
    ds_reversible_problem pb;
    ds_erk_tableau base;       /* the tableau without dense-output stages */
    int n, m, direction, started;
    int k0_ready;              /* K[0] holds f(t, z) for the next step */
    double t, h_abs, qold_pow;
    long t_eval_i;             /* next output to produce (forward) */
    /* the state pair and the forward work vectors */
    double *y, *z, *y1, *z1, *w, *ytmp, *K, *K2;
    /* the backward pass */
    double *ybar, *zbar, *lam, *stage_y, *kbar, *adj_scratch;
    ds_adjoint_ctx actx;
    ds_rhs adj;
    long back_step;            /* steps not yet reversed */
    long back_out;             /* last output whose jump is not yet added */
    /* counters */
    long nfev, nfev_back, n_accepted, n_rejected;
    int saw_nonfinite;
    char message[320];
} ds_reversible;

/* Step times and outputs of the forward pass (buffers owned by the caller). */
typedef struct ds_reversible_out {
    double *ts;                /* ts[0] = t0, ts[k] = end of accepted step k */
    long ts_len, ts_cap;
    double *y_eval;            /* n_eval * n: y at t_eval[i] in row i */
} ds_reversible_out;

/* Doubles of workspace for n states, m parameters and a tableau of
 * `stages` stage vectors (ds_erk_stage_count). */
size_t ds_reversible_scratch(int n, int m, int stages);

void ds_reversible_init(ds_reversible *R, const ds_reversible_problem *pb,
                        double *work);

/* The forward pass: DS_FINISHED, DS_FAILED (message), DS_CALLBACK_STOP,
 * DS_NEED_SPACE or DS_YIELD. */
int ds_reversible_forward(ds_reversible *R, ds_reversible_out *out);

/*
 * Starts the backward pass after a finished forward pass of out->ts_len - 1
 * steps.  The base problem's reverse sweeps go through ds_adjoint_vjp (a
 * Python front end without one is served by forward lanes).
 */
void ds_reversible_backward_init(ds_reversible *R, long ts_len, long n_eval);

/*
 * The backward pass: dL/dp accumulates into pbar (m), and once it returns
 * DS_FINISHED, R->ybar + R->zbar is dL/dy0 and R->y, R->z hold the
 * reconstructed (y_0, z_0).  Wt (n_eval x n) holds dL/dy(t_eval[i]) in row
 * i.  Returns DS_FINISHED, DS_CALLBACK_STOP or DS_YIELD.
 */
int ds_reversible_backward(ds_reversible *R, const double *ts,
                           const double *Wt, double *pbar);

#ifdef __cplusplus
}
#endif

#endif /* DIFFSENS_REVERSIBLE_H */
