# C-level API of the plain C kernels, for Cython modules that drive them.
# Mirrors rhs.h, erk.h and integrate.h; keep the three in step.

cdef extern from "rhs.h":
    ctypedef int (*ds_f_fn)(void *ctx, double t, const double *y,
                            const double *p, double *dy) noexcept
    ctypedef int (*ds_jvp_fn)(void *ctx, double t, const double *y,
                              const double *p, int k, const double *yd,
                              const double *pd, double *dy,
                              double *dyd) noexcept
    ctypedef int (*ds_vjp_fn)(void *ctx, double t, const double *y,
                              const double *p, const double *w, double *dy,
                              double *wy, double *wp) noexcept

    ctypedef int (*ds_jac_fn)(void *ctx, double t, const double *y,
                              const double *p, double *J) noexcept
    ctypedef int (*ds_jvp2_fn)(void *ctx, double t, const double *y,
                               const double *p, int ka, const double *ya,
                               int kb, const double *yb, const double *pb,
                               double *dy, double *fa, double *fb,
                               double *fab) noexcept

    ctypedef struct ds_rhs:
        void *ctx
        int n
        int m
        int autonomous
        ds_f_fn f
        ds_jvp_fn jvp
        ds_vjp_fn vjp
        ds_jac_fn jac
        ds_jvp2_fn jvp2


cdef extern from "erk.h":
    ctypedef struct ds_erk_tableau:
        int s
        int r
        int d
        int order
        int error_order
        const double *c
        const double *A
        const double *b
        const double *e
        const double *e_low
        const double *c_extra
        const double *A_extra
        const double *P
        int stiffness_stage
        double stability_boundary

    int ds_erk_stage_count(const ds_erk_tableau *tab) nogil
    enum: DS_ERK_MAX_STAGES


cdef extern from "rosenbrock.h":
    ctypedef struct ds_ros_tableau:
        int s
        int q
        int order
        int error_order
        double gamma
        const double *a
        const double *c
        const double *alpha
        const double *gammas
        const double *m
        const double *e
        const double *H
        const int *argument_steps
        int stiffly_accurate
        int error_is_last_stage

    ctypedef void (*ds_dgetrf_fn)(int *m, int *n, double *a, int *lda,
                                  int *ipiv, int *info) noexcept nogil
    ctypedef void (*ds_dgetrs_fn)(char *trans, int *n, int *nrhs, double *a,
                                  int *lda, int *ipiv, double *b, int *ldb,
                                  int *info) noexcept nogil

    ctypedef struct ds_lapack:
        ds_dgetrf_fn dgetrf
        ds_dgetrs_fn dgetrs

    ctypedef struct ds_coupling:
        void *ctx
        const double *block
        int (*prepare)(void *ctx, double t, const double *Y, const double *F,
                       const double *p) noexcept
        int (*evaluate)(void *ctx, double t, const double *Y, const double *p,
                        double *F, double *J) noexcept
        int (*apply)(void *ctx, double t, const double *Y, const double *F,
                     const double *p, const double *u, double *out) noexcept


cdef extern from "integrate.h":
    cdef enum ds_run_code:
        DS_FINISHED
        DS_TERMINATED
        DS_FAILED
        DS_CALLBACK_STOP
        DS_NEED_SPACE
        DS_YIELD

    ctypedef struct ds_events:
        void *ctx
        int count
        int (*g)(void *ctx, int which, double t, const double *y,
                 double *value) noexcept
        const double *direction
        const double *max_count

    ctypedef struct ds_output:
        double *t
        double *y
        long len
        long cap
        int store_dense
        double *seg_t_old
        double *seg_h
        double *seg_t_end
        double *seg_y_old
        double *seg_Q
        double *seg_K
        long seg_len
        long seg_cap
        int *ev_which
        double *ev_t
        double *ev_y
        long ev_len
        long ev_cap

    ctypedef struct ds_problem:
        const ds_erk_tableau *erk
        const ds_ros_tableau *ros
        const ds_lapack *lapack
        const double *mass
        const ds_rhs *jac_rhs
        const ds_coupling *coupling
        const ds_rhs *rhs
        const double *p
        double t0
        double t_bound
        const double *y0
        int norm_n
        const double *rtol
        int rtol_len
        const double *atol
        int atol_len
        double max_step
        double first_step
        long max_steps
        int stiffness_check
        double nonstiff_bound
        long yield_every
        const double *t_eval
        long n_eval
        const ds_events *events
        const double *tstops
        long n_tstops
        void *on_step
        void *on_step_ctx

    ctypedef struct ds_solver:
        ds_problem pb
        int n
        int started
        double h_abs
        double *K
        int stopped_stiff
        int stopped_nonstiff
        double t
        double *y
        long nfev
        long njev
        long nlu
        long n_accepted
        long n_rejected
        char message[320]

    size_t ds_workspace_size(const ds_problem *pb) nogil
    void ds_solver_init(ds_solver *S, const ds_problem *pb,
                     void *work) nogil
    int ds_run(ds_solver *S, ds_output *out) nogil


from libc.stdint cimport int32_t


cdef extern from "tape.h":
    # (its first argument is a const ds_tape *; declared here before ds_tape)
    ctypedef int (*ds_tape_value_fn)(const void *tape, double *v, double t, const double *y,
                                     const double *p, double *dy) noexcept nogil

    ctypedef struct ds_tape:
        int n
        int m
        int n_const
        int n_ops
        int n_blocks
        const double *consts
        const int32_t *blocks
        const int32_t *args
        const int32_t *lc_slot
        const double *lc_weight
        const int32_t *outputs
        const int32_t *ops
        ds_tape_value_fn native_value
        ds_tape_value_fn native_f

    ctypedef struct ds_tape_ctx:
        const ds_tape *tape
        double *scratch
        int k_max
        int k2_max
        const double *p_loaded
        const double *pd_loaded
        int k_loaded

    int ds_tape_slot_count(const ds_tape *tape) nogil
    void ds_tape_linearize(const ds_tape *tape, int32_t *rows) nogil
    size_t ds_tape_value_scratch(const ds_tape *tape) nogil
    size_t ds_tape_jvp_scratch(const ds_tape *tape, int k) nogil
    size_t ds_tape_vjp_scratch(const ds_tape *tape) nogil
    size_t ds_tape_jvp2_scratch(const ds_tape *tape, int ka, int kb) nogil
    void ds_tape_eval(const ds_tape *tape, double *scratch, double t,
                      const double *y, const double *p, double *dy) nogil
    void ds_tape_eval_many(const ds_tape *tape, double *scratch, long k,
                           const double *t, const double *Y, const double *p,
                           double *out) nogil
    void ds_tape_jvp(const ds_tape *tape, double *scratch, double t,
                     const double *y, const double *p, int k,
                     const double *yd, const double *pd, double *dy,
                     double *dyd) nogil
    void ds_tape_jvp2(const ds_tape *tape, double *scratch, double t,
                      const double *y, const double *p, int ka, const double *ya,
                      int kb, const double *yb, const double *pb, double *dy,
                      double *fa, double *fb, double *fab) nogil
    void ds_tape_vjp(const ds_tape *tape, double *scratch, double t,
                     const double *y, const double *p, const double *w,
                     double *dy, double *wy, double *wp) nogil
    size_t ds_tape_rhs_scratch(const ds_tape *tape, int k_max, int k2_max) nogil
    void ds_tape_rhs_init(ds_rhs *rhs, ds_tape_ctx *ctx, const ds_tape *tape,
                          double *scratch, int k_max, int k2_max) nogil


cdef extern from "sens.h":
    ctypedef struct ds_sens_ctx:
        const ds_rhs *base
        int k
        const double *p_seed
        double *scratch
        double *block
        int exact

    void ds_sens_rhs_init(ds_rhs *aug, ds_sens_ctx *ctx, const ds_rhs *base,
                          int k, const double *p_seed) nogil
    int ds_sens_coupling(void *ctx, double t, const double *Y, const double *F,
                         const double *p, const double *u, double *out) noexcept
    int ds_sens_coupling_evaluate(void *ctx, double t, const double *Y,
                                  const double *p, double *F, double *J) noexcept
    int ds_sens_coupling_prepare(void *ctx, double t, const double *Y,
                                 const double *F, const double *p) noexcept


cdef extern from "adjoint.h":
    ctypedef struct ds_interp:
        int n
        int d
        long len
        const double *t_old
        const double *h
        const double *y_old
        const double *Q
        long cursor

    enum:
        DS_ADJ_LAMBDA
        DS_ADJ_LAMBDA_MU
        DS_ADJ_BACKSOLVE

    ctypedef struct ds_adjoint_ctx:
        const ds_rhs *base
        const double *p
        ds_interp *interp
        int mode
        double *scratch

    size_t ds_adjoint_scratch(int n, int m) nogil
    void ds_adjoint_rhs_init(ds_rhs *adj, ds_adjoint_ctx *ctx, const ds_rhs *base,
                             const double *p, ds_interp *interp, int mode,
                             double *scratch) nogil
    int ds_adjoint_quadrature(ds_adjoint_ctx *ctx, ds_interp *lam, int nodes,
                              double *mu, long *nvjp) nogil
    int ds_erk_step_adjoint(const ds_erk_tableau *tab, ds_adjoint_ctx *ctx,
                            double t, const double *y, double h,
                            const double *K_known, double *K, double *stage_y, double *kbar, int n_out,
                            const double *theta, const double *w, double *lam,
                            double *pbar, long *nfev) nogil
    int ds_erk_stretch_adjoint(const ds_erk_tableau *tab, ds_adjoint_ctx *ctx,
                               long len, const double *t_old, const double *h,
                               const double *t_end, const double *y_old,
                               const double *K_known, const double *t_eval,
                               const double *Wt, long *i_out,
                               double sign, double *K, double *stage_y, double *kbar,
                               double *theta, double *lam, double *pbar,
                               long *nfev) nogil
    size_t ds_ros_step_adjoint_scratch(const ds_ros_tableau *tab, int n, int m) nogil
    int ds_ros_stretch_adjoint(const ds_ros_tableau *tab, ds_adjoint_ctx *ctx,
                               const ds_lapack *lapack, long len, const double *t_old,
                               const double *h, const double *t_end, const double *y_old,
                               const double *t_eval, const double *Wt, long *i_out,
                               double sign, double *work, int *ipiv, double *theta,
                               double *lam, double *pbar, long *nfev) nogil

    ctypedef struct ds_backward:
        ds_problem *pb
        ds_solver *solver
        void *work
        ds_adjoint_ctx *ctx
        double *z
        int jump_at
        const double *t_eval
        const double *Wt
        long i_out
        double sign
        int nodes
        double *mu
        const double *y_ref
        double rtol, atol, drift
        long nfev, nvjp
        long n_accepted, n_rejected
        double t_lo, tau, target
        double h_next
        int running

    void ds_backward_begin(ds_backward *B, double t_lo, double t_hi) nogil
    int ds_backward_run(ds_backward *B, ds_output *out) nogil

cdef extern from "reversible.h":
    ctypedef struct ds_reversible_problem:
        const ds_erk_tableau *erk
        const ds_rhs *rhs
        const double *p
        double t0
        double t_bound
        const double *y0
        const double *rtol
        int rtol_len
        const double *atol
        int atol_len
        double max_step
        double first_step
        long max_steps
        double coupling
        const double *t_eval
        long n_eval
        const double *t_fixed
        long n_fixed
        long yield_every

    ctypedef struct ds_reversible:
        ds_reversible_problem pb
        int n
        int m
        double t
        double *y
        double *z
        double *ybar
        double *zbar
        long nfev
        long nfev_back
        long n_accepted
        long n_rejected
        char message[320]

    ctypedef struct ds_reversible_out:
        double *ts
        long ts_len
        long ts_cap
        double *y_eval

    size_t ds_reversible_scratch(int n, int m, int stages) nogil
    void ds_reversible_init(ds_reversible *R, const ds_reversible_problem *pb,
                            double *work) nogil
    int ds_reversible_forward(ds_reversible *R, ds_reversible_out *out) nogil
    void ds_reversible_backward_init(ds_reversible *R, long ts_len, long n_eval) nogil
    int ds_reversible_backward(ds_reversible *R, const double *ts, const double *Wt,
                               double *pbar) nogil
