/*
 * Explicit Runge-Kutta: one generic step driven by tableau data.
 *
 * Stage convention (shared with diffsens/_tableaus.py):
 *   k_0 = f(t, y)                   (the previous step's k_s: first same as last)
 *   k_i = f(t + c_i h, y + h sum_{j<i} A_ij k_j),  i = 1..s-1
 *   y_new = y + h sum_i b_i k_i,    k_s = f(t + h, y_new)
 *   err = h sum_{i<=s} e_i k_i
 *   extra dense-output stages k_{s+1..s+r} (computed only when a step's
 *   interpolant is needed), then
 *   y(t + theta h) = y + sum_j Q_j theta^(j+1),  Q_j = h sum_i P_ij k_i.
 *
 * K is stage-major: stage i of state component q lives at K[i * n + q].
 */
#ifndef DIFFSENS_ERK_H
#define DIFFSENS_ERK_H

#include "rhs.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ds_erk_tableau {
    int s;                  /* main stages */
    int r;                  /* extra dense-output stages */
    int d;                  /* degree of the dense-output polynomial */
    int order;              /* order of the propagated solution */
    int error_order;        /* order of the embedded solution */
    const double *c;        /* s */
    const double *A;        /* s * s, row-major, strictly lower */
    const double *b;        /* s */
    const double *e;        /* s + 1 */
    const double *e_low;    /* s + 1, or NULL (DOP853's 3rd-order estimate) */
    const double *c_extra;  /* r */
    const double *A_extra;  /* r * (s + 1 + r) */
    const double *P;        /* (s + 1 + r) * d */
    int stiffness_stage;    /* a stage with c = 1 besides k_s, or -1 */
    double stability_boundary;  /* real-axis stability interval length */
} ds_erk_tableau;

/* A stage's argument, out = y + h sum_j coef[j] K_j over the first `count` stages; out must
 * not alias y or K. */
void ds_erk_combine(int n, const double *y, double h, const double *coef,
                    int count, const double *K, double *out);

/* Number of stage vectors K must hold: s + 1 + r. */
int ds_erk_stage_count(const ds_erk_tableau *tab);

/* Does the error estimate use k_s = f(t + h, y_new)?  If not, k_s is only
 * evaluated once a step has been accepted.  (Inline: the driver asks every
 * step.) */
static inline int ds_erk_error_uses_last_stage(const ds_erk_tableau *tab)
{
    const int s = tab->s;
    return tab->e[s] != 0.0 || (tab->e_low != NULL && tab->e_low[s] != 0.0);
}

/*
 * Stages k_1..k_{s-1} (K[0] must hold f(t, y)), y_new, and k_s when
 * `with_last` is set.  `y_stiff` (may be NULL) receives the argument of the
 * tableau's stiffness stage.  Returns the RHS's nonzero code on a stop.
 */
int ds_erk_step(const ds_erk_tableau *tab, const ds_rhs *rhs, const double *p,
                double t, const double *y, double h, double *K, double *ytmp,
                double *y_new, double *y_stiff, int with_last, long *nfev);

/* RMS norm of err / (atol + rtol max(|y|, |y_new|)) over the first n_norm
 * components (stage vectors have stride n), Hairer/scipy style; DOP853's
 * two-estimate combination when e_low is present. */
double ds_erk_error_norm(const ds_erk_tableau *tab, int n_norm, int n, double h,
                         const double *K, const double *y, const double *y_new,
                         const double *rtol, int rtol_len,
                         const double *atol, int atol_len);

/* Extra stages k_{s+1..s+r} for the interpolant over [t, t + h]. */
int ds_erk_extra_stages(const ds_erk_tableau *tab, const ds_rhs *rhs,
                        const double *p, double t, const double *y, double h,
                        double *K, double *ytmp, long *nfev);

/* Q (n * d, component-major: Q[q * d + j]) from the stages. */
void ds_erk_dense_coefficients(const ds_erk_tableau *tab, int n, double h,
                               const double *K, double *Q);

/* Most stages (main, k_s and extra) a tableau may have: the C side keeps
 * per-stage weights on the stack. */
#define DS_ERK_MAX_STAGES 32

/* The interpolant's stage weights at theta: weight[i] = sum_j P_ij
 * theta^(j+1), so that y(t_old + theta h) = y_old + h sum_i weight[i] k_i
 * (weight holds ds_erk_stage_count(tab) entries). */
void ds_erk_dense_weights(const ds_erk_tableau *tab, double theta, double *weight);

/* y(t_old + theta h) straight from the stages, without the coefficients Q:
 * y_old + h sum_i (sum_j P_ij theta^(j+1)) k_i.  Cheaper than building Q
 * when a step has only a few output points. */
void ds_erk_dense_direct(const ds_erk_tableau *tab, int n, double h,
                         const double *K, const double *y_old, double theta,
                         double *out);

/* out = y_old + sum_j Q_j theta^(j+1) (Horner). */
void ds_dense_eval(int n, int d, const double *y_old, const double *Q,
                   double theta, double *out);

#ifdef __cplusplus
}
#endif

#endif /* DIFFSENS_ERK_H */
