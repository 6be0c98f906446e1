#include <math.h>
#include <string.h>

#include "lanes.h"
#include "rosenbrock.h"
#include "tiny.h"

size_t ds_ros_jacobian_scratch(int N, int n)
{
    return (size_t)n * n + 2 * (size_t)N;
}

int ds_ros_jacobian(const ds_rhs *rhs, const ds_rhs *jac_rhs, const double *p,
                    double t, const double *y, const double *f0, double *J,
                    double *dfdt, double *scratch, long *nfev, long *njev)
{
    const int n = jac_rhs->n, N = rhs->n;
    double *ident = scratch, *fy = scratch + (size_t)n * n,
           *yp = fy + N;
    int rc;
    ++*njev;
    if (jac_rhs->jvp != NULL) {
        /* n lanes seeded with the identity: lane j is column j of J */
        memset(ident, 0, (size_t)n * n * sizeof(double));
        for (int j = 0; j < n; ++j)
            ident[(size_t)j * n + j] = 1.0;
        ++*nfev;
        if ((rc = jac_rhs->jvp(jac_rhs->ctx, t, y, p, n, ident, NULL, fy, J)))
            return rc;
    } else if (jac_rhs->jac != NULL) {
        if ((rc = jac_rhs->jac(jac_rhs->ctx, t, y, p, J)))
            return rc;
    } else {
        memcpy(yp, y, (size_t)n * sizeof(double));
        for (int j = 0; j < n; ++j) {
            /* the usual step: sqrt(eps) relative, with a floor for y_j ~ 0 */
            const double delta = DS_SQRT_EPS * fmax(fabs(y[j]), 1e-5);
            yp[j] = y[j] + delta;
            ++*nfev;
            if ((rc = jac_rhs->f(jac_rhs->ctx, t, yp, p, fy)))
                return rc;
            const double inv = 1.0 / (yp[j] - y[j]);   /* the step actually taken */
            for (int i = 0; i < n; ++i)
                J[(size_t)j * n + i] = (fy[i] - f0[i]) * inv;
            yp[j] = y[j];
        }
    }
    return ds_ros_time_derivative(rhs, p, t, y, f0, dfdt, fy, nfev);
}

int ds_ros_time_derivative(const ds_rhs *rhs, const double *p, double t,
                           const double *y, const double *f0, double *dfdt,
                           double *scratch, long *nfev)
{
    const int N = rhs->n;
    if (rhs->autonomous) {
        memset(dfdt, 0, (size_t)N * sizeof(double));
        return 0;
    }
    const double dt = ds_ros_time_delta(t);
    const double t1 = t + dt;
    int rc;
    ++*nfev;
    if ((rc = rhs->f(rhs->ctx, t1, y, p, scratch)))
        return rc;
    const double inv = 1.0 / (t1 - t);
    for (int i = 0; i < N; ++i)
        dfdt[i] = (scratch[i] - f0[i]) * inv;
    return 0;
}

int ds_ros_factor(const ds_lapack *lapack, int n, double gamma_h,
                  const double *M, const double *J, double *W, int *ipiv)
{
    const double g = 1.0 / gamma_h;
    const size_t nn = (size_t)n * n;
    if (M == NULL) {
        for (size_t k = 0; k < nn; ++k)
            W[k] = -J[k];
        for (int i = 0; i < n; ++i)
            W[(size_t)i * n + i] += g;
    } else {
        for (size_t k = 0; k < nn; ++k)
            W[k] = g * M[k] - J[k];
    }
    int info = 0, nn_ = n;
    lapack->dgetrf(&nn_, &nn_, W, &nn_, ipiv, &info);
    return info;
}

/* Below this size W's triangular solves are done here, on dgetrf's factors:
 * a LAPACK call costs more than the arithmetic of a small solve (measured:
 * ~5x on a 3-state problem), and with several right-hand sides OpenBLAS goes
 * through trsm, slower still.  Larger systems use dgetrs, one block at a
 * time (trsm may hand several right-hand sides to OpenBLAS's threads). */
#define DS_ROS_SMALL 16

/* x <- W^{-1} x for one right-hand side of a tiny system (n <= 4, a
 * constant: straight-line code), W = P L U as dgetrf leaves it
 * (column-major), with dgetrf's row interchanges as the gather `perm` and
 * U's diagonal inverted (solve_prepare).  x is read into named locals once
 * and written once.  (Swapping in place through run-time indices kept every
 * later update in memory; a local array tempted GCC to pair its elements
 * through the stack, where the pair loads missed store forwarding: both
 * measured, each slower.) */
DS_TINY_INLINE void solve_one_tiny(int n, const double *LU, const int *perm,
                                   const double *inv_diag, double *x)
{
#define LU_(i, j) LU[(size_t)(j) * n + (i)]
    double v0 = x[perm[0]], v1 = 0.0, v2 = 0.0, v3 = 0.0;
    if (n > 1) v1 = x[perm[1]];
    if (n > 2) v2 = x[perm[2]];
    if (n > 3) v3 = x[perm[3]];
    /* L (unit diagonal), column by column */
    if (n > 1) v1 -= LU_(1, 0) * v0;
    if (n > 2) v2 -= LU_(2, 0) * v0;
    if (n > 3) v3 -= LU_(3, 0) * v0;
    if (n > 2) v2 -= LU_(2, 1) * v1;
    if (n > 3) v3 -= LU_(3, 1) * v1;
    if (n > 3) v3 -= LU_(3, 2) * v2;
    /* U, column by column from the last */
    if (n > 3) {
        v3 *= inv_diag[3];
        v0 -= LU_(0, 3) * v3;
        v1 -= LU_(1, 3) * v3;
        v2 -= LU_(2, 3) * v3;
    }
    if (n > 2) {
        v2 *= inv_diag[2];
        v0 -= LU_(0, 2) * v2;
        v1 -= LU_(1, 2) * v2;
    }
    if (n > 1) {
        v1 *= inv_diag[1];
        v0 -= LU_(0, 1) * v1;
    }
    v0 *= inv_diag[0];
#undef LU_
    x[0] = v0;
    if (n > 1) x[1] = v1;
    if (n > 2) x[2] = v2;
    if (n > 3) x[3] = v3;
}

/* x <- W^{-1} x for `count` right-hand sides of length n, W = P L U as
 * dgetrf leaves it (column-major, 1-based pivots); for n <= DS_ROS_SMALL
 * also perm and inv_diag from solve_prepare. */
DS_TINY_INLINE void solve_blocks(const ds_lapack *lapack, int n, int count,
                                 const double *LU, const int *ipiv, const int *perm,
                                 const double *inv_diag, double *x)
{
    if (n > DS_ROS_SMALL) {
        int nn = n, one = 1, info = 0;
        char trans = 'N';
        for (int b = 0; b < count; ++b)
            lapack->dgetrs(&trans, &nn, &one, (double *)LU, &nn, (int *)ipiv,
                           x + (size_t)b * n, &nn, &info);
        return;
    }
    if (n <= 4) {
        /* a tiny block's solve unrolls completely: block after block */
        DS_WITH_TINY_N(n, {
            for (int b = 0; b < count; ++b)
                solve_one_tiny(n_, LU, perm, inv_diag, x + (size_t)b * n_);
            return;
        });
    }
    /* all right-hand sides advance together */
    for (int i = 0; i < n; ++i) {   /* row interchanges, in order */
        const int k = ipiv[i] - 1;
        if (k != i)
            for (int b = 0; b < count; ++b) {
                double *xb = x + (size_t)b * n;
                const double tmp = xb[i];
                xb[i] = xb[k];
                xb[k] = tmp;
            }
    }
    for (int j = 0; j < n; ++j)     /* L, unit diagonal */
        for (int i = j + 1; i < n; ++i) {
            const double l = LU[(size_t)j * n + i];
            for (int b = 0; b < count; ++b)
                x[(size_t)b * n + i] -= l * x[(size_t)b * n + j];
        }
    for (int j = n - 1; j >= 0; --j) {   /* U */
        for (int b = 0; b < count; ++b)
            x[(size_t)b * n + j] *= inv_diag[j];
        for (int i = 0; i < j; ++i) {
            const double u = LU[(size_t)j * n + i];
            for (int b = 0; b < count; ++b)
                x[(size_t)b * n + i] -= u * x[(size_t)b * n + j];
        }
    }
}

void ds_ros_solve_transposed(const ds_lapack *lapack, int n, const double *LU,
                             const int *ipiv, double *x)
{
    if (n > DS_ROS_SMALL) {
        int nn = n, one = 1, info = 0;
        char trans = 'T';
        lapack->dgetrs(&trans, &nn, &one, (double *)LU, &nn, (int *)ipiv, x, &nn, &info);
        return;
    }
    /* W = P L U: W^T = U^T L^T P^T, so U^T first, then L^T, then P */
    for (int j = 0; j < n; ++j) {
        const double *col = LU + (size_t)j * n;   /* U's column j = U^T's row j */
        double acc = x[j];
        for (int i = 0; i < j; ++i)
            acc -= col[i] * x[i];
        x[j] = acc / col[j];
    }
    for (int j = n - 1; j >= 0; --j) {   /* L^T, unit diagonal */
        const double *col = LU + (size_t)j * n;
        double acc = x[j];
        for (int i = j + 1; i < n; ++i)
            acc -= col[i] * x[i];
        x[j] = acc;
    }
    for (int i = n - 1; i >= 0; --i) {   /* the row interchanges, undone */
        const int k = ipiv[i] - 1;
        const double xi = x[i];
        x[i] = x[k];
        x[k] = xi;
    }
}

/* Once per step for all its solves (n <= DS_ROS_SMALL): 1 / U's diagonal
 * (independent multiplications in place of a chain of divisions in every
 * solve), and dgetrf's row interchanges composed into one gather,
 * (P^T x)[i] = x[perm[i]]. */
DS_TINY_INLINE void solve_prepare(int n, const double *LU, const int *ipiv, int *perm,
                                  double *inv_diag)
{
    if (n > DS_ROS_SMALL)
        return;
    for (int j = 0; j < n; ++j) {
        inv_diag[j] = 1.0 / LU[(size_t)j * n + j];
        perm[j] = j;
    }
    for (int i = 0; i < n; ++i) {
        const int k = ipiv[i] - 1, tmp = perm[i];
        perm[i] = perm[k];
        perm[k] = tmp;
    }
}

/* x += B u, B (rows x n) column-major: the coupling of a sensitivity
 * stage to its state stage u. */
DS_TINY_INLINE void add_coupling(int n, int rows, const double *B, const double *u,
                                 double *x)
{
    for (int j = 0; j < n; ++j) {
        const double uj = u[j];
        const double *col = B + (size_t)j * rows;
#define COUPLING_COLUMN(AT) (AT(x) + uj * AT(col))
        DS_FOR_LANES(rows, x, COUPLING_COLUMN);
    }
}

/* out[q] = EXPR(AT) for q < n (lanes.h): vector pairs over a system with its
 * sensitivity blocks, plain loops over a system alone (measured: on a tiny
 * system the pairs cost more than the loops). */
#define ROS_FOR(n, out, EXPR)                                    \
    do {                                                         \
        if (blocks == 1)                                         \
            for (int j_ = 0; j_ < (n); ++j_)                     \
                (out)[j_] = EXPR(DS_ONE_AT_);                    \
        else                                                     \
            DS_FOR_LANES(n, out, EXPR);                          \
    } while (0)

/* sa += sum_{a_from<=j<i} a_j U_j and sc = sum_{j<i} (c_j / h) U_j in one
 * pass over the earlier stages, each sum in the stages' order (sa starts
 * from zero unless keep_sa; a_from >= i: no sa, which may be NULL);
 * returns whether any c_j is nonzero. */
DS_TINY_INLINE int stage_sums_into(int n, int i, int a_from, int keep_sa, int blocks,
                                   const double *U, const double *a, const double *c,
                                   double h, double *sa, double *sc)
{
    int any_c = 0;
    const int with_a = a_from < i;
    for (int q = 0; q < n; ++q) {
        if (with_a && !keep_sa)
            sa[q] = 0.0;
        sc[q] = 0.0;
    }
    for (int j = 0; j < i; ++j) {
        const double aj = a[j], cj = c[j] / h;
        const double *Uj = U + (size_t)j * n;
#define A_TERM(AT) (AT(sa) + aj * AT(Uj))
#define C_TERM(AT) (AT(sc) + cj * AT(Uj))
        if (with_a && j >= a_from && aj != 0.0)
            ROS_FOR(n, sa, A_TERM);
        if (cj != 0.0) {
            any_c = 1;
            ROS_FOR(n, sc, C_TERM);
        }
    }
    return any_c;
}

/* A stage's argument ysum = base + sum_{a_from<=j<i} a_j U_j (the increments
 * summed before base is added) and csum = sum_{j<i} (c_j / h) U_j.  base is
 * y (a_from = 0), or the previous stage's argument when the tableau's row
 * extends the previous row (a_from = i - 1: one term, so either order of
 * the sum rounds alike); it may be ysum itself.  For a small system the sums
 * are local arrays that no stage aliases, so the compiler may keep them in
 * registers while the stages stream past. */
DS_TINY_INLINE int stage_sums(int n, int i, int a_from, int blocks, const double *U,
                              const double *a, const double *c, double h,
                              const double *base, double *ysum, double *csum)
{
    int any_c;
    if (a_from == i - 1) {
        /* one increment, onto base directly: the same sum in one pass, not
         * three (measured: 3% of a ROBER sensitivity solve) */
        const double ai = a[i - 1];
        const double *Ul = U + (size_t)(i - 1) * n;
#define BASE_PLUS_A(AT) (AT(base) + ai * AT(Ul))
        if (ai != 0.0)
            ROS_FOR(n, ysum, BASE_PLUS_A);
        else if (ysum != base)
            memcpy(ysum, base, (size_t)n * sizeof(double));
        if (n <= DS_ROS_SMALL) {
            double sc[DS_ROS_SMALL];
            any_c = stage_sums_into(n, i, i, 0, blocks, U, a, c, h, NULL, sc);
#define SC(AT) (AT(sc))
            ROS_FOR(n, csum, SC);
        } else {
            any_c = stage_sums_into(n, i, i, 0, blocks, U, a, c, h, NULL, csum);
        }
        return any_c;
    }
    if (n <= DS_ROS_SMALL) {
        double sa[DS_ROS_SMALL], sc[DS_ROS_SMALL];
        any_c = stage_sums_into(n, i, a_from, 0, blocks, U, a, c, h, sa, sc);
#define SA_PLUS_BASE(AT) (AT(sa) + AT(base))
#define SC(AT) (AT(sc))
        ROS_FOR(n, ysum, SA_PLUS_BASE);
        ROS_FOR(n, csum, SC);
    } else if (base == ysum) {
        any_c = stage_sums_into(n, i, a_from, 1, blocks, U, a, c, h, ysum, csum);
    } else {
        any_c = stage_sums_into(n, i, a_from, 0, blocks, U, a, c, h, ysum, csum);
#define PLUS_BASE(AT) (AT(ysum) + AT(base))
        ROS_FOR(n, ysum, PLUS_BASE);
    }
    return any_c;
}

/* ds_ros_step with the sizes as parameters, so that a tiny system without
 * sensitivity blocks gets them as constants (tiny.h). */
DS_TINY_INLINE int ros_step(int n, int n_block, const ds_ros_tableau *tab,
                            const ds_rhs *rhs, const ds_coupling *coupling,
                            const ds_lapack *lapack, const double *p, const double *M,
                            double t, const double *y, const double *f0,
                            const double *dfdt, double h, double *W, int *ipiv,
                            double *U, double *ytmp, double *y_new, double *err,
                            long *nfev)
{
    const int s = tab->s;
    /* the N states are N / n_block blocks sharing W */
    const int blocks = n / n_block;
    const int coupled = coupling != NULL && blocks > 1;
    /* the coupling as a matrix: n_block differences per step, in place of
     * one along each of the s stages */
    const int by_block = coupled && ds_ros_coupling_by_block(tab, n_block);
    int rc;
    double inv_diag[DS_ROS_SMALL];
    int perm[DS_ROS_SMALL];
    solve_prepare(n_block, W, ipiv, perm, inv_diag);
    /* a stiffly accurate step's y_new is its last stage's argument + U_{s-1}:
     * that argument is formed in y_new */
    const int new_from_last = tab->stiffly_accurate && s > 1;
    for (int i = 0; i < s; ++i) {
        double *Ui = U + (size_t)i * n;
        /* + M sum_j (c_ij / h) U_j, summed in err (scratch until the end) */
        double *cu = err;
        int any_c = 0;
        if (i == 0) {
            memcpy(Ui, f0, (size_t)n * sizeof(double));
        } else {
            /* (No shipped tableau repeats a stage's argument, so none
             * reuses an f.) */
            double *arg = new_from_last && i == s - 1 ? y_new : ytmp;
            const int extends = tab->argument_steps[i];   /* ytmp: stage i-1's */
            any_c = stage_sums(n, i, extends ? i - 1 : 0, blocks, U,
                               tab->a + (size_t)i * s, tab->c + (size_t)i * s, h,
                               extends ? ytmp : y, arg, cu);
            ++*nfev;
            if ((rc = rhs->f(rhs->ctx, t + tab->alpha[i] * h, arg, p, Ui)))
                return rc;
        }
        if (any_c) {
            if (M == NULL) {
#define PLUS_CU(AT) (AT(Ui) + AT(cu))
                ROS_FOR(n, Ui, PLUS_CU);
            } else {   /* M on each block */
                for (int q = 0; q < n; ++q) {
                    const int b0 = q / n_block * n_block, r = q - b0;
                    double acc = 0.0;
                    for (int k = 0; k < n_block; ++k)
                        acc += M[(size_t)k * n_block + r] * cu[b0 + k];
                    Ui[q] += acc;
                }
            }
        }
        if (tab->gammas[i] != 0.0 && !rhs->autonomous) {   /* (else df/dt = 0) */
            const double gh = tab->gammas[i] * h;
#define DFDT_TERM(AT) (AT(Ui) + gh * AT(dfdt))
            ROS_FOR(n, Ui, DFDT_TERM);
        }
        solve_blocks(lapack, n_block, 1, W, ipiv, perm, inv_diag, Ui);
        if (coupled) {
            /* rhs_S + B U_y for the sensitivity blocks */
            double *Ui_S = Ui + n_block;
            if (by_block) {
                /* n is a constant for small systems: so is the block's shape
                 * for a tiny base system */
                DS_WITH_TINY_N(n_block, {
                    add_coupling(n_, n - n_, coupling->block, Ui, Ui_S);
                    break;
                });
            } else {
                /* (into err, free until the end: ytmp holds the stage's
                 * argument, which the next may extend) */
                if ((rc = coupling->apply(coupling->ctx, t, y, f0, p, Ui, err)))
                    return rc;
#define PLUS_COUPLING(AT) (AT(Ui_S) + AT(err))
                ROS_FOR(n - n_block, Ui_S, PLUS_COUPLING);
            }
        }
        if (blocks > 1)   /* with the block count a constant too, where it can be */
            DS_WITH_TINY_N(n_block, {
                solve_blocks(lapack, n_, n / n_ - 1, W, ipiv, perm, inv_diag, Ui + n_);
                break;
            });
    }
    const double *U_last = U + (size_t)(s - 1) * n;
    if (new_from_last) {
#define PLUS_U_LAST(AT) (AT(y_new) + AT(U_last))
        ROS_FOR(n, y_new, PLUS_U_LAST);
    } else {
        memset(y_new, 0, (size_t)n * sizeof(double));
        for (int i = 0; i < s; ++i) {
            const double mi = tab->m[i];
            const double *Ui = U + (size_t)i * n;
#define M_TERM(AT) (AT(y_new) + mi * AT(Ui))
            ROS_FOR(n, y_new, M_TERM);
        }
#define NEW_PLUS_Y(AT) (AT(y_new) + AT(y))
        ROS_FOR(n, y_new, NEW_PLUS_Y);
    }
    if (tab->error_is_last_stage) {
        memcpy(err, U_last, (size_t)n * sizeof(double));
    } else {
        memset(err, 0, (size_t)n * sizeof(double));
        for (int i = 0; i < s; ++i) {
            const double ei = tab->e[i];
            const double *Ui = U + (size_t)i * n;
#define E_TERM(AT) (AT(err) + ei * AT(Ui))
            ROS_FOR(n, err, E_TERM);
        }
    }
    return 0;
}

#define ROS_STEP(N, N_BLOCK) ros_step(N, N_BLOCK, tab, rhs, coupling, lapack, p, M, t, y, \
                                      f0, dfdt, h, W, ipiv, U, ytmp, y_new, err, nfev)

/* A small system with its sensitivity blocks (n_block (1 + k) states), with
 * the total a constant.  A function of its own: compiled into ds_ros_step,
 * the extra instances slowed the tiny systems' step (measured). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static int ros_step_blocks(const ds_ros_tableau *tab, const ds_rhs *rhs, int n_block,
                           const ds_coupling *coupling, const ds_lapack *lapack,
                           const double *p, const double *M, double t, const double *y,
                           const double *f0, const double *dfdt, double h, double *W,
                           int *ipiv, double *U, double *ytmp, double *y_new,
                           double *err, long *nfev)
{
    DS_WITH_SMALL_N(rhs->n, return ROS_STEP(n_, n_block));
}

int ds_ros_step(const ds_ros_tableau *tab, const ds_rhs *rhs, int n_block,
                const ds_coupling *coupling,
                const ds_lapack *lapack, const double *p, const double *M,
                double t, const double *y, const double *f0,
                const double *dfdt, double h, double *W, int *ipiv, double *U,
                double *ytmp, double *y_new, double *err, long *nfev)
{
    if (n_block == rhs->n)
        DS_WITH_TINY_N(rhs->n, return ROS_STEP(n_, n_));
    return ros_step_blocks(tab, rhs, n_block, coupling, lapack, p, M, t, y, f0, dfdt, h,
                           W, ipiv, U, ytmp, y_new, err, nfev);
}

#undef ROS_STEP

void ds_ros_dense_coefficients(const ds_ros_tableau *tab, int n,
                               const double *y_old, const double *y_new,
                               const double *U, double *Q)
{
    /* (1-th) y0 + th (y1 + (1-th)(K0 + th K1 + ... + th^(q-1) K_{q-1}))
     *   = y0 + th (dy + K0) + th^2 (K1 - K0) + ... + th^(q+1) (-K_{q-1}) */
    const int q = tab->q, d = q + 1 > 1 ? q + 1 : 1, s = tab->s;
    for (int c = 0; c < n; ++c) {
        double *Qc = Q + (size_t)c * d;
        double prev = 0.0;
        for (int r = 0; r < q; ++r) {
            double k = 0.0;
            for (int i = 0; i < s; ++i)
                k += tab->H[(size_t)r * s + i] * U[(size_t)i * n + c];
            Qc[r] = (r == 0 ? y_new[c] - y_old[c] : 0.0) + k - prev;
            prev = k;
        }
        if (q == 0)
            Qc[0] = y_new[c] - y_old[c];
        else
            Qc[q] = -prev;
    }
}
