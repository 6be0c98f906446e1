# adjoint='reversible' (included by _core.pyx): McCallum & Foster's
# algebraically reversible solver and its exact discrete adjoint.  The
# mathematics is in reversible.h; this file validates, allocates, releases
# the GIL for traced right-hand sides and turns C codes into results.

from diffsens._kernels.kernels cimport (
    ds_reversible, ds_reversible_backward, ds_reversible_backward_init,
    ds_reversible_forward, ds_reversible_init, ds_reversible_out,
    ds_reversible_problem, ds_reversible_scratch,
)


cdef class ReversibleSolve:
    """One reversible solve: ``forward()``, then ``backward(W)``.

    The forward pass keeps the accepted step times (``ts``) and the outputs
    at ``t_eval``; ``backward`` rebuilds the states from the final pair and
    returns the exact derivative of the discrete solution.  ``t_fixed``
    replays a step sequence (``ts`` of an earlier solve) without error
    control: the tests' finite differences with the steps held fixed.
    """
    cdef RHSFrontEnd rhs
    cdef cnp.ndarray pc, y0c, rtolc, atolc, t_evalc, t_fixedc, work, ts_buf
    cdef CTableau method
    cdef ds_reversible_problem pb
    cdef ds_reversible R
    cdef readonly Py_ssize_t n, m
    cdef bint release_gil, forward_done
    cdef readonly object t_out, y_out, ts, y0_reconstructed, z0_reconstructed
    cdef readonly long nfev_forward, nfev_backward, n_steps, n_rejected

    def __init__(self, tableau, fun, double t0, double t_bound, cnp.ndarray y0, p,
                 cnp.ndarray rtol, cnp.ndarray atol, double max_step, double first_step,
                 long max_steps, t_eval, double coupling, t_fixed=None,
                 long yield_every=1000):
        method = c_tableau(tableau)
        if not isinstance(method, CTableau):
            raise ValueError("adjoint='reversible' wraps an explicit Runge-Kutta method "
                             f"('Tsit5', 'RK45', 'DOP853', 'Vern7', 'RK23'), not "
                             f"{tableau.name!r}.")
        if not (isfinite(coupling) and 0.0 < coupling <= 1.0):
            raise ValueError(f"`reversible_coupling` must lie in (0, 1], got {coupling!r}.")
        self.method = <CTableau>method
        self.n = y0.shape[0]
        cdef int m = <int>np.asarray(p).shape[0]
        self.m = m
        call_args = ((np.asarray(p, dtype=np.float64),) + (<DualFunction>fun).extra_args
                     if isinstance(fun, DualFunction) else ())
        self.rhs, self.pc = front_end(fun, self.n, False, False, call_args, p, None,
                                      <int>(self.n + m), False, t0, y0)
        if self.pc is None:
            self.pc = np.zeros(1)
        self.release_gil = isinstance(fun, TapeFunction)
        self.y0c = np.ascontiguousarray(y0, dtype=np.float64)
        self.rtolc = np.ascontiguousarray(rtol, dtype=np.float64)
        self.atolc = np.ascontiguousarray(atol, dtype=np.float64)
        self.t_evalc = np.ascontiguousarray(np.zeros(0) if t_eval is None else t_eval,
                                            dtype=np.float64)
        if self.t_evalc.shape[0] == 0:
            self.t_evalc = np.zeros(1)      # a valid pointer; n_eval stays 0
            n_eval = 0
        else:
            n_eval = self.t_evalc.shape[0]
        self.pb.erk = &self.method.c
        self.pb.rhs = &self.rhs.c
        self.pb.p = <const double *>cnp.PyArray_DATA(self.pc)
        self.pb.t0 = t0
        self.pb.t_bound = t_bound
        self.pb.y0 = <const double *>cnp.PyArray_DATA(self.y0c)
        self.pb.rtol = <const double *>cnp.PyArray_DATA(self.rtolc)
        self.pb.rtol_len = <int>self.rtolc.shape[0]
        self.pb.atol = <const double *>cnp.PyArray_DATA(self.atolc)
        self.pb.atol_len = <int>self.atolc.shape[0]
        self.pb.max_step = max_step
        self.pb.first_step = first_step
        self.pb.max_steps = max_steps
        self.pb.coupling = coupling
        self.pb.t_eval = <const double *>cnp.PyArray_DATA(self.t_evalc)
        self.pb.n_eval = n_eval
        self.pb.yield_every = yield_every
        if t_fixed is None:
            self.pb.t_fixed = NULL
            self.pb.n_fixed = 0
        else:
            self.t_fixedc = np.ascontiguousarray(t_fixed, dtype=np.float64)
            if self.t_fixedc.ndim != 1 or self.t_fixedc.shape[0] < 1:
                raise ValueError("`t_fixed` must be a non-empty 1-D array of step times.")
            self.pb.t_fixed = <const double *>cnp.PyArray_DATA(self.t_fixedc)
            self.pb.n_fixed = self.t_fixedc.shape[0]
        cdef Py_ssize_t stages = ds_erk_stage_count(&self.method.c)
        self.work = np.empty(max(<Py_ssize_t>ds_reversible_scratch(<int>self.n, m,
                                                                    <int>stages), 1))
        ds_reversible_init(&self.R, &self.pb, <double *>cnp.PyArray_DATA(self.work))
        self.forward_done = False

    cdef void _raise_callback_error(self) except *:
        if self.rhs.error is None:
            raise RuntimeError("a callback stopped the solver without an error")
        raise self.rhs.error

    cdef _check_initialized(self):
        # a subclass that skips __init__ would hand the kernels null pointers
        if self.rhs is None:
            raise RuntimeError("ReversibleSolve.__init__ has not run on this object")

    def forward(self):
        """Integrates the pair (y, z); returns (status, message)."""
        cdef Py_ssize_t n = self.n, n_eval = self.pb.n_eval
        cdef cnp.ndarray y_eval = np.zeros((max(n_eval, 1), n))
        cdef ds_reversible_out out
        cdef int rc
        self._check_initialized()
        if self.forward_done:
            raise RuntimeError("forward() runs once per ReversibleSolve")
        self.ts_buf = np.empty(self.pb.n_fixed if self.pb.t_fixed != NULL else 256)
        out.ts = <double *>cnp.PyArray_DATA(self.ts_buf)
        out.ts_len = 0
        out.ts_cap = self.ts_buf.shape[0]
        out.y_eval = <double *>cnp.PyArray_DATA(y_eval)
        while True:
            if self.release_gil:
                with nogil:
                    rc = ds_reversible_forward(&self.R, &out)
            else:
                rc = ds_reversible_forward(&self.R, &out)
            if rc == DS_NEED_SPACE:
                self.ts_buf = grow(self.ts_buf, 2 * self.ts_buf.shape[0] + 16, None)
                out.ts = <double *>cnp.PyArray_DATA(self.ts_buf)
                out.ts_cap = self.ts_buf.shape[0]
            elif rc == DS_YIELD:
                PyErr_CheckSignals()
            else:
                break
        self.forward_done = True
        self.nfev_forward = self.R.nfev
        self.n_steps = self.R.n_accepted
        self.n_rejected = self.R.n_rejected
        self.ts = self.ts_buf[:out.ts_len].copy()
        self.ts_buf = self.ts
        if rc == DS_CALLBACK_STOP:
            self._raise_callback_error()
        # outputs the solve reached (all of them unless it failed)
        reached = min(<Py_ssize_t>np.searchsorted(
            self.t_evalc[:n_eval] * (1.0 if self.pb.t_bound >= self.pb.t0 else -1.0),
            self.R.t * (1.0 if self.pb.t_bound >= self.pb.t0 else -1.0), side="right"),
            n_eval)
        self.t_out = self.t_evalc[:reached].copy()
        self.y_out = y_eval[:reached].T.copy()
        if rc == DS_FAILED:
            self.ts_buf = None
            return -1, self.R.message.decode("utf-8", "replace")
        return 0, None

    def backward(self, W):
        """dL/dp and dL/dy0 for jumps W (n, len(t_eval)); see reversible.h."""
        self._check_initialized()
        cdef Py_ssize_t n = self.n, n_eval = self.pb.n_eval
        cdef cnp.ndarray Wt = np.ascontiguousarray(np.asarray(W, dtype=np.float64).T)
        cdef cnp.ndarray pbar = np.zeros(max(self.m, 1))
        cdef const double *ts
        cdef const double *wt
        cdef double *pb_
        cdef int rc
        if not self.forward_done or self.ts_buf is None:
            raise RuntimeError("backward() needs a finished forward()")
        if (<object>Wt).shape != (n_eval, n) and not (n_eval == 0 and Wt.size == 0):
            raise ValueError(f"`W` must have shape ({n}, {n_eval}), got {np.shape(W)}.")
        if Wt.size == 0:
            Wt = np.zeros((1, n))
        ts = <const double *>cnp.PyArray_DATA(self.ts_buf)
        wt = <const double *>cnp.PyArray_DATA(Wt)
        pb_ = <double *>cnp.PyArray_DATA(pbar)
        ds_reversible_backward_init(&self.R, self.ts_buf.shape[0], n_eval)
        while True:
            if self.release_gil:
                with nogil:
                    rc = ds_reversible_backward(&self.R, ts, wt, pb_)
            else:
                rc = ds_reversible_backward(&self.R, ts, wt, pb_)
            if rc == DS_YIELD:
                PyErr_CheckSignals()
            else:
                break
        self.ts_buf = None      # the pair has been walked back: one backward pass
        self.nfev_backward = self.R.nfev_back
        if rc == DS_CALLBACK_STOP:
            self._raise_callback_error()
        self.y0_reconstructed = np.asarray(<double[:n]>self.R.y).copy()
        self.z0_reconstructed = np.asarray(<double[:n]>self.R.z).copy()
        grad_y0 = (np.asarray(<double[:n]>self.R.ybar)
                   + np.asarray(<double[:n]>self.R.zbar))
        grad_p = pbar[:self.m].copy()
        drift = self.reconstruction_drift()
        if not drift <= 1.0:
            return grad_p, grad_y0, -1, (
                "adjoint='reversible' failed: rebuilding the states backward did not "
                f"return to y0 (off by {drift:.3g} times the tolerance), so the gradient "
                "cannot be trusted. Round-off in the reconstruction grows like "
                "reversible_coupling**-steps: use a reversible_coupling closer to 1 "
                "(default 0.999); on a stiff problem use adjoint='gauss'.")
        if not (np.isfinite(grad_y0).all() and np.isfinite(grad_p).all()):
            return grad_p, grad_y0, -1, (
                "The reversible backward pass produced non-finite values: rebuilding "
                "the states backward overflowed or `fun` returned non-finite values.")
        return grad_p, grad_y0, 0, None

    def reconstruction_drift(self):
        """max |(y0, z0) rebuilt - y0| / (atol + rtol |y0|) after backward()."""
        if self.y0_reconstructed is None:
            return np.nan
        scale = self.atolc + self.rtolc * np.abs(self.y0c)
        with np.errstate(invalid="ignore", over="ignore"):
            drift = max(np.max(np.abs(self.y0_reconstructed - self.y0c) / scale),
                        np.max(np.abs(self.z0_reconstructed - self.y0c) / scale))
        return float(drift) if np.isfinite(drift) else np.inf
