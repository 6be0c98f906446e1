"""``solve_ivp``: scipy's interface, explicit Runge-Kutta and Rosenbrock loops in C."""
import functools
import inspect
import warnings

import numpy as np
import scipy.integrate
from scipy.integrate import OdeSolver

from ._kernels import _core
from ._result import OdeResult, OdeSolution
from ._rhs import TracedRHS
from ._rosenbrock_tableaus import ROSENBROCK_TABLEAUS
from ._tableaus import TABLEAUS

__all__ = ["solve_ivp", "NATIVE_METHODS", "EXPLICIT_METHODS", "ROSENBROCK_METHODS"]

EPS = np.finfo(float).eps

#: Explicit Runge-Kutta methods (non-stiff problems).
EXPLICIT_METHODS = tuple(TABLEAUS)
#: Rosenbrock methods (stiff problems, mass matrices).
ROSENBROCK_METHODS = tuple(ROSENBROCK_TABLEAUS)
#: Methods whose whole integration loop runs in the C kernels ('auto' moves
#: between an explicit and a Rosenbrock method as the problem's stiffness changes).
NATIVE_METHODS = EXPLICIT_METHODS + ROSENBROCK_METHODS + ("auto",)
AUTO_NONSTIFF, AUTO_STIFF = "Tsit5", "Rodas5P"
#: SUNDIALS through scikit-sundae (see ``_sundials.py``).
SUNDIALS_METHODS = ("CVODE", "IDA")
#: Methods handed to scipy unchanged.
SCIPY_METHODS = ("Radau", "BDF", "LSODA")

MESSAGES = {
    0: "The solver successfully reached the end of the integration interval.",
    1: "A termination event occurred.",
}

#: Options the native methods understand (scipy's and diffsens's own).
_EXPLICIT_OPTIONS = {"first_step", "max_step", "rtol", "atol", "max_steps",
                     "stiffness_check"}
_ROSENBROCK_OPTIONS = {"first_step", "max_step", "rtol", "atol", "max_steps",
                       "jac", "mass"}


def _tableau(method):
    return TABLEAUS[method] if method in TABLEAUS else ROSENBROCK_TABLEAUS[method]


def solve_ivp(fun, t_span, y0, method="RK45", t_eval=None, dense_output=False,
              events=None, vectorized=False, args=None, **options):
    """Solve an initial value problem for a system of ODEs.

    A drop-in for `scipy.integrate.solve_ivp` (same signature, results and
    error messages).  For the explicit Runge-Kutta methods the whole
    integration loop -- steps, error control, dense output, ``t_eval`` and
    event location -- runs in C, and only ``fun`` (and event functions) are
    called back in Python.

    Parameters
    ----------
    fun : callable
        Right-hand side ``fun(t, y, *args)`` returning an array of shape (n,).
        The ``y`` it receives is a buffer reused between calls: copy it if you
        keep it.
    t_span : 2-member sequence
        Interval of integration ``(t0, tf)``; ``tf < t0`` integrates backward.
    y0 : array_like, shape (n,)
        Initial state; complex values are integrated in the complex domain.
    method : str or `scipy.integrate.OdeSolver` subclass, optional
        Explicit, for non-stiff problems: ``'RK45'`` (default, Dormand-Prince
        5(4)), ``'RK23'`` (Bogacki-Shampine 3(2)), ``'DOP853'`` (Hairer's
        8(5,3)), ``'Tsit5'`` (Tsitouras 5(4)), ``'Vern7'`` (Verner 7(6)).
        Rosenbrock, for stiff problems and index-1 DAEs: ``'Rodas5P'``,
        ``'Rodas4'``, ``'Rosenbrock23'`` (options ``jac`` and ``mass``).
        ``'auto'``: Tsit5 while the problem is non-stiff, Rodas5P while it is
        stiff (``res.method_segments`` says which ran where).  These run in C.  ``'CVODE'`` and ``'IDA'`` (residual form) are SUNDIALS
        through scikit-sundae (see ``diffsens._sundials.solve_sundials``);
        ``'Radau'``, ``'BDF'``, ``'LSODA'`` and `OdeSolver` subclasses are
        passed to scipy.
    t_eval : array_like or None, optional
        Times at which to store the solution (sorted in the direction of
        integration, within `t_span`).  None stores every step.
    dense_output : bool, optional
        Whether to return the continuous solution ``sol``.
    events : callable or list of callables, optional
        Functions ``event(t, y, *args)`` whose zeros are located on the dense
        output.  Attributes ``terminal`` (bool or a count of occurrences
        before stopping) and ``direction`` behave as in scipy.
    vectorized : bool, optional
        Whether `fun` takes ``y`` of shape (n, k).  The explicit methods call it
        with one column.
    args : tuple, optional
        Extra arguments passed to `fun` and the event functions.
    **options
        ``rtol``, ``atol`` (scalar or shape (n,); defaults 1e-3 and 1e-6),
        ``first_step``, ``max_step`` as in scipy, plus for the native methods:
        ``max_steps`` (accepted steps allowed, default 1_000_000) and
        ``stiffness_check`` (default True: stop with ``status=-1`` once Hairer's
        test finds the steps limited by stability, instead of crawling).
        Other options go to the scipy methods.

    Returns
    -------
    OdeResult
        ``t, y, sol, t_events, y_events, nfev, njev, nlu, status, message,
        success`` with scipy's meanings.

    Examples
    --------
    Lotka-Volterra, 101 outputs:

    >>> import numpy as np
    >>> import diffsens
    >>> def lotka_volterra(t, z, a, b, c, d):
    ...     x, y = z
    ...     return [a*x - b*x*y, -c*y + d*x*y]
    >>> res = diffsens.solve_ivp(lotka_volterra, (0, 10), [1.0, 1.0],
    ...                          t_eval=np.linspace(0, 10, 101),
    ...                          args=(1.5, 1, 3, 1), rtol=1e-6, atol=1e-8)
    >>> res.status, res.y.shape
    (0, (2, 101))

    A terminal event: a ball dropped from 10 m hits the ground after
    sqrt(20/9.81) s.

    >>> def hit_ground(t, y):
    ...     return y[0]
    >>> hit_ground.terminal = True
    >>> res = diffsens.solve_ivp(lambda t, y: [y[1], -9.81], (0, 10), [10.0, 0.0],
    ...                          events=hit_ground, method="Tsit5")
    >>> round(float(res.t_events[0][0]), 6)
    1.427843
    """
    if not (method in NATIVE_METHODS or method in SCIPY_METHODS
            or method in SUNDIALS_METHODS
            or (inspect.isclass(method) and issubclass(method, OdeSolver))):
        raise ValueError(
            f"`method` must be one of "
            f"{list(NATIVE_METHODS + SUNDIALS_METHODS + SCIPY_METHODS)} "
            "or OdeSolver class.")
    if options.get("mass") is not None and method not in ROSENBROCK_METHODS:
        # (scipy's methods would warn and solve y' = f: a different problem)
        why = ("starts with an explicit method, which cannot take one" if method == "auto"
               else "would solve y' = f instead of M y' = f")
        raise ValueError(f"`mass` is taken by the Rosenbrock methods "
                         f"{list(ROSENBROCK_METHODS)} only; method={method!r} {why}.  "
                         "Use method='Rodas5P' (or method='IDA' with the residual "
                         "F(t, y, y') = M y' - f).")
    if method in SUNDIALS_METHODS:
        from ._sundials import solve_sundials   # scikit-sundae loads on demand
        return solve_sundials(method, fun, t_span, y0, t_eval=t_eval,
                              dense_output=dense_output, events=events,
                              vectorized=vectorized, args=args, **options)

    t0, tf = map(float, t_span)
    args = args_tuple(args)

    y0_arr = np.asarray(y0)
    n_trivial = y0_arr.ndim == 1 and y0_arr.size == 0
    if isinstance(fun, TracedRHS) and method in NATIVE_METHODS and not n_trivial:
        p = fun.parameters(args)
        if y0_arr.dtype.kind == "c":
            raise ValueError("A traced right-hand side is real: `y0` must not be "
                             "complex (pass the plain Python function instead).")
        if y0_arr.shape != (fun.n,):
            raise ValueError(f"`y0` has shape {y0_arr.shape} but the traced "
                             f"right-hand side has n = {fun.n} states.")
        if t0 != tf:
            return _solve_method(method, fun.function, t0, tf, y0_arr,
                                 t_eval, dense_output, events, vectorized, args or (),
                                 options, p=p)
    if method not in NATIVE_METHODS or t0 == tf or n_trivial:
        # scipy's own code path: its methods, and the no-step corner cases
        # (empty system, zero-length span) where no method is ever stepped.
        scipy_method = method if method not in NATIVE_METHODS else "RK45"
        options = {k: v for k, v in options.items()
                   if method not in NATIVE_METHODS
                   or k not in ("max_steps", "stiffness_check", "mass", "jac")}
        return _from_scipy(scipy.integrate.solve_ivp(
            fun, (t0, tf), y0, method=scipy_method, t_eval=t_eval,
            dense_output=dense_output, events=events, vectorized=vectorized,
            args=args, **options))
    if not (np.isfinite(t0) and not np.isnan(tf)):
        raise ValueError("`t_span` must hold a finite `t0` and a `tf` that is "
                         "a number (`tf` may be infinite with a terminal event).")
    return _solve_method(method, fun, t0, tf, y0_arr, t_eval,
                         dense_output, events, vectorized, args or (), options)


def args_tuple(args):
    """``args`` as a tuple (None stays None), with scipy's error otherwise."""
    if args is None:
        return None
    try:
        return tuple(args)
    except TypeError as exp:
        raise TypeError(
            "Supplied 'args' cannot be unpacked. Please supply `args` as a "
            f"tuple (e.g. `args=({args},)`)") from exp


def _from_scipy(res):
    return OdeResult(**dict(res))


def _validated_state(y0):
    kind = y0.dtype.kind   # (np.issubdtype is slow enough to show in small solves)
    if kind == "c":
        dtype = np.complex128
    elif kind in "biuf":
        dtype = np.float64
    else:
        raise TypeError(f"`y0` must be an array of numbers, got dtype {y0.dtype}.")
    y0 = y0.astype(dtype, copy=True)
    if y0.ndim != 1:
        raise ValueError("`y0` must be 1-dimensional.")
    if not _core.all_finite(y0.view(np.float64) if dtype == np.complex128 else y0):
        raise ValueError("All components of the initial state `y0` must be finite.")
    return y0, dtype


@functools.lru_cache(maxsize=64)
def _scalar_tolerances(rtol, atol):
    """Read-only arrays of two valid scalar tolerances; repeated solves (a
    fit, a benchmark) reuse them."""
    rtol_arr, atol_arr = np.array([rtol]), np.array([atol])
    rtol_arr.setflags(write=False)
    atol_arr.setflags(write=False)
    return rtol_arr, atol_arr


def _validated_tolerances(rtol, atol, n, stacklevel):
    if type(rtol) is float and type(atol) is float and 100 * EPS <= rtol < np.inf \
            and 0 <= atol < np.inf:   # the common case, without NumPy overhead
        return _scalar_tolerances(rtol, atol)
    rtol = np.asarray(rtol, dtype=float)
    atol = np.asarray(atol, dtype=float)
    if rtol.ndim > 0 and rtol.shape != (n,):
        raise ValueError("`rtol` has wrong shape.")
    if not (np.isfinite(rtol).all() and np.isfinite(atol).all()):
        raise ValueError("`rtol` and `atol` must be finite.")
    if (rtol < 100 * EPS).any():
        warnings.warn("At least one element of `rtol` is too small. "
                      f"Setting `rtol = np.maximum(rtol, {100 * EPS})`.",
                      stacklevel=stacklevel)
        rtol = np.maximum(rtol, 100 * EPS)
    if atol.ndim > 0 and atol.shape != (n,):
        raise ValueError("`atol` has wrong shape.")
    if (atol < 0).any():
        raise ValueError("`atol` must be positive.")
    return np.atleast_1d(rtol), np.atleast_1d(atol)


def validated_t_eval(t_eval, t0, tf):
    t_eval = np.asarray(t_eval, dtype=float)
    if t_eval.ndim != 1:
        raise ValueError("`t_eval` must be 1-dimensional.")
    problem = _core.t_eval_problem(t_eval, t0, tf)
    if problem == "span":
        raise ValueError("Values in `t_eval` are not within `t_span`.")
    if problem == "order":
        raise ValueError("Values in `t_eval` are not properly sorted.")
    return t_eval


def prepared_events(events):
    if events is None:
        return None, None, None
    if callable(events):
        events = (events,)
    events = list(events)
    max_count = np.empty(len(events))
    direction = np.empty(len(events))
    for i, event in enumerate(events):
        if not callable(event):
            raise TypeError(f"`events[{i}]` must be callable, got {type(event).__name__}.")
        terminal = getattr(event, "terminal", None)
        direction[i] = getattr(event, "direction", 0)
        if terminal is None or terminal == 0:
            max_count[i] = np.inf
        elif int(terminal) == terminal and terminal > 0:
            max_count[i] = terminal
        else:
            raise ValueError("The `terminal` attribute of each event "
                             "must be a boolean or positive integer.")
    return events, direction, max_count


def native_options(options, n, t0, tf, known=_EXPLICIT_OPTIONS, stacklevel=4):
    """Validated options of the native explicit methods, scipy's messages."""
    if not known.issuperset(options):
        extraneous = set(options) - known
        warnings.warn("The following arguments have no effect for a chosen "
                      f"solver: {', '.join(f'`{x}`' for x in sorted(extraneous))}.",
                      stacklevel=stacklevel)
    get = options.get
    rtol, atol = _validated_tolerances(get("rtol", 1e-3), get("atol", 1e-6), n,
                                       stacklevel + 1)
    max_step = get("max_step", np.inf)
    if max_step is not np.inf:
        max_step = float(max_step)
        if not max_step > 0:
            raise ValueError("`max_step` must be positive.")
    first_step = get("first_step")
    if first_step is None:
        first_step = 0.0
    else:
        first_step = float(first_step)
        if not first_step > 0:
            raise ValueError("`first_step` must be positive.")
        if first_step > abs(tf - t0):
            raise ValueError("`first_step` exceeds bounds.")
    max_steps = get("max_steps", 1_000_000)
    if (type(max_steps) is not int and (isinstance(max_steps, bool)
                                        or int(max_steps) != max_steps)) or max_steps < 1:
        raise ValueError(f"`max_steps` must be a positive integer, got {max_steps!r}.")
    return dict(rtol=rtol, atol=atol, max_step=max_step, first_step=first_step,
                max_steps=int(max_steps),
                stiffness_check=bool(get("stiffness_check", True)))


def _solve_method(method, fun, t0, tf, y0, t_eval, dense_output, events,
                  vectorized, args, options, p=None):
    if method != "auto":
        return _solve_native(_tableau(method), fun, t0, tf, y0, t_eval, dense_output,
                             events, vectorized, args, options, p)[0]
    def segment(method, t_start, y_start, rest_eval, opts, nonstiff_bound):
        return _solve_native(_tableau(method), fun, t_start, tf, y_start, rest_eval,
                             dense_output, events, vectorized, args, opts, p,
                             nonstiff_bound=nonstiff_bound)

    return solve_auto(segment, t0, tf, y0, t_eval, options)


def solve_auto(segment, t0, tf, y0, t_eval, options, max_switches=20):
    """Tsit5 while the problem is non-stiff, Rodas5P while it is stiff.

    Tsit5 hands over when Hairer's stiffness test fires; Rodas5P hands back
    once ``h ||J||`` has stayed inside Tsit5's stability interval for 20
    steps.  ``segment(method, t_start, y_start, t_eval, options,
    nonstiff_bound)`` solves from ``t_start`` to ``tf`` and returns
    ``(OdeResult, raw kernel output)`` (plain solves and sensitivity solves
    alike).  The result's ``method_segments`` lists ``(method, t_start,
    t_end)``.  Terminal-event counts start afresh at each switch.
    """
    explicit_opts = {k: v for k, v in options.items() if k not in ("jac", "mass")}
    explicit_opts["stiffness_check"] = True
    stiff_opts = {k: v for k, v in options.items()
                  if k not in ("stiffness_check", "first_step")}
    bound = 0.9 * TABLEAUS[AUTO_NONSTIFF].stability_boundary
    direction = np.sign(tf - t0)
    t_eval = None if t_eval is None else np.asarray(t_eval, dtype=float)
    parts, segments = [], []
    t_start, y_start, stiff = t0, y0, False
    for switch in range(max_switches + 1):
        rest_eval = None if t_eval is None else \
            t_eval[(t_eval - t_start) * direction >= 0] if switch == 0 else \
            t_eval[(t_eval - t_start) * direction > 0]
        last = switch == max_switches   # no more hand-overs: finish here
        method = AUTO_STIFF if stiff else AUTO_NONSTIFF
        if switch == 1:   # first_step is the first segment's: later ones pick their own
            explicit_opts.pop("first_step", None)
        res, raw = segment(method, t_start, y_start, rest_eval,
                           stiff_opts if stiff else dict(explicit_opts, stiffness_check=not last),
                           bound if stiff and not last else 0.0)
        handed_over = raw["stopped_nonstiff"] if stiff else raw["stopped_stiff"]
        t_end = raw["t_last"] if handed_over else tf
        parts.append(res)
        segments.append((method, t_start, t_end))
        if not handed_over:
            break
        t_start, y_start, stiff = t_end, raw["y_last"], not stiff
        if np.iscomplexobj(y0):
            y_start = y_start.view(np.complex128)
    res = parts[0] if len(parts) == 1 else _joined(parts, t_eval is None)
    res.method_segments = segments
    return res


def _joined(parts, every_step):
    """One result from solves that follow each other (each starts where the
    previous stopped)."""
    skip = 1 if every_step else 0      # a later solve restates its (t0, y0)
    t = np.concatenate([parts[0].t] + [r.t[skip:] for r in parts[1:]])
    y = np.concatenate([parts[0].y] + [r.y[:, skip:] for r in parts[1:]], axis=1) \
        if len(t) else parts[-1].y
    t_events = y_events = None
    if parts[0].t_events is not None:
        t_events = [np.concatenate(ts) for ts in zip(*(r.t_events for r in parts))]
        y_events = [np.concatenate([a for a in ys if np.size(a)]) if any(np.size(a) for a in ys)
                    else ys[0] for ys in zip(*(r.y_events for r in parts))]
    sol = None
    if parts[0].sol is not None:
        sol = parts[0].sol
        for r in parts[1:]:
            sol = OdeSolution.joined(sol, r.sol)
    last = parts[-1]
    return OdeResult(t=t, y=y, sol=sol, t_events=t_events, y_events=y_events,
                     nfev=sum(r.nfev for r in parts), njev=sum(r.njev for r in parts),
                     nlu=sum(r.nlu for r in parts), status=last.status,
                     message=last.message, success=last.success)


def _solve_native(tableau, fun, t0, tf, y0, t_eval, dense_output, events,
                  vectorized, args, options, p=None, nonstiff_bound=0.0):
    """(OdeResult, raw kernel output) of one method's solve."""
    if p is None and not callable(fun):
        raise TypeError(f"`fun` must be callable, got {type(fun).__name__}.")
    rosenbrock = tableau.name in ROSENBROCK_TABLEAUS
    y0, dtype = _validated_state(y0)
    n = y0.shape[0]
    opt = native_options(options, n, t0, tf,
                         known=_ROSENBROCK_OPTIONS if rosenbrock else _EXPLICIT_OPTIONS)
    rtol, atol = opt["rtol"], opt["atol"]
    jac = mass = None
    if rosenbrock:
        if dtype == np.complex128:
            raise ValueError("`y0` is complex, but the chosen solver does not "
                             "support integration in a complex domain.")
        jac = _validated_jac(options.get("jac"), n, args)
        mass = _validated_mass(options.get("mass"), n)
        if mass is not None:
            _check_consistent(fun, p, args, vectorized, jac, t0, y0, mass, rtol, atol)
    if t_eval is not None:
        t_eval = validated_t_eval(t_eval, t0, tf)
    events, direction, max_count = prepared_events(events)

    is_complex = dtype == np.complex128
    y0_real = y0.view(np.float64) if is_complex else y0
    if is_complex:   # tolerances apply to real and imaginary parts alike
        rtol = np.repeat(rtol, 2) if rtol.size > 1 else rtol
        atol = np.repeat(atol, 2) if atol.size > 1 else atol

    raw = _core.solve(
        tableau, fun, t0, tf, y0_real, args, is_complex, bool(vectorized),
        rtol, atol, opt["max_step"], opt["first_step"], t_eval, bool(dense_output),
        events, direction, max_count, opt["max_steps"], opt["stiffness_check"], p,
        jac=jac, mass=mass, nonstiff_bound=nonstiff_bound)
    return assemble(raw, t0, dtype, t_eval, dense_output, events), raw


def _validated_jac(jac, n, args):
    """A callable ``jac(t, y, *args)``, a constant matrix, or None."""
    if jac is None or callable(jac):
        return jac
    J = np.asarray(jac, dtype=float)
    if J.shape != (n, n):
        raise ValueError(f"`jac` is expected to have shape {(n, n)}, but "
                         f"actually has {J.shape}.")
    return lambda t, y, *_: J


def _check_consistent(fun, p, args, vectorized, jac, t0, y0, M, rtol, atol):
    """A ValueError unless y0 satisfies the algebraic equations of M y' = f.

    Those are the combinations z^T f = 0 for z in the left null space of M.
    Their residual is measured by the smallest change of y0 that removes it
    to first order (through the Jacobian), against the tolerances: a Rosenbrock
    step would otherwise jump there in its first step, and the stored t0
    point would break the constraints."""
    U, sv, _ = np.linalg.svd(M)
    null = sv <= sv[0] * M.shape[0] * EPS if sv[0] > 0 else np.ones(sv.shape, bool)
    if not null.any():
        return
    Z = U[:, null]
    if p is not None:   # a tape
        def f(y):
            return fun.value(t0, y, p)
    elif vectorized:
        def f(y):
            return np.asarray(fun(t0, y[:, None], *args), dtype=float).ravel()
    else:
        def f(y):
            return np.asarray(fun(t0, y, *args), dtype=float).ravel()
    f0 = f(y0)
    residual = Z.T @ f0
    if not np.all(np.isfinite(residual)) or not residual.any():
        return   # (a non-finite f ends the solve with its own message)
    if p is not None:
        J = fun.jacobian(t0, y0, p)[0]
    elif jac is not None:
        J = np.asarray(jac(t0, y0, *args), dtype=float)
    else:   # forward differences, once
        J = np.empty((y0.shape[0], y0.shape[0]))
        for j in range(y0.shape[0]):
            step = np.sqrt(EPS) * max(1.0, abs(y0[j]))
            y = y0.copy()
            y[j] += step
            J[:, j] = (f(y) - f0) / step
    change = np.linalg.lstsq(Z.T @ J, residual, rcond=None)[0]
    scale = rtol * np.abs(y0) + atol
    worst = np.max(np.abs(change) / scale)
    if not worst <= 1.0:
        raise ValueError(
            "`y0` does not satisfy the algebraic equations of M y' = f (the "
            f"combinations of f that the singular mass matrix `mass` zeroes): "
            f"their residual at t0 is {np.max(np.abs(residual)):.3g}, which y0 would "
            f"have to move by {worst:.3g} times the tolerances (rtol |y0| + atol) to "
            "remove.  Pass consistent initial values, or use method='IDA', which "
            "computes them.")


def refuse_mass(options, where):
    """A ValueError for `mass` in the derivative routes, which would
    differentiate y' = f instead of M y' = f."""
    if options.get("mass") is not None:
        raise ValueError(f"`mass` (M y' = f, DAEs) is not supported by {where}: it would "
                         "differentiate y' = f.  Solve the DAE with "
                         "diffsens.solve_ivp(..., method='Rodas5P', mass=M).")


def _validated_mass(mass, n):
    if mass is None:
        return None
    M = np.asarray(mass, dtype=float)
    if M.shape != (n, n):
        raise ValueError(f"`mass` must be a square matrix of shape {(n, n)} like the "
                         f"Jacobian; got shape {M.shape}.")
    if not np.isfinite(M).all():
        raise ValueError("All entries of the mass matrix `mass` must be finite.")
    return M


def assemble(raw, t0, dtype, t_eval, dense_output, events, result=OdeResult):
    """The kernel's raw output as a `result` (an `OdeResult` or a subclass)."""
    status = raw["status"]
    message = MESSAGES.get(status, raw["message"])
    complex_state = dtype == np.complex128
    t, y = raw["t"], raw["y"]
    if complex_state:
        y = y.view(np.complex128)
    if len(t):
        y = y.T
    else:   # a t_eval run that stored nothing: scipy returns empty arrays
        t, y = np.array([]), np.array([])

    t_events = y_events = None
    if events is not None:
        ev_y = raw["ev_y"].view(np.complex128) if complex_state else raw["ev_y"]
        t_events, y_events = [], []
        for i in range(len(events)):
            hit = raw["ev_which"] == i
            t_events.append(raw["ev_t"][hit])
            y_events.append(ev_y[hit] if hit.any() else np.array([]))

    sol = None
    if dense_output:
        ts = np.concatenate(([t0], raw["seg_t_end"]))
        sol = OdeSolution(ts, raw["seg_t_old"], raw["seg_h"], raw["seg_y_old"],
                          raw["seg_Q"], dtype)
    return result(t=t, y=y, sol=sol, t_events=t_events, y_events=y_events,
                  nfev=raw["nfev"], njev=raw["njev"], nlu=raw["nlu"], status=status,
                  message=message, success=status >= 0)
