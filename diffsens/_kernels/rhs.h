/*
 * The RHS vtable: how a kernel evaluates f(t, y, p) without knowing where f
 * came from (a Python callable, a traced tape, generated code).
 *
 * Every entry returns 0 on success and nonzero to ask the caller to stop
 * (a Python exception is pending in the front end, or it refused the input).
 * Kernels check every return value and unwind without touching the output.
 */
#ifndef DIFFSENS_RHS_H
#define DIFFSENS_RHS_H

/* sqrt(machine epsilon): the relative step of the kernels' forward differences. */
#define DS_SQRT_EPS 1.4901161193847656e-08

#ifdef __cplusplus
extern "C" {
#endif

/* dy = f(t, y, p) */
typedef int (*ds_f_fn)(void *ctx, double t, const double *y, const double *p,
                       double *dy);

/* k dual lanes: dy = f, dyd = J_y yd + J_p pd (yd: n*k, pd: m*k, dyd: n*k,
 * lane-major: lane j of state i at [j * n + i]). */
typedef int (*ds_jvp_fn)(void *ctx, double t, const double *y, const double *p,
                         int k, const double *yd, const double *pd,
                         double *dy, double *dyd);

/* Second order, along two sets of directions: A, ka directions in y (ya:
 * n*ka), and B, kb directions in (y, p) (yb: n*kb, pb: m*kb; NULL: zero).
 * dy = f, fa = J_y ya (n*ka), fb = J_y yb + J_p pb (n*kb), and the mixed
 * second derivatives fab[(a kb + b) n + i] = d/dA_a (fb_b)_i: the derivative
 * of lane b of a jvp along direction a.  All lane-major as above. */
typedef int (*ds_jvp2_fn)(void *ctx, double t, const double *y, const double *p,
                          int ka, const double *ya, int kb, const double *yb,
                          const double *pb, double *dy, double *fa, double *fb,
                          double *fab);

/* reverse sweep: dy = f, wy = w^T J_y (n), wp = w^T J_p (m). */
typedef int (*ds_vjp_fn)(void *ctx, double t, const double *y, const double *p,
                         const double *w, double *dy, double *wy, double *wp);

/* Dense J_y, column-major n x n (a user's analytic Jacobian). */
typedef int (*ds_jac_fn)(void *ctx, double t, const double *y, const double *p,
                         double *J);

typedef struct ds_rhs {
    void *ctx;      /* front-end state: owned by the front end, never freed here */
    int n;          /* number of states */
    int m;          /* number of parameters */
    int autonomous; /* 1 if f does not depend on t (0: unknown) */
    ds_f_fn f;      /* required */
    ds_jvp_fn jvp;  /* optional (NULL when the front end has none) */
    ds_vjp_fn vjp;  /* optional */
    ds_jac_fn jac;  /* optional */
    ds_jvp2_fn jvp2;/* optional */
} ds_rhs;

#ifdef __cplusplus
}
#endif

#endif /* DIFFSENS_RHS_H */
