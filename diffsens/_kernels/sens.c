#include <stddef.h>

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
    aug->ctx = ctx;
    aug->n = base->n * (1 + k);
    aug->m = base->m;
    aug->f = sens_f;
    aug->jvp = NULL;   /* second derivatives: not offered */
    aug->vjp = NULL;
    aug->jac = NULL;
    aug->autonomous = base->autonomous;
}
