#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adjoint.h"
#include "tiny.h"

/* The forward step holding t (the cursor moves there). */
static long locate(ds_interp *interp, double t)
{
    long c = interp->cursor < 0 || interp->cursor >= interp->len ? 0 : interp->cursor;
    for (;;) {
        const double theta = (t - interp->t_old[c]) / interp->h[c];
        if (theta < 0.0 && c > 0)
            --c;
        else if (theta > 1.0 && c + 1 < interp->len)
            ++c;
        else
            break;
    }
    interp->cursor = c;
    return c;
}

void ds_interp_eval(ds_interp *interp, double t, double *y)
{
    /* the backward pass walks the steps in order: a cursor, not a search */
    const long c = locate(interp, t);
    ds_dense_eval(interp->n, interp->d, interp->y_old + (size_t)c * interp->n,
                  interp->Q + (size_t)c * interp->n * interp->d,
                  (t - interp->t_old[c]) / interp->h[c], y);
}

/* Scratch: y, dy, wy, fy (n each), wp (m), then for the forward lanes
 * (L = n + m of them: the identity on [y, p]) their seeds and results. */
size_t ds_adjoint_scratch(int n, int m)
{
    const size_t L = (size_t)n + m;
    return 5 * (size_t)n + m + L * (2 * (size_t)n + m);
}

typedef struct scratch_view {
    double *y, *dy, *wy, *fy, *wp, *carry, *seed_y, *seed_p, *lanes;
} scratch_view;

static scratch_view view(const ds_adjoint_ctx *c)
{
    const int n = c->base->n, m = c->base->m;
    const size_t L = (size_t)n + m;
    scratch_view v;
    v.y = c->scratch;
    v.dy = v.y + n;
    v.wy = v.dy + n;
    v.fy = v.wy + n;
    v.wp = v.fy + n;
    v.carry = v.wp + m;           /* a stage weight handed to the step before */
    v.seed_y = v.carry + n;       /* n * L, lane-major */
    v.seed_p = v.seed_y + n * L;  /* m * L */
    v.lanes = v.seed_p + m * L;   /* n * L: lane j = column j of [J_y J_p] */
    return v;
}

/* [J_y J_p] at (t, y), one column per lane, by n + m forward lanes
 * (lanes = n: J_y alone). */
static int jacobian_lanes(ds_adjoint_ctx *c, double t, const double *y,
                          int lanes, double *dy)
{
    const scratch_view v = view(c);
    const ds_rhs *b = c->base;
    return b->jvp(b->ctx, t, y, c->p, lanes, v.seed_y, b->m ? v.seed_p : NULL,
                  dy, v.lanes);
}

int ds_adjoint_vjp(ds_adjoint_ctx *c, double t, const double *y,
                   const double *w, double *dy, double *wy, double *wp)
{
    const ds_rhs *b = c->base;
    const int n = b->n, m = b->m;
    if (b->vjp != NULL)
        return b->vjp(b->ctx, t, y, c->p, w, dy, wy, wp);
    /* no reverse sweep (a Python function on dual numbers): the whole
     * Jacobian by forward lanes, then its transpose times w */
    const scratch_view v = view(c);
    int rc = jacobian_lanes(c, t, y, n + (wp != NULL ? m : 0), dy);
    if (rc)
        return rc;
    for (int j = 0; j < n + (wp != NULL ? m : 0); ++j) {
        const double *col = v.lanes + (size_t)j * n;
        double acc = 0.0;
        for (int i = 0; i < n; ++i)
            acc += w[i] * col[i];
        if (j < n)
            wy[j] = acc;
        else
            wp[j - n] = acc;
    }
    return 0;
}

static int adjoint_f(void *ctx, double t, const double *z, const double *p,
                     double *dz)
{
    ds_adjoint_ctx *c = (ds_adjoint_ctx *)ctx;
    const int n = c->base->n, m = c->base->m;
    const scratch_view v = view(c);
    (void)p;   /* the forward parameters live in the context */
    int rc;
    switch (c->mode) {
    case DS_ADJ_BACKSOLVE:
        /* z = [y, lambda, mu]: y' = f and the adjoint in one sweep */
        rc = ds_adjoint_vjp(c, t, z, z + n, dz, v.wy, v.wp);
        if (rc)
            return rc;
        for (int i = 0; i < n; ++i)
            dz[n + i] = -v.wy[i];
        for (int i = 0; i < m; ++i)
            dz[2 * n + i] = -v.wp[i];
        return 0;
    case DS_ADJ_LAMBDA_MU:
        ds_interp_eval(c->interp, t, v.y);
        rc = ds_adjoint_vjp(c, t, v.y, z, v.dy, v.wy, v.wp);
        if (rc)
            return rc;
        for (int i = 0; i < n; ++i)
            dz[i] = -v.wy[i];
        for (int i = 0; i < m; ++i)
            dz[n + i] = -v.wp[i];
        return 0;
    default:
        ds_interp_eval(c->interp, t, v.y);
        rc = ds_adjoint_vjp(c, t, v.y, z, v.dy, v.wy, NULL);
        if (rc)
            return rc;
        for (int i = 0; i < n; ++i)
            dz[i] = -v.wy[i];
        return 0;
    }
}

/* The exact Jacobian of the lambda (and mu) system: its entries are those of
 * J_y and J_p at y(t), transposed and negated. */
static int adjoint_jac(void *ctx, double t, const double *z, const double *p,
                       double *J)
{
    ds_adjoint_ctx *c = (ds_adjoint_ctx *)ctx;
    const ds_rhs *b = c->base;
    const int n = b->n, m = b->m;
    const int with_mu = c->mode == DS_ADJ_LAMBDA_MU;
    const int N = n + (with_mu ? m : 0);
    const scratch_view v = view(c);
    (void)z;
    (void)p;
    ds_interp_eval(c->interp, t, v.y);
    int rc;
    if (b->jvp != NULL)
        rc = jacobian_lanes(c, t, v.y, n + (with_mu ? m : 0), v.dy);
    else   /* a user's jac: J_y only (mode LAMBDA), column-major */
        rc = b->jac(b->ctx, t, v.y, c->p, v.lanes);
    if (rc)
        return rc;
    memset(J, 0, (size_t)N * N * sizeof(double));
    /* d(-J_y^T lambda)_i / d lambda_j = -J_y[j, i]; column j of lanes is
     * column j of J_y, so entry (i, j) reads lanes[i * n + j] */
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < N; ++i)
            J[(size_t)j * N + i] = -v.lanes[(size_t)i * n + j];
    return 0;
}

void ds_adjoint_rhs_init(ds_rhs *adj, ds_adjoint_ctx *ctx, const ds_rhs *base,
                         const double *p, ds_interp *interp, int mode,
                         double *scratch)
{
    const int n = base->n, m = base->m;
    const size_t L = (size_t)n + m;
    ctx->base = base;
    ctx->p = p;
    ctx->interp = interp;
    ctx->mode = mode;
    ctx->scratch = scratch;
    const scratch_view v = view(ctx);
    memset(v.seed_y, 0, (size_t)(n + m) * L * sizeof(double));
    for (int j = 0; j < n; ++j)
        v.seed_y[(size_t)j * n + j] = 1.0;
    for (int r = 0; r < m; ++r)
        v.seed_p[(size_t)(n + r) * m + r] = 1.0;

    adj->ctx = ctx;
    adj->n = mode == DS_ADJ_BACKSOLVE ? 2 * n + m
             : mode == DS_ADJ_LAMBDA_MU ? n + m : n;
    adj->m = m;
    adj->autonomous = 0;   /* y(t) changes along the way */
    adj->f = adjoint_f;
    adj->jvp = NULL;
    adj->vjp = NULL;
    adj->jac = NULL;
    adj->jvp2 = NULL;
    if (mode == DS_ADJ_LAMBDA && (base->jvp != NULL || base->jac != NULL))
        adj->jac = adjoint_jac;
    else if (mode == DS_ADJ_LAMBDA_MU && base->jvp != NULL)
        adj->jac = adjoint_jac;
}

/* Gauss-Legendre nodes and weights on [0, 1], 1 to 5 points. */
static const double GL_X[5][5] = {
    {0.5},
    {0.21132486540518713, 0.78867513459481287},
    {0.11270166537925831, 0.5, 0.88729833462074169},
    {0.069431844202973712, 0.33000947820757187, 0.66999052179242813,
     0.93056815579702629},
    {0.046910077030668004, 0.23076534494715845, 0.5, 0.76923465505284155,
     0.95308992296933200}};
static const double GL_W[5][5] = {
    {1.0},
    {0.5, 0.5},
    {0.27777777777777778, 0.44444444444444444, 0.27777777777777778},
    {0.17392742256872693, 0.32607257743127307, 0.32607257743127307,
     0.17392742256872693},
    {0.11846344252809454, 0.23931433524968324, 0.28444444444444444,
     0.23931433524968324, 0.11846344252809454}};

int ds_adjoint_quadrature(ds_adjoint_ctx *c, ds_interp *lam, int nodes,
                          double *mu, long *nvjp)
{
    const int n = c->base->n, m = c->base->m;
    const scratch_view v = view(c);
    const int k = nodes < 1 ? 1 : nodes > 5 ? 5 : nodes;
    ds_interp *fwd = c->interp;
    double *lam_t = v.fy;
    for (long s = 0; s < lam->len; ++s) {
        const double t_old = lam->t_old[s], h = lam->h[s];
        const double lo = fmin(t_old, t_old + h), hi = fmax(t_old, t_old + h);
        /* y(t) is one polynomial per forward step, with kinks between them:
         * the Gauss rule runs on each piece of the backward step */
        long f = locate(fwd, hi);
        for (;;) {
            const double a = fwd->t_old[f], b = a + fwd->h[f];
            const double u = fmax(lo, fmin(a, b)), w = fmin(hi, fmax(a, b));
            if (w > u || fwd->len == 1) {
                const double uu = fwd->len == 1 ? lo : u, ww = fwd->len == 1 ? hi : w;
                for (int q = 0; q < k; ++q) {
                    const double tau = uu + GL_X[k - 1][q] * (ww - uu);
                    ds_interp_eval(fwd, tau, v.y);
                    ds_dense_eval(n, lam->d, lam->y_old + (size_t)s * n,
                                  lam->Q + (size_t)s * n * lam->d, (tau - t_old) / h,
                                  lam_t);
                    ++*nvjp;
                    int rc = ds_adjoint_vjp(c, tau, v.y, lam_t, v.dy, v.wy, v.wp);
                    if (rc)
                        return rc;
                    /* mu' = -J_p^T lambda along the backward step h */
                    const double weight = (h < 0 ? 1.0 : -1.0) * (ww - uu) * GL_W[k - 1][q];
                    for (int r = 0; r < m; ++r)
                        mu[r] += weight * v.wp[r];
                }
            }
            /* the next piece down in time */
            const long next = fwd->h[f] > 0 ? f - 1 : f + 1;
            if (fwd->len == 1 || next < 0 || next >= fwd->len
                || fmin(fwd->t_old[f], fwd->t_old[f] + fwd->h[f]) <= lo)
                break;
            f = next;
            fwd->cursor = f;
        }
    }
    return 0;
}

/* ds_erk_step_adjoint with n a parameter, so that tiny systems get it as a
 * constant (tiny.h): their loops over n are most of the step's own cost.
 *
 * carried: a stretch of steps hands the first stage's weight of a step to
 * the step before it, whose last stage is evaluated at the same point (t +
 * h, y_new), so that one vector-Jacobian product serves both (the FSAL pair;
 * a product is linear in its weight).  On entry *carried says v.carry holds
 * such a weight for this step's last stage; hand_on asks to leave this
 * step's own first-stage weight there instead of taking its product.
 * carried NULL: neither. */
DS_TINY_INLINE int step_adjoint(int n, const ds_erk_tableau *tab, ds_adjoint_ctx *c,
                                double t, const double *y, double h,
                                const double *K_known, double *K, double *stage_y,
                                double *kbar, int n_out, const double *theta,
                                const double *w, double *lam, double *pbar, long *nfev,
                                int *carried, int hand_on)
{
    const ds_rhs *b = c->base;
    const int m = b->m, s = tab->s, r = tab->r, d = tab->d;
    const int width = s + 1 + r;
    const scratch_view v = view(c);
    int rc;

    /* The last stage k_s = f(t + h, y_new) matters here only through the
     * interpolant, and through the next step's k_0 if that carried its
     * weight here. */
    int need_last = r > 0;
    for (int j = 0; j < d && n_out > 0; ++j)
        need_last |= tab->P[(size_t)s * d + j] != 0.0;
    const int carry_in = carried != NULL && *carried;

    /* forward: the stages and their arguments, as ds_erk_step computes them
     * (the last one's argument y_new also for a weight carried in) */
    const int stages = need_last ? width : carry_in ? s + 1 : s;
    /* known stages: only their arguments are needed */
    const double *Ks = K_known != NULL ? K_known : K;
    for (int i = 0; i < stages; ++i) {
        double *Yi = stage_y + (size_t)i * n;
        double ci;
        if (i == 0) {
            memcpy(Yi, y, (size_t)n * sizeof(double));
            ci = 0.0;
        } else if (i < s) {
            ds_erk_combine(n, y, h, tab->A + (size_t)i * s, i, Ks, Yi);
            ci = tab->c[i];
        } else if (i == s) {
            ds_erk_combine(n, y, h, tab->b, s, Ks, Yi);
            ci = 1.0;
        } else {
            ds_erk_combine(n, y, h, tab->A_extra + (size_t)(i - s - 1) * width, i, Ks, Yi);
            ci = tab->c_extra[i - s - 1];
        }
        if (K_known != NULL || (i == s && !need_last))
            continue;   /* (a carried weight needs y_new, not k_s) */
        ++*nfev;
        if ((rc = b->f(b->ctx, t + ci * h, Yi, c->p, K + (size_t)i * n)))
            return rc;
    }

    /* reverse: the stages' adjoints kbar_i, last stage first */
    memset(kbar, 0, (size_t)width * n * sizeof(double));
    double *ybar = v.dy;     /* dL/dy of the step's start, accumulated */
    double *ynew_bar = v.fy; /* dL/dy_new */
    memcpy(ynew_bar, lam, (size_t)n * sizeof(double));
    memset(ybar, 0, (size_t)n * sizeof(double));
    if (carry_in) {
        memcpy(kbar + (size_t)s * n, v.carry, (size_t)n * sizeof(double));
        *carried = 0;
    }
    for (int e = 0; e < n_out; ++e) {
        /* y(t + theta h) = y + h sum_i weight_i(theta) k_i, as the forward
         * pass evaluated it */
        const double *we = w + (size_t)e * n;
        double weight[DS_ERK_MAX_STAGES];
        ds_erk_dense_weights(tab, theta[e], weight);
        for (int q = 0; q < n; ++q)
            ybar[q] += we[q];
        for (int i = 0; i < stages; ++i) {
            const double coef = weight[i];
            if (coef != 0.0)
                for (int q = 0; q < n; ++q)
                    kbar[(size_t)i * n + q] += h * coef * we[q];
        }
    }
    for (int i = stages - 1; i >= 0; --i) {
        double *kb = kbar + (size_t)i * n;
        if (i == s - 1) {
            /* y_new = y + h sum_{j<s} b_j k_j: hand dL/dy_new on */
            for (int j = 0; j < s; ++j)
                for (int q = 0; q < n; ++q)
                    kbar[(size_t)j * n + q] += h * tab->b[j] * ynew_bar[q];
            for (int q = 0; q < n; ++q)
                ybar[q] += ynew_bar[q];
        }
        int any = 0;
        for (int q = 0; q < n; ++q)
            any |= kb[q] != 0.0;
        if (!any)
            continue;
        if (i == 0 && hand_on) {   /* the step before takes its product */
            memcpy(v.carry, kb, (size_t)n * sizeof(double));
            *carried = 1;
            continue;
        }
        const double ci = i == 0 ? 0.0 : i < s ? tab->c[i] : i == s ? 1.0
                                                  : tab->c_extra[i - s - 1];
        ++*nfev;
        if ((rc = ds_adjoint_vjp(c, t + ci * h, stage_y + (size_t)i * n, kb,
                                 v.y, v.wy, v.wp)))
            return rc;
        DS_WITH_TINY_N(m, ds_tiny_add(n_, v.wp, pbar); break);
        /* the stage's argument: y + h sum_j a_ij k_j (y_new for i = s) */
        if (i == s) {
            for (int q = 0; q < n; ++q)
                ynew_bar[q] += v.wy[q];
            continue;
        }
        for (int q = 0; q < n; ++q)
            ybar[q] += v.wy[q];
        const double *row = i < s ? tab->A + (size_t)i * s
                                  : tab->A_extra + (size_t)(i - s - 1) * width;
        for (int j = 0; j < i; ++j) {
            const double a = h * row[j];
            if (a != 0.0)
                for (int q = 0; q < n; ++q)
                    kbar[(size_t)j * n + q] += a * v.wy[q];
        }
    }
    memcpy(lam, ybar, (size_t)n * sizeof(double));
    return 0;
}

int ds_erk_step_adjoint(const ds_erk_tableau *tab, ds_adjoint_ctx *c,
                        double t, const double *y, double h, const double *K_known,
                        double *K,
                        double *stage_y, double *kbar, int n_out,
                        const double *theta, const double *w, double *lam,
                        double *pbar, long *nfev)
{
    DS_WITH_TINY_N(c->base->n,
                   return step_adjoint(n_, tab, c, t, y, h, K_known, K, stage_y, kbar,
                                       n_out, theta, w, lam, pbar, nfev, NULL, 0));
}

/* One stored step's discrete adjoint (step j of a stretch; n_out outputs at
 * theta inside it with weights w), for the stretch walker below. */
typedef int (*step_adjoint_fn)(void *ctx, long j, int n_out, const double *theta,
                               const double *w);

/* A stretch of stored steps, last first: the outputs t_eval[.. *i_out] at a
 * step's end jump lam, those inside it go to that step's adjoint. */
static int stretch_adjoint(int n, long len, const double *t_old, const double *h,
                           const double *t_end, const double *t_eval,
                           const double *Wt, long *i_out, double sign,
                           double *theta, double *lam, step_adjoint_fn step,
                           void *step_ctx)
{
    long i = *i_out;
    for (long j = len - 1; j >= 0; --j) {
        for (; i >= 0 && t_eval[i] == t_end[j]; --i)
            for (int q = 0; q < n; ++q)
                lam[q] += Wt[(size_t)i * n + q];
        const long hi = i + 1;
        while (i >= 0 && sign * (t_eval[i] - t_old[j]) >= 0)
            --i;
        const long lo = i + 1;
        for (long e = lo; e < hi; ++e)
            theta[e - lo] = (t_eval[e] - t_old[j]) / h[j];
        int rc = step(step_ctx, j, (int)(hi - lo), theta, Wt + (size_t)lo * n);
        if (rc) {
            *i_out = i;
            return rc;
        }
    }
    *i_out = i;
    return 0;
}

typedef struct erk_stretch {
    const ds_erk_tableau *tab;
    ds_adjoint_ctx *ctx;
    const double *t_old, *h, *y_old, *K_known;
    double *K, *stage_y, *kbar, *lam, *pbar;
    long *nfev;
    int carried;   /* step_adjoint's hand-on between consecutive steps */
} erk_stretch;

static int erk_stored_step(void *ctx, long j, int n_out, const double *theta,
                           const double *w)
{
    erk_stretch *a = (erk_stretch *)ctx;
    const int n = a->ctx->base->n;
    const size_t width = (size_t)ds_erk_stage_count(a->tab) * n;
    /* steps go last first: step j - 1, next, ends where step j starts */
    DS_WITH_TINY_N(n, return step_adjoint(
        n_, a->tab, a->ctx, a->t_old[j], a->y_old + (size_t)j * n, a->h[j],
        a->K_known ? a->K_known + j * width : NULL, a->K, a->stage_y, a->kbar,
        n_out, theta, w, a->lam, a->pbar, a->nfev, &a->carried, j > 0));
}

int ds_erk_stretch_adjoint(const ds_erk_tableau *tab, ds_adjoint_ctx *ctx,
                           long len, const double *t_old, const double *h,
                           const double *t_end, const double *y_old,
                           const double *K_known, const double *t_eval,
                           const double *Wt, long *i_out,
                           double sign, double *K, double *stage_y, double *kbar,
                           double *theta, double *lam, double *pbar, long *nfev)
{
    erk_stretch a = {tab, ctx, t_old, h, y_old, K_known, K, stage_y, kbar, lam, pbar,
                     nfev, 0};
    return stretch_adjoint(ctx->base->n, len, t_old, h, t_end, t_eval, Wt, i_out, sign,
                           theta, lam, erk_stored_step, &a);
}

/* ---- the discrete adjoint of a Rosenbrock step ---- */

static int ros_dense_degree(const ds_ros_tableau *tab)
{
    return tab->q + 1;   /* y(theta) = y_old + sum_{j <= q} Q_j theta^(j+1) */
}

size_t ds_ros_step_adjoint_scratch(const ds_ros_tableau *tab, int n, int m)
{
    /* J, W; the stages and their adjoints; Q's adjoints; ten n-vectors; wp */
    return 2 * (size_t)n * n + 2 * (size_t)tab->s * n
           + (size_t)ros_dense_degree(tab) * n + 10 * (size_t)n + (size_t)m
           + ds_ros_jacobian_scratch(n, n);
}

static double max_abs(int n, const double *x)
{
    double r = 0.0;
    for (int q = 0; q < n; ++q)
        r = fmax(r, fabs(x[q]));
    return r;
}

int ds_ros_step_adjoint(const ds_ros_tableau *tab, ds_adjoint_ctx *c,
                        const ds_lapack *lapack, const double *M, double t,
                        const double *y, double h, double *work, int *ipiv,
                        int n_out, const double *theta, const double *w,
                        double *lam, double *pbar, long *nfev)
{
    const ds_rhs *b = c->base;
    const int n = b->n, m = b->m, s = tab->s, d = ros_dense_degree(tab);
    double *J = work, *W = J + (size_t)n * n;
    double *U = W + (size_t)n * n;            /* s * n */
    double *Ubar = U + (size_t)s * n;         /* s * n */
    double *Qbar = Ubar + (size_t)s * n;      /* d * n */
    double *f0 = Qbar + (size_t)d * n, *dfdt = f0 + n, *ytmp = dfdt + n;
    double *y_new = ytmp + n, *err = y_new + n, *mu = err + n, *ybar = mu + n;
    double *base_w = ybar + n;    /* sum of the adjoints whose J^T is differenced at y */
    double *dfdt_bar = base_w + n, *wy = dfdt_bar + n, *wp = wy + n;
    double *jac_scratch = wp + m;
    long njev = 0;
    int rc;

    /* forward: the step as the solver took it */
    ++*nfev;
    if ((rc = b->f(b->ctx, t, y, c->p, f0)))
        return rc;
    if ((rc = ds_ros_jacobian(b, b, c->p, t, y, f0, J, dfdt, jac_scratch, nfev, &njev)))
        return rc;
    if (ds_ros_factor(lapack, n, tab->gamma * h, M, J, W, ipiv) != 0)
        return DS_FAILED;   /* the forward pass factored this W */
    if ((rc = ds_ros_step(tab, b, n, NULL, lapack, c->p, M, t, y, f0, dfdt, h, W, ipiv,
                          U, ytmp, y_new, err, nfev)))
        return rc;

    /* reverse: the outputs inside the step, y(theta) = y + sum_j Q_j theta^(j+1) */
    memset(Ubar, 0, (size_t)(s + d) * n * sizeof(double));   /* Ubar, Qbar */
    memset(ybar, 0, 3 * (size_t)n * sizeof(double));   /* ybar, base_w, dfdt_bar */
    for (int e = 0; e < n_out; ++e) {
        const double *we = w + (size_t)e * n;
        double power = theta[e];
        for (int q = 0; q < n; ++q)
            ybar[q] += we[q];
        for (int j = 0; j < d; ++j, power *= theta[e])
            for (int q = 0; q < n; ++q)
                Qbar[(size_t)j * n + q] += power * we[q];
    }
    /* Q_0 = y_new - y + K_0, Q_r = K_r - K_{r-1}, Q_q = -K_{q-1}; K_r = sum_i H_ri U_i
     * (ds_ros_dense_coefficients) */
    for (int q = 0; q < n; ++q) {
        lam[q] += Qbar[q];          /* lam: dL/dy_new from here on */
        ybar[q] -= Qbar[q];
    }
    for (int r = 0; r < tab->q; ++r)
        for (int i = 0; i < s; ++i) {
            const double H = tab->H[(size_t)r * s + i];
            if (H != 0.0)
                for (int q = 0; q < n; ++q)
                    Ubar[(size_t)i * n + q] += H * (Qbar[(size_t)r * n + q]
                                                    - Qbar[(size_t)(r + 1) * n + q]);
        }
    /* y_new = y + sum_i m_i U_i */
    for (int q = 0; q < n; ++q)
        ybar[q] += lam[q];
    for (int i = 0; i < s; ++i)
        for (int q = 0; q < n; ++q)
            Ubar[(size_t)i * n + q] += tab->m[i] * lam[q];

    /* the stages, last first: W U_i = f(t + alpha_i h, Y_i) + M sum_j (c_ij / h) U_j
     * + gamma_i h df/dt, Y_i = y + sum_j a_ij U_j */
    const double ynorm = fmax(max_abs(n, y), 1e-8);
    for (int i = s - 1; i >= 0; --i) {
        memcpy(mu, Ubar + (size_t)i * n, (size_t)n * sizeof(double));
        if (max_abs(n, mu) == 0.0)
            continue;
        ds_ros_solve_transposed(lapack, n, W, ipiv, mu);
        const double *a_row = tab->a + (size_t)i * s, *c_row = tab->c + (size_t)i * s;
        /* f at the stage */
        memcpy(ytmp, y, (size_t)n * sizeof(double));
        for (int j = 0; j < i; ++j)
            for (int q = 0; q < n; ++q)
                ytmp[q] += a_row[j] * U[(size_t)j * n + q];
        ++*nfev;
        if ((rc = ds_adjoint_vjp(c, t + tab->alpha[i] * h, ytmp, mu, err, wy, wp)))
            return rc;
        for (int k = 0; k < m; ++k)
            pbar[k] += wp[k];
        for (int q = 0; q < n; ++q)
            ybar[q] += wy[q];
        for (int j = 0; j < i; ++j) {
            double *Ub = Ubar + (size_t)j * n;
            for (int q = 0; q < n; ++q)
                Ub[q] += a_row[j] * wy[q];
            /* M^T mu c_ij / h */
            const double cij = c_row[j] / h;
            if (cij == 0.0)
                continue;
            for (int q = 0; q < n; ++q) {
                double Mmu = mu[q];
                if (M != NULL) {
                    Mmu = 0.0;
                    for (int r = 0; r < n; ++r)
                        Mmu += M[(size_t)q * n + r] * mu[r];   /* column q of M */
                }
                Ub[q] += cij * Mmu;
            }
        }
        for (int q = 0; q < n; ++q)
            dfdt_bar[q] += tab->gammas[i] * h * mu[q];
        /* W = M / (gamma h) - J(y): d(mu^T J(y) U_i)/dy, /dp by a difference
         * of J^T mu along U_i (the base point's term summed in base_w) */
        const double *Ui = U + (size_t)i * n;
        const double unorm = max_abs(n, Ui);
        if (unorm == 0.0)
            continue;
        const double eps = DS_SQRT_EPS * ynorm / unorm;
        for (int q = 0; q < n; ++q)
            ytmp[q] = y[q] + eps * Ui[q];
        ++*nfev;
        if ((rc = ds_adjoint_vjp(c, t, ytmp, mu, err, wy, wp)))
            return rc;
        for (int k = 0; k < m; ++k)
            pbar[k] += wp[k] / eps;
        for (int q = 0; q < n; ++q) {
            ybar[q] += wy[q] / eps;
            base_w[q] += mu[q] / eps;
        }
    }
    /* df/dt = (f(t + dt, y) - f(t, y)) / dt, as ds_ros_jacobian takes it */
    if (!b->autonomous && max_abs(n, dfdt_bar) != 0.0) {
        const double t1 = t + ds_ros_time_delta(t), inv = 1.0 / (t1 - t);
        ++*nfev;
        if ((rc = ds_adjoint_vjp(c, t1, y, dfdt_bar, err, wy, wp)))
            return rc;
        for (int k = 0; k < m; ++k)
            pbar[k] += wp[k] * inv;
        for (int q = 0; q < n; ++q) {
            ybar[q] += wy[q] * inv;
            base_w[q] += dfdt_bar[q] * inv;
        }
    }
    if (max_abs(n, base_w) != 0.0) {
        ++*nfev;
        if ((rc = ds_adjoint_vjp(c, t, y, base_w, err, wy, wp)))
            return rc;
        for (int k = 0; k < m; ++k)
            pbar[k] -= wp[k];
        for (int q = 0; q < n; ++q)
            ybar[q] -= wy[q];
    }
    memcpy(lam, ybar, (size_t)n * sizeof(double));
    return 0;
}

typedef struct ros_stretch {
    const ds_ros_tableau *tab;
    ds_adjoint_ctx *ctx;
    const ds_lapack *lapack;
    const double *t_old, *h, *y_old;
    double *work, *lam, *pbar;
    int *ipiv;
    long *nfev;
} ros_stretch;

static int ros_stored_step(void *ctx, long j, int n_out, const double *theta,
                           const double *w)
{
    const ros_stretch *a = (const ros_stretch *)ctx;
    return ds_ros_step_adjoint(a->tab, a->ctx, a->lapack, NULL, a->t_old[j],
                               a->y_old + (size_t)j * a->ctx->base->n, a->h[j], a->work,
                               a->ipiv, n_out, theta, w, a->lam, a->pbar, a->nfev);
}

int ds_ros_stretch_adjoint(const ds_ros_tableau *tab, ds_adjoint_ctx *ctx,
                           const ds_lapack *lapack, long len, const double *t_old,
                           const double *h, const double *t_end, const double *y_old,
                           const double *t_eval, const double *Wt, long *i_out,
                           double sign, double *work, int *ipiv, double *theta,
                           double *lam, double *pbar, long *nfev)
{
    ros_stretch a = {tab, ctx, lapack, t_old, h, y_old, work, lam, pbar, ipiv, nfev};
    return stretch_adjoint(ctx->base->n, len, t_old, h, t_end, t_eval, Wt, i_out, sign,
                           theta, lam, ros_stored_step, &a);
}

/* 'gauss': the parameter integral over the step the backward solve just took. */
static int gauss_on_step(void *ctx, double t_old, double h, const double *y_old,
                         const double *Q)
{
    ds_backward *B = (ds_backward *)ctx;
    ds_interp step;
    step.n = B->ctx->base->n;
    step.d = B->solver->d;
    step.len = 1;
    step.t_old = &t_old;
    step.h = &h;
    step.y_old = y_old;
    step.Q = Q;
    step.cursor = 0;
    return ds_adjoint_quadrature(B->ctx, &step, B->nodes, B->mu, &B->nvjp);
}

void ds_backward_begin(ds_backward *B, double t_lo, double t_hi)
{
    B->t_lo = t_lo;
    B->tau = t_hi;
    B->target = t_hi;
    B->running = 0;
}

/* Output i's jump, and backsolve's check that y still follows the forward
 * solution there. */
static int jump(ds_backward *B, long i)
{
    const int n = B->ctx->base->n;
    const double *w = B->Wt + (size_t)i * n;
    double *lam = B->z + B->jump_at;
    int nonzero = 0;
    for (int q = 0; q < n; ++q) {
        lam[q] += w[q];
        nonzero |= w[q] != 0.0;
    }
    if (B->y_ref != NULL) {
        const double *ref = B->y_ref + (size_t)i * n;
        for (int q = 0; q < n; ++q) {
            const double off = fabs(B->z[q] - ref[q]) / (B->atol + B->rtol * fabs(ref[q]));
            B->drift = isnan(off) ? INFINITY : fmax(B->drift, off);
        }
    }
    return nonzero;
}

int ds_backward_run(ds_backward *B, ds_output *out)
{
    ds_problem *pb = B->pb;
    const int N = pb->rhs->n;
    for (;;) {
        if (!B->running) {
            int jumped = 0;
            while (B->i_out >= 0 && B->t_eval[B->i_out] == B->tau)
                jumped |= jump(B, B->i_out--);
            if (B->tau == B->t_lo)
                return DS_FINISHED;
            B->target = B->i_out >= 0 && B->sign * (B->t_eval[B->i_out] - B->t_lo) > 0
                        ? B->t_eval[B->i_out] : B->t_lo;
            pb->t0 = B->tau;
            pb->t_bound = B->target;
            pb->y0 = B->z;
            /* a jump starts a fast transient of lambda on stiff problems: the
             * automatic first step; else go on with the step size reached */
            pb->first_step = jumped ? 0.0 : B->h_next;
            pb->on_step = B->nodes > 0 ? gauss_on_step : NULL;
            pb->on_step_ctx = B;
            /* y(t) has kinks where the forward steps meet: the backward steps
             * end there too, so that neither lambda's steps nor its
             * interpolant (the Gauss rule reads it) straddle one */
            if (B->ctx->interp != NULL && B->ctx->mode != DS_ADJ_BACKSOLVE) {
                pb->tstops = B->ctx->interp->t_old;
                pb->n_tstops = B->ctx->interp->len;
            }
            ds_solver_init(B->solver, pb, B->work);
            B->running = 1;
        }
        const int rc = ds_run(B->solver, out);
        if (rc == DS_NEED_SPACE || rc == DS_YIELD)
            return rc;
        B->nfev += B->solver->nfev;
        B->n_accepted += B->solver->n_accepted;
        B->n_rejected += B->solver->n_rejected;
        B->solver->nfev = B->solver->n_accepted = B->solver->n_rejected = 0;
        if (rc != DS_FINISHED)
            return rc;
        for (int q = 0; q < N; ++q) {
            if (!isfinite(B->solver->y[q])) {
                snprintf(B->solver->message, sizeof(B->solver->message),
                         "the adjoint became non-finite.");
                return DS_FAILED;
            }
        }
        memcpy(B->z, B->solver->y, (size_t)N * sizeof(double));
        B->h_next = B->solver->h_abs;
        B->tau = B->target;
        B->running = 0;
    }
}
