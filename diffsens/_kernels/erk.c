#include <math.h>
#include <string.h>

#include "erk.h"
#include "lanes.h"
#include "tiny.h"

int ds_erk_stage_count(const ds_erk_tableau *tab)
{
    return tab->s + 1 + tab->r;
}

/* out = y + h sum_j coef[j] K_j.  Tiny systems keep every sum in a
 * register; larger ones go stage by stage, so that the inner loop runs over
 * contiguous components (and vectorizes) and zero coefficients (common in
 * the higher-order tableaus) cost nothing.  Both add the terms in the same
 * order. */
DS_TINY_INLINE void combine_tiny(int n, const double *y, double h, const double *coef,
                                 int count, const double *K, double *out)
{
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    for (int j = 0; j < count; ++j)
        for (int q = 0; q < n; ++q)
            acc[q] += coef[j] * K[(size_t)j * n + q];
    for (int q = 0; q < n; ++q)
        out[q] = y[q] + h * acc[q];
}

/* acc = sum_j coef[j] K_j (count >= 1), stage by stage */
DS_TINY_INLINE void combine_terms(int n, const double *coef, int count, const double *K,
                                  double *acc)
{
    const double c0 = coef[0];
#define FIRST_TERM(AT) (c0 * AT(K))
    DS_FOR_LANES(n, acc, FIRST_TERM);
    for (int j = 1; j < count; ++j) {
        const double c = coef[j];
        if (c == 0.0)
            continue;
        const double *Kj = K + (size_t)j * n;
#define NEXT_TERM(AT) (AT(acc) + c * AT(Kj))
        DS_FOR_LANES(n, acc, NEXT_TERM);
    }
}

DS_TINY_INLINE void combine(int n, const double *y, double h, const double *coef,
                            int count, const double *K, double *out)
{
    if (n <= 4) {
        combine_tiny(n, y, h, coef, count, K, out);
        return;
    }
    if (count == 0) {
        memcpy(out, y, (size_t)n * sizeof(double));
        return;
    }
    if (n <= DS_SMALL_N_MAX) {
        /* a local sum, which no stage aliases: kept out of memory */
        double acc[DS_SMALL_N_MAX];
        combine_terms(n, coef, count, K, acc);
#define FROM_Y_ACC(AT) (AT(y) + h * AT(acc))
        DS_FOR_LANES(n, out, FROM_Y_ACC);
        return;
    }
    combine_terms(n, coef, count, K, out);
#define FROM_Y(AT) (AT(y) + h * AT(out))
    DS_FOR_LANES(n, out, FROM_Y);
}

void ds_erk_combine(int n, const double *y, double h, const double *coef,
                    int count, const double *K, double *out)
{
    DS_WITH_SMALL_N(n, combine(n_, y, h, coef, count, K, out); return);
}

DS_TINY_INLINE int erk_step(int n, const ds_erk_tableau *tab, const ds_rhs *rhs,
                            const double *p, double t, const double *y, double h,
                            double *K, double *ytmp, double *y_new, double *y_stiff,
                            int with_last, long *nfev)
{
    const int s = tab->s;
    for (int i = 1; i < s; ++i) {
        combine(n, y, h, tab->A + (size_t)i * s, i, K, ytmp);
        if (i == tab->stiffness_stage && y_stiff != NULL)
            memcpy(y_stiff, ytmp, (size_t)n * sizeof(double));
        ++*nfev;
        int rc = rhs->f(rhs->ctx, t + tab->c[i] * h, ytmp, p, K + (size_t)i * n);
        if (rc)
            return rc;
    }
    combine(n, y, h, tab->b, s, K, y_new);
    if (with_last) {
        ++*nfev;
        return rhs->f(rhs->ctx, t + h, y_new, p, K + (size_t)s * n);
    }
    return 0;
}

int ds_erk_step(const ds_erk_tableau *tab, const ds_rhs *rhs, const double *p,
                double t, const double *y, double h, double *K, double *ytmp,
                double *y_new, double *y_stiff, int with_last, long *nfev)
{
    DS_WITH_SMALL_N(rhs->n, return erk_step(n_, tab, rhs, p, t, y, h, K, ytmp, y_new,
                                            y_stiff, with_last, nfev));
}

DS_TINY_INLINE double error_sum(int n_norm, int n, int stages, const double *e,
                                const double *K, const double *y, const double *y_new,
                                const double *rtol, int rtol_len,
                                const double *atol, int atol_len)
{
    double sum = 0.0;
    for (int q = 0; q < n_norm; ++q) {
        const double ay = fabs(y[q]), an = fabs(y_new[q]);
        const double scale = atol[atol_len == 1 ? 0 : q]
                             + rtol[rtol_len == 1 ? 0 : q] * (ay > an ? ay : an);
        double err = 0.0;
        for (int i = 0; i < stages; ++i)
            err += e[i] * K[(size_t)i * n + q];
        err /= scale;
        sum += err * err;
    }
    return sum;
}

double ds_erk_error_norm(const ds_erk_tableau *tab, int n_norm, int n, double h,
                         const double *K, const double *y, const double *y_new,
                         const double *rtol, int rtol_len,
                         const double *atol, int atol_len)
{
    /* k_s holds stale data unless the estimate uses it: never touch it then
     * (0 * NaN would poison the norm). */
    const int stages = tab->s + ds_erk_error_uses_last_stage(tab);
    double sum;
    if (n_norm == n) {
        DS_WITH_SMALL_N(n, sum = error_sum(n_, n_, stages, tab->e, K, y, y_new, rtol,
                                           rtol_len, atol, atol_len); break);
    } else {   /* the first n_norm of n states (forward sensitivities) */
        DS_WITH_TINY_N(n_norm, sum = error_sum(n_, n, stages, tab->e, K, y, y_new, rtol,
                                               rtol_len, atol, atol_len); break);
    }
    if (tab->e_low == NULL)
        return fabs(h) * sqrt(sum / n_norm);
    /* Hairer's DOP853 estimate: the 5th-order error, damped where the
     * 3rd-order one says the 5th is pessimistic (scipy uses the same). */
    const double sum_low = error_sum(n_norm, n, stages, tab->e_low, K, y, y_new, rtol,
                                     rtol_len, atol, atol_len);
    if (sum == 0.0 && sum_low == 0.0)
        return 0.0;
    return fabs(h) * sum / sqrt((sum + 0.01 * sum_low) * n_norm);
}

int ds_erk_extra_stages(const ds_erk_tableau *tab, const ds_rhs *rhs,
                        const double *p, double t, const double *y, double h,
                        double *K, double *ytmp, long *nfev)
{
    const int n = rhs->n, s = tab->s, width = s + 1 + tab->r;
    for (int j = 0; j < tab->r; ++j) {
        const int stage = s + 1 + j;
        ds_erk_combine(n, y, h, tab->A_extra + (size_t)j * width, stage, K, ytmp);
        ++*nfev;
        int rc = rhs->f(rhs->ctx, t + tab->c_extra[j] * h, ytmp, p,
                        K + (size_t)stage * n);
        if (rc)
            return rc;
    }
    return 0;
}

void ds_erk_dense_coefficients(const ds_erk_tableau *tab, int n, double h,
                               const double *K, double *Q)
{
    const int d = tab->d, stages = ds_erk_stage_count(tab);
    /* one sum per coefficient, in a register: small systems are the common
     * case, where loops over n would be all overhead */
    for (int q = 0; q < n; ++q) {
        for (int j = 0; j < d; ++j) {
            double acc = 0.0;
            for (int i = 0; i < stages; ++i)
                acc += tab->P[(size_t)i * d + j] * K[(size_t)i * n + q];
            Q[(size_t)q * d + j] = h * acc;
        }
    }
}

/* Stage i's interpolant weight sum_j P_ij theta^(j+1) (Horner). */
DS_TINY_INLINE double stage_weight(const double *Pi, int d, double theta)
{
    double acc = Pi[d - 1];
    for (int j = d - 2; j >= 0; --j)
        acc = acc * theta + Pi[j];
    return acc * theta;
}

DS_TINY_INLINE void dense_weights(int d, int stages, const double *P, double theta,
                                  double *weight)
{
    for (int i = 0; i < stages; ++i)
        weight[i] = stage_weight(P + (size_t)i * d, d, theta);
}

void ds_erk_dense_weights(const ds_erk_tableau *tab, double theta, double *weight)
{
    const int stages = ds_erk_stage_count(tab);
    switch (tab->d) {   /* the shipped degrees, unrolled */
    case 3: dense_weights(3, stages, tab->P, theta, weight); break;
    case 4: dense_weights(4, stages, tab->P, theta, weight); break;
    case 7: dense_weights(7, stages, tab->P, theta, weight); break;
    default: dense_weights(tab->d, stages, tab->P, theta, weight); break;
    }
}

/* The interpolant at theta for a tiny system: each stage's weight goes
 * straight into the sums, in the order ds_erk_combine adds them, so the
 * result is the same to the bit as the weights-then-combine route below. */
DS_TINY_INLINE void dense_direct_tiny(int n, int d, int stages, const double *P,
                                      double h, const double *K, const double *y_old,
                                      double theta, double *out)
{
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    for (int i = 0; i < stages; ++i) {
        const double w = stage_weight(P + (size_t)i * d, d, theta);
        for (int q = 0; q < n; ++q)
            acc[q] += w * K[(size_t)i * n + q];
    }
    for (int q = 0; q < n; ++q)
        out[q] = y_old[q] + h * acc[q];
}

#define DS_DENSE_TINY(N)                                                           \
    switch (tab->d) {                                                              \
    case 3: dense_direct_tiny(N, 3, stages, tab->P, h, K, y_old, theta, out); return; \
    case 4: dense_direct_tiny(N, 4, stages, tab->P, h, K, y_old, theta, out); return; \
    case 7: dense_direct_tiny(N, 7, stages, tab->P, h, K, y_old, theta, out); return; \
    default: dense_direct_tiny(N, tab->d, stages, tab->P, h, K, y_old, theta, out); return; \
    }

void ds_erk_dense_direct(const ds_erk_tableau *tab, int n, double h,
                         const double *K, const double *y_old, double theta,
                         double *out)
{
    const int stages = ds_erk_stage_count(tab);
    if (n <= 4)
        DS_WITH_TINY_N(n, DS_DENSE_TINY(n_));
    double weight[DS_ERK_MAX_STAGES];
    ds_erk_dense_weights(tab, theta, weight);
    ds_erk_combine(n, y_old, h, weight, stages, K, out);
}

#undef DS_DENSE_TINY

void ds_dense_eval(int n, int d, const double *y_old, const double *Q,
                   double theta, double *out)
{
    if (n <= 4) {
        /* the components' Horner chains side by side (the same operations
         * per component): independent work in place of one long chain */
        DS_WITH_TINY_N(n, {
            double acc[4];
            for (int q = 0; q < n_; ++q)
                acc[q] = Q[(size_t)q * d + d - 1];
            for (int j = d - 2; j >= 0; --j)
                for (int q = 0; q < n_; ++q)
                    acc[q] = acc[q] * theta + Q[(size_t)q * d + j];
            for (int q = 0; q < n_; ++q)
                out[q] = y_old[q] + acc[q] * theta;
            return;
        });
    }
    for (int q = 0; q < n; ++q) {
        const double *Qq = Q + (size_t)q * d;
        double acc = Qq[d - 1];
        for (int j = d - 2; j >= 0; --j)
            acc = acc * theta + Qq[j];
        out[q] = y_old[q] + acc * theta;
    }
}
