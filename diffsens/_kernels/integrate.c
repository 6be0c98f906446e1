#include <math.h>
#include <stdio.h>
#include <string.h>

#include "control.h"
#include "integrate.h"

/* Hairer's stiffness detection (DOPRI5): test every NSTIFF steps, stop after
 * STIFF_HITS consecutive steps limited by stability, forget after
 * NONSTIFF_RESET steps that are not. */
#define NSTIFF 1000
#define STIFF_HITS 15
#define NONSTIFF_RESET 6
/* A Rosenbrock solve hands back to an explicit method after this many steps
 * in a row that the explicit method could have taken stably. */
#define NONSTIFF_STEPS 20
/* |h lambda| beyond this share of the real stability interval counts as
 * stability-limited: Hairer's thresholds are 3.25 of 3.31 (DOPRI5) and 6.1
 * of 6.39 (DOP853). */
#define STIFF_FRACTION 0.955
#define EPS 2.220446049250313e-16

static double *carve(char **cursor, size_t count)
{
    double *p = (double *)*cursor;
    *cursor += count * sizeof(double);
    return p;
}

static int dense_degree(const ds_problem *pb)
{
    return pb->erk ? pb->erk->d : pb->ros->q + 1;
}

/* Stage vectors: the RK stages, or for Rosenbrock f0 and a spare. */
static size_t stage_doubles(const ds_problem *pb, int n)
{
    return (pb->erk ? (size_t)ds_erk_stage_count(pb->erk) : 2) * n;
}

static const ds_rhs *jacobian_rhs(const ds_problem *pb)
{
    return pb->jac_rhs ? pb->jac_rhs : pb->rhs;
}

static size_t rosenbrock_doubles(const ds_problem *pb, int n)
{
    if (!pb->ros)
        return 0;
    const int jn = jacobian_rhs(pb)->n;
    return 2 * (size_t)jn * jn               /* J, W */
           + (size_t)pb->ros->s * n          /* U */
           + 2 * (size_t)n + jn              /* dfdt, err, ipiv */
           + ds_ros_jacobian_scratch(n, jn);
}

size_t ds_workspace_size(const ds_problem *pb)
{
    const int n = pb->rhs->n;
    const int n_events = pb->events ? pb->events->count : 0;
    size_t doubles = 6 * (size_t)n + stage_doubles(pb, n)
                     + (size_t)dense_degree(pb) * n + 3 * (size_t)n_events
                     + rosenbrock_doubles(pb, n);
    /* two int arrays per event, stored in double-sized slots for alignment */
    return (doubles + 2 * (size_t)n_events) * sizeof(double);
}

/* Moves tstop_i past the stops not strictly ahead of t. */
static void skip_passed_stops(ds_solver *S)
{
    const ds_problem *pb = &S->pb;
    while (S->tstop_i >= 0 && S->tstop_i < pb->n_tstops
           && S->direction * (pb->tstops[S->tstop_i] - S->t) <= 0)
        S->tstop_i += S->tstop_inc;
}

void ds_solver_init(ds_solver *S, const ds_problem *pb, void *work)
{
    memset(S, 0, sizeof(*S));
    S->pb = *pb;
    const int n = pb->rhs->n;
    const int ne = pb->events ? pb->events->count : 0;
    char *cur = (char *)work;
    S->n = n;
    S->n_norm = pb->norm_n > 0 && pb->norm_n < n ? pb->norm_n : n;
    S->d = dense_degree(pb);
    S->error_order = pb->erk ? pb->erk->error_order : pb->ros->error_order;
    S->y = carve(&cur, n);
    S->y_old = carve(&cur, n);
    S->y_new = carve(&cur, n);
    S->ytmp = carve(&cur, n);
    S->y_stiff = carve(&cur, n);
    S->yev = carve(&cur, n);
    S->K = carve(&cur, stage_doubles(pb, n));
    S->Q = carve(&cur, (size_t)S->d * n);
    S->g_old = carve(&cur, ne);
    S->g_new = carve(&cur, ne);
    S->roots = carve(&cur, ne);
    S->active = (int *)carve(&cur, ne);
    S->count = (int *)carve(&cur, ne);
    if (pb->ros) {
        const int jn = jacobian_rhs(pb)->n;
        S->J = carve(&cur, (size_t)jn * jn);
        S->W = carve(&cur, (size_t)jn * jn);
        S->U = carve(&cur, (size_t)pb->ros->s * n);
        S->dfdt = carve(&cur, n);
        S->err = carve(&cur, n);
        S->ipiv = (int *)carve(&cur, jn);
        S->jac_scratch = carve(&cur, ds_ros_jacobian_scratch(n, jn));
    }
    memset(S->count, 0, (size_t)ne * sizeof(int));
    memcpy(S->y, pb->y0, (size_t)n * sizeof(double));
    S->t = pb->t0;
    S->direction = pb->t_bound >= pb->t0 ? 1 : -1;
    S->qold_pow = ds_ctrl_initial_memory(S->error_order);
    if (pb->n_tstops > 0) {
        const int ascending = pb->tstops[pb->n_tstops - 1] >= pb->tstops[0];
        S->tstop_inc = ascending == (S->direction > 0) ? 1 : -1;
        S->tstop_i = S->tstop_inc > 0 ? 0 : pb->n_tstops - 1;
        skip_passed_stops(S);
    }
}

static int fail(ds_solver *S, const char *message)
{
    snprintf(S->message, sizeof(S->message), "%s", message);
    return DS_FAILED;
}

static double atol_at(const ds_problem *pb, int q)
{
    return pb->atol[pb->atol_len == 1 ? 0 : q];
}

static double rtol_at(const ds_problem *pb, int q)
{
    return pb->rtol[pb->rtol_len == 1 ? 0 : q];
}

static int all_finite(int n, const double *x)
{
    for (int q = 0; q < n; ++q)
        if (!isfinite(x[q]))
            return 0;
    return 1;
}

static int start(ds_solver *S, ds_output *out)
{
    const ds_problem *pb = &S->pb;
    const int n = S->n;
    if (pb->t_eval == NULL) {   /* scipy's results always start with (t0, y0) */
        out->t[out->len] = S->t;
        memcpy(out->y + (size_t)out->len * n, S->y, (size_t)n * sizeof(double));
        ++out->len;
    }
    ++S->nfev;
    if (pb->rhs->f(pb->rhs->ctx, S->t, S->y, pb->p, S->K))
        return DS_CALLBACK_STOP;
    if (!all_finite(n, S->K))
        return fail(S, "`fun` returned non-finite values at the initial point "
                       "(t0, y0).");
    if (pb->first_step > 0)
        S->h_abs = pb->first_step;
    else if (ds_initial_step(pb->rhs, pb->p, pb->t0, pb->t_bound, pb->max_step,
                             S->error_order, S->n_norm, S->y, S->K, pb->rtol,
                             pb->rtol_len, pb->atol, pb->atol_len, S->K + n, S->ytmp,
                             &S->nfev, &S->h_abs))
        return DS_CALLBACK_STOP;
    if (pb->events) {
        for (int i = 0; i < pb->events->count; ++i)
            if (pb->events->g(pb->events->ctx, i, S->t, S->y, &S->g_old[i]))
                return DS_CALLBACK_STOP;
    }
    S->started = 1;
    return 0;
}

/* Stiffness test on an accepted step; returns nonzero when the problem has
 * been stability-limited for STIFF_HITS steps in a row. */
static int looks_stiff(ds_solver *S, double h)
{
    const ds_erk_tableau *tab = S->pb.erk;
    const int n = S->n;
    if (!S->pb.stiffness_check || tab == NULL || tab->stiffness_stage < 0)
        return 0;
    if ((S->n_accepted + 1) % NSTIFF != 0 && S->stiff_hits == 0)
        return 0;
    const double *ks = S->K + (size_t)tab->s * n;
    const double *ki = S->K + (size_t)tab->stiffness_stage * n;
    double num = 0.0, den = 0.0;
    for (int q = 0; q < S->n_norm; ++q) {
        num += (ks[q] - ki[q]) * (ks[q] - ki[q]);
        den += (S->y_new[q] - S->y_stiff[q]) * (S->y_new[q] - S->y_stiff[q]);
    }
    if (den <= 0.0)
        return 0;
    const double h_lambda = fabs(h) * sqrt(num / den);
    if (h_lambda > STIFF_FRACTION * tab->stability_boundary) {
        S->nonstiff_run = 0;
        if (++S->stiff_hits >= STIFF_HITS) {
            S->stopped_stiff = 1;
            snprintf(S->message, sizeof(S->message),
                     "The problem appears to be stiff at t = %.17g: %d steps in "
                     "a row were limited by stability (|h*lambda| = %.3g). Use "
                     "a stiff method such as method='Radau' or 'BDF', or pass "
                     "stiffness_check=False to continue regardless.",
                     S->t, STIFF_HITS, h_lambda);
            return 1;
        }
    } else if (++S->nonstiff_run >= NONSTIFF_RESET) {
        S->stiff_hits = 0;
    }
    return 0;
}

/* For a Rosenbrock solve that may hand over: whether the next steps fit an
 * explicit method's stability interval, judged by h ||J||_inf (an upper bound
 * of h |lambda|, so the hand-over errs on the stiff side). */
static int looks_nonstiff(ds_solver *S, double h_next)
{
    const ds_problem *pb = &S->pb;
    if (!pb->ros || pb->nonstiff_bound <= 0.0)
        return 0;
    const int n = (pb->jac_rhs ? pb->jac_rhs : pb->rhs)->n;
    double norm = 0.0;
    for (int i = 0; i < n; ++i) {
        double row = 0.0;
        for (int j = 0; j < n; ++j)
            row += fabs(S->J[(size_t)j * n + i]);
        norm = fmax(norm, row);
    }
    if (h_next * norm < pb->nonstiff_bound) {
        if (++S->nonstiff_run >= NONSTIFF_STEPS) {
            S->stopped_nonstiff = 1;
            snprintf(S->message, sizeof(S->message),
                     "The problem is no longer stiff at t = %.17g.", S->t);
            return 1;
        }
    } else {
        S->nonstiff_run = 0;
    }
    return 0;
}

/* RMS of err / (atol + rtol max(|y|, |y_new|)) over the controlled components. */
static double weighted_rms(const ds_solver *S, const double *err)
{
    const ds_problem *pb = &S->pb;
    double sum = 0.0;
    for (int q = 0; q < S->n_norm; ++q) {
        const double scale = atol_at(pb, q)
                             + rtol_at(pb, q) * fmax(fabs(S->y[q]), fabs(S->y_new[q]));
        const double r = err[q] / scale;
        sum += r * r;
    }
    return sqrt(sum / S->n_norm);
}

enum { ATTEMPT_SINGULAR = 1 };

/* One trial step of size h from (t, y): y_new and the error norm. */
static int attempt(ds_solver *S, double t, double h, double *err_norm)
{
    const ds_problem *pb = &S->pb;
    if (pb->erk) {
        if (ds_erk_step(pb->erk, pb->rhs, pb->p, t, S->y, h, S->K, S->ytmp,
                        S->y_new, S->y_stiff, ds_erk_error_uses_last_stage(pb->erk),
                        &S->nfev))
            return DS_CALLBACK_STOP;
        *err_norm = ds_erk_error_norm(pb->erk, S->n_norm, S->n, h, S->K, S->y,
                                      S->y_new, pb->rtol, pb->rtol_len, pb->atol,
                                      pb->atol_len);
        return 0;
    }
    const ds_ros_tableau *ros = pb->ros;
    const ds_rhs *jrhs = jacobian_rhs(pb);
    if (!S->jac_fresh) {   /* one Jacobian per step: rejections reuse it */
        if (ds_ros_jacobian(pb->rhs, jrhs, pb->p, t, S->y, S->K, S->J, S->dfdt,
                            S->jac_scratch, &S->nfev, &S->njev))
            return DS_CALLBACK_STOP;
        S->jac_fresh = 1;
    }
    const ds_coupling *cp = pb->coupling;
    if (cp && !S->coupling_fresh && ds_ros_coupling_by_block(ros, jrhs->n)) {
        if (cp->prepare(cp->ctx, t, S->y, S->K, pb->p))
            return DS_CALLBACK_STOP;
        S->coupling_fresh = 1;
    }
    ++S->nlu;
    if (ds_ros_factor(pb->lapack, jrhs->n, ros->gamma * h, pb->mass, S->J, S->W,
                      S->ipiv) != 0)
        return ATTEMPT_SINGULAR;
    if (ds_ros_step(ros, pb->rhs, jrhs->n, pb->coupling, pb->lapack, pb->p, pb->mass,
                    t, S->y, S->K,
                    S->dfdt, h, S->W, S->ipiv, S->U, S->ytmp, S->y_new,
                    S->err, &S->nfev))
        return DS_CALLBACK_STOP;
    *err_norm = weighted_rms(S, S->err);
    return 0;
}

/* After an accepted step: the derivative at its end, where the next step
 * starts (for RK methods whose error estimate did not need it). */
static int finish_step(ds_solver *S, double t_new)
{
    const ds_problem *pb = &S->pb;
    double *target;
    if (pb->erk) {
        if (ds_erk_error_uses_last_stage(pb->erk))
            return 0;
        target = S->K + (size_t)pb->erk->s * S->n;
    } else {
        target = S->K + S->n;   /* moved into K[0] once the step is recorded */
        const ds_coupling *cp = pb->coupling;
        const ds_rhs *jrhs = jacobian_rhs(pb);
        if (cp && cp->evaluate && ds_ros_coupling_by_block(pb->ros, jrhs->n)
            && t_new != pb->t_bound) {
            /* f, the Jacobian and the coupling block the next step starts
             * from, all in one pass (none starts from t_bound) */
            ++S->nfev;
            ++S->njev;
            if (cp->evaluate(cp->ctx, t_new, S->y_new, pb->p, target, S->J)
                || ds_ros_time_derivative(pb->rhs, pb->p, t_new, S->y_new, target,
                                          S->dfdt, S->jac_scratch, &S->nfev))
                return DS_CALLBACK_STOP;
            S->jac_fresh = S->coupling_fresh = 1;
            return 0;
        }
        S->jac_fresh = S->coupling_fresh = 0;
    }
    ++S->nfev;
    return pb->rhs->f(pb->rhs->ctx, t_new, S->y_new, pb->p, target) ? DS_CALLBACK_STOP : 0;
}

/* One accepted step (rejections retried inside).  On return the state has
 * advanced: t_old/y_old hold the start, t/y the end, K (or U) the stages. */
static int advance(ds_solver *S, double *h_taken)
{
    const ds_problem *pb = &S->pb;
    const int dir = S->direction;
    const double t = S->t;
    const double min_step = ds_ctrl_min_step(t, dir);
    double h_abs = S->h_abs, h = 0.0, t_new = t, h_next = 0.0;
    int rejected = 0, singular = 0, rc;

    if (S->n_accepted >= pb->max_steps) {
        snprintf(S->message, sizeof(S->message),
                 "The maximum number of steps (max_steps=%ld) was taken "
                 "before reaching t = %.17g; the problem may be stiff or the "
                 "tolerances too tight.", pb->max_steps, pb->t_bound);
        return DS_FAILED;
    }
    if (h_abs > pb->max_step)
        h_abs = pb->max_step;
    else if (h_abs < min_step)
        h_abs = min_step;

    for (;;) {
        if (h_abs < min_step) {
            if (singular)
                snprintf(S->message, sizeof(S->message),
                         "Required step size is less than spacing between "
                         "numbers: the matrix M/(gamma h) - J stayed singular "
                         "near t = %.17g.", t);
            else if (S->saw_nonfinite)
                snprintf(S->message, sizeof(S->message),
                         "Required step size is less than spacing between "
                         "numbers: `fun` kept returning non-finite values "
                         "near t = %.17g.", t);
            else
                snprintf(S->message, sizeof(S->message),
                         "Required step size is less than spacing between numbers.");
            return DS_FAILED;
        }
        h = h_abs * dir;
        t_new = t + h;
        if (dir * (t_new - pb->t_bound) > 0)
            t_new = pb->t_bound;
        if (S->tstop_i >= 0 && S->tstop_i < pb->n_tstops
            && dir * (t_new - pb->tstops[S->tstop_i]) > 0)
            t_new = pb->tstops[S->tstop_i];
        h = t_new - t;
        h_abs = fabs(h);

        double err = 0.0;
        rc = attempt(S, t, h, &err);
        if (rc == DS_CALLBACK_STOP)
            return rc;
        if (rc == ATTEMPT_SINGULAR || !isfinite(err)) {
            /* a singular W, an overflow or a pole in a trial stage: retry
             * much smaller */
            singular |= rc == ATTEMPT_SINGULAR;
            S->saw_nonfinite |= rc != ATTEMPT_SINGULAR;
            ++S->n_rejected;
            h_abs *= DS_CTRL_QMIN;
            rejected = 1;
            continue;
        }
        if (ds_ctrl_judge(err, S->error_order, rejected, &S->qold_pow, &h_abs, &h_next))
            break;
        ++S->n_rejected;
        rejected = 1;
    }

    if ((rc = finish_step(S, t_new)))
        return rc;
    if (looks_stiff(S, h))
        return DS_FAILED;
    if (looks_nonstiff(S, h_next))
        return DS_FAILED;

    double *recycled = S->y_old;
    S->y_old = S->y;
    S->y = S->y_new;
    S->y_new = recycled;
    S->t_old = t;
    S->t = t_new;
    S->h_abs = h_next;
    skip_passed_stops(S);
    ++S->n_accepted;
    *h_taken = h;
    return 0;
}

typedef struct dense_state {
    int ready;          /* Q holds this step's interpolant */
    int stages_ready;   /* K holds its extra stages too */
    double h;
} dense_state;

/* The extra stages of this step's interpolant, on first use (they cost
 * nfev); a Rosenbrock step has none. */
static int need_stages(ds_solver *S, dense_state *ds)
{
    if (ds->stages_ready)
        return 0;
    const ds_problem *pb = &S->pb;
    if (pb->erk && ds_erk_extra_stages(pb->erk, pb->rhs, pb->p, S->t_old, S->y_old,
                                       ds->h, S->K, S->ytmp, &S->nfev))
        return DS_CALLBACK_STOP;
    ds->stages_ready = 1;
    return 0;
}

/* Builds this step's interpolant (its coefficients Q) on first use. */
static int need_dense(ds_solver *S, dense_state *ds)
{
    if (ds->ready)
        return 0;
    const ds_problem *pb = &S->pb;
    if (pb->ros) {
        ds_ros_dense_coefficients(pb->ros, S->n, S->y_old, S->y, S->U, S->Q);
        ds->ready = 1;
        return 0;
    }
    if (need_stages(S, ds))
        return DS_CALLBACK_STOP;
    ds_erk_dense_coefficients(pb->erk, S->n, ds->h, S->K, S->Q);
    ds->ready = 1;
    return 0;
}

static void dense_at(const ds_solver *S, const dense_state *ds, double t,
                     double *out);

/* y(t) at an output point.  An explicit step evaluates its interpolant
 * straight from the stages, as the discrete adjoint differentiates it: a
 * step holds one or two output points as a rule, and building Q costs d
 * times more. */
static int output_at(ds_solver *S, dense_state *ds, double t, double *out)
{
    const ds_problem *pb = &S->pb;
    if (pb->ros) {
        int rc = need_dense(S, ds);
        if (rc)
            return rc;
        dense_at(S, ds, t, out);
        return 0;
    }
    if (need_stages(S, ds))
        return DS_CALLBACK_STOP;
    ds_erk_dense_direct(pb->erk, S->n, ds->h, S->K, S->y_old,
                        (t - S->t_old) / ds->h, out);
    return 0;
}

static void dense_at(const ds_solver *S, const dense_state *ds, double t,
                     double *out)
{
    ds_dense_eval(S->n, S->d, S->y_old, S->Q, (t - S->t_old) / ds->h,
                  out);
}

/* g_which(t, y(t)) on the interpolant. */
static int event_on_dense(ds_solver *S, const dense_state *ds, int which,
                          double t, double *value)
{
    dense_at(S, ds, t, S->yev);
    return S->pb.events->g(S->pb.events->ctx, which, t, S->yev, value);
}

/* Brent's method (bisection, secant and inverse quadratic interpolation),
 * with scipy.optimize.brentq's tolerances xtol = rtol = 4 eps. */
static int event_root(ds_solver *S, const dense_state *ds, int which,
                      double a, double b, double *root)
{
    double xpre = a, xcur = b, fpre, fcur, xblk = 0.0, fblk = 0.0;
    double spre = 0.0, scur = 0.0;
    if (event_on_dense(S, ds, which, xpre, &fpre) ||
        event_on_dense(S, ds, which, xcur, &fcur))
        return DS_CALLBACK_STOP;
    if (fpre == 0.0) { *root = xpre; return 0; }
    if (fcur == 0.0) { *root = xcur; return 0; }
    if ((fpre > 0) == (fcur > 0)) {
        /* The sign change seen at the step ends was lost to rounding of the
         * interpolant: take the end nearer to zero. */
        *root = fabs(fpre) < fabs(fcur) ? xpre : xcur;
        return 0;
    }
    for (int iter = 0; iter < 100; ++iter) {
        if (fpre != 0.0 && fcur != 0.0 && ((fpre > 0) != (fcur > 0))) {
            xblk = xpre;
            fblk = fpre;
            spre = scur = xcur - xpre;
        }
        if (fabs(fblk) < fabs(fcur)) {
            xpre = xcur; xcur = xblk; xblk = xpre;
            fpre = fcur; fcur = fblk; fblk = fpre;
        }
        const double delta = (4 * EPS + 4 * EPS * fabs(xcur)) / 2;
        const double sbis = (xblk - xcur) / 2;
        if (fcur == 0.0 || fabs(sbis) < delta)
            break;
        if (fabs(spre) > delta && fabs(fcur) < fabs(fpre)) {
            double stry;
            if (xpre == xblk) {
                stry = -fcur * (xcur - xpre) / (fcur - fpre);
            } else {
                const double dpre = (fpre - fcur) / (xpre - xcur);
                const double dblk = (fblk - fcur) / (xblk - xcur);
                stry = -fcur * (fblk * dblk - fpre * dpre)
                       / (dblk * dpre * (fblk - fpre));
            }
            if (2 * fabs(stry) < fmin(fabs(spre), 3 * fabs(sbis) - delta)) {
                spre = scur;
                scur = stry;
            } else {
                spre = scur = sbis;
            }
        } else {
            spre = scur = sbis;
        }
        xpre = xcur;
        fpre = fcur;
        xcur += fabs(scur) > delta ? scur : (sbis > 0 ? delta : -delta);
        if (event_on_dense(S, ds, which, xcur, &fcur))
            return DS_CALLBACK_STOP;
    }
    *root = xcur;
    return 0;
}

/* scipy's handle_events: roots of the active events on this step; if one
 * reaches its count, keep the roots up to the first such one and stop there. */
static int handle_events(ds_solver *S, dense_state *ds, ds_output *out,
                         double *t_stop, int *terminate)
{
    const ds_events *ev = S->pb.events;
    const int n = S->n;
    int n_active = 0;
    for (int i = 0; i < ev->count; ++i)
        if (ev->g(ev->ctx, i, S->t, S->y, &S->g_new[i]))
            return DS_CALLBACK_STOP;
    for (int i = 0; i < ev->count; ++i) {
        const double g0 = S->g_old[i], g1 = S->g_new[i], dir = ev->direction[i];
        const int up = g0 <= 0 && g1 >= 0, down = g0 >= 0 && g1 <= 0;
        if ((up && dir > 0) || (down && dir < 0) || ((up || down) && dir == 0))
            S->active[n_active++] = i;
    }
    double *swap = S->g_old;
    S->g_old = S->g_new;
    S->g_new = swap;
    if (n_active == 0)
        return 0;

    int rc = need_dense(S, ds);
    if (rc)
        return rc;
    int any_final = 0;
    for (int k = 0; k < n_active; ++k) {
        const int i = S->active[k];
        ++S->count[i];
        if (S->count[i] >= ev->max_count[i])
            any_final = 1;
        if (event_root(S, ds, i, S->t_old, S->t, &S->roots[k]))
            return DS_CALLBACK_STOP;
    }
    if (any_final) {
        /* order by time of occurrence (insertion sort: a handful of events) */
        for (int k = 1; k < n_active; ++k) {
            const double r = S->roots[k];
            const int a = S->active[k];
            int j = k - 1;
            while (j >= 0 && S->direction * (S->roots[j] - r) > 0) {
                S->roots[j + 1] = S->roots[j];
                S->active[j + 1] = S->active[j];
                --j;
            }
            S->roots[j + 1] = r;
            S->active[j + 1] = a;
        }
        for (int k = 0; k < n_active; ++k)
            if (S->count[S->active[k]] >= ev->max_count[S->active[k]]) {
                n_active = k + 1;
                break;
            }
        *terminate = 1;
        *t_stop = S->roots[n_active - 1];
    }
    for (int k = 0; k < n_active; ++k) {
        out->ev_which[out->ev_len] = S->active[k];
        out->ev_t[out->ev_len] = S->roots[k];
        dense_at(S, ds, S->roots[k], out->ev_y + (size_t)out->ev_len * n);
        ++out->ev_len;
    }
    return 0;
}

/* Everything an accepted step produces: interpolant, events, output points. */
static int record_step(ds_solver *S, ds_output *out, double h, int *terminate)
{
    const ds_problem *pb = &S->pb;
    const int n = S->n, d = S->d;
    dense_state ds = {0, 0, h};
    double t_stop = S->t;
    const double *y_stop = S->y;
    int rc;

    if (out->store_dense) {
        if (out->seg_Q != NULL && (rc = need_dense(S, &ds)))
            return rc;
        const long j = out->seg_len++;
        out->seg_t_old[j] = S->t_old;
        out->seg_h[j] = h;
        out->seg_t_end[j] = S->t;
        memcpy(out->seg_y_old + (size_t)j * n, S->y_old, (size_t)n * sizeof(double));
        if (out->seg_Q != NULL)
            memcpy(out->seg_Q + (size_t)j * n * d, S->Q, (size_t)n * d * sizeof(double));
        if (out->seg_K != NULL && pb->erk) {
            const size_t width = (size_t)ds_erk_stage_count(pb->erk) * n;
            if (need_stages(S, &ds))
                return DS_CALLBACK_STOP;
            memcpy(out->seg_K + j * width, S->K, width * sizeof(double));
        }
    }
    if (pb->on_step) {
        if ((rc = need_dense(S, &ds)))
            return rc;
        if (pb->on_step(pb->on_step_ctx, S->t_old, h, S->y_old, S->Q))
            return DS_CALLBACK_STOP;
    }
    if (pb->events) {
        if ((rc = handle_events(S, &ds, out, &t_stop, terminate)))
            return rc;
        if (*terminate) {
            dense_at(S, &ds, t_stop, S->ytmp);
            y_stop = S->ytmp;
            if (out->store_dense)
                out->seg_t_end[out->seg_len - 1] = t_stop;
        }
    }
    if (pb->t_eval == NULL) {
        if (out->store_dense && out->len > 1 && out->t[out->len - 1] == t_stop) {
            --out->seg_len; /* zero-length last segment: scipy drops it too */
        } else {
            out->t[out->len] = t_stop;
            memcpy(out->y + (size_t)out->len * n, y_stop, (size_t)n * sizeof(double));
            ++out->len;
        }
    } else {
        while (S->t_eval_i < pb->n_eval
               && S->direction * (pb->t_eval[S->t_eval_i] - t_stop) <= 0) {
            const double te = pb->t_eval[S->t_eval_i++];
            double *dst = out->y + (size_t)out->len * n;
            if (te == S->t)
                memcpy(dst, S->y, (size_t)n * sizeof(double));
            else if ((rc = output_at(S, &ds, te, dst)))
                return rc;
            out->t[out->len++] = te;
        }
    }
    return 0;
}

int ds_run(ds_solver *S, ds_output *out)
{
    const ds_problem *pb = &S->pb;
    const int n = S->n;
    /* where the next step's f(t, y) sits: RK's last stage, Rosenbrock's spare */
    const size_t next_f = (pb->erk ? (size_t)pb->erk->s : 1) * (size_t)n;
    const int n_events = pb->events ? pb->events->count : 0;
    long since_yield = 0;
    int rc;

    for (;;) {
        if ((pb->t_eval == NULL && out->len >= out->cap)
            || (out->store_dense && out->seg_len >= out->seg_cap)
            || (out->ev_len + n_events > out->ev_cap))
            return DS_NEED_SPACE;
        if (!S->started) {
            if ((rc = start(S, out)))
                return rc;
            continue;
        }
        if (pb->yield_every > 0 && since_yield >= pb->yield_every)
            return DS_YIELD;

        double h;
        int terminate = 0;
        if ((rc = advance(S, &h)))
            return rc;
        if ((rc = record_step(S, out, h, &terminate)))
            return rc;
        /* first same as last: the next step's k_0 */
        memcpy(S->K, S->K + next_f, (size_t)n * sizeof(double));
        ++since_yield;
        if (terminate)
            return DS_TERMINATED;
        if (S->direction * (S->t - pb->t_bound) >= 0)
            return DS_FINISHED;
    }
}
