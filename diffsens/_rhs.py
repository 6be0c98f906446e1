"""Right-hand-side front ends: a traced tape evaluated in C.

A plain Python callable needs no wrapper here: the Cython layer calls it
directly.  ``trace`` records ``fun`` once (see ``_trace.py``) and binds the tape
to the C interpreter, which then gives the value, forward-mode dual lanes and
reverse sweeps without Python.
"""
import warnings

import numpy as np

from . import _native
from ._kernels._core import TapeFunction
from ._schedule import schedule
from ._trace import TraceError, record

__all__ = ["trace", "TracedRHS", "TraceError"]


class TracedRHS:
    """A right-hand side ``f(t, y, p)`` recorded once and evaluated in C.

    Create it with `diffsens.trace`.  It is callable like the function it was
    traced from (so scipy can use it too), and every diffsens solver accepts
    it in place of that function, running without the GIL.

    Attributes
    ----------
    n, m : int
        Number of states and parameters.
    tape : diffsens._trace.Tape
        The recorded program (``print(rhs.tape.describe())`` shows it).
    source : callable
        The Python function it was traced from.
    """

    def __init__(self, tape, args, source=None, takes_p=True, compile=False):
        self.tape = tape
        self.source = source   # the Python function it was traced from
        program = schedule(tape)
        self._fn = TapeFunction(program)
        if compile and program.n_ops > _native.MAX_OPS:
            warnings.warn(f"trace(..., compile=True): this tape has {program.n_ops} ops, "
                          f"more than the {_native.MAX_OPS} up to which compiled "
                          "straight-line code beats the interpreter; it stays interpreted.",
                          RuntimeWarning, stacklevel=3)
        elif compile:
            self._fn = TapeFunction(program,
                                    native=_native.compile_value_pass(program, self._fn.rows))
        self._args = tuple(args)
        self._takes_p = takes_p   # traced as fun(t, y, p, ...), even with m = 0
        self.n = tape.n
        self.m = tape.m

    @property
    def compiled(self):
        """Whether its value pass runs as compiled machine code (``trace(...,
        compile=True)``) rather than in the interpreter."""
        return self._fn.native is not None

    @property
    def function(self):
        """The C-level tape function handed to the kernels."""
        return self._fn

    def __repr__(self):
        return (f"TracedRHS(n={self.n}, m={self.m}, ops={self.tape.n_ops}, "
                f"constants={self.tape.n_const}{', compiled' if self.compiled else ''})")

    def parameters(self, args):
        """``p`` out of solver ``args``: ``(p,)`` or ``(p, *args_at_trace_time)``."""
        args = () if args is None else tuple(args)
        if self.m == 0:
            # fun(t, y, p) traced with an empty p takes it again in args=(p,)
            empty_p = self._takes_p and args and np.size(args[0]) == 0
            extra = args[1:] if empty_p else args
            p = np.zeros(0)
        else:
            if not args:
                raise ValueError(f"This traced right-hand side has m = {self.m} "
                                 "parameters: pass them as `args=(p,)`.")
            p = np.asarray(args[0], dtype=float)
            if p.shape != (self.m,):
                raise ValueError(f"`p` must have shape ({self.m},) for this traced "
                                 f"right-hand side; got shape {p.shape}.")
            extra = args[1:]
        if extra and not _same_args(extra, self._args):
            raise ValueError("These extra `args` differ from the ones baked into the "
                             "tape when it was traced; trace again to change them.")
        return p

    def __call__(self, t, y, *args):
        """``f(t, y[, p])`` as a NumPy array, evaluated by the tape interpreter."""
        return self._fn.value(float(t), y, self.parameters(args))

    def jvp(self, t, y, p, yd=None, pd=None):
        """Jacobian-vector products ``J_y yd + J_p pd`` (dual lanes in one pass).

        Parameters
        ----------
        t : float
        y : array_like, shape (n,)
        p : array_like, shape (m,) or None
        yd, pd : array_like, shape (n,)/(m,) or (n, k)/(m, k), optional
            Tangents; missing ones are zero.

        Returns
        -------
        f : ndarray, shape (n,)
        f_dot : ndarray, shape (n,) or (n, k)
        """
        return self._fn.jvp(float(t), y, p, yd, pd)

    def vjp(self, t, y, p, w):
        """Vector-Jacobian products by one reverse sweep.

        Returns
        -------
        f : ndarray, shape (n,)
        wy : ndarray, shape (n,)
            ``w^T J_y``.
        wp : ndarray, shape (m,)
            ``w^T J_p``.
        """
        return self._fn.vjp(float(t), y, p, w)

    def jacobian(self, t, y, p=None):
        """Dense Jacobians ``(J_y, J_p)`` of shapes (n, n) and (n, m)."""
        return self._fn.jacobian(float(t), y, p)


def _same_args(a, b):
    if len(a) != len(b):
        return False
    return all(x is y or np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def trace(fun, y0, p=None, *, args=(), compile=False):
    """Record ``fun`` once and evaluate it in C from then on.

    ``fun`` runs a single time on tracer values; arithmetic, NumPy math,
    indexing, ``np.where``/``np.maximum``/``np.clip`` and products with
    constant matrices are recorded into a tape, which the C interpreter
    evaluates for values, dual-number lanes (JVPs) and reverse sweeps (VJPs).

    Parameters
    ----------
    fun : callable
        ``fun(t, y)`` when `p` is None, else ``fun(t, y, p, *args)``.
    y0 : array_like, shape (n,)
        A state of the right size (its values are not baked in).
    p : array_like, shape (m,), optional
        Parameters, traced as inputs (pass them later as ``args=(p,)``).
    args : tuple, optional
        Extra arguments, baked into the tape as constants.
    compile : bool, optional
        Also compile the tape's value pass to machine code with the system C
        compiler (``$CC``, else cc/gcc/clang), cached on disk by its source
        (``$DIFFSENS_CACHE_DIR``, else ``~/.cache/diffsens``).  Every
        evaluation of ``f`` then runs that code, with the interpreter's
        results bit for bit: on POLLU (42 ops) 2.7x faster than the
        interpreter.  The JVP lanes and reverse sweeps stay interpreted.  A
        tape of more than 2000 ops stays interpreted, with a warning
        (straight-line code that long is no faster).  Default False: no
        compiler needed.

    Returns
    -------
    TracedRHS

    Raises
    ------
    TraceError
        If ``fun`` branches on a traced value (``if``, ``while``, ``and``,
        ``float()``): use ``np.where`` or pass the plain function instead.
    RuntimeError
        With ``compile=True``, if no C compiler is found or it fails.

    Examples
    --------
    >>> import numpy as np
    >>> import diffsens
    >>> def lotka_volterra(t, y, p):
    ...     a, b, c, d = p
    ...     return np.array([a*y[0] - b*y[0]*y[1], -c*y[1] + d*y[0]*y[1]])
    >>> p = np.array([1.5, 1.0, 3.0, 1.0])
    >>> rhs = diffsens.trace(lotka_volterra, [1.0, 1.0], p)
    >>> rhs.n, rhs.m
    (2, 4)
    >>> rhs(0.0, np.array([1.0, 1.0]), p)
    array([ 0.5, -2. ])
    >>> res = diffsens.solve_ivp(rhs, (0, 10), [1.0, 1.0], method="Tsit5",
    ...                          args=(p,), rtol=1e-6, atol=1e-8)
    >>> res.status
    0
    """
    y0 = np.asarray(y0, dtype=float)
    if y0.ndim != 1:
        raise ValueError("`y0` must be 1-dimensional.")
    if p is not None:
        p = np.asarray(p, dtype=float)
        if p.ndim != 1:
            raise ValueError("`p` must be a 1-D array of parameters.")
    args = tuple(args)
    return TracedRHS(record(fun, y0, p, args), args, source=fun, takes_p=p is not None,
                     compile=bool(compile))
