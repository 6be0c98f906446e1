#include <math.h>
#include <stdint.h>

#include "control.h"

double ds_ctrl_initial_memory(int error_order)
{
    return pow(DS_CTRL_QOLD_FLOOR, 0.4 / (error_order + 1.0));
}

int ds_ctrl_judge(double err, int error_order, int rejected, double *qold_pow,
                  double *h_abs, double *h_next)
{
    const double q_exp = error_order + 1.0;
    const double beta1 = 0.7 / q_exp, beta2 = 0.4 / q_exp;
    /* one log and exps rather than two pows: this runs every step, and in
     * small systems it is a visible share of the step */
    const double log_err = log(err);
    const double q11 = exp(beta1 * log_err);
    if (err <= 1.0) {
        double q = q11 / *qold_pow / DS_CTRL_GAMMA;
        q = fmin(1.0 / DS_CTRL_QMIN, fmax(1.0 / DS_CTRL_QMAX, q));
        *h_next = *h_abs / q;
        if (rejected)   /* Hairer: no growth right after a rejection */
            *h_next = fmin(*h_next, *h_abs);
        *qold_pow = err > DS_CTRL_QOLD_FLOOR ? exp(beta2 * log_err)
                                             : pow(DS_CTRL_QOLD_FLOOR, beta2);
        return 1;
    }
    *h_abs /= fmin(1.0 / DS_CTRL_QMIN, q11 / DS_CTRL_GAMMA);
    return 0;
}

int ds_initial_step(const ds_rhs *rhs, const double *p, double t0, double t_bound,
                    double max_step, int error_order, int n_norm,
                    const double *y, const double *f0, const double *rtol,
                    int rtol_len, const double *atol, int atol_len, double *f1,
                    double *y1, long *nfev, double *h_out)
{
    const int n = rhs->n;
    const double direction = t_bound >= t0 ? 1.0 : -1.0;
    const double interval = fabs(t_bound - t0);
    double d0 = 0.0, d1 = 0.0, d2 = 0.0;
    for (int q = 0; q < n_norm; ++q) {
        const double scale = atol[atol_len == 1 ? 0 : q]
                             + fabs(y[q]) * rtol[rtol_len == 1 ? 0 : q];
        d0 += (y[q] / scale) * (y[q] / scale);
        d1 += (f0[q] / scale) * (f0[q] / scale);
    }
    d0 = sqrt(d0 / n_norm);
    d1 = sqrt(d1 / n_norm);
    double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    h0 = fmin(h0, interval);
    for (int q = 0; q < n; ++q)
        y1[q] = y[q] + h0 * direction * f0[q];
    ++*nfev;
    int rc = rhs->f(rhs->ctx, t0 + h0 * direction, y1, p, f1);
    if (rc)
        return rc;
    for (int q = 0; q < n_norm; ++q) {
        const double scale = atol[atol_len == 1 ? 0 : q]
                             + fabs(y[q]) * rtol[rtol_len == 1 ? 0 : q];
        const double diff = (f1[q] - f0[q]) / scale;
        d2 += diff * diff;
    }
    d2 = sqrt(d2 / n_norm) / h0;
    double h1;
    if (d1 <= 1e-15 && d2 <= 1e-15)
        h1 = fmax(1e-6, h0 * 1e-3);
    else
        h1 = pow(0.01 / fmax(d1, d2), 1.0 / (error_order + 1));
    *h_out = fmin(fmin(100 * h0, h1), fmin(interval, max_step));
    return 0;
}

double ds_ctrl_min_step(double t, int dir)
{
    /* the neighbouring double by its bits: the libm call showed in the
     * profile of small solves, where this runs every step */
    if (!isfinite(t))
        return 10.0 * fabs(nextafter(t, dir * INFINITY) - t);
    if (t == 0.0)
        return 10.0 * 4.9406564584124654e-324;   /* the smallest subnormal */
    union { double d; uint64_t u; } bits = {t};
    /* one unit in the last place away from zero, or towards it */
    bits.u += (t > 0.0) == (dir > 0) ? 1 : (uint64_t)-1;
    return 10.0 * fabs(bits.d - t);
}
