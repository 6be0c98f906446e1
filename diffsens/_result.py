"""Result objects: ``OdeResult`` and the piecewise-polynomial ``OdeSolution``."""
import numpy as np
from scipy.integrate import DenseOutput
from scipy.integrate import OdeSolution as _ScipyOdeSolution
from scipy.optimize import OptimizeResult

__all__ = ["OdeResult", "OdeSolution"]


class OdeResult(OptimizeResult):
    """Result of `diffsens.solve_ivp`: the fields of scipy's ``OdeResult``.

    Attributes
    ----------
    t : ndarray, shape (n_points,)
        Time points.
    y : ndarray, shape (n, n_points)
        Values of the solution at `t`.
    sol : OdeSolution or None
        The continuous solution, when ``dense_output=True``.
    t_events, y_events : list of ndarray or None
        Times and states of each event's occurrences.
    nfev, njev, nlu : int
        Right-hand side evaluations, Jacobian evaluations, LU decompositions.
    status : int
        -1 integration step failed, 0 reached the end of `t_span`,
        1 a termination event occurred.
    message : str
        Human-readable description of the termination reason.
    success : bool
        ``status >= 0``.
    """


class _PolynomialSegment(DenseOutput):
    """One step's interpolant: ``y_old + sum_j Q[:, j] theta**(j + 1)``."""

    def __init__(self, t_old, t, h, y_old, Q, dtype):
        super().__init__(t_old, t)
        self.h = h
        self.y_old = y_old
        self.Q = Q
        self._dtype = dtype

    def _call_impl(self, t):
        theta = np.atleast_1d((t - self.t_old) / self.h)
        k = theta.shape[0]
        y = _horner(np.broadcast_to(self.y_old, (k,) + self.y_old.shape),
                    np.broadcast_to(self.Q, (k,) + self.Q.shape), theta)
        y = _as_dtype(y, self._dtype)
        return y[0] if t.ndim == 0 else y.T


def _horner(y_old, Q, theta):
    """Rows of ``y_old + sum_j Q[..., j] theta**(j+1)``; shapes (k, n), (k, n, d), (k,)."""
    theta = theta[:, None]
    acc = Q[:, :, -1].copy()
    for j in range(Q.shape[2] - 2, -1, -1):
        acc *= theta
        acc += Q[:, :, j]
    return y_old + acc * theta


def _as_dtype(y_real, dtype):
    """Undo the kernels' view of complex states as pairs of reals."""
    if dtype == np.complex128:
        return np.ascontiguousarray(y_real).view(np.complex128)
    return y_real


class OdeSolution(_ScipyOdeSolution):
    """Continuous solution of an ODE made of each step's own interpolant.

    A drop-in for `scipy.integrate.OdeSolution` (same segment selection at
    breakpoints, same call signature), stored as arrays and evaluated with
    vectorized NumPy instead of one Python object per step.

    Parameters
    ----------
    ts : array_like, shape (n_segments + 1,)
        Breakpoints, strictly monotonic.
    t_old, h : ndarray, shape (n_segments,)
        Start and length of the step each segment's polynomial belongs to.
    y_old : ndarray, shape (n_segments, n)
        State at each step's start.
    Q : ndarray, shape (n_segments, n, d)
        Polynomial coefficients in the normalized step time ``theta``.
    dtype : numpy dtype
        ``float64``, or ``complex128`` when the state is complex (then `y_old`
        and `Q` hold pairs of reals).

    Examples
    --------
    >>> import numpy as np
    >>> import diffsens
    >>> res = diffsens.solve_ivp(lambda t, y: -y, (0, 2), [1.0], dense_output=True)
    >>> bool(abs(res.sol(1.0)[0] - np.exp(-1.0)) < 1e-3)
    True
    """

    def __init__(self, ts, t_old, h, y_old, Q, dtype=np.float64):
        ts = np.asarray(ts, dtype=float)
        d = np.diff(ts)
        if not ((ts.size == 2 and ts[0] == ts[-1]) or np.all(d > 0) or np.all(d < 0)):
            raise ValueError("`ts` must be strictly increasing or decreasing.")
        if ts.shape != (len(t_old) + 1,):
            raise ValueError("Numbers of time stamps and interpolants don't match.")
        self.ts = ts
        self.n_segments = len(t_old)
        self._t_old = np.asarray(t_old, dtype=float)
        self._h = np.asarray(h, dtype=float)
        self._y_old = np.asarray(y_old, dtype=float)
        self._Q = np.asarray(Q, dtype=float)
        self._dtype = np.dtype(dtype)
        self._interpolants = None
        if ts[-1] >= ts[0]:
            self.t_min, self.t_max = ts[0], ts[-1]
            self.ascending = True
            self.side = "left"
            self.ts_sorted = ts
        else:
            self.t_min, self.t_max = ts[-1], ts[0]
            self.ascending = False
            self.side = "right"
            self.ts_sorted = ts[::-1]

    @classmethod
    def joined(cls, first, second):
        """The solution over first's span followed by second's (they meet)."""
        d = max(first._Q.shape[2], second._Q.shape[2])

        def padded(Q):
            return np.concatenate([Q, np.zeros(Q.shape[:2] + (d - Q.shape[2],))], axis=2)
        return cls(np.concatenate([first.ts, second.ts[1:]]),
                   np.concatenate([first._t_old, second._t_old]),
                   np.concatenate([first._h, second._h]),
                   np.concatenate([first._y_old, second._y_old]),
                   np.concatenate([padded(first._Q), padded(second._Q)]), first._dtype)

    @property
    def interpolants(self):
        """Per-segment `scipy.integrate.DenseOutput` objects (built on first use)."""
        if self._interpolants is None:
            self._interpolants = [
                _PolynomialSegment(self._t_old[i], self._t_old[i] + self._h[i],
                                   self._h[i], self._y_old[i], self._Q[i], self._dtype)
                for i in range(self.n_segments)
            ]
        return self._interpolants

    def _segments(self, t):
        seg = np.searchsorted(self.ts_sorted, t, side=self.side) - 1
        seg = np.clip(seg, 0, self.n_segments - 1)
        if not self.ascending:
            seg = self.n_segments - 1 - seg
        return seg

    def __call__(self, t):
        """Evaluate the solution.

        Parameters
        ----------
        t : float or array_like with shape (n_points,)
            Points to evaluate at.

        Returns
        -------
        y : ndarray, shape (n,) or (n, n_points)
            Computed values; the shape follows `t`.
        """
        t = np.asarray(t, dtype=float)
        if t.ndim > 1:
            raise ValueError("`t` must be a float or a 1-D array.")
        tt = np.atleast_1d(t)
        seg = self._segments(tt)
        theta = (tt - self._t_old[seg]) / self._h[seg]
        y = _as_dtype(_horner(self._y_old[seg], self._Q[seg], theta), self._dtype)
        return y[0] if t.ndim == 0 else y.T
