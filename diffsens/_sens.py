"""Forward sensitivities: ``solve_ivp_sens``.

Both strategies integrate the state together with its derivatives
``S = dy/dz`` along k directions z (the parameters, the initial values):

* ``'dual'`` (discrete, DSAAD): the solver runs on dual numbers, so ``sens``
  is the exact derivative of the discrete solution that is returned.  By
  default only ``y`` enters error control: the steps are those of the plain
  solve, and chunks of directions give identical results.
* ``'continuous'`` (CVODES-style): the sensitivity equations
  ``S' = J_y S + J_p`` are integrated alongside ``y`` with their error
  controlled too (CVODES ``errconS``), so ``sens`` is accurate to the
  tolerances as an approximation of the true sensitivities.

Both are the same augmented system ``[y, S]``, evaluated with one
Jacobian-vector product of k lanes per stage (the tape's dual lanes, or
``diffsens.Dual`` numbers through a Python ``fun``); they differ in what the
error control sees.  For an explicit Runge-Kutta method, applying the step
to the sensitivity equations is differentiating it.  So it is for a
Rosenbrock method, given the augmented Jacobian exactly: its block coupling
``S`` to ``y``, d/dy (J S + J_p), is the derivative of the step's ``W``
along the directions (the mixed second derivatives of f are symmetric).
"""
import concurrent.futures
import functools
import math
import threading

import numpy as np

from ._ivp import (_EXPLICIT_OPTIONS, EXPLICIT_METHODS, NATIVE_METHODS, _tableau,
                   assemble, native_options, prepared_events, refuse_mass, solve_auto,
                   solve_ivp, validated_t_eval)
from ._kernels import _core
from ._result import OdeResult
from ._rhs import TracedRHS

__all__ = ["solve_ivp_sens", "SensResult", "SensSolution"]

SENS_METHODS = ("dual", "continuous")
_SENS_OPTIONS = _EXPLICIT_OPTIONS | {"chunk_size", "workers", "sens_error_control"}


class SensResult(OdeResult):
    """`OdeResult` plus forward sensitivities.

    Attributes
    ----------
    sens : ndarray, shape (n, m, n_points)
        ``dy_i/dp_j`` at ``t`` (when ``wrt`` includes ``'p'``).
    sens_y0 : ndarray, shape (n, n, n_points)
        ``dy_i/dy0_j`` at ``t`` (when ``wrt`` includes ``'y0'``).
    sol : SensSolution or None
        Continuous solution: ``sol(t)`` as scipy's, ``sol.sens(t)`` and
        ``sol.sens_y0(t)`` for the sensitivities.
    sens_method : str
        ``'dual'`` or ``'continuous'``.
    """


class SensSolution:
    """Dense output of a sensitivity solve: the state and its derivatives.

    ``sol(t)`` evaluates ``y`` like `scipy.integrate.OdeSolution`;
    ``sol.sens(t)`` gives shape (n, m) or (n, m, n_points) and
    ``sol.sens_y0(t)`` shape (n, n) or (n, n, n_points).
    """

    def __init__(self, chunks, n, lanes_p, lanes_y0):
        self._chunks = chunks          # [(OdeSolution over [y, S_chunk], k_chunk)]
        self._n = n
        self._lanes_p = lanes_p        # direction indices of dy/dp
        self._lanes_y0 = lanes_y0
        first = chunks[0][0]
        self.ts, self.t_min, self.t_max = first.ts, first.t_min, first.t_max
        self.n_segments = first.n_segments

    def __call__(self, t):
        return self._chunks[0][0](t)[:self._n]

    def _directions(self, t):
        n = self._n
        parts = []
        for sol, k in self._chunks:
            values = sol(t)[n:]                       # (n k,) or (n k, nt)
            parts.append(values.reshape((k, n) + values.shape[1:]))
        return np.concatenate(parts, axis=0)          # (K, n[, nt])

    def sens(self, t):
        """``dy/dp`` at ``t``: shape (n, m) or (n, m, n_points)."""
        if self._lanes_p is None:
            raise ValueError("This solve did not compute dy/dp (wrt did not include 'p').")
        return np.moveaxis(self._directions(t)[self._lanes_p], 0, 1)

    def sens_y0(self, t):
        """``dy/dy0`` at ``t``: shape (n, n) or (n, n, n_points)."""
        if self._lanes_y0 is None:
            raise ValueError("This solve did not compute dy/dy0 (wrt did not include 'y0').")
        return np.moveaxis(self._directions(t)[self._lanes_y0], 0, 1)


def _wrt_set(wrt):
    if type(wrt) is str and wrt == "p":   # the default, without building sets
        return _WRT_P
    items = (wrt,) if isinstance(wrt, str) else tuple(wrt)
    if not items or any(w not in ("p", "y0") for w in items):
        raise ValueError(f"`wrt` must be 'p', 'y0' or ('p', 'y0'), got {wrt!r}.")
    return frozenset(items)


_WRT_P = frozenset(("p",))


@functools.lru_cache(maxsize=64)
def _chunk_seeds(n, m, with_p, with_y0, start, stop):
    """The seeds of directions ``start:stop`` (the m parameters, then the n
    initial values, as asked): S(t0) lane-major, flattened (k n,), and the
    parameter seeds (k, m).  Read-only and shared between solves: a fit
    solves the same shapes again and again."""
    total = (m if with_p else 0) + (n if with_y0 else 0)
    p_seed = np.eye(m, total) if with_p else np.zeros((m, total))
    s_seed = np.eye(n, total, m if with_p else 0) if with_y0 else np.zeros((n, total))
    s0 = np.ascontiguousarray(s_seed[:, start:stop].T).reshape(-1)
    pd = np.ascontiguousarray(p_seed[:, start:stop].T)
    s0.setflags(write=False)
    pd.setflags(write=False)
    return s0, pd


def _validated_parameters(p):
    p = np.asarray(p)
    if p.dtype.kind not in "biuf":   # (np.issubdtype is slow in small solves)
        raise TypeError(f"`p` must be a 1-D array of real numbers, got dtype {p.dtype}.")
    p = p.astype(float)
    if p.ndim != 1:
        raise ValueError(f"`p` must be a 1-D array, got shape {p.shape}.")
    if not _core.all_finite(p):
        raise ValueError("All parameters `p` must be finite.")
    return p


def _validated_real_state(y0, what):
    """y0 as a finite real 1-D float array (derivatives need real states)."""
    y0 = np.asarray(y0)
    if y0.dtype.kind == "c":
        raise ValueError(f"`y0` must be real for {what}.")
    y0 = np.asarray(y0, dtype=float)
    if y0.ndim != 1:
        raise ValueError("`y0` must be 1-dimensional.")
    if not _core.all_finite(y0):
        raise ValueError("All components of the initial state `y0` must be finite.")
    return y0


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def _chunks(total, chunk_size):
    """The directions split into chunks, as slices."""
    if chunk_size is None:
        return [slice(0, total)]
    chunk_size = _positive_int(chunk_size, "chunk_size")
    return [slice(i, min(i + chunk_size, total))
            for i in range(0, total, chunk_size)] or [slice(0, 0)]


def _width(chunk):
    return chunk.stop - chunk.start


def _on_threads(solve_chunk, chunks, workers):
    """``[solve_chunk(c, cancel) for c in chunks]`` on `workers` threads.

    Ctrl-C reaches only the main thread, which waits here: it sets `cancel`,
    which the worker threads' solves check where they would check for
    signals, so that the pool's shutdown does not wait for their end."""
    cancel = threading.Event()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(solve_chunk, lanes, cancel) for lanes in chunks]
        return [future.result() for future in futures]
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True)


def _empty_system(fun, t_span, p, args, t_eval, dense_output, wrt, sens):
    """solve_ivp_sens of a system with no states: solve_ivp's output, empty
    sensitivities."""
    res = SensResult(solve_ivp(fun, t_span, np.zeros(0), t_eval=t_eval,
                               dense_output=dense_output, args=(p,) + args))
    nt, m = res["t"].shape[0], p.shape[0]
    res["sens_method"] = sens
    if "p" in wrt:
        res["sens"] = np.zeros((0, m, nt))
    if "y0" in wrt:
        res["sens_y0"] = np.zeros((0, 0, nt))
    if dense_output:
        k = (m if "p" in wrt else 0)
        res["sol"] = SensSolution([(res["sol"], k)], 0, slice(0, m) if "p" in wrt else None,
                                  slice(k, k) if "y0" in wrt else None)
    return res


def solve_ivp_sens(fun, t_span, y0, p, method="Tsit5", t_eval=None, dense_output=False,
                   events=None, args=(), sens="dual", wrt="p", **options):
    """Solve an initial value problem and its forward sensitivities.

    Parameters
    ----------
    fun : callable or TracedRHS
        Right-hand side ``fun(t, y, p, *args)``.  A Python function receives
        NumPy object arrays of `diffsens.Dual` numbers for ``y`` and ``p``, so
        it must use operations that propagate them (arithmetic, NumPy math,
        indexing, ``np.array``/``np.stack``, ``@``); a `diffsens.trace`-d
        function runs its dual lanes in C without the GIL.
    t_span : 2-member sequence
        ``(t0, tf)``.
    y0 : array_like, shape (n,)
        Initial state (real).
    p : array_like, shape (m,)
        Parameters: finite, 1-D.
    method : str, optional
        A native explicit method: ``'Tsit5'`` (default), ``'RK45'``,
        ``'RK23'``, ``'DOP853'``, ``'Vern7'``; or, for stiff problems, a
        Rosenbrock method (``'Rodas5P'``, ``'Rodas4'``, ``'Rosenbrock23'``):
        every step factors ``W = I/(gamma h) - J`` once and solves all
        sensitivity columns with that LU, so a step costs
        ``O(n^3 + k n^2)``.  ``'auto'`` moves between Tsit5 and Rodas5P as
        `diffsens.solve_ivp` does, handing the sensitivities over with the
        state (``method_segments`` says where).
    t_eval, dense_output, events, args
        As in `diffsens.solve_ivp` (events see the state only).
    sens : {'dual', 'continuous'}, optional
        ``'dual'`` (default): the derivative of the discrete solution, error
        control on ``y`` only (change with ``sens_error_control=True``).
        With a Rosenbrock method (or ``'auto'``) it needs a traced ``fun``:
        the step's derivative holds second derivatives of f, which a Python
        ``fun`` gives only by differences.
        ``'continuous'``: sensitivity equations with their own error control
        (``sens_error_control=False`` to turn it off).
    wrt : {'p', 'y0'} or ('p', 'y0'), optional
        Derivatives with respect to the parameters, the initial values or
        both.
    **options
        The options of `diffsens.solve_ivp`, plus ``chunk_size`` (directions
        per pass, default all at once; each chunk is a separate solve that
        follows the same steps, so results equal one chunk -- which needs
        ``sens_error_control=False``), ``workers`` (threads for the chunks,
        traced right-hand sides only) and ``sens_error_control``.

    Returns
    -------
    SensResult
        The `OdeResult` fields plus ``sens`` (n, m, n_points) and/or
        ``sens_y0`` (n, n, n_points); ``sol`` is a `SensSolution`.

    Examples
    --------
    One-compartment absorption: the derivative of the amount in the gut,
    ``dose * exp(-ka t)``, with respect to ``ka`` is ``-t * dose * exp(-ka t)``.

    >>> import numpy as np
    >>> import diffsens
    >>> def gut(t, y, p):
    ...     return -p[0] * y
    >>> res = diffsens.solve_ivp_sens(gut, (0, 2), [4.0], [1.5], t_eval=[2.0],
    ...                               rtol=1e-10, atol=1e-12)
    >>> bool(np.isclose(res.sens[0, 0, -1], -2 * 4.0 * np.exp(-3.0), rtol=1e-8))
    True
    """
    if method not in NATIVE_METHODS:
        raise ValueError(f"`method` must be one of {list(NATIVE_METHODS)} "
                         f"for sensitivities, got {method!r}.")
    if sens not in SENS_METHODS:
        raise ValueError(f"`sens` must be one of {list(SENS_METHODS)}, got {sens!r}.")
    if (method not in EXPLICIT_METHODS and sens == "dual"
            and not isinstance(fun, TracedRHS)):
        raise ValueError("sens='dual' with a Rosenbrock method (or 'auto', which may "
                         "switch to one) needs the exact second derivatives of a "
                         "traced `fun` (diffsens.trace); with a Python `fun` use "
                         "sens='continuous'.")
    wrt = _wrt_set(wrt)
    t0, tf = map(float, t_span)
    if not math.isfinite(t0) or math.isnan(tf):
        raise ValueError("`t_span` must hold a finite `t0` and a number `tf`.")
    p = _validated_parameters(p)
    args = tuple(args) if args is not None else ()
    y0 = _validated_real_state(y0, "sensitivities")
    n, m = y0.shape[0], p.shape[0]
    if n == 0:   # nothing to integrate: solve_ivp's (scipy's) corner case
        return _empty_system(fun, t_span, p, args, t_eval, dense_output, wrt, sens)

    if isinstance(fun, TracedRHS):
        if fun.n != n or fun.m != m:
            raise ValueError(f"The traced right-hand side has n = {fun.n}, m = {fun.m}; "
                             f"`y0` and `p` give n = {n}, m = {m}.")
        fun.parameters((p,) + args)     # checks baked args
        kernel_fun = fun.function
    elif callable(fun):
        kernel_fun = _core.DualFunction(fun, args)
    else:
        raise TypeError(f"`fun` must be callable, got {type(fun).__name__}.")

    options = dict(options)
    refuse_mass(options, "solve_ivp_sens")
    chunk_size = options.pop("chunk_size", None)
    workers = options.pop("workers", 1)
    error_control = options.pop("sens_error_control", sens == "continuous")
    opt = native_options(options, n, t0, tf, known=_EXPLICIT_OPTIONS)
    if t_eval is not None:
        t_eval = validated_t_eval(t_eval, t0, tf)
    events, direction, max_count = prepared_events(events)

    # directions: the m parameters, then the n initial values
    with_p, with_y0 = "p" in wrt, "y0" in wrt
    first_y0 = m if with_p else 0
    lanes_p = slice(0, m) if with_p else None
    lanes_y0 = slice(first_y0, first_y0 + n) if with_y0 else None
    chunks = _chunks(first_y0 + (n if with_y0 else 0), chunk_size)
    if len(chunks) > 1 and error_control:
        raise ValueError("`chunk_size` splits the directions into separate solves, which "
                         "follow the same steps only without `sens_error_control`.")
    workers = _positive_int(workers, "workers")

    rtol, atol = opt["rtol"], opt["atol"]

    def solve_chunk(lanes, cancel=None):
        """The solve of [y, S] for one chunk of directions, as an OdeResult
        (y: the augmented state)."""
        k = _width(lanes)
        s0, p_seed = _chunk_seeds(n, m, with_p, with_y0, lanes.start, lanes.stop)
        rtol_aug = rtol if rtol.size == 1 else np.tile(rtol, k + 1)
        atol_aug = atol if atol.size == 1 else np.tile(atol, k + 1)

        def segment(name, t_start, y_start, rest_eval, seg_opt, nonstiff_bound):
            raw = _core.solve(
                _tableau(name), kernel_fun, t_start, tf, y_start, (p,) + args, False,
                False, rtol_aug, atol_aug, seg_opt["max_step"], seg_opt["first_step"],
                rest_eval, bool(dense_output), events, direction, max_count,
                seg_opt["max_steps"], seg_opt["stiffness_check"], p, k, p_seed,
                0 if error_control else n, nonstiff_bound=nonstiff_bound, cancel=cancel,
                exact_coupling=sens == "dual")
            return assemble(raw, t_start, np.float64, rest_eval, dense_output, events,
                            SensResult), raw

        start = np.concatenate((y0, s0))
        if method != "auto":
            return segment(method, t0, start, t_eval, opt, 0.0)[0]
        return solve_auto(
            lambda name, t_start, y_start, rest_eval, seg_options, bound: segment(
                name, t_start, y_start, rest_eval,
                native_options(seg_options, n, t_start, tf, known=_EXPLICIT_OPTIONS),
                bound),
            t0, tf, start, t_eval, options)

    parallel = workers > 1 and len(chunks) > 1 and isinstance(fun, TracedRHS)
    if parallel:
        parts = _on_threads(solve_chunk, chunks, workers)
    else:
        parts = [solve_chunk(lanes) for lanes in chunks]
    for part in parts[1:]:
        if part["t"].shape != parts[0]["t"].shape or not np.array_equal(part["t"],
                                                                        parts[0]["t"]):
            raise RuntimeError("sensitivity chunks took different steps")  # a bug, not input

    # (item access: an OdeResult's attribute lookup runs Python code)
    nt = parts[0]["t"].shape[0]
    # each chunk's directions, (k, n, nt)
    blocks = [part["y"][n:].reshape(_width(lanes), n, nt) if nt else
              np.zeros((_width(lanes), n, 0)) for part, lanes in zip(parts, chunks)]
    directions = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)
    # ('auto' joins its segments into a plain OdeResult)
    res = parts[0] if type(parts[0]) is SensResult else SensResult(parts[0])
    y = res["y"]
    res["y"] = y[:n] if y.ndim == 2 else y
    res["sens_method"] = sens
    if lanes_p is not None:
        res["sens"] = directions[lanes_p].transpose(1, 0, 2)
    if lanes_y0 is not None:
        res["sens_y0"] = directions[lanes_y0].transpose(1, 0, 2)
    if events is not None:
        res["y_events"] = [ye[:, :n] if np.ndim(ye) == 2 else ye for ye in res["y_events"]]
    if dense_output:
        res["sol"] = SensSolution([(part["sol"], _width(lanes))
                                   for part, lanes in zip(parts, chunks)],
                                  n, lanes_p, lanes_y0)
    res["nfev"] = sum([part["nfev"] for part in parts])
    return res
