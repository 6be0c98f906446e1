/*
 * Step-size control shared by the drivers (integrate.c, reversible.c): the
 * initial step of Hairer, Norsett & Wanner (1993), II.4 (scipy's
 * select_initial_step), and the PI controller of OrdinaryDiffEq.jl
 * (beta1 = 7/(10q), beta2 = 2/(5q) for an error estimate of order q - 1)
 * with Hairer's limits on growth and shrinkage.
 */
#ifndef DIFFSENS_CONTROL_H
#define DIFFSENS_CONTROL_H

#include "rhs.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_CTRL_GAMMA 0.9   /* safety factor */
#define DS_CTRL_QMIN 0.2    /* largest shrink per step: h * 0.2 */
#define DS_CTRL_QMAX 10.0   /* largest growth per step: h * 10 */
#define DS_CTRL_QOLD_FLOOR 1e-4

/* The controller's memory before the first step, (floor)^beta2. */
double ds_ctrl_initial_memory(int error_order);

/* The smallest step from t in direction dir: 10 |nextafter(t, dir inf) - t|,
 * scipy's floor. */
double ds_ctrl_min_step(double t, int dir);

/*
 * After a trial step of size *h_abs with error norm err (finite): on
 * acceptance (err <= 1) returns 1, sets *h_next (no growth right after a
 * rejection) and updates the memory *qold_pow; otherwise returns 0 and
 * shrinks *h_abs for the retry.
 */
int ds_ctrl_judge(double err, int error_order, int rejected, double *qold_pow,
                  double *h_abs, double *h_next);

/*
 * The first step from (t0, y) with f0 = f(t0, y), over the first n_norm
 * components; one evaluation of f (into f1, at y1: n doubles each).
 * Returns the RHS's nonzero code on a stop.
 */
int ds_initial_step(const ds_rhs *rhs, const double *p, double t0, double t_bound,
                    double max_step, int error_order, int n_norm,
                    const double *y, const double *f0, const double *rtol,
                    int rtol_len, const double *atol, int atol_len, double *f1,
                    double *y1, long *nfev, double *h_out);

#ifdef __cplusplus
}
#endif

#endif /* DIFFSENS_CONTROL_H */
