"""The :class:`Problem` container shared by all built-in test problems."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

__all__ = ["Problem"]


def _frozen_vector(value, what):
    """Return a read-only, contiguous, 1-D float64 copy of `value`."""
    arr = np.array(value, dtype=np.float64, copy=True, ndmin=1)
    if arr.ndim != 1:
        raise ValueError(
            f"{what} must be one-dimensional, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Problem:
    """An initial-value problem ``y' = fun(t, y, p)``, ``y(t0) = y0``.

    Instances are immutable: the dataclass is frozen and every array
    attribute is a read-only float64 copy, so a problem taken from the shared
    registry :data:`diffsens.problems.PROBLEMS` cannot be altered by accident.
    Use :func:`dataclasses.replace` to derive a modified problem (e.g. with
    other parameters); the arrays of the new instance are again copied and
    frozen.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"lotka_volterra"``.
    description : str
        One-line description including the literature source.
    fun : callable
        Right-hand side ``fun(t, y, p) -> ndarray`` of shape ``(n,)``. It is a
        plain NumPy function: ``t`` is a float, ``y`` an ndarray of shape
        ``(n,)`` and ``p`` an ndarray of shape ``(m,)``. It never modifies its
        arguments.
    y0 : array_like, shape (n,)
        Initial value at ``t_span[0]``.
    p : array_like, shape (m,)
        Nominal parameter vector (may be empty).
    t_span : tuple of float
        Integration interval ``(t0, tf)``.
    t_eval : array_like or None, optional
        Suggested output times inside `t_span`.
    y_ref : array_like or None, optional
        Reference solution at ``t_span[1]`` (None if not available).
    ref_source : str, optional
        Where `y_ref` comes from and how accurate it is.
    stiff : bool, optional
        Whether the problem is stiff (use an implicit method).
    jac : callable or None, optional
        Analytic Jacobian ``jac(t, y, p) -> ndarray`` of shape ``(n, n)``,
        ``jac[i, j] = d fun_i / d y_j``.

    Notes
    -----
    With :func:`scipy.integrate.solve_ivp` pass the parameters through
    ``args``::

        solve_ivp(prob.fun, prob.t_span, prob.y0, args=(prob.p,), jac=prob.jac)

    or use the closures returned by :meth:`scipy_fun` / :meth:`scipy_jac`.
    """

    name: str
    description: str
    fun: Callable
    y0: np.ndarray
    p: np.ndarray
    t_span: tuple
    t_eval: Optional[np.ndarray] = None
    y_ref: Optional[np.ndarray] = None
    ref_source: str = ""
    stiff: bool = False
    jac: Optional[Callable] = None

    def __post_init__(self):
        set_ = object.__setattr__  # the dataclass is frozen
        y0 = _frozen_vector(self.y0, "y0")
        set_(self, "y0", y0)
        set_(self, "p", _frozen_vector(self.p, "p"))
        t0, tf = (float(v) for v in self.t_span)
        set_(self, "t_span", (t0, tf))
        if self.t_eval is not None:
            set_(self, "t_eval", _frozen_vector(self.t_eval, "t_eval"))
        if self.y_ref is not None:
            y_ref = _frozen_vector(self.y_ref, "y_ref")
            if y_ref.shape != y0.shape:
                raise ValueError(
                    f"y_ref has shape {y_ref.shape}, expected {y0.shape}")
            set_(self, "y_ref", y_ref)
        set_(self, "stiff", bool(self.stiff))
        if not callable(self.fun):
            raise TypeError("fun must be callable")
        if self.jac is not None and not callable(self.jac):
            raise TypeError("jac must be callable or None")

    @property
    def n(self):
        """int: Number of states."""
        return self.y0.shape[0]

    @property
    def m(self):
        """int: Number of parameters."""
        return self.p.shape[0]

    def scipy_fun(self, p=None):
        """Return ``f(t, y)`` with the parameters bound, for SciPy solvers.

        Parameters
        ----------
        p : array_like, optional
            Parameters to bind; defaults to the nominal ``self.p``.

        Returns
        -------
        callable
            ``lambda t, y: self.fun(t, y, p)``.
        """
        fun = self.fun
        p = self.p if p is None else np.asarray(p, dtype=np.float64)
        return lambda t, y: fun(t, y, p)

    def scipy_jac(self, p=None):
        """Return ``J(t, y)`` with the parameters bound, or None.

        Parameters
        ----------
        p : array_like, optional
            Parameters to bind; defaults to the nominal ``self.p``.

        Returns
        -------
        callable or None
            ``lambda t, y: self.jac(t, y, p)``, or None when the problem has
            no analytic Jacobian.
        """
        jac = self.jac
        if jac is None:
            return None
        p = self.p if p is None else np.asarray(p, dtype=np.float64)
        return lambda t, y: jac(t, y, p)

    def __repr__(self):
        return (f"Problem(name={self.name!r}, n={self.n}, m={self.m}, "
                f"t_span={self.t_span}, stiff={self.stiff}, "
                f"y_ref={'yes' if self.y_ref is not None else 'None'})")
