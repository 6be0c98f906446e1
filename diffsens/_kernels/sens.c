#include <math.h>
#include <stddef.h>
#include <string.h>

#include "sens.h"

static int sens_f(void *ctx, double t, const double *Y, const double *p,
                  double *dY)
{
    const ds_sens_ctx *c = (const ds_sens_ctx *)ctx;
    const ds_rhs *base = c->base;
    const int n = base->n;
    return base->jvp(base->ctx, t, Y, p, c->k, Y + n, c->p_seed, dY, dY + n);
}

void ds_sens_rhs_init(ds_rhs *aug, ds_sens_ctx *ctx, const ds_rhs *base, int k,
                      const double *p_seed)
{
    ctx->base = base;
    ctx->k = k;
    ctx->p_seed = p_seed;
    ctx->exact = 0;
    aug->ctx = ctx;
    aug->n = base->n * (1 + k);
    aug->m = base->m;
    aug->f = sens_f;
    aug->jvp = NULL;   /* second derivatives: not offered */
    aug->vjp = NULL;
    aug->jac = NULL;
    aug->jvp2 = NULL;
    aug->autonomous = base->autonomous;
}

/* out (N - n) = d/du F_S: (F_S(Y + eps u) - F_S(Y)) / eps, eps a
 * sqrt(eps)-relative step along u (the usual forward-difference step), or
 * exactly by a second-order pass along u and the sensitivity directions. */
int ds_sens_coupling(void *ctx, double t, const double *Y, const double *F,
                     const double *p, const double *u, double *out)
{
    const ds_sens_ctx *c = (const ds_sens_ctx *)ctx;
    const ds_rhs *base = c->base;
    const int n = base->n, N = n * (1 + c->k);
    double *Yp = c->scratch, *Fp = c->scratch + N;
    if (c->exact)   /* (f, J u and F_S: scratch) */
        return base->jvp2(base->ctx, t, Y, p, 1, u, c->k, Y + n, c->p_seed, Yp, Yp + n,
                          Yp + 2 * (size_t)n, out);
    double ynorm = 0.0, unorm = 0.0;
    for (int i = 0; i < n; ++i) {
        ynorm = fmax(ynorm, fabs(Y[i]));
        unorm = fmax(unorm, fabs(u[i]));
    }
    if (unorm == 0.0) {
        memset(out, 0, (size_t)(N - n) * sizeof(double));
        return 0;
    }
    const double eps = DS_SQRT_EPS * fmax(ynorm, 1e-8) / unorm;
    memcpy(Yp, Y, (size_t)N * sizeof(double));
    for (int i = 0; i < n; ++i)
        Yp[i] += eps * u[i];
    int rc = sens_f(ctx, t, Yp, p, Fp);
    if (rc)
        return rc;
    const double inv = 1.0 / eps;
    for (int i = n; i < N; ++i)
        out[i - n] = (Fp[i] - F[i]) * inv;
    return 0;
}

/* The state directions e_j are the pass's first set, the sensitivity
 * directions (S, P) its second, so column j of the block is d/dy_j of the
 * lanes (S, P). */
int ds_sens_coupling_evaluate(void *ctx, double t, const double *Y,
                              const double *p, double *F, double *J)
{
    const ds_sens_ctx *c = (const ds_sens_ctx *)ctx;
    const ds_rhs *base = c->base;
    const int n = base->n;
    double *ident = c->scratch + 2 * (size_t)n * (1 + c->k);
    memset(ident, 0, (size_t)n * n * sizeof(double));
    for (int j = 0; j < n; ++j)
        ident[(size_t)j * n + j] = 1.0;
    return base->jvp2(base->ctx, t, Y, p, n, ident, c->k, Y + n, c->p_seed, F, J,
                      F + n, c->block);
}

int ds_sens_coupling_prepare(void *ctx, double t, const double *Y,
                             const double *F, const double *p)
{
    ds_sens_ctx *c = (ds_sens_ctx *)ctx;
    const ds_rhs *base = c->base;
    const int n = base->n, N = n * (1 + c->k), rows = N - n;
    double *Yp = c->scratch, *Fp = c->scratch + N;
    if (base->jvp2 != NULL)   /* exactly (F and J: scratch) */
        return ds_sens_coupling_evaluate(ctx, t, Y, p, Fp,
                                         c->scratch + 2 * (size_t)N + (size_t)n * n);
    double ynorm = 0.0;
    for (int i = 0; i < n; ++i)
        ynorm = fmax(ynorm, fabs(Y[i]));
    /* the step ds_sens_coupling takes along a unit direction */
    const double eps = DS_SQRT_EPS * fmax(ynorm, 1e-8);
    memcpy(Yp, Y, (size_t)N * sizeof(double));
    for (int j = 0; j < n; ++j) {
        Yp[j] = Y[j] + eps;
        /* 1 / the step actually taken: a multiplication per entry (the
         * divisions were 3% of a ROBER sensitivity solve) */
        const double inv = 1.0 / (Yp[j] - Y[j]);
        int rc = sens_f(ctx, t, Yp, p, Fp);
        if (rc)
            return rc;
        double *col = c->block + (size_t)j * rows;
        for (int r = 0; r < rows; ++r)
            col[r] = (Fp[n + r] - F[n + r]) * inv;
        Yp[j] = Y[j];
    }
    return 0;
}
