/*
 * Rosenbrock (linearly implicit) steps, driven by tableau data.
 *
 * Hairer & Wanner's transformed form (II, IV.7), with a constant mass matrix:
 *
 *   W U_i = f(t + alpha_i h, y + sum_{j<i} a_ij U_j)
 *           + M sum_{j<i} (c_ij / h) U_j + gamma_i h df/dt,
 *   W = M / (gamma h) - J,      y_new = y + sum_i m_i U_i,
 *   err = sum_i e_i U_i,
 *   y(t + theta h) = (1 - theta) y + theta (y_new + (1 - theta)
 *                    (K_0 + theta (K_1 + theta (K_2 + ...)))),  K_r = sum_i H_ri U_i
 *
 * W is factored once per step attempt with LAPACK's dgetrf; every stage is
 * one dgetrs.  LAPACK comes in as function pointers (scipy.linalg's
 * cython_lapack, handed over by the Cython layer), so this file links
 * against nothing.
 */
#ifndef DIFFSENS_ROSENBROCK_H
#define DIFFSENS_ROSENBROCK_H

#include <math.h>

#include "rhs.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ds_ros_tableau {
    int s;                  /* stages */
    int q;                  /* dense-output rows */
    int order, error_order;
    double gamma;
    const double *a, *c;    /* s * s, row-major, strictly lower */
    const double *alpha;    /* s */
    const double *gammas;   /* s */
    const double *m, *e;    /* s */
    const double *H;        /* q * s */
    /* shortcuts the coefficients allow (the tableau's properties of the
     * same names): stage i's argument is stage i-1's + a_{i,i-1} U_{i-1}
     * (s flags); y_new is the last stage's argument + U_{s-1}; err = U_{s-1} */
    const int *argument_steps;
    int stiffly_accurate;
    int error_is_last_stage;
} ds_ros_tableau;

typedef void (*ds_dgetrf_fn)(int *m, int *n, double *a, int *lda, int *ipiv,
                             int *info);
typedef void (*ds_dgetrs_fn)(char *trans, int *n, int *nrhs, double *a,
                             int *lda, int *ipiv, double *b, int *ldb,
                             int *info);

typedef struct ds_lapack {
    ds_dgetrf_fn dgetrf;
    ds_dgetrs_fn dgetrs;
} ds_lapack;

/* Doubles of scratch ds_ros_jacobian needs (rhs of N states, jac_rhs of n). */
size_t ds_ros_jacobian_scratch(int N, int n);

/*
 * J = df/dy (n x n, column-major) of jac_rhs, and dfdt = df/dt (N) of rhs, at
 * (t, y); f0 = rhs's f(t, y) is given.  jac_rhs is rhs itself, or for forward
 * sensitivities the base system whose first n states rhs augments (its
 * Jacobian serves every block of the augmented state: the blocks coupling S
 * to y are left out, as a W-method would).  J comes from, in this order:
 * jac_rhs's jvp with n identity lanes (exact), its jac, or forward
 * differences.  df/dt is zero for an autonomous rhs, else a forward
 * difference.  Returns the rhs's nonzero code on a stop.
 */
/* The step in t of ds_ros_jacobian's forward difference for df/dt. */
static inline double ds_ros_time_delta(double t)
{
    return DS_SQRT_EPS * fmax(fabs(t), 1.0);
}

int ds_ros_jacobian(const ds_rhs *rhs, const ds_rhs *jac_rhs, const double *p,
                    double t, const double *y, const double *f0, double *J,
                    double *dfdt, double *scratch, long *nfev, long *njev);

/* dfdt = df/dt (N) of rhs at (t, y), f0 = f(t, y) given: zero for an
 * autonomous rhs, else a forward difference (scratch: N doubles). */
int ds_ros_time_derivative(const ds_rhs *rhs, const double *p, double t,
                           const double *y, const double *f0, double *dfdt,
                           double *scratch, long *nfev);

/* W = M / (gamma h) - J factored in place (M NULL: identity).  Returns
 * LAPACK's info: 0, or > 0 when W is singular. */
int ds_ros_factor(const ds_lapack *lapack, int n, double gamma_h,
                  const double *M, const double *J, double *W, int *ipiv);

/* x <- W^{-T} x, W (n x n) factored by ds_ros_factor (the discrete
 * adjoint's stage solves). */
void ds_ros_solve_transposed(const ds_lapack *lapack, int n, const double *LU,
                             const int *ipiv, double *x);

/* Forward sensitivities: the block of the augmented Jacobian that couples
 * the sensitivity rows to the first n states, taken at the step's start so
 * that every stage of a step shares it.  When the system has fewer states
 * than the method stages (ds_ros_coupling_by_block), the step multiplies by
 * `block` ((N - n) x n, column-major; n directions), which the caller forms
 * at the step's start: with prepare, or with evaluate, which also gives the
 * augmented rhs F and the base Jacobian J there in the same pass (NULL when
 * the rhs has no second-order pass; the caller then takes F and J apart).
 * Otherwise the step differences along each stage's direction u with apply
 * (out: N - n values). */
typedef struct ds_coupling {
    void *ctx;
    const double *block;
    int (*prepare)(void *ctx, double t, const double *Y, const double *F,
                   const double *p);
    int (*evaluate)(void *ctx, double t, const double *Y, const double *p,
                    double *F, double *J);
    int (*apply)(void *ctx, double t, const double *Y, const double *F,
                 const double *p, const double *u, double *out);
} ds_coupling;

/* Whether a step multiplies by the coupling block (else it applies). */
static inline int ds_ros_coupling_by_block(const ds_ros_tableau *tab, int n_block)
{
    return n_block < tab->s;
}

/* The stages U (s * N), y_new and err (N) of one step of size h; W (n x n)
 * factored and applied to each n-block of the N = rhs->n states.  With a
 * coupling (N > n), each stage solves the y block first, then the other
 * blocks with the coupling term added: the exact augmented Jacobian is block
 * lower triangular with W on its diagonal, so one LU still serves all.
 * The coupling block, when the step uses it, must be current at (t, y). */
int ds_ros_step(const ds_ros_tableau *tab, const ds_rhs *rhs, int n,
                const ds_coupling *coupling,
                const ds_lapack *lapack, const double *p, const double *M,
                double t, const double *y, const double *f0,
                const double *dfdt, double h, double *W, int *ipiv, double *U,
                double *ytmp, double *y_new, double *err, long *nfev);

/* Polynomial coefficients Q (n * (q + 2), component-major) of the dense
 * output, y(theta) = y_old + sum_j Q_j theta^(j+1), from the stages. */
void ds_ros_dense_coefficients(const ds_ros_tableau *tab, int n,
                               const double *y_old, const double *y_new,
                               const double *U, double *Q);

#ifdef __cplusplus
}
#endif

#endif /* DIFFSENS_ROSENBROCK_H */
