#include <math.h>
#include <stdio.h>
#include <string.h>

#include "control.h"
#include "reversible.h"

/* Step sizes come from the driver's controller (control.h), so a reversible
 * solve picks the steps a plain solve of the same method would. */

size_t ds_reversible_scratch(int n, int m, int stages)
{
    return 9 * (size_t)n + 4 * (size_t)stages * n + ds_adjoint_scratch(n, m);
}

static double *carve(double **cursor, size_t count)
{
    double *p = *cursor;
    *cursor += count;
    return p;
}

void ds_reversible_init(ds_reversible *R, const ds_reversible_problem *pb,
                        double *work)
{
    memset(R, 0, sizeof(*R));
    R->pb = *pb;
    R->base = *pb->erk;
    R->base.r = 0;   /* the backward sweeps never need the interpolant */
    const int n = pb->rhs->n, m = pb->rhs->m;
    const size_t sn = (size_t)ds_erk_stage_count(pb->erk) * n;
    R->n = n;
    R->m = m;
    double *cur = work;
    R->y = carve(&cur, n);
    R->z = carve(&cur, n);
    R->y1 = carve(&cur, n);
    R->z1 = carve(&cur, n);
    R->w = carve(&cur, n);
    R->ytmp = carve(&cur, n);
    R->K = carve(&cur, sn);
    R->K2 = carve(&cur, sn);
    R->ybar = carve(&cur, n);
    R->zbar = carve(&cur, n);
    R->lam = carve(&cur, n);
    R->stage_y = carve(&cur, sn);
    R->kbar = carve(&cur, sn);
    R->adj_scratch = carve(&cur, ds_adjoint_scratch(n, m));
    memcpy(R->y, pb->y0, (size_t)n * sizeof(double));
    memcpy(R->z, pb->y0, (size_t)n * sizeof(double));
    R->t = pb->t0;
    R->direction = pb->t_bound >= pb->t0 ? 1 : -1;
    R->qold_pow = ds_ctrl_initial_memory(pb->erk->error_order);
}

static int fail(ds_reversible *R, const char *message)
{
    snprintf(R->message, sizeof(R->message), "%s", message);
    return DS_FAILED;
}

static int all_finite(int n, const double *x)
{
    for (int q = 0; q < n; ++q)
        if (!isfinite(x[q]))
            return 0;
    return 1;
}

/* out = h sum_{j<s} b_j K_j: the base step's increment Psi_h, summed in the
 * order ds_erk_combine sums y_new. */
static void increment(const ds_erk_tableau *tab, int n, double h,
                      const double *K, double *out)
{
    for (int q = 0; q < n; ++q) {
        double acc = 0.0;
        for (int j = 0; j < tab->s; ++j)
            acc += tab->b[j] * K[(size_t)j * n + q];
        out[q] = h * acc;
    }
}

/* Outputs at t_eval points the solution has reached (all at t, the steps
 * land on them). */
static int record_outputs(ds_reversible *R, ds_reversible_out *out)
{
    const ds_reversible_problem *pb = &R->pb;
    const int n = R->n;
    while (R->t_eval_i < pb->n_eval
           && R->direction * (pb->t_eval[R->t_eval_i] - R->t) <= 0) {
        if (pb->t_eval[R->t_eval_i] != R->t) {
            snprintf(R->message, sizeof(R->message),
                     "The step sequence passed over t_eval[%ld] = %.17g without "
                     "landing on it.", R->t_eval_i, pb->t_eval[R->t_eval_i]);
            return DS_FAILED;
        }
        memcpy(out->y_eval + (size_t)R->t_eval_i * n, R->y, (size_t)n * sizeof(double));
        ++R->t_eval_i;
    }
    return 0;
}

static int start(ds_reversible *R, ds_reversible_out *out)
{
    const ds_reversible_problem *pb = &R->pb;
    out->ts[0] = R->t;
    out->ts_len = 1;
    int rc = record_outputs(R, out);
    if (rc)
        return rc;
    ++R->nfev;
    if (pb->rhs->f(pb->rhs->ctx, R->t, R->z, pb->p, R->K))
        return DS_CALLBACK_STOP;
    if (!all_finite(R->n, R->K))
        return fail(R, "`fun` returned non-finite values at the initial point "
                       "(t0, y0).");
    R->k0_ready = 1;
    if (pb->t_fixed != NULL) {
        if (pb->n_fixed < 1 || pb->t_fixed[0] != pb->t0
            || pb->t_fixed[pb->n_fixed - 1] != pb->t_bound)
            return fail(R, "The fixed step times must run from t0 to t_bound.");
    } else if (pb->first_step > 0) {
        R->h_abs = pb->first_step;
    } else if (ds_initial_step(pb->rhs, pb->p, pb->t0, pb->t_bound, pb->max_step,
                               pb->erk->error_order, R->n, R->z, R->K, pb->rtol,
                               pb->rtol_len, pb->atol, pb->atol_len, R->K + R->n,
                               R->ytmp, &R->nfev, &R->h_abs)) {
        return DS_CALLBACK_STOP;
    }
    R->started = 1;
    return 0;
}

/* Both halves of a step of size h from (t, y, z), K[0] = f(t, z) on entry:
 * the candidate pair in (y1, z1); *err (when not NULL) the base method's
 * error norm of the z half. */
static int trial(ds_reversible *R, double h, double t_new, double *err)
{
    const ds_reversible_problem *pb = &R->pb;
    const ds_erk_tableau *tab = pb->erk;
    const int n = R->n;
    const double lam = pb->coupling;
    /* y_{n+1} = lambda y_n + (1 - lambda) z_n + Psi_h(t_n, z_n) */
    if (ds_erk_step(tab, pb->rhs, pb->p, R->t, R->z, h, R->K, R->ytmp, R->w, NULL,
                    err != NULL && ds_erk_error_uses_last_stage(tab), &R->nfev))
        return DS_CALLBACK_STOP;
    if (err != NULL) {
        *err = ds_erk_error_norm(tab, n, n, h, R->K, R->z, R->w, pb->rtol,
                                 pb->rtol_len, pb->atol, pb->atol_len);
        if (!(*err <= 1.0))
            return 0;   /* rejected (or not finite): no second half */
    }
    increment(tab, n, h, R->K, R->y1);
    for (int q = 0; q < n; ++q)
        R->y1[q] += lam * R->y[q] + (1.0 - lam) * R->z[q];
    /* z_{n+1} = z_n - Psi_{-h}(t_{n+1}, y_{n+1}) */
    ++R->nfev;
    if (pb->rhs->f(pb->rhs->ctx, t_new, R->y1, pb->p, R->K2))
        return DS_CALLBACK_STOP;
    if (ds_erk_step(tab, pb->rhs, pb->p, t_new, R->y1, -h, R->K2, R->ytmp, R->w,
                    NULL, 0, &R->nfev))
        return DS_CALLBACK_STOP;
    increment(tab, n, -h, R->K2, R->z1);
    for (int q = 0; q < n; ++q)
        R->z1[q] = R->z[q] - R->z1[q];
    return 0;
}

/* One accepted step (rejections retried inside). */
static int advance(ds_reversible *R, double *t_taken)
{
    const ds_reversible_problem *pb = &R->pb;
    const int n = R->n, dir = R->direction;
    const double t = R->t;
    int rc;

    if (R->n_accepted >= pb->max_steps) {
        snprintf(R->message, sizeof(R->message),
                 "The maximum number of steps (max_steps=%ld) was taken "
                 "before reaching t = %.17g; the problem may be stiff or the "
                 "tolerances too tight.", pb->max_steps, pb->t_bound);
        return DS_FAILED;
    }
    if (!R->k0_ready) {
        ++R->nfev;
        if (pb->rhs->f(pb->rhs->ctx, t, R->z, pb->p, R->K))
            return DS_CALLBACK_STOP;
        R->k0_ready = 1;
    }

    if (pb->t_fixed != NULL) {   /* replay a frozen step sequence */
        const double t_new = pb->t_fixed[R->n_accepted + 1];
        if (!(dir * (t_new - t) > 0))
            return fail(R, "The fixed step times must be strictly monotonic.");
        if ((rc = trial(R, t_new - t, t_new, NULL)))
            return rc;
        if (!all_finite(n, R->y1) || !all_finite(n, R->z1)) {
            snprintf(R->message, sizeof(R->message),
                     "The solution became non-finite in the step to t = %.17g.", t_new);
            return DS_FAILED;
        }
        *t_taken = t_new;
        return 0;
    }

    const double min_step = ds_ctrl_min_step(t, dir);
    const double target = R->t_eval_i < pb->n_eval ? pb->t_eval[R->t_eval_i]
                                                   : pb->t_bound;
    double h_abs = R->h_abs, h_next = 0.0, t_new = t;
    int rejected = 0;
    if (h_abs > pb->max_step)
        h_abs = pb->max_step;
    else if (h_abs < min_step)
        h_abs = min_step;

    for (;;) {
        if (h_abs < min_step) {
            if (R->saw_nonfinite)
                snprintf(R->message, sizeof(R->message),
                         "Required step size is less than spacing between "
                         "numbers: the solution kept becoming non-finite near "
                         "t = %.17g.", t);
            else
                snprintf(R->message, sizeof(R->message),
                         "Required step size is less than spacing between numbers.");
            return DS_FAILED;
        }
        const double h_try = h_abs;
        t_new = t + h_abs * dir;
        const int clipped = dir * (t_new - target) > 0;
        if (clipped)
            t_new = target;
        const double h = t_new - t;
        h_abs = fabs(h);

        double err = 0.0;
        if ((rc = trial(R, h, t_new, &err)))
            return rc;
        if (!isfinite(err) || (err <= 1.0 && (!all_finite(n, R->y1)
                                              || !all_finite(n, R->z1)))) {
            /* an overflow in a trial stage or in the second half: retry
             * much smaller */
            R->saw_nonfinite = 1;
            ++R->n_rejected;
            h_abs *= DS_CTRL_QMIN;
            rejected = 1;
            continue;
        }
        if (ds_ctrl_judge(err, pb->erk->error_order, rejected, &R->qold_pow, &h_abs,
                          &h_next)) {
            if (!rejected && clipped)   /* landing on an output is no reason to slow */
                h_next = fmax(h_next, h_try);
            break;
        }
        ++R->n_rejected;
        rejected = 1;
    }
    R->h_abs = h_next;
    *t_taken = t_new;
    return 0;
}

int ds_reversible_forward(ds_reversible *R, ds_reversible_out *out)
{
    const ds_reversible_problem *pb = &R->pb;
    long since_yield = 0;
    int rc;
    for (;;) {
        if (out->ts_len >= out->ts_cap)
            return DS_NEED_SPACE;
        if (!R->started) {
            if ((rc = start(R, out)))
                return rc;
            continue;
        }
        if (pb->t_fixed != NULL ? R->n_accepted + 1 >= pb->n_fixed
                                : R->direction * (R->t - pb->t_bound) >= 0)
            return DS_FINISHED;
        if (pb->yield_every > 0 && since_yield >= pb->yield_every)
            return DS_YIELD;
        double t_new;
        if ((rc = advance(R, &t_new)))
            return rc;
        double *swap = R->y;
        R->y = R->y1;
        R->y1 = swap;
        swap = R->z;
        R->z = R->z1;
        R->z1 = swap;
        R->t = t_new;
        R->k0_ready = 0;
        ++R->n_accepted;
        out->ts[out->ts_len++] = t_new;
        if ((rc = record_outputs(R, out)))
            return rc;
        ++since_yield;
    }
}

void ds_reversible_backward_init(ds_reversible *R, long ts_len, long n_eval)
{
    const int n = R->n;
    R->back_step = ts_len - 1;
    R->back_out = n_eval - 1;
    memset(R->ybar, 0, (size_t)n * sizeof(double));
    memset(R->zbar, 0, (size_t)n * sizeof(double));
    ds_adjoint_rhs_init(&R->adj, &R->actx, R->pb.rhs, R->pb.p, NULL, DS_ADJ_LAMBDA,
                        R->adj_scratch);
}

int ds_reversible_backward(ds_reversible *R, const double *ts,
                           const double *Wt, double *pbar)
{
    const ds_reversible_problem *pb = &R->pb;
    const ds_erk_tableau *tab = &R->base;
    const int n = R->n;
    const double lam = pb->coupling;
    double *ybar = R->ybar, *zbar = R->zbar, *v = R->lam, *inc = R->w;
    long since_yield = 0;
    int rc;

    while (R->back_step > 0) {
        if (pb->yield_every > 0 && since_yield >= pb->yield_every)
            return DS_YIELD;
        const long k = R->back_step - 1;   /* the step from ts[k] to ts[k + 1] */
        const double t0 = ts[k], t1 = ts[k + 1], h = t1 - t0;
        for (; R->back_out >= 0 && pb->t_eval[R->back_out] == t1; --R->back_out)
            for (int q = 0; q < n; ++q)
                ybar[q] += Wt[(size_t)R->back_out * n + q];

        /* z_{k+1} = z_k - Psi_{-h}(t_{k+1}, y_{k+1}): z_k gets zbar as it is;
         * y_{k+1} gets the VJP of -Psi_{-h}, i.e. that of the step's y_new
         * with cotangent -zbar, plus zbar (the increment is y_new - y). */
        for (int q = 0; q < n; ++q)
            v[q] = -zbar[q];
        if ((rc = ds_erk_step_adjoint(tab, &R->actx, t1, R->y, -h, NULL, R->K, R->stage_y,
                                      R->kbar, 0, NULL, NULL, v, pbar, &R->nfev_back)))
            return DS_CALLBACK_STOP;
        for (int q = 0; q < n; ++q)
            ybar[q] += v[q] + zbar[q];
        increment(tab, n, -h, R->K, inc);          /* the same stages: z_k */
        for (int q = 0; q < n; ++q)
            R->z[q] += inc[q];

        /* y_{k+1} = lambda y_k + (1 - lambda) z_k + Psi_h(t_k, z_k):
         * ybar_k = lambda ybar_{k+1}, zbar_k += (1 - lambda) ybar_{k+1} +
         * VJP of Psi_h = (VJP of y_new) - lambda ybar_{k+1}. */
        memcpy(v, ybar, (size_t)n * sizeof(double));
        if ((rc = ds_erk_step_adjoint(tab, &R->actx, t0, R->z, h, NULL, R->K, R->stage_y,
                                      R->kbar, 0, NULL, NULL, v, pbar, &R->nfev_back)))
            return DS_CALLBACK_STOP;
        increment(tab, n, h, R->K, inc);
        for (int q = 0; q < n; ++q) {
            zbar[q] += v[q] - lam * ybar[q];
            R->y[q] = (R->y[q] - (1.0 - lam) * R->z[q] - inc[q]) / lam;
            ybar[q] *= lam;
        }
        --R->back_step;
        ++since_yield;
    }
    for (; R->back_out >= 0; --R->back_out)   /* outputs at t0 */
        for (int q = 0; q < n; ++q)
            ybar[q] += Wt[(size_t)R->back_out * n + q];
    return DS_FINISHED;
}
