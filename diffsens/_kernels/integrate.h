/*
 * The adaptive driver: one state machine for every method, explicit
 * Runge-Kutta or Rosenbrock (a method supplies its step and its dense output).
 *
 * It owns what scipy's OdeSolver/solve_ivp own (initial step, step-size
 * control, t_eval through dense output, events found by root-finding on the
 * dense output, counters, status) and never allocates: the caller sizes the
 * workspace with ds_workspace_size() and the output buffers itself.
 *
 * ds_run() is resumable.  It returns DS_NEED_SPACE before a step when an
 * output buffer could overflow (grow it, call again) and DS_YIELD every
 * `yield_every` accepted steps (check for Ctrl-C, call again).
 */
#ifndef DIFFSENS_INTEGRATE_H
#define DIFFSENS_INTEGRATE_H

#include "erk.h"
#include "rhs.h"
#include "rosenbrock.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ds_run_code {
    DS_FINISHED = 0,      /* reached t_bound */
    DS_TERMINATED = 1,    /* a terminal event occurred */
    DS_FAILED = -1,       /* numerical failure: see message */
    DS_CALLBACK_STOP = -2,/* the RHS or an event function asked to stop */
    DS_NEED_SPACE = 2,    /* grow the output buffers, then call again */
    DS_YIELD = 3          /* periodic return so the caller can check signals */
};

/* Event functions g_i(t, y); roots are located on the dense output. */
typedef struct ds_events {
    void *ctx;
    int count;
    int (*g)(void *ctx, int which, double t, const double *y, double *value);
    const double *direction;  /* count: >0 rising only, <0 falling only, 0 both */
    const double *max_count;  /* count: occurrences before termination (inf: never) */
} ds_events;

typedef struct ds_output {
    /* solution points: every step (t_eval == NULL) or the t_eval points */
    double *t, *y;            /* cap, cap * n */
    long len, cap;
    /* per-step interpolants (only when store_dense) */
    int store_dense;
    double *seg_t_old, *seg_h, *seg_t_end;  /* seg_cap each */
    double *seg_y_old, *seg_Q;              /* seg_cap * n, seg_cap * n * d;
                                             * seg_Q NULL: no interpolants
                                             * (then seg_K keeps the steps) */
    double *seg_K;            /* explicit RK: each step's stages (seg_cap *
                               * (s + 1 + r) * n), or NULL: not kept */
    long seg_len, seg_cap;
    /* event occurrences, in the order found */
    int *ev_which;
    double *ev_t, *ev_y;      /* ev_cap, ev_cap * n */
    long ev_len, ev_cap;
} ds_output;

typedef struct ds_problem {
    const ds_erk_tableau *erk;  /* the method: an explicit RK tableau, or */
    const ds_ros_tableau *ros;  /* a Rosenbrock one (then erk is NULL) */
    const ds_lapack *lapack;    /* for Rosenbrock: dgetrf / dgetrs */
    const double *mass;         /* Rosenbrock: n x n column-major, NULL = I */
    const ds_rhs *jac_rhs;      /* Rosenbrock: whose Jacobian W uses (NULL: rhs;
                                 * the base system of a sensitivity rhs) */
    const ds_coupling *coupling;/* Rosenbrock + sensitivities, else NULL */
    const ds_rhs *rhs;
    const double *p;          /* parameters handed to rhs->f (may be NULL) */
    double t0, t_bound;
    const double *y0;         /* n */
    int norm_n;               /* error control on y[0:norm_n] (0: all of y) */
    const double *rtol;       /* rtol_len = 1 or n */
    int rtol_len;
    const double *atol;       /* atol_len = 1 or n */
    int atol_len;
    double max_step;          /* inf: unbounded */
    double first_step;        /* 0: Hairer's automatic choice */
    long max_steps;           /* accepted + rejected attempts allowed */
    int stiffness_check;      /* Hairer's test on the stiffness stage */
    double nonstiff_bound;    /* Rosenbrock: stop once h ||J||_inf stays below
                               * this (an explicit method's stability interval)
                               * for NONSTIFF_STEPS steps; 0: never */
    long yield_every;         /* 0: never yield */
    const double *t_eval;     /* in integration order, or NULL */
    long n_eval;
    const ds_events *events;  /* or NULL */
    /* Times the steps must end on (the kinks of a coefficient, like the
     * forward steps' ends under an adjoint), sorted either way; those
     * strictly between t0 and t_bound count.  NULL: none. */
    const double *tstops;
    long n_tstops;
    /* Called after each accepted step with its interpolant, y(t_old + theta h)
     * = y_old + sum_j Q_j theta^(j+1); nonzero stops the solve
     * (DS_CALLBACK_STOP).  NULL: none. */
    int (*on_step)(void *ctx, double t_old, double h, const double *y_old,
                   const double *Q);
    void *on_step_ctx;
} ds_problem;

typedef struct ds_solver {
    ds_problem pb;
    int n, n_norm, direction, started, done;
    int d, error_order;       /* dense-output degree, embedded order */
    int jac_fresh;            /* Rosenbrock: J, df/dt belong to (t, y) */
    int coupling_fresh;       /* ... and so does the sensitivity coupling block */
    double t, t_old, h_abs;
    double qold_pow;          /* PI memory: (last accepted error)^beta2 */
    double *y, *y_old, *y_new, *ytmp, *y_stiff, *K, *Q, *yev;
    double *g_old, *g_new, *roots;
    double *J, *W, *U, *dfdt, *err, *jac_scratch;   /* Rosenbrock */
    int *ipiv;
    int *active, *count;
    long t_eval_i;
    long tstop_i, tstop_inc;  /* the next stop ahead, and the way to the one after */
    long nfev, njev, nlu, n_accepted, n_rejected;
    int saw_nonfinite, stiff_hits, nonstiff_run;
    int stopped_stiff;        /* the solve ended on the stiffness test */
    int stopped_nonstiff;     /* ... or on nonstiff_bound */
    char message[320];
} ds_solver;

/* Bytes of workspace a problem needs. */
size_t ds_workspace_size(const ds_problem *pb);

/* Binds the problem and carves the workspace (aligned to 8 bytes). */
void ds_solver_init(ds_solver *S, const ds_problem *pb, void *work);

/* Advances until finished, failed, or a resumable return (see above). */
int ds_run(ds_solver *S, ds_output *out);

#ifdef __cplusplus
}
#endif

#endif /* DIFFSENS_INTEGRATE_H */
