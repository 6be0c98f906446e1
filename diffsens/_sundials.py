"""SUNDIALS' CVODE and IDA (through scikit-sundae) with diffsens's conventions.

`solve_sundials` is the back end of ``diffsens.solve_ivp(method="CVODE")`` and
``method="IDA"``: it takes `solve_ivp`'s arguments and returns an `OdeResult`
in diffsens's layout (``y`` of shape ``(n, n_points)``, scipy's event
semantics, an `OdeSolution` for ``dense_output=True``).

How the pieces map onto scikit-sundae
-------------------------------------
The integration runs step by step (``CVODE.step(tf, "onestep", tstop=tf)``,
the same for IDA), so diffsens sees every internal step: without `t_eval` the
result holds all of them, `max_steps` counts them, and ``dense_output`` is
built from them.  Values between steps -- `t_eval` points, event roots, the
dense output -- all come from SUNDIALS' own interpolating polynomial of the
last step (``CVodeGetDky`` / ``IDAGetSolution``, reached through
``step(t, "normal")`` inside the last step), so they are exactly as accurate as
SUNDIALS' native output.

Events are located by diffsens on that interpolant (Brent's method, as in
scipy), not by SUNDIALS' root finder: scikit-sundae's step-wise interface
cannot mix its root returns with interpolated output (roots are reported twice
or at the wrong request), and locating them here gives scipy's semantics
exactly (any sign for ``direction``, integer ``terminal`` counts).
"""
import re
import sys

import numpy as np
from scipy.optimize import brentq

from . import _ivp
from ._result import OdeResult, OdeSolution

__all__ = ["solve_sundials", "SUNDIALS_METHODS"]

#: Methods backed by SUNDIALS through scikit-sundae.
SUNDIALS_METHODS = ("CVODE", "IDA")

EPS = np.finfo(float).eps

_COMMON_OPTIONS = {"rtol", "atol", "first_step", "max_step", "max_steps", "min_step",
                   "max_order", "jac"}
_OPTIONS = {
    "CVODE": frozenset(_COMMON_OPTIONS),
    "IDA": frozenset(_COMMON_OPTIONS | {"yp0", "algebraic", "calc_initcond",
                                        "calc_init_dt"}),
}

# Degree of the polynomial each dense-output segment stores: SUNDIALS' BDF
# interpolant has the order of the step (at most 5), so a degree-5 polynomial
# through 6 samples reproduces it exactly.  Chebyshev-Lobatto nodes in [0, 1].
_DEGREE = 5
_NODES = (1.0 - np.cos(np.pi * np.arange(_DEGREE + 1) / _DEGREE)) / 2.0
_NODES[0], _NODES[-1] = 0.0, 1.0
_INV_VANDERMONDE = np.linalg.inv(_NODES[1:, None] ** np.arange(1, _DEGREE + 1))

# Consecutive steps with t + h == t (SUNDIALS only warns) before giving up.
_MAX_STALLED_STEPS = 20

_SUNDIALS_ERROR = re.compile(r"^\s*\[(\w+), Error: (-?\d+)\]\s*(.*?)\s*$", re.S)


def solve_sundials(method, fun, t_span, y0, t_eval=None, dense_output=False,
                   events=None, vectorized=False, args=None, **options):
    """Solve an ODE with SUNDIALS' CVODE or a DAE with SUNDIALS' IDA.

    The back end of ``diffsens.solve_ivp(..., method="CVODE")`` and
    ``method="IDA"``: same arguments and result as `diffsens.solve_ivp`,
    integrated by SUNDIALS (through scikit-sundae) with variable-order
    (1 to 5) BDF, Newton iteration and a dense direct linear solver.

    Parameters
    ----------
    method : {'CVODE', 'IDA'}
        ``'CVODE'`` solves the ODE ``y' = fun(t, y)``.  ``'IDA'`` solves the
        implicit DAE ``F(t, y, y') = 0`` where **`fun` is the residual**
        ``F``: see `fun`.
    fun : callable
        CVODE: the right-hand side ``fun(t, y, *args)`` returning shape (n,),
        as in scipy.

        IDA: the residual ``fun(t, y, yp, *args)`` returning
        ``F(t, y, yp)``, shape (n,); e.g. ``yp - f(t, y)`` for an ODE, and
        plain equations ``g(t, y)`` for algebraic components.

        ``y`` (and ``yp``) are read-only views of SUNDIALS' memory, valid
        only during the call: copy them to keep them.
    t_span : 2-member sequence
        ``(t0, tf)``, both finite; ``tf < t0`` integrates backward.
    y0 : array_like, shape (n,)
        Initial state (real: SUNDIALS has no complex arithmetic).  For IDA,
        give the initial derivative as the option `yp0` too.
    t_eval : array_like or None, optional
        Times at which to store the solution (sorted in the direction of
        integration, within `t_span`), from SUNDIALS' interpolant of the
        step that covers them.  None stores ``t0`` and every internal step.
    dense_output : bool, optional
        Whether to return ``sol``, an `OdeSolution` that reproduces each
        step's SUNDIALS interpolating polynomial (degree <= 5) exactly.
    events : callable or list of callables, optional
        ``event(t, y, *args)`` for CVODE, ``event(t, y, yp, *args)`` for IDA,
        with scipy's attributes ``terminal`` (bool or a count of occurrences
        before stopping) and ``direction``.  Roots are located on SUNDIALS'
        interpolant with Brent's method, with scipy's semantics.
    vectorized : bool, optional
        Whether `fun` accepts ``y`` (and ``yp``) of shape (n, k); it is
        called with one column.
    args : tuple, optional
        Extra arguments for `fun`, `jac` and the event functions.
    **options
        rtol, atol : float or array_like, shape (n,)
            Tolerances, scipy's defaults 1e-3 and 1e-6 and its validation.
            SUNDIALS has a single relative tolerance: an `rtol` array must
            hold one value.
        first_step, max_step : float
            As in scipy (default: SUNDIALS' estimate, unbounded).
        min_step : float
            SUNDIALS' minimum step size (default 0).
        max_steps : int
            Internal steps allowed in total (default 1_000_000), diffsens's
            meaning: SUNDIALS' own ``mxstep`` limits steps *per output call*
            and is not used (every call here takes one step).
        max_order : int
            Maximum BDF order, 1 to 5 (default 5).
        jac : callable, array_like or sparse matrix, optional
            CVODE: ``jac(t, y, *args)`` returning ``df/dy`` of shape (n, n)
            (dense or a scipy sparse matrix), or a constant matrix.
            IDA: ``jac(t, y, yp, cj, *args)`` returning
            ``dF/dy + cj * dF/dyp``.  Default: SUNDIALS' difference quotients.
        yp0 : array_like, shape (n,)  (IDA only)
            Initial derivative.  If omitted, zeros are used and corrected by
            the initial-condition calculation (``calc_initcond='yp0'``).
        algebraic : array_like of bool (shape (n,)) or of int  (IDA only)
            Mask or indices of the algebraic components (those whose
            derivative does not appear in `fun`).  Given, the initial values
            are made consistent by ``calc_initcond='yp0'`` unless told
            otherwise.
        calc_initcond : {'yp0', 'y0', None}  (IDA only)
            SUNDIALS' ``IDACalcIC``: ``'yp0'`` keeps the differential
            components of `y0` and computes the algebraic components of ``y``
            and the differential ones of ``yp``; ``'y0'`` keeps `yp0` and
            computes all of ``y``; None uses `y0`, `yp0` as given.  Default:
            ``'yp0'`` if `algebraic` is given or `yp0` omitted, else None.
            The corrected values are the result's first column.
        calc_init_dt : float  (IDA only)
            Offset of the first output time passed to ``IDACalcIC`` (sets its
            direction and time scale); default ``min(0.01, |tf - t0|)`` in the
            direction of integration.

    Returns
    -------
    OdeResult
        ``t, y, sol, t_events, y_events, nfev, njev, nlu, status, message,
        success``.  ``nfev`` counts the calls of `fun`, including those of
        SUNDIALS' difference-quotient Jacobian; ``njev`` is SUNDIALS' count
        of Jacobian evaluations.  scikit-sundae does not report the number
        of factorizations of the Newton matrix: ``nlu`` is set to ``njev``,
        a lower bound (SUNDIALS refactors at every linear-solver setup).
        ``status`` is -1 when SUNDIALS fails (its message is passed on),
        0 at ``tf`` and 1 after a terminal event.  An exception raised by
        `fun`, `jac` or an event propagates unchanged.

    Notes
    -----
    While it runs, the error reports scikit-sundae prints are taken off
    ``sys.stdout`` and put into ``message``; everything else printed is passed
    through.  SUNDIALS' own warnings (e.g. "t + h = t on the next step") are
    written by its C library and not intercepted.

    Examples
    --------
    Robertson's reaction as an ODE and as a DAE (mass conservation as the
    algebraic equation):

    >>> import numpy as np
    >>> from diffsens._sundials import solve_sundials
    >>> def rober(t, y, k1, k2, k3):
    ...     a, b, c = k1 * y[0], k3 * y[1] * y[2], k2 * y[1]**2
    ...     return [-a + b, a - b - c, c]
    >>> k = (0.04, 3e7, 1e4)
    >>> ode = solve_sundials("CVODE", rober, (0, 40), [1.0, 0, 0], args=k,
    ...                      rtol=1e-6, atol=1e-10)
    >>> def residual(t, y, yp, k1, k2, k3):
    ...     f = rober(t, y, k1, k2, k3)
    ...     return [yp[0] - f[0], yp[1] - f[1], y.sum() - 1.0]
    >>> dae = solve_sundials("IDA", residual, (0, 40), [1.0, 0, 0], args=k,
    ...                      yp0=[-0.04, 0.04, 0.0], algebraic=[2],
    ...                      rtol=1e-6, atol=1e-10)
    >>> ode.status, dae.status
    (0, 0)
    >>> bool(np.abs(ode.y[:, -1] - dae.y[:, -1]).max() < 1e-5)
    True
    """
    if method not in SUNDIALS_METHODS:
        raise ValueError(f"`method` must be one of {list(SUNDIALS_METHODS)}.")
    is_ida = method == "IDA"
    if not callable(fun):
        raise TypeError(f"`fun` must be callable, got {type(fun).__name__}.")
    t0, tf = map(float, t_span)
    if not (np.isfinite(t0) and np.isfinite(tf)):
        raise ValueError(f"`t_span` must be finite for method '{method}'.")
    args = _ivp.args_tuple(args) or ()
    y0 = _real_state(y0, "y0", "initial state `y0`")
    n = y0.shape[0]

    opt = _ivp.native_options(options, n, t0, tf, known=_OPTIONS[method],
                              stacklevel=_caller_stacklevel())
    rtol, atol = opt["rtol"], opt["atol"]
    if rtol.size > 1:
        if np.any(rtol != rtol[0]):
            raise ValueError(f"Method '{method}' takes a single relative tolerance: "
                             "SUNDIALS has no per-component `rtol`.")
    sk_options = dict(
        rtol=float(rtol[0]),
        atol=float(atol[0]) if atol.size == 1 else atol.astype(float),
        first_step=opt["first_step"],
        max_step=opt["max_step"],   # inf: unbounded (0 would clash with min_step)
        min_step=_nonnegative(options.get("min_step", 0.0), "min_step"),
        max_order=_max_order(options.get("max_order", 5)),
        # One step per call: SUNDIALS' per-call step limit never binds.
        max_num_steps=2 ** 31 - 1,
    )
    if sk_options["min_step"] > sk_options["max_step"]:
        raise ValueError("`min_step` must not exceed `max_step`.")
    if t_eval is not None:
        t_eval = _ivp.validated_t_eval(t_eval, t0, tf)
    events, ev_direction, ev_max_count = _ivp.prepared_events(events)

    counter = _Counter()
    jac = options.get("jac")
    if is_ida:
        yp0, calc_initcond, algebraic_idx, calc_init_dt = _ida_initial_options(
            options, n, t0, tf)
        sk_options["resfn"] = _residual(fun, args, n, vectorized, counter)
        if jac is not None:
            sk_options["jacfn"] = _ida_jacobian(jac, args, n, counter)
        if algebraic_idx is not None:
            sk_options["algebraic_idx"] = algebraic_idx
        if calc_initcond is not None:
            sk_options["calc_initcond"] = calc_initcond
            sk_options["calc_init_dt"] = calc_init_dt
    else:
        yp0 = None
        sk_options["rhsfn"] = _rhs(fun, args, n, vectorized, counter)
        if jac is not None:
            sk_options["jacfn"] = _cvode_jacobian(jac, args, n, counter)

    if n == 0:
        return _trivial_result(t0, tf, y0, t_eval, dense_output, events)

    with _StdoutFilter() as reports:
        driver = _Driver(method, sk_options, tf, counter, reports)
        return _integrate(driver, t0, tf, y0, yp0, t_eval, dense_output, events,
                          ev_direction, ev_max_count, args, opt["max_steps"], is_ida)


# --------------------------------------------------------------------------
# The integration loop
# --------------------------------------------------------------------------

def _integrate(driver, t0, tf, y0, yp0, t_eval, dense_output, events,
               ev_direction, ev_max_count, args, max_steps, is_ida):
    direction = 1.0 if tf >= t0 else -1.0
    status, message = None, None

    start = driver.start(t0, y0, yp0)
    if start.failed:
        return _result([], [], None, None, None, events, driver, -1, start.message)
    y_start, yp_start = start.y, start.yp

    ts, ys = [], []
    k_eval = 0
    if t_eval is None:
        ts.append(t0)
        ys.append(y_start)
    else:
        while k_eval < len(t_eval) and t_eval[k_eval] == t0:
            ts.append(t0)
            ys.append(y_start)
            k_eval += 1

    if events is not None:
        def event_values(t, y, yp):
            if is_ida:
                return np.array([float(ev(t, y, yp, *args)) for ev in events])
            return np.array([float(ev(t, y, *args)) for ev in events])
        g = event_values(t0, y_start, yp_start)
        ev_count = np.zeros(len(events))
        t_events = [[] for _ in events]
        y_events = [[] for _ in events]
    else:
        t_events = y_events = None

    seg_ts, seg_t_old, seg_h, seg_y_old, seg_Q = [t0], [], [], [], []
    t_prev = t0
    n_steps = n_stalled = 0
    if t0 == tf:
        status = 0
    while status is None:
        if n_steps >= max_steps:
            status = -1
            message = (f"The maximum number of steps (max_steps={max_steps}) was "
                       f"taken before reaching t = {tf!r}; raise `max_steps` or "
                       "loosen the tolerances.")
            break
        step = driver.step()
        if step.failed:
            status, message = -1, step.message
            break
        n_steps += 1
        t_new, y_new, yp_new = step.t, step.y, step.yp
        if not np.all(np.isfinite(y_new)):
            status = -1
            message = (f"SUNDIALS produced non-finite values at t = {t_new!r}: "
                       "`fun` probably returned inf or nan.")
            break
        h = t_new - t_prev
        if h == 0:   # SUNDIALS goes on when t + h == t; diffsens stops after a while
            n_stalled += 1
            if n_stalled >= _MAX_STALLED_STEPS:
                status = -1
                message = (f"Required step size is less than spacing between numbers "
                           f"(SUNDIALS' steps stopped advancing at t = {t_new!r})")
                message += (": `fun` returned non-finite values." if driver.counter.nonfinite
                            else ".")
                break
            continue
        n_stalled = 0

        if dense_output:
            samples = np.array([driver.at(t_prev + theta * h)[0]
                                for theta in _NODES[:-1]] + [y_new])
            seg_t_old.append(t_prev)
            seg_h.append(h)
            seg_y_old.append(samples[0])
            seg_Q.append((_INV_VANDERMONDE @ (samples[1:] - samples[0])).T)

        t_stop, y_stop = t_new, y_new
        terminate = False
        if events is not None:
            g_new = event_values(t_new, y_new, yp_new)
            active = _active_events(g, g_new, ev_direction)
            if active.size:
                roots = np.array([_event_root(events[i], args, driver, is_ida,
                                              t_prev, t_new, g[i], g_new[i])
                                  for i in active])
                ev_count[active] += 1
                if np.any(ev_count[active] >= ev_max_count[active]):
                    order = np.argsort(direction * roots, kind="stable")
                    active, roots = active[order], roots[order]
                    first = np.nonzero(ev_count[active] >= ev_max_count[active])[0][0]
                    active, roots = active[:first + 1], roots[:first + 1]
                    terminate = True
                for i, root in zip(active, roots):
                    y_root = y_new if root == t_new else driver.at(root)[0]
                    t_events[i].append(root)
                    y_events[i].append(y_root)
                if terminate:
                    t_stop, y_stop = roots[-1], y_root
            g = g_new

        if t_eval is None:
            ts.append(t_stop)
            ys.append(y_stop)
        else:
            while (k_eval < len(t_eval)
                   and direction * (t_eval[k_eval] - t_stop) <= 0):
                te = t_eval[k_eval]
                ts.append(te)
                ys.append(y_new if te == t_new else driver.at(te)[0])
                k_eval += 1
        if dense_output:
            seg_ts.append(t_stop)

        if terminate:
            status = 1
        elif step.reached_tstop or t_new == tf:
            status = 0
        t_prev = t_new

    sol = None
    if dense_output:
        if t0 == tf:
            sol = OdeSolution([t0, t0], [t0], [1.0], [y_start],
                              np.zeros((1, len(y_start), 1)))
        elif seg_Q:
            sol = OdeSolution(seg_ts, seg_t_old, seg_h, seg_y_old, np.array(seg_Q))
    if message is None:
        message = _ivp.MESSAGES[status]
    return _result(ts, ys, sol, t_events, y_events, events, driver, status, message)


def _active_events(g, g_new, direction):
    """scipy's ``find_active_events``."""
    up = (g <= 0) & (g_new >= 0)
    down = (g >= 0) & (g_new <= 0)
    either = up | down
    mask = (up & (direction > 0) | down & (direction < 0) | either & (direction == 0))
    return np.nonzero(mask)[0]


def _event_root(event, args, driver, is_ida, a, b, g_a, g_b):
    """Root of one event on the last step's interpolant (scipy's tolerances)."""
    def g(t):
        if t == a:
            return g_a
        if t == b:
            return g_b
        y, yp = driver.at(t)
        return float(event(t, y, yp, *args) if is_ida else event(t, y, *args))
    return brentq(g, a, b, xtol=4 * EPS, rtol=4 * EPS)


def _result(ts, ys, sol, t_events, y_events, events, driver, status, message):
    if ts:
        t = np.array(ts, dtype=float)
        y = np.array(ys).T
    else:   # nothing stored (a t_eval run, or a failure at the start)
        t, y = np.array([]), np.array([])
    if events is not None:
        if t_events is None:
            t_events = [[] for _ in events]
            y_events = [[] for _ in events]
        t_events = [np.array(te, dtype=float) for te in t_events]
        y_events = [np.array(ye) if len(ye) else np.array([]) for ye in y_events]
    njev = driver.njev
    return OdeResult(t=t, y=y, sol=sol, t_events=t_events, y_events=y_events,
                     nfev=driver.counter.nfev, njev=njev, nlu=njev, status=status,
                     message=message, success=status >= 0)


def _trivial_result(t0, tf, y0, t_eval, dense_output, events):
    """An empty system: nothing to integrate."""
    if t_eval is None:
        t = np.array([t0, tf]) if tf != t0 else np.array([t0])
    else:
        t = t_eval
    sol = None
    if dense_output:
        ts = [t0, tf] if tf != t0 else [t0, t0]
        sol = OdeSolution(ts, [t0], [tf - t0 or 1.0], np.zeros((1, 0)),
                          np.zeros((1, 0, 1)))
    return OdeResult(t=np.asarray(t, dtype=float), y=np.zeros((0, len(t))), sol=sol,
                     t_events=None if events is None else [np.array([]) for _ in events],
                     y_events=None if events is None else [np.array([]) for _ in events],
                     nfev=0, njev=0, nlu=0, status=0, message=_ivp.MESSAGES[0],
                     success=True)


# --------------------------------------------------------------------------
# scikit-sundae, one step at a time
# --------------------------------------------------------------------------

class _Counter:
    __slots__ = ("nfev", "user_exc", "nonfinite")

    def __init__(self):
        self.nfev = 0
        self.user_exc = None
        self.nonfinite = False


class _Step:
    __slots__ = ("failed", "message", "t", "y", "yp", "reached_tstop")

    def __init__(self, failed=False, message=None, t=None, y=None, yp=None,
                 reached_tstop=False):
        self.failed = failed
        self.message = message
        self.t = t
        self.y = y
        self.yp = yp
        self.reached_tstop = reached_tstop


class _Driver:
    """A scikit-sundae solver advanced one internal step per call.

    ``at(t)`` is SUNDIALS' interpolant of the last step (a ``"normal"`` call
    with ``t`` inside that step never steps).  After such a call SUNDIALS'
    next one-step call returns the current step again instead of taking a
    new one: `step` skips that repeat.
    """

    def __init__(self, method, sk_options, tf, counter, reports):
        try:
            if method == "IDA":
                from sksundae.ida import IDA as solver_class
                fun = sk_options.pop("resfn")
            else:
                from sksundae.cvode import CVODE as solver_class
                fun = sk_options.pop("rhsfn")
        except ImportError as exc:   # pragma: no cover - a declared dependency
            raise ImportError(f"Method '{method}' needs scikit-sundae "
                              "(pip install scikit-sundae).") from exc
        self.is_ida = method == "IDA"
        self.solver = solver_class(fun, **sk_options)
        self.tf = tf
        self.counter = counter
        self.reports = reports
        self.njev = 0
        self._interpolated = False
        self._t_last = None

    def _call(self, func, *call_args):
        """Run a scikit-sundae call; its RuntimeErrors become a failed _Step."""
        try:
            return func(*call_args), None
        except BaseException as exc:
            if exc is self.counter.user_exc or not isinstance(exc, RuntimeError):
                raise
            return None, self._message(str(exc))

    def _message(self, text):
        detail = self.reports.pop_last()
        return f"{text} {detail}" if detail else text

    def start(self, t0, y0, yp0):
        if self.is_ida:
            res, err = self._call(self.solver.init_step, t0, y0, yp0)
        else:
            res, err = self._call(self.solver.init_step, t0, y0)
        if err is not None:
            return _Step(failed=True, message=err)
        if res.status < 0:
            return _Step(failed=True, message=self._message(res.message))
        self.njev = int(res.njev)
        self._t_last = t0
        return _Step(t=t0, y=np.array(res.y, dtype=float),
                     yp=np.array(res.yp, dtype=float) if self.is_ida else None)

    def step(self):
        while True:
            res, err = self._call(self.solver.step, self.tf, "onestep", self.tf)
            if err is not None:
                return _Step(failed=True, message=err)
            self.njev = int(res.njev)
            if res.status < 0:
                return _Step(failed=True, message=self._message(res.message))
            if self._interpolated and res.status == 0 and res.t == self._t_last:
                self._interpolated = False
                continue
            break
        self._interpolated = False
        self._t_last = float(res.t)
        return _Step(t=float(res.t), y=np.array(res.y, dtype=float),
                     yp=np.array(res.yp, dtype=float) if self.is_ida else None,
                     reached_tstop=res.status == 1)

    def at(self, t):
        """``(y(t), yp(t))`` on SUNDIALS' interpolant of the last step."""
        self._interpolated = True
        res, err = self._call(self.solver.step, float(t), "normal", None)
        if err is not None or res.status != 0:   # pragma: no cover - t is in the step
            raise RuntimeError(f"SUNDIALS could not interpolate at t = {t!r}: "
                               f"{err or res.message}")
        return res.y, (res.yp if self.is_ida else None)


class _StdoutFilter:
    """Take scikit-sundae's printed SUNDIALS error reports off ``sys.stdout``.

    scikit-sundae prints ``"\\n[func, Error: code] text\\n"`` for every error
    SUNDIALS reports; they are kept (for the result's message) instead of
    printed.  Anything else written meanwhile passes through.
    """

    def __enter__(self):
        self._stream = sys.stdout
        self._reports = []
        self._swallow_newline = False
        sys.stdout = self
        return self

    def __exit__(self, *exc_info):
        sys.stdout = self._stream
        return False

    def write(self, text):
        match = _SUNDIALS_ERROR.match(text) if "Error: " in text else None
        if match:
            func, _, detail = match.groups()
            self._reports.append(f"[SUNDIALS {func}: {' '.join(detail.split())}]")
            self._swallow_newline = True
            return len(text)
        if self._swallow_newline and text == "\n":
            self._swallow_newline = False
            return len(text)
        self._swallow_newline = False
        if self._stream is None:
            return len(text)
        return self._stream.write(text)

    def flush(self):
        if self._stream is not None:
            self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def pop_last(self):
        """The SUNDIALS reports since the last call, joined."""
        reports, self._reports = self._reports, []
        return " ".join(reports)


# --------------------------------------------------------------------------
# User callables in scikit-sundae's in-place form
# --------------------------------------------------------------------------

_isfinite = np.isfinite


def _shape_error(what, value, shape):
    return ValueError(f"`{what}` must return an array of shape {shape}, got "
                      f"shape {np.shape(value)}.")


def _store(value, dst, n, counter):
    """``fun``'s output into SUNDIALS' buffer: shape checked, non-finite noted."""
    try:
        dst[:] = value
    except (ValueError, TypeError) as exc:
        raise _shape_error("fun", value, (n,)) from exc
    if not _isfinite(dst).all():
        counter.nonfinite = True


def _rhs(fun, args, n, vectorized, counter):
    def rhsfn(t, y, yp):
        counter.nfev += 1
        try:
            if vectorized:
                f = np.asarray(fun(t, y[:, None], *args)).reshape(-1)
            else:
                f = fun(t, y, *args)
            _store(f, yp, n, counter)
        except BaseException as exc:
            counter.user_exc = exc
            raise
    return rhsfn


def _residual(fun, args, n, vectorized, counter):
    def resfn(t, y, yp, res):
        counter.nfev += 1
        try:
            if vectorized:
                r = np.asarray(fun(t, y[:, None], yp[:, None], *args)).reshape(-1)
            else:
                r = fun(t, y, yp, *args)
            _store(r, res, n, counter)
        except BaseException as exc:
            counter.user_exc = exc
            raise
    return resfn


def _dense_matrix(J, n):
    if hasattr(J, "toarray"):   # scipy sparse
        J = J.toarray()
    J = np.asarray(J, dtype=float)
    if J.shape != (n, n):
        raise ValueError(f"`jac` is expected to have shape {(n, n)}, but "
                         f"actually has {J.shape}.")
    return J


def _cvode_jacobian(jac, args, n, counter):
    if callable(jac):
        def jacfn(t, y, fy, JJ):
            try:
                JJ[:, :] = _dense_matrix(jac(t, y, *args), n)
            except BaseException as exc:
                counter.user_exc = exc
                raise
    else:
        J0 = _dense_matrix(jac, n)

        def jacfn(t, y, fy, JJ):
            JJ[:, :] = J0
    return jacfn


def _ida_jacobian(jac, args, n, counter):
    if not callable(jac):
        raise TypeError("For method 'IDA', `jac` must be callable: "
                        "jac(t, y, yp, cj, *args) -> dF/dy + cj * dF/dyp.")

    def jacfn(t, y, yp, res, cj, JJ):
        try:
            JJ[:, :] = _dense_matrix(jac(t, y, yp, cj, *args), n)
        except BaseException as exc:
            counter.user_exc = exc
            raise
    return jacfn


# --------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------

def _caller_stacklevel():
    """``stacklevel`` for `native_options`'s warnings: the first frame outside
    diffsens (``solve_ivp`` or the user calling `solve_sundials` directly)."""
    frame = sys._getframe(2)   # the caller of solve_sundials
    level = 3                  # native_options <- solve_sundials <- caller
    while frame is not None and frame.f_globals.get("__name__", "").startswith("diffsens."):
        frame = frame.f_back
        level += 1
    return level


def _real_state(value, name, what):
    arr = np.asarray(value)
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"`{name}` must be real: SUNDIALS has no complex arithmetic "
                         "(integrate the real and imaginary parts as separate "
                         "components).")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"`{name}` must be an array of numbers, got dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=True)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-dimensional.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"All components of the {what} must be finite.")
    return arr


def _nonnegative(value, name):
    value = float(value)
    if not value >= 0:
        raise ValueError(f"`{name}` must be non-negative.")
    return value


def _max_order(value):
    if isinstance(value, bool) or int(value) != value or not 1 <= value <= 5:
        raise ValueError(f"`max_order` must be an integer from 1 to 5, got {value!r}.")
    return int(value)


def _ida_initial_options(options, n, t0, tf):
    yp0 = options.get("yp0")
    if yp0 is None:
        yp0 = np.zeros(n)
        default_ic = "yp0"
    else:
        yp0 = _real_state(yp0, "yp0", "initial derivative `yp0`")
        if yp0.shape != (n,):
            raise ValueError(f"`yp0` must have the shape of `y0`, ({n},); got "
                             f"{yp0.shape}.")
        default_ic = None

    algebraic = options.get("algebraic")
    algebraic_idx = None
    if algebraic is not None:
        alg = np.asarray(algebraic)
        if alg.dtype == bool:
            if alg.shape != (n,):
                raise ValueError(f"A boolean `algebraic` mask must have shape ({n},).")
            algebraic_idx = np.flatnonzero(alg)
        else:
            if alg.ndim != 1 or not (alg.size == 0 or np.issubdtype(alg.dtype, np.integer)):
                raise ValueError("`algebraic` must be a boolean mask of shape (n,) or "
                                 "a 1-D sequence of integer indices.")
            if alg.size and (alg.min() < -n or alg.max() >= n):
                raise ValueError(f"`algebraic` indices must lie in [-{n}, {n}).")
            algebraic_idx = np.unique(alg % n) if alg.size else alg.astype(int)
        algebraic_idx = [int(i) for i in algebraic_idx]
        if algebraic_idx:
            default_ic = "yp0"
        else:
            algebraic_idx = None

    calc_initcond = options.get("calc_initcond", default_ic)
    if calc_initcond not in ("yp0", "y0", None):
        raise ValueError("`calc_initcond` must be 'yp0', 'y0' or None, got "
                         f"{calc_initcond!r}.")
    direction = 1.0 if tf >= t0 else -1.0
    calc_init_dt = options.get("calc_init_dt")
    if calc_init_dt is None:
        calc_init_dt = direction * (min(0.01, abs(tf - t0)) or 0.01)
    else:
        calc_init_dt = float(calc_init_dt)
        if not (np.isfinite(calc_init_dt) and calc_init_dt * direction > 0):
            raise ValueError("`calc_init_dt` must be finite, nonzero and point in "
                             "the direction of integration.")
    return yp0, calc_initcond, algebraic_idx, calc_init_dt
