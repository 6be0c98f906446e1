# Adjoint sensitivities (included by _core.pyx): the forward pass with its
# checkpoints, and the backward passes of every strategy.  The mathematics is
# in adjoint.h; this file only moves between the driver's calls.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from diffsens._kernels.kernels cimport (
    DS_ADJ_BACKSOLVE, DS_ADJ_LAMBDA, DS_ADJ_LAMBDA_MU, ds_adjoint_ctx, ds_backward,
    ds_backward_begin, ds_backward_run,
    ds_adjoint_quadrature, ds_adjoint_rhs_init, ds_adjoint_scratch,
    ds_erk_stage_count, ds_erk_stretch_adjoint, ds_interp, ds_ros_step_adjoint_scratch,
    ds_ros_stretch_adjoint, ds_ros_tableau,
)

ADJOINT_MODES = {"gauss": DS_ADJ_LAMBDA, "quadrature": DS_ADJ_LAMBDA,
                 "interpolating": DS_ADJ_LAMBDA_MU, "backsolve": DS_ADJ_BACKSOLVE}


cdef class AdjointSolve:
    """One forward solve kept for backward passes.

    ``forward()`` integrates y, keeping a checkpoint (the driver's whole
    state) every ``interval`` accepted steps and the outputs at ``t_eval``.
    ``backward(W, strategy)`` re-integrates each stretch between checkpoints
    from its checkpoint -- bit-identical to the forward pass, since the
    driver is deterministic -- and runs the adjoint back over it, adding
    ``W[:, i]`` to lambda at ``t_eval[i]``.
    """
    cdef object method, fun
    cdef RHSFrontEnd rhs
    cdef cnp.ndarray pc, y0c, rtolc, atolc, t_evalc
    cdef ds_problem pb
    cdef ds_solver S
    cdef void *work
    cdef readonly Py_ssize_t n, m, interval
    cdef bint release_gil, rosenbrock
    cdef list snapshots        # (solver bytes, y, f0) at each checkpoint
    cdef Py_ssize_t record_bytes   # keep the forward steps while they fit
    cdef bint interpolants         # ... with their interpolants (not for 'discrete')
    cdef bint keep_steps           # False: no checkpoints, nothing kept ('backsolve')
    cdef OutputBuffers recorded    # ... the forward steps' interpolants, or None
    cdef list bounds               # stretch c is recorded steps bounds[c:c + 2]
    cdef readonly object t_out, y_out
    cdef readonly double t_final
    cdef readonly long nfev_forward, nfev_backward, n_steps
    cdef readonly long n_steps_backward, n_rejected_backward

    def __cinit__(self):
        self.work = NULL

    def __init__(self, tableau, fun, double t0, double t_bound, cnp.ndarray y0,
                 p, cnp.ndarray rtol, cnp.ndarray atol, double max_step,
                 double first_step, long max_steps, t_eval, long interval,
                 Py_ssize_t record_bytes=0, bint interpolants=True, bint keep_steps=True):
        self.method = c_tableau(tableau)
        self.rosenbrock = isinstance(self.method, CRosTableau)
        self.n = y0.shape[0]
        self.fun = fun
        # lanes: n for a Rosenbrock Jacobian, n + m for the adjoint's
        cdef int m = <int>np.asarray(p).shape[0]
        self.m = m
        # a Python fun is called as fun(t, y, p, *args)
        call_args = ((np.asarray(p, dtype=np.float64),) + (<DualFunction>fun).extra_args
                     if isinstance(fun, DualFunction) else ())
        self.rhs, self.pc = front_end(fun, self.n, False, False, call_args, p, None,
                                      <int>(self.n + m), self.rosenbrock, t0, y0)
        if self.pc is None:
            self.pc = np.zeros(1)
        self.release_gil = isinstance(fun, TapeFunction)
        self.y0c = np.ascontiguousarray(y0, dtype=np.float64)
        self.rtolc = np.ascontiguousarray(rtol, dtype=np.float64)
        self.atolc = np.ascontiguousarray(atol, dtype=np.float64)
        self.t_evalc = None if t_eval is None else np.ascontiguousarray(t_eval, dtype=np.float64)
        self.interval = interval
        self.record_bytes = record_bytes
        self.interpolants = interpolants
        self.keep_steps = keep_steps
        self.recorded = None
        _bind_method(&self.pb, self.method)
        self.pb.jac_rhs = &self.rhs.c if self.rosenbrock else NULL
        self.pb.rhs = &self.rhs.c
        self.pb.p = <const double *>cnp.PyArray_DATA(self.pc)
        self.pb.t0 = t0
        self.pb.t_bound = t_bound
        self.pb.y0 = <const double *>cnp.PyArray_DATA(self.y0c)
        self.pb.norm_n = 0
        self.pb.rtol = <const double *>cnp.PyArray_DATA(self.rtolc)
        self.pb.rtol_len = <int>self.rtolc.shape[0]
        self.pb.atol = <const double *>cnp.PyArray_DATA(self.atolc)
        self.pb.atol_len = <int>self.atolc.shape[0]
        self.pb.max_step = max_step
        self.pb.first_step = first_step
        self.pb.max_steps = max_steps
        self.pb.stiffness_check = False
        self.pb.nonstiff_bound = 0.0
        self.pb.yield_every = interval
        self.pb.t_eval = NULL if self.t_evalc is None else <const double *>cnp.PyArray_DATA(self.t_evalc)
        self.pb.n_eval = 0 if self.t_evalc is None else self.t_evalc.shape[0]
        self.pb.events = NULL
        self.pb.on_step = NULL
        self.pb.on_step_ctx = NULL
        self.pb.tstops = NULL
        self.pb.n_tstops = 0
        self.work = malloc(ds_workspace_size(&self.pb))
        if self.work == NULL:
            raise MemoryError()

    cdef _check_initialized(self):
        # a subclass that skips __init__ would hand the kernels null pointers
        if self.work == NULL:
            raise RuntimeError("AdjointSolve.__init__ has not run on this object")

    def __dealloc__(self):
        free(self.work)

    cdef object _snapshot(self):
        return (PyBytes_FromStringAndSize(<char *>&self.S, sizeof(ds_solver)),
                np.asarray(<double[:self.n]>self.S.y).copy(),
                np.asarray(<double[:self.n]>self.S.K).copy())

    cdef void _restore(self, tuple snap):
        memcpy(&self.S, PyBytes_AS_STRING(snap[0]), sizeof(ds_solver))
        memcpy(self.S.y, cnp.PyArray_DATA(<cnp.ndarray>snap[1]), self.n * sizeof(double))
        memcpy(self.S.K, cnp.PyArray_DATA(<cnp.ndarray>snap[2]), self.n * sizeof(double))

    cdef int _run(self, ds_solver *S, OutputBuffers out, bint stop_on_yield) except? -9:
        cdef int rc
        while True:
            if self.release_gil:
                with nogil:
                    rc = ds_run(S, &out.c)
            else:
                rc = ds_run(S, &out.c)
            if rc == DS_NEED_SPACE:
                out.make_room(0)
            elif rc == DS_YIELD:
                PyErr_CheckSignals()
                if stop_on_yield:
                    return rc
            else:
                break
        if rc == DS_CALLBACK_STOP:
            if self.rhs.error is None:
                raise RuntimeError("a callback stopped the solver without an error")
            raise self.rhs.error
        return rc

    def forward(self):
        """Integrates y, keeping checkpoints; returns (status, message).

        With ``record_bytes`` it also keeps every step's interpolant while
        they fit, so the backward pass need not re-run the stretches (an
        explicit method's stages too; without ``interpolants``, only those)."""
        self._check_initialized()
        cdef int d = _dense_degree(&self.pb)
        cdef Py_ssize_t points = self.t_evalc.shape[0] if self.t_evalc is not None else 64
        cdef Py_ssize_t room = self.interval + 2
        cdef Py_ssize_t stage_width = (0 if self.rosenbrock else
                                       ds_erk_stage_count(self.pb.erk) * self.n)
        cdef bint only_stages = stage_width > 0 and not self.interpolants
        cdef Py_ssize_t step_bytes = 8 * (3 + self.n * (1 + (0 if only_stages else d))
                                          + stage_width)
        cdef bint record = self.keep_steps and self.record_bytes >= room * step_bytes
        # first room: several stretches where 64 kB hold them (growing the
        # buffers at the first checkpoint cost a small solve 15 %)
        cdef Py_ssize_t first_room = max(room, min(self.record_bytes, 1 << 16) // step_bytes)
        # with the stages kept, the discrete adjoint recomputes none
        cdef OutputBuffers out = OutputBuffers(self.n, d, max(points, 1), record,
                                               first_room if record else 0, 0,
                                               stage_width if record else 0,
                                               not only_stages)
        cdef int rc
        ds_solver_init(&self.S, &self.pb, self.work)
        self.snapshots = [self._snapshot()]
        self.bounds = [0]
        self.recorded = None
        while True:
            rc = self._run(&self.S, out, True)
            if rc != DS_YIELD:
                break
            if not self.keep_steps:
                continue     # (a yield only answers Ctrl-C)
            self.snapshots.append(self._snapshot())
            if out.c.store_dense:
                # room for the next stretch now, so that none grows mid-stretch
                # (a re-run from its checkpoint must end where this one does)
                self.bounds.append(out.c.seg_len)
                if (out.c.seg_len + room) * step_bytes > self.record_bytes:
                    out.c.store_dense = 0    # too long to keep: re-run instead
                elif out.c.seg_len + room > out.c.seg_cap:
                    out._segments(2 * out.c.seg_cap + room)
        if out.c.store_dense:
            self.bounds.append(out.c.seg_len)
            self.recorded = out
        self.t_out = out.t[:out.c.len].copy()
        self.y_out = out.y[:out.c.len].T.copy()
        self.t_final = self.S.t
        self.nfev_forward = self.S.nfev
        self.n_steps = self.S.n_accepted
        if rc == DS_FAILED:
            return -1, self.S.message.decode("utf-8", "replace")
        return 0, None

    @property
    def n_checkpoints(self):
        return len(self.snapshots) if self.keep_steps else 0

    cdef OutputBuffers _segment(self, Py_ssize_t c):
        """The forward steps from checkpoint c to the next, with interpolants."""
        cdef int d = _dense_degree(&self.pb)
        if self.recorded is not None:
            return self._recorded_stretch(c)
        cdef OutputBuffers seg = OutputBuffers(self.n, d, self.interval + 2, True,
                                               self.interval + 2, 0)
        self._restore(self.snapshots[c])
        self.S.pb.t_eval = NULL
        self.S.pb.n_eval = 0
        nfev = self.S.nfev
        self._run(&self.S, seg, True)
        self.nfev_backward += self.S.nfev - nfev
        end = self.snapshots[c + 1][0] if c + 1 < len(self.snapshots) else None
        target = self.t_final if end is None else _snapshot_t(end)
        if self.S.t != target:
            raise RuntimeError("re-integration from a checkpoint diverged from the "
                               "forward pass")   # a bug, not the user's doing
        return seg

    cdef OutputBuffers _recorded_stretch(self, Py_ssize_t c):
        """The steps of stretch c as the forward pass recorded them (a view)."""
        cdef Py_ssize_t lo = self.bounds[c], hi = self.bounds[c + 1]
        cdef OutputBuffers rec = self.recorded
        cdef OutputBuffers seg = OutputBuffers(self.n, rec.d, 1, False, 0, 0)
        # the C side points into the recording; the Python side slices it
        self._recorded_view(c, &seg.c)
        seg.seg_t_old = rec.seg_t_old[lo:hi]
        seg.seg_h = rec.seg_h[lo:hi]
        seg.seg_t_end = rec.seg_t_end[lo:hi]
        seg.seg_y_old = rec.seg_y_old[lo:hi]
        seg.seg_Q = rec.seg_Q[lo:hi]   # (zero width without interpolants)
        if rec.seg_K is not None:
            seg.seg_K = rec.seg_K[lo:hi]
        return seg

    def backward(self, cnp.ndarray W, str strategy, double rtol, double atol,
                 int nodes):
        """dL/dp and dL/dy0 for jumps W (n, len(t_eval)); see adjoint.h."""
        self._check_initialized()
        if self.t_out is None:
            raise RuntimeError("backward() needs a finished forward()")
        if strategy == "discrete":
            return self._backward_discrete(W)
        return self._backward_continuous(W, strategy, rtol, atol, nodes)

    cdef object _jumps(self, cnp.ndarray W):
        t_eval = self.t_evalc if self.t_evalc is not None else np.zeros(0)
        return t_eval, np.ascontiguousarray(W, dtype=np.float64)

    cdef void _recorded_view(self, Py_ssize_t c, ds_output *view):
        """Stretch c of the recorded forward steps as pointers into them (no
        Python objects: the discrete adjoint reads only the C side)."""
        cdef Py_ssize_t lo = self.bounds[c], hi = self.bounds[c + 1]
        cdef OutputBuffers rec = self.recorded
        view[0] = rec.c
        view.seg_t_old = rec.c.seg_t_old + lo
        view.seg_h = rec.c.seg_h + lo
        view.seg_t_end = rec.c.seg_t_end + lo
        view.seg_y_old = rec.c.seg_y_old + lo * rec.n
        if rec.c.seg_Q != NULL:
            view.seg_Q = rec.c.seg_Q + lo * rec.n * rec.d
        if rec.c.seg_K != NULL:
            view.seg_K = rec.c.seg_K + lo * rec.stage_width
        view.seg_len = view.seg_cap = hi - lo

    def _backward_discrete(self, cnp.ndarray W):
        if self.rosenbrock:
            return self._backward_discrete_rosenbrock(W)
        cdef CTableau tab = <CTableau>self.method
        cdef Py_ssize_t n = self.n, m = self.m, stages = ds_erk_stage_count(&tab.c)
        cdef ds_adjoint_ctx ctx
        cdef ds_rhs adj
        cdef ds_output view
        cdef OutputBuffers seg
        cdef long nfev = 0, i_out
        cdef int rc = 0
        cdef double sign = 1.0 if self.t_final >= self.pb.t0 else -1.0
        t_eval, Wc = self._jumps(W)
        cdef cnp.ndarray Wt = np.ascontiguousarray(Wc.T)
        cdef Py_ssize_t n_eval = t_eval.shape[0]
        # one allocation for the work arrays: adjoint scratch, K, stage_y,
        # kbar (stages * n each), theta, then lambda and pbar (zeroed)
        cdef Py_ssize_t n_scratch = ds_adjoint_scratch(<int>n, <int>m)
        cdef Py_ssize_t width = stages * n, n_theta = max(n_eval, 1)
        cdef cnp.ndarray work = np.empty(n_scratch + 3 * width + n_theta + n + max(m, 1))
        cdef double *base = <double *>cnp.PyArray_DATA(work)
        cdef double *lam = base + n_scratch + 3 * width + n_theta
        cdef double *pbar = lam + n
        memset(lam, 0, (n + max(m, 1)) * sizeof(double))
        cdef double *bufs[8]
        bufs[0] = <double *>cnp.PyArray_DATA(<cnp.ndarray>t_eval)
        bufs[1] = <double *>cnp.PyArray_DATA(Wt)
        bufs[2] = base + n_scratch                # K
        bufs[3] = bufs[2] + width                 # stage_y
        bufs[4] = bufs[3] + width                 # kbar
        bufs[5] = bufs[4] + width                 # theta
        bufs[6] = lam
        bufs[7] = pbar
        ds_adjoint_rhs_init(&adj, &ctx, &self.rhs.c, <const double *>cnp.PyArray_DATA(self.pc),
                            NULL, DS_ADJ_LAMBDA, base)
        i_out = n_eval - 1
        for c in range(len(self.snapshots) - 1, -1, -1):
            if self.recorded is not None:
                self._recorded_view(c, &view)
            else:
                seg = self._segment(c)
                view = seg.c
            if self.release_gil:
                with nogil:
                    rc = _stretch_adjoint(&tab.c, &ctx, &view, bufs, &i_out, sign, &nfev)
            else:
                rc = _stretch_adjoint(&tab.c, &ctx, &view, bufs, &i_out, sign, &nfev)
            PyErr_CheckSignals()   # Ctrl-C between stretches
            if rc:
                if self.rhs.error is None:
                    raise RuntimeError("a callback stopped the solver without an error")
                raise self.rhs.error
        lam_out = np.asarray(<double[:n]>lam).copy() if n else np.zeros(0)
        while i_out >= 0:     # outputs at t0 (only when no step was taken)
            lam_out += Wt[i_out]
            i_out -= 1
        self.nfev_backward += nfev
        grad_p = np.asarray(<double[:m]>pbar).copy() if m else np.zeros(0)
        return grad_p, lam_out, 0, None

    def _backward_discrete_rosenbrock(self, cnp.ndarray W):
        """'discrete' for a Rosenbrock method: each stored step recomputed and
        swept in reverse (ds_ros_step_adjoint)."""
        cdef CRosTableau tab = <CRosTableau>self.method
        cdef Py_ssize_t n = self.n, m = self.m
        cdef ds_adjoint_ctx ctx
        cdef ds_rhs adj
        cdef ds_output view
        cdef OutputBuffers seg
        cdef long nfev = 0, i_out
        cdef int rc = 0
        cdef double sign = 1.0 if self.t_final >= self.pb.t0 else -1.0
        t_eval, Wc = self._jumps(W)
        cdef cnp.ndarray Wt = np.ascontiguousarray(Wc.T)
        cdef Py_ssize_t n_eval = t_eval.shape[0]
        # one allocation: adjoint scratch, the step's work, theta, lambda, pbar
        cdef Py_ssize_t n_scratch = ds_adjoint_scratch(<int>n, <int>m)
        cdef Py_ssize_t n_work = ds_ros_step_adjoint_scratch(&tab.c, <int>n, <int>m)
        cdef Py_ssize_t n_theta = max(n_eval, 1)
        cdef cnp.ndarray work = np.empty(n_scratch + n_work + n_theta + n + max(m, 1))
        cdef cnp.ndarray pivots = np.empty(max(n, 1), dtype=np.intc)
        cdef double *base = <double *>cnp.PyArray_DATA(work)
        cdef double *step_work = base + n_scratch
        cdef double *theta = step_work + n_work
        cdef double *lam = theta + n_theta
        cdef double *pbar = lam + n
        cdef int *ipiv = <int *>cnp.PyArray_DATA(pivots)
        cdef const double *t_evalp = <const double *>cnp.PyArray_DATA(<cnp.ndarray>t_eval)
        cdef const double *Wtp = <const double *>cnp.PyArray_DATA(Wt)
        memset(lam, 0, (n + max(m, 1)) * sizeof(double))
        ds_adjoint_rhs_init(&adj, &ctx, &self.rhs.c, <const double *>cnp.PyArray_DATA(self.pc),
                            NULL, DS_ADJ_LAMBDA, base)
        i_out = n_eval - 1
        for c in range(len(self.snapshots) - 1, -1, -1):
            if self.recorded is not None:
                self._recorded_view(c, &view)
            else:
                seg = self._segment(c)
                view = seg.c
            if self.release_gil:
                with nogil:
                    rc = _ros_stretch_adjoint(&tab.c, &ctx, &view, t_evalp, Wtp, &i_out,
                                              sign, step_work, ipiv, theta, lam, pbar,
                                              &nfev)
            else:
                rc = _ros_stretch_adjoint(&tab.c, &ctx, &view, t_evalp, Wtp, &i_out, sign,
                                          step_work, ipiv, theta, lam, pbar, &nfev)
            PyErr_CheckSignals()   # Ctrl-C between stretches
            if rc:
                if self.rhs.error is not None:
                    raise self.rhs.error
                if rc == DS_FAILED:
                    return (np.full(m, np.nan), np.full(n, np.nan), -1,
                            "W became singular when the backward pass recomputed a step.")
                raise RuntimeError("a callback stopped the solver without an error")
        lam_out = np.asarray(<double[:n]>lam).copy() if n else np.zeros(0)
        while i_out >= 0:     # outputs at t0 (only when no step was taken)
            lam_out += Wt[i_out]
            i_out -= 1
        self.nfev_backward += nfev
        grad_p = np.asarray(<double[:m]>pbar).copy() if m else np.zeros(0)
        return grad_p, lam_out, 0, None

    def _backward_continuous(self, cnp.ndarray W, str strategy, double rtol,
                             double atol, int nodes):
        cdef Py_ssize_t n = self.n, m = self.m, N
        cdef int mode = ADJOINT_MODES[strategy]
        cdef ds_interp fwd
        cdef ds_adjoint_ctx ctx
        cdef ds_rhs adj
        cdef ds_problem apb
        cdef ds_solver A
        cdef ds_backward B
        cdef cnp.ndarray scratch = np.empty(ds_adjoint_scratch(<int>n, <int>m))
        cdef cnp.ndarray z, mu = np.zeros(max(m, 1)), y_ref = None
        cdef cnp.ndarray artol = np.array([rtol]), aatol = np.array([atol])
        cdef cnp.ndarray t_eval, Wt, no_outputs = np.zeros(1)
        cdef OutputBuffers seg = None, back
        cdef long nvjp = 0
        cdef int rc = 0, d = _dense_degree(&self.pb)
        cdef bint backsolve = mode == DS_ADJ_BACKSOLVE
        cdef double t_lo, t_hi
        N = 2 * n + m if backsolve else (n + m if mode == DS_ADJ_LAMBDA_MU else n)
        ds_adjoint_rhs_init(&adj, &ctx, &self.rhs.c, <const double *>cnp.PyArray_DATA(self.pc),
                            &fwd, mode, <double *>cnp.PyArray_DATA(scratch))
        _bind_method(&apb, self.method)
        apb.jac_rhs = NULL
        apb.rhs = &adj
        apb.p = <const double *>cnp.PyArray_DATA(self.pc)
        apb.norm_n = 0
        apb.rtol = <const double *>cnp.PyArray_DATA(artol)
        apb.rtol_len = 1
        apb.atol = <const double *>cnp.PyArray_DATA(aatol)
        apb.atol_len = 1
        apb.max_step = self.pb.max_step
        apb.first_step = 0.0
        apb.max_steps = self.pb.max_steps
        apb.stiffness_check = False
        apb.nonstiff_bound = 0.0
        apb.yield_every = 1000
        apb.t_eval = <const double *>cnp.PyArray_DATA(no_outputs)  # store no points
        apb.n_eval = 0
        apb.events = NULL
        apb.on_step = NULL
        apb.on_step_ctx = NULL
        apb.tstops = NULL
        apb.n_tstops = 0

        t_eval, Wc = self._jumps(W)
        Wt = np.ascontiguousarray(Wc.T)
        z = np.zeros(N)
        if backsolve:
            z[:n] = self.y_at_end()
            y_ref = np.ascontiguousarray(self.y_out.T)
        B.pb = &apb
        B.solver = &A
        B.ctx = &ctx
        B.z = <double *>cnp.PyArray_DATA(z)
        B.jump_at = <int>n if backsolve else 0
        B.t_eval = <const double *>cnp.PyArray_DATA(t_eval) if t_eval.shape[0] else NULL
        B.Wt = <const double *>cnp.PyArray_DATA(Wt)
        B.i_out = t_eval.shape[0] - 1
        B.sign = 1.0 if self.t_final >= self.pb.t0 else -1.0
        # 'quadrature' keeps every backward step of lambda, integrating after
        B.nodes = nodes if strategy == "gauss" else 0
        B.mu = <double *>cnp.PyArray_DATA(mu)
        B.y_ref = <const double *>cnp.PyArray_DATA(y_ref) if backsolve else NULL
        B.rtol, B.atol, B.drift = rtol, atol, 0.0
        B.h_next = 0.0
        B.nfev = B.nvjp = B.n_accepted = B.n_rejected = 0
        keep = [] if strategy == "quadrature" else None
        back = OutputBuffers(N, d, 1, keep is not None, 64, 0)
        status, message = 0, None
        B.work = malloc(ds_workspace_size(&apb))
        if B.work == NULL:
            raise MemoryError()
        try:
            stretches = 1 if backsolve else len(self.snapshots)
            for c in range(stretches - 1, -1, -1):
                t_lo, t_hi = self.pb.t0, self.t_final
                if not backsolve:
                    seg = self._segment(c)
                    _bind_interp(&fwd, seg, n, d)
                    if seg.c.seg_len:
                        t_lo = seg.seg_t_old[0] if c else self.pb.t0
                        t_hi = seg.seg_t_end[seg.c.seg_len - 1]
                    else:
                        t_hi = self.pb.t0
                ds_backward_begin(&B, t_lo, t_hi)
                while True:
                    if self.release_gil:
                        with nogil:
                            rc = ds_backward_run(&B, &back.c)
                    else:
                        rc = ds_backward_run(&B, &back.c)
                    if rc == DS_NEED_SPACE:
                        back.make_room(0)
                    elif rc == DS_YIELD:
                        PyErr_CheckSignals()
                    else:
                        break
                if rc == DS_CALLBACK_STOP:
                    if self.rhs.error is None:
                        raise RuntimeError("a callback stopped the solver without an error")
                    raise self.rhs.error
                if rc != DS_FINISHED:
                    status = -1
                    message = (f"The adjoint solve (adjoint='{strategy}') failed "
                               f"between t = {B.tau:.6g} and {B.target:.6g}: "
                               + A.message.decode("utf-8", "replace"))
                    if backsolve:
                        message += (" Integrating y backward is unstable on stiff "
                                    "problems; use adjoint='gauss' or "
                                    "'interpolating', which read y from checkpoints.")
                    break
                if keep is not None:
                    keep.append(_segments_copy(back))
                    back.c.seg_len = 0
            if status == 0:
                while B.i_out >= 0:   # outputs at t0
                    z[B.jump_at:B.jump_at + n] += Wt[B.i_out]
                    B.i_out -= 1
                if keep is not None:
                    mu = self._quadrature_after(&ctx, &fwd, keep, nodes, &nvjp)
        finally:
            free(B.work)
        self.nfev_backward += B.nfev + B.nvjp + nvjp
        self.n_steps_backward = B.n_accepted
        self.n_rejected_backward = B.n_rejected
        if backsolve:
            drift = max(B.drift, self._drift(z[:n], self.y0c, rtol, atol))
            if status == 0 and not drift <= BACKSOLVE_DRIFT:
                status = -1
                message = ("adjoint='backsolve' failed: integrating y backward did not "
                           f"retrace the forward solution (off by {drift:.3g} "
                           "times the tolerance), so the gradient cannot be trusted. "
                           "This happens on stiff problems; use adjoint='gauss' or "
                           "'interpolating', which read y from checkpoints.")
            lam, grad_p = z[n:2 * n], z[2 * n:]
        elif mode == DS_ADJ_LAMBDA_MU:
            lam, grad_p = z[:n], z[n:]
        else:
            lam, grad_p = z[:n], mu[:m]
        return grad_p.copy(), lam.copy(), status, message

    cdef object _quadrature_after(self, ds_adjoint_ctx *ctx, ds_interp *fwd, list keep,
                                  int nodes, long *nvjp):
        """'quadrature': the forward solution again, stretch by stretch, and the
        parameter integral over the stored lambda steps that fall in it."""
        cdef cnp.ndarray mu = np.zeros(max(self.m, 1))
        cdef ds_interp lam
        cdef OutputBuffers seg
        cdef int d = _dense_degree(&self.pb)
        t_old = np.concatenate([k[0] for k in keep]) if keep else np.zeros(0)
        h = np.concatenate([k[1] for k in keep]) if keep else np.zeros(0)
        y_old = np.concatenate([k[2] for k in keep]) if keep else np.zeros((0, self.n))
        Q = np.concatenate([k[3] for k in keep]) if keep else np.zeros((0, self.n * d))
        mid = t_old + h / 2
        for c in range(len(self.snapshots)):
            seg = self._segment(c)
            _bind_interp(fwd, seg, self.n, d)
            lo = seg.seg_t_old[0] if seg.c.seg_len else self.pb.t0
            hi = seg.seg_t_end[seg.c.seg_len - 1] if seg.c.seg_len else self.pb.t0
            sgn = 1.0 if hi >= lo else -1.0
            pick = np.flatnonzero((sgn * (mid - lo) >= 0) & (sgn * (hi - mid) > 0))
            if pick.size == 0:
                continue
            arrays = [np.ascontiguousarray(a[pick]) for a in (t_old, h, y_old, Q)]
            _bind_arrays(&lam, arrays, self.n, d)
            if ds_adjoint_quadrature(ctx, &lam, nodes, <double *>cnp.PyArray_DATA(mu), nvjp):
                raise self.rhs.error
        return mu[:self.m]

    cdef double _drift(self, z, y_ref, double rtol, double atol):
        scale = atol + rtol * np.abs(y_ref)
        with np.errstate(invalid="ignore", over="ignore"):
            return float(np.max(np.abs(np.asarray(z) - y_ref) / scale, initial=0.0)) \
                if np.isfinite(z).all() else np.inf

    cdef object y_at_end(self):
        # the forward solver's final state (it was left there by forward())
        return np.asarray(<double[:self.n]>self.S.y).copy()


# Backsolve's y may wander from the forward solution by its own error; this many
# times the tolerance means it went elsewhere.
BACKSOLVE_DRIFT = 1e4


cdef int _stretch_adjoint(const ds_erk_tableau *tab, ds_adjoint_ctx *ctx,
                          ds_output *seg, double **b, long *i_out, double sign,
                          long *nfev) noexcept nogil:
    """ds_erk_stretch_adjoint over a re-run stretch; b: t_eval, Wt, K, stage_y,
    kbar, theta, lam, pbar."""
    return ds_erk_stretch_adjoint(tab, ctx, seg.seg_len, seg.seg_t_old, seg.seg_h,
                                  seg.seg_t_end, seg.seg_y_old, seg.seg_K, b[0], b[1], i_out,
                                  sign, b[2], b[3], b[4], b[5], b[6], b[7], nfev)


cdef int _ros_stretch_adjoint(const ds_ros_tableau *tab, ds_adjoint_ctx *ctx,
                              ds_output *seg, const double *t_eval, const double *Wt,
                              long *i_out, double sign, double *work, int *ipiv,
                              double *theta, double *lam, double *pbar,
                              long *nfev) noexcept nogil:
    """ds_ros_stretch_adjoint over a stretch of stored steps."""
    return ds_ros_stretch_adjoint(tab, ctx, &LAPACK, seg.seg_len, seg.seg_t_old, seg.seg_h,
                                  seg.seg_t_end, seg.seg_y_old, t_eval, Wt, i_out, sign,
                                  work, ipiv, theta, lam, pbar, nfev)


cdef double _snapshot_t(bytes state):
    cdef ds_solver *S = <ds_solver *>PyBytes_AS_STRING(state)
    return S.t


cdef void _bind_method(ds_problem *pb, method):
    if isinstance(method, CRosTableau):
        pb.erk = NULL
        pb.ros = &(<CRosTableau>method).c
        pb.lapack = &LAPACK
    else:
        pb.erk = &(<CTableau>method).c
        pb.ros = NULL
        pb.lapack = NULL
    pb.mass = NULL
    pb.jac_rhs = NULL
    pb.coupling = NULL


cdef int _dense_degree(const ds_problem *pb):
    return pb.ros.q + 1 if pb.ros != NULL else pb.erk.d


cdef void _bind_interp(ds_interp *I, OutputBuffers out, Py_ssize_t n, int d):
    I.n = <int>n
    I.d = d
    I.len = out.c.seg_len
    I.t_old = out.c.seg_t_old
    I.h = out.c.seg_h
    I.y_old = out.c.seg_y_old
    I.Q = out.c.seg_Q
    I.cursor = out.c.seg_len - 1 if out.c.seg_len else 0


cdef void _bind_arrays(ds_interp *I, list arrays, Py_ssize_t n, int d):
    I.n = <int>n
    I.d = d
    I.len = (<cnp.ndarray>arrays[0]).shape[0]
    I.t_old = <const double *>cnp.PyArray_DATA(<cnp.ndarray>arrays[0])
    I.h = <const double *>cnp.PyArray_DATA(<cnp.ndarray>arrays[1])
    I.y_old = <const double *>cnp.PyArray_DATA(<cnp.ndarray>arrays[2])
    I.Q = <const double *>cnp.PyArray_DATA(<cnp.ndarray>arrays[3])
    I.cursor = 0


cdef tuple _segments_copy(OutputBuffers out):
    cdef Py_ssize_t k = out.c.seg_len
    return (out.seg_t_old[:k].copy(), out.seg_h[:k].copy(),
            out.seg_y_old[:k].copy(), out.seg_Q[:k].copy())
