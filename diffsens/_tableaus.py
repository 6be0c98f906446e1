"""Butcher tableaus of the explicit Runge--Kutta methods used by diffsens.

Every method is described by one :class:`ExplicitRKTableau`.  The C stepper
(``diffsens/_kernels/erk.c``) is written against the stage convention below,
so a single generic step routine and a single polynomial dense-output
evaluator serve all methods.

Stage convention
----------------
For a step from ``(t, y)`` with step size ``h``::

    k_0     = f(t, y)                         (reused: previous step's k_s)
    k_i     = f(t + c_i h, y + h sum_{j<i} A_ij k_j),      i = 1 .. s-1
    y_new   = y + h sum_{i<s} b_i k_i
    k_s     = f(t + h, y_new)                 ("first same as last" slot)
    err     = h sum_{i<=s} e_i k_i            (= +-(y_new - y_embedded))
    k_{s+1+j} = f(t + c_extra_j h, y + h sum_i A_extra_ji k_i),  j = 0 .. r-1
    y(t + theta h) = y + h sum_i k_i sum_{j<d} P_ij theta^(j+1)

For FSAL methods (RK23, RK45, Tsit5) the classical last stage *is* ``k_s``;
a dense output that needs ``f(t + h, y_new)`` uses index ``s``, never an
extra stage (Vern7's first "extra" stage is exactly that and is mapped to
``k_s``).

Sources
-------
RK23, RK45 and DOP853 reproduce scipy's ``scipy.integrate.RK23/RK45/DOP853``
(numbers read from scipy 1.17.1 ``scipy/integrate/_ivp/rk.py`` and
``dop853_coefficients.py``).  Tsit5 and the Vern7 pair were read from
OrdinaryDiffEq.jl; Vern7's interpolation stages and 7th-order interpolant are
Verner's 2024 corrected set (the one OrdinaryDiffEq.jl ships is only of order
6).  :mod:`diffsens._tableau_coefficients` lists papers and files.  The
test-suite ``tests/test_tableaus.py`` verifies every order exactly (rooted-tree
order conditions) and by observed convergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

from . import _tableau_coefficients as _co

__all__ = ["ExplicitRKTableau", "TABLEAUS"]

# Relative tolerances of the consistency checks.  The sums are formed with
# math.fsum, so the only error left is the rounding of each coefficient to a
# double (<= 0.5 ulp each); tolerances are relative to the sum of the
# magnitudes of the terms, which bounds that error.
_RTOL_TABLEAU = 1e-14
_RTOL_DENSE = 1e-13


def _sum_mismatch(terms, target):
    """Return ``|sum(terms) - target|`` and the scale it should be judged by.

    Parameters
    ----------
    terms : array_like
        Values to add (summed with :func:`math.fsum`).
    target : float
        Expected value of the sum.

    Returns
    -------
    diff : float
        Absolute deviation of the (correctly rounded) sum from `target`.
    scale : float
        ``max(|target|, sum(|terms|))``: the magnitude rounding errors of the
        individual terms are proportional to.
    """
    terms = np.asarray(terms, dtype=np.float64).ravel()
    diff = abs(math.fsum(terms.tolist()) - target)
    scale = max(abs(target), math.fsum(np.abs(terms).tolist()))
    return diff, scale


def _frozen_array(value, name, ndim):
    """Copy `value` into a read-only C-contiguous float64 array.

    Parameters
    ----------
    value : array_like
        Input data.
    name : str
        Field name, used in error messages.
    ndim : int
        Required number of dimensions.

    Returns
    -------
    numpy.ndarray
        Read-only copy (so a tableau shared by many solvers cannot be
        modified in place behind the validation's back).

    Raises
    ------
    ValueError
        If `value` has the wrong dimensionality or non-finite entries.
    """
    arr = np.array(value, dtype=np.float64, order="C", copy=True)
    if arr.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-dimensional, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite entries")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class ExplicitRKTableau:
    """Coefficients of an explicit Runge--Kutta pair with dense output.

    See the module docstring for the stage convention.  All arrays are
    validated and stored as read-only float64 copies on construction.

    Parameters
    ----------
    name : str
        Method name (the key in :data:`TABLEAUS`).
    order : int
        Order of the propagated (higher-order) solution.
    error_order : int
        Order used for step-size control, scipy's ``error_estimator_order``:
        the order of the embedded solution, except for DOP853 where it is
        the effective order (7) of scipy's combined 5th/3rd-order estimate.
    c : ndarray, shape (s,)
        Nodes of the main stages ``k_0 .. k_{s-1}`` (``c[0] == 0``).
    A : ndarray, shape (s, s)
        Strictly lower triangular stage coefficients.
    b : ndarray, shape (s,)
        Weights of the propagated solution.
    e : ndarray, shape (s + 1,)
        Error-estimate weights over ``k_0 .. k_s`` (``k_s = f(t+h, y_new)``);
        ``err = h * e @ K``.  Either sign convention (``y_new - y_emb`` or
        the reverse) is allowed since only norms are used.
    e_low : ndarray, shape (s + 1,), or None
        DOP853 only: scipy's ``E3``, the 3rd-order estimate combined with
        `e` in scipy's error norm.  ``None`` for all other methods.
    c_extra : ndarray, shape (r,)
        Nodes of the extra dense-output stages ``k_{s+1} .. k_{s+r}``.
    A_extra : ndarray, shape (r, s + 1 + r)
        Row ``j`` holds the coefficients of stage ``k_{s+1+j}`` over
        ``k_0 .. k_{s+r}``; only columns ``< s + 1 + j`` may be nonzero.
    P : ndarray, shape (s + 1 + r, d)
        Dense output: ``y(t + theta h) = y + h * sum_i k_i *
        sum_j P[i, j] theta**(j + 1)``.
    dense_order : int
        Order of the dense output.

    Raises
    ------
    ValueError
        If shapes disagree or any consistency condition fails: ``A`` not
        strictly lower triangular, ``A @ 1 != c``, ``sum(b) != 1``,
        ``sum(e) != 0`` (likewise ``e_low``), extra stages not consistent
        or using later stages, the dense output not reproducing ``y_new``
        at ``theta = 1``, or its derivative at ``theta = 0`` not being
        ``f(t, y)``.

    Notes
    -----
    Derived quantities (:attr:`n_stages`, :attr:`n_extra`,
    :attr:`dense_degree`, :attr:`stability_boundary`,
    :attr:`stiffness_stage`) are computed from the data on first access
    and cached; none of them is typed in by hand.
    """

    name: str
    order: int
    error_order: int
    c: np.ndarray
    A: np.ndarray
    b: np.ndarray
    e: np.ndarray
    e_low: np.ndarray | None
    c_extra: np.ndarray
    A_extra: np.ndarray
    P: np.ndarray
    dense_order: int

    # -- construction and validation ----------------------------------------

    def __post_init__(self):
        # Normalise the arrays (frozen dataclass: bypass __setattr__).
        for field_name, ndim in (("c", 1), ("A", 2), ("b", 1), ("e", 1),
                                 ("c_extra", 1), ("A_extra", 2), ("P", 2)):
            arr = getattr(self, field_name)
            if field_name in ("c_extra", "A_extra") and np.size(arr) == 0:
                # Let methods without extra stages pass [] / [[]] freely.
                s = np.size(self.c)
                arr = np.zeros((0,) if ndim == 1 else (0, s + 1))
            object.__setattr__(self, field_name,
                               _frozen_array(arr, field_name, ndim))
        if self.e_low is not None:
            object.__setattr__(self, "e_low",
                               _frozen_array(self.e_low, "e_low", 1))
        self._validate()

    def _fail(self, message):
        raise ValueError(f"tableau {self.name!r}: {message}")

    def _validate(self):
        """Check shapes and the consistency conditions (see class doc)."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("tableau name must be a non-empty string")
        for attr in ("order", "error_order", "dense_order"):
            val = getattr(self, attr)
            if not isinstance(val, (int, np.integer)) or val < 1:
                self._fail(f"{attr} must be a positive integer, got {val!r}")
        if self.error_order >= self.order:
            self._fail("error_order must be lower than order")
        if self.dense_order > self.order:
            self._fail("dense_order cannot exceed order")

        s = self.c.shape[0]
        r = self.c_extra.shape[0]
        if s < 1:
            self._fail("need at least one stage")
        expected = {
            "A": (s, s), "b": (s,), "e": (s + 1,),
            "A_extra": (r, s + 1 + r),
        }
        if self.e_low is not None:
            expected["e_low"] = (s + 1,)
        for attr, shape in expected.items():
            if getattr(self, attr).shape != shape:
                self._fail(f"{attr} must have shape {shape} (s={s}, r={r}), "
                           f"got {getattr(self, attr).shape}")
        if self.P.shape[0] != s + 1 + r or self.P.shape[1] < 1:
            self._fail(f"P must have shape ({s + 1 + r}, d) with d >= 1, "
                       f"got {self.P.shape}")

        # k_0 is f(t, y): it is reused from the previous step's k_s.
        if self.c[0] != 0.0:
            self._fail("c[0] must be 0 (k_0 = f(t, y)), got "
                       f"{float(self.c[0])!r}")

        upper = np.argwhere(np.triu(self.A) != 0.0)
        if upper.size:
            i, j = upper[0]
            self._fail(f"A must be strictly lower triangular; A[{i}, {j}] = "
                       f"{float(self.A[i, j])!r}")

        # Row-sum condition A @ 1 == c (each stage is consistent in time).
        for i in range(s):
            diff, scale = _sum_mismatch(self.A[i], self.c[i])
            if diff > _RTOL_TABLEAU * scale:
                self._fail(f"row {i} of A sums to c[{i}] + {diff:.3e}, "
                           f"not c[{i}] = {float(self.c[i])!r}")

        diff, scale = _sum_mismatch(self.b, 1.0)
        if diff > _RTOL_TABLEAU * scale:
            self._fail(f"sum(b) differs from 1 by {diff:.3e}")

        for attr in ("e", "e_low"):
            vec = getattr(self, attr)
            if vec is None:
                continue
            if not np.any(vec):
                self._fail(f"{attr} is identically zero (no error estimate)")
            diff, scale = _sum_mismatch(vec, 0.0)
            if diff > _RTOL_TABLEAU * scale:
                self._fail(f"sum({attr}) differs from 0 by {diff:.3e} "
                           "(the estimate must vanish for y' = const)")

        # Extra stages: consistent nodes, and row j may only use stages that
        # already exist when it is evaluated (k_0 .. k_{s+j}).
        for j in range(r):
            late = np.nonzero(self.A_extra[j, s + 1 + j:])[0]
            if late.size:
                self._fail(f"extra stage {j} (k_{s + 1 + j}) uses the later "
                           f"stage k_{s + 1 + j + late[0]}")
            diff, scale = _sum_mismatch(self.A_extra[j], self.c_extra[j])
            if diff > _RTOL_TABLEAU * scale:
                self._fail(f"row {j} of A_extra sums to c_extra[{j}] + "
                           f"{diff:.3e}, not c_extra[{j}] = "
                           f"{float(self.c_extra[j])!r}")

        # Dense output at theta = 1 must reproduce y_new exactly: the weight
        # of k_i is sum_j P[i, j] = b_i (i < s) and 0 for k_s and extras.
        b_ext = np.concatenate([self.b, np.zeros(1 + r)])
        for i in range(s + 1 + r):
            diff, scale = _sum_mismatch(self.P[i], b_ext[i])
            if diff > _RTOL_DENSE * max(scale, 1.0):
                self._fail(f"dense output at theta=1: row {i} of P sums to "
                           f"{float(b_ext[i])!r} + {diff:.3e} (expected b_{i} "
                           "or 0)")

        # Every interpolant here is Hermite-like at the left end: its
        # derivative at theta = 0 is k_0 = f(t, y), i.e. P[:, 0] = e_0.
        # (This holds for all five methods; the C stepper relies on nothing
        # else, but it catches row/column mix-ups in P.)
        first = self.P[:, 0].copy()
        first[0] -= 1.0
        if np.max(np.abs(first)) > _RTOL_DENSE:
            i = int(np.argmax(np.abs(first)))
            self._fail("dense output derivative at theta=0 is not f(t, y): "
                       f"P[:, 0] deviates from (1, 0, ...) at row {i}")

    # -- derived properties --------------------------------------------------

    @cached_property
    def n_stages(self) -> int:
        """int: Number ``s`` of main stages (``k_s`` is the FSAL slot)."""
        return int(self.c.shape[0])

    @cached_property
    def n_extra(self) -> int:
        """int: Number ``r`` of extra dense-output stages."""
        return int(self.c_extra.shape[0])

    @cached_property
    def dense_degree(self) -> int:
        """int: Degree ``d`` of the dense-output polynomial in theta."""
        return int(self.P.shape[1])

    @cached_property
    def stability_polynomial(self) -> np.ndarray:
        """ndarray: Coefficients ``g_k`` of ``R(z) = sum_k g_k z**k``.

        For an explicit method ``R(z) = 1 + z b^T (I - zA)^{-1} 1`` is the
        polynomial ``1 + sum_{k=1..s} (b^T A^{k-1} 1) z^k`` (``A`` is
        nilpotent).  Read-only array of length ``s + 1``, lowest degree
        first.
        """
        s = self.n_stages
        coef = np.empty(s + 1)
        coef[0] = 1.0
        v = np.ones(s)
        for k in range(1, s + 1):
            coef[k] = self.b @ v
            v = self.A @ v
        coef.flags.writeable = False
        return coef

    @cached_property
    def stability_boundary(self) -> float:
        """float: Length of the real-axis stability interval.

        The largest ``x > 0`` with ``|R(-u)| <= 1`` for all ``u`` in
        ``[0, x]``, where ``R`` is :attr:`stability_polynomial`.  Used for
        Hairer-style stiffness detection (``h |lambda|`` near this value for
        many steps means the step size is limited by stability, not
        accuracy).
        """
        return _real_stability_boundary(self.stability_polynomial)

    @cached_property
    def stiffness_stage(self) -> int:
        """int: The last main stage ``i < s`` with ``c_i == 1``, else -1.

        Together with ``k_s = f(t + h, y_new)`` it gives Hairer's estimate
        ``|h lambda| ~ h ||k_s - k_i|| / ||y_new - Y_i||`` (``Y_i`` the
        argument of stage ``i``): both stages sit at ``t + h``.
        """
        hits = np.nonzero(self.c == 1.0)[0]
        return int(hits[-1]) if hits.size else -1

    def dense_weights(self, theta):
        """Weights of ``k_0 .. k_{s+r}`` in the dense output at `theta`.

        Parameters
        ----------
        theta : float or array_like
            Normalised position(s) ``(t_out - t) / h`` in ``[0, 1]``.

        Returns
        -------
        ndarray, shape (s + 1 + r,) or (s + 1 + r, len(theta))
            ``w_i(theta) = sum_j P[i, j] theta**(j + 1)``, so that
            ``y(t + theta h) = y + h * sum_i w_i(theta) k_i``.
        """
        theta = np.asarray(theta, dtype=np.float64)
        powers = theta[..., None] ** np.arange(1, self.dense_degree + 1)
        return np.moveaxis(powers @ self.P.T, -1, 0)

    def __repr__(self):
        return (f"ExplicitRKTableau(name={self.name!r}, order={self.order}, "
                f"error_order={self.error_order}, s={self.n_stages}, "
                f"r={self.n_extra}, d={self.dense_degree}, "
                f"dense_order={self.dense_order})")


def _real_stability_boundary(coef):
    """Length of the interval ``[-x, 0]`` where ``|R| <= 1``.

    Parameters
    ----------
    coef : ndarray
        Coefficients of the stability polynomial ``R(z)``, lowest first.

    Returns
    -------
    float
        The first ``x > 0`` at which ``|R(-x)|`` exceeds 1.

    Notes
    -----
    Candidate exits are the positive real roots of ``R(-x) = +-1``; the
    first one after which ``|R|`` really exceeds 1 (tangential touches do
    not count) bounds the search.  Because polynomial roots may be
    inaccurate, ``|R(-x)|`` is then scanned on a fine grid up to that bound
    and the first exit is located by bisection to full precision.
    """
    poly = np.polynomial.Polynomial(coef)
    mirrored = poly(np.polynomial.Polynomial([0.0, -1.0]))  # x -> R(-x)

    def excess(x):
        return np.abs(mirrored(x)) - 1.0

    candidates = []
    for level in (1.0, -1.0):
        for root in (mirrored - level).roots():
            if abs(root.imag) <= 1e-6 * max(1.0, abs(root)) and root.real > 0:
                candidates.append(root.real)
    upper = None
    for x in sorted(candidates):
        if excess(x * (1.0 + 1e-6)) > 0.0:
            upper = x * (1.0 + 1e-6)
            break
    if upper is None:  # pragma: no cover - impossible for explicit RK
        raise ValueError("stability polynomial never leaves the unit disc")

    grid = np.linspace(0.0, upper, 1 << 14)
    outside = np.nonzero(excess(grid[1:]) > 0.0)[0]
    lo, hi = grid[outside[0]], grid[outside[0] + 1]
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if excess(mid) > 0.0:
            hi = mid
        else:
            lo = mid
    return float(lo)


# ---------------------------------------------------------------------------
# Assembly helpers
# ---------------------------------------------------------------------------

def _dense_from_sparse(table, shape):
    """Build a dense array from ``{(i, j): value}`` (or ``{i: value}``)."""
    out = np.zeros(shape)
    for key, value in table.items():
        out[key] = value
    return out


def _dop853_dense_matrix(b, D):
    """Expand scipy's nested DOP853 dense output into the matrix ``P``.

    scipy evaluates (``x = theta``)::

        y = y_old + x (F0 + (1-x) (F1 + x (F2 + (1-x) (F3 + x (F4
                      + (1-x) (F5 + x F6))))))

    with ``F0 = dy``, ``F1 = h f_old - dy``, ``F2 = 2 dy - h (f_new + f_old)``
    and ``F[3:] = h D @ K`` (``dy = y_new - y_old = h b @ K``).  Each ``F_m``
    is ``h * G[m] @ K``, so ``y = y_old + h sum_i k_i sum_m G[m, i] w_m(x)``
    with ``w_m(x) = x^(m//2 + 1) (1 - x)^((m + 1)//2)``.  The expansion is
    done at import time in exact rational arithmetic on the (double)
    coefficients, so every entry of ``P`` is the correctly rounded value of
    the exact expansion.

    Parameters
    ----------
    b : ndarray, shape (12,)
        Propagated weights.
    D : ndarray, shape (4, 16)
        scipy's ``dop853_coefficients.D``.

    Returns
    -------
    ndarray, shape (16, 7)
        ``P[i, j]`` = coefficient of ``theta**(j + 1)`` for ``k_i``.
    """
    n_ext = D.shape[1]
    s = b.shape[0]
    n_f = D.shape[0] + 3
    G = [[Fraction(0)] * n_ext for _ in range(n_f)]
    for i in range(s):
        G[0][i] = Fraction(b[i])
        G[1][i] = -Fraction(b[i])
        G[2][i] = 2 * Fraction(b[i])
    G[1][0] += 1          # + h f_old
    G[2][0] -= 1          # - h f_old
    G[2][s] -= 1          # - h f_new (f_new = k_s)
    for m in range(D.shape[0]):
        G[3 + m] = [Fraction(v) for v in D[m]]

    degree = n_f  # w_{n_f - 1} has degree n_f
    W = []
    for m in range(n_f):
        p, q = m // 2 + 1, (m + 1) // 2
        # x^p (1 - x)^q = sum_l C(q, l) (-1)^l x^(p + l)
        coeffs = [0] * (degree + 1)
        for ell in range(q + 1):
            coeffs[p + ell] = math.comb(q, ell) * (-1) ** ell
        W.append(coeffs)

    P = np.empty((n_ext, degree))
    for i in range(n_ext):
        for j in range(degree):
            P[i, j] = float(sum(G[m][i] * W[m][j + 1] for m in range(n_f)))
    return P


def _dense_from_node_values(nodes, values, n_ext):
    """Recover ``P`` from the interpolant's weights at ``d`` nodes.

    The source gives ``w_i(theta_j) = sum_m P[i, m] theta_j**(m + 1)`` at
    ``d`` distinct nodes ``theta_j`` (a degree-``d`` polynomial without
    constant term is fixed by ``d`` values).  The Vandermonde system is
    solved once at import time in exact rational arithmetic on the decimal
    strings, so ``P`` is the correctly rounded exact solution; in floating
    point the solve would lose several of the source's digits.

    Parameters
    ----------
    nodes : sequence of str
        The nodes ``theta_j`` (rational strings such as ``"51/1024"``).
    values : sequence of dict
        ``values[j][i]`` = decimal string of ``w_i(theta_j)``; missing stages
        have zero weight.
    n_ext : int
        Number of stages ``s + 1 + r``.

    Returns
    -------
    ndarray, shape (n_ext, len(nodes))
        ``P[i, m]`` = coefficient of ``theta**(m + 1)`` for ``k_i``.
    """
    theta = [Fraction(node) for node in nodes]
    d = len(theta)
    # Gauss-Jordan inverse of V[j][m] = theta_j^(m+1), exact.
    aug = [[th ** (m + 1) for m in range(d)]
           + [Fraction(int(j == k)) for k in range(d)]
           for j, th in enumerate(theta)]
    for col in range(d):
        piv = next(row for row in range(col, d) if aug[row][col] != 0)
        aug[col], aug[piv] = aug[piv], aug[col]
        inv_p = 1 / aug[col][col]
        aug[col] = [v * inv_p for v in aug[col]]
        for row in range(d):
            if row != col and aug[row][col] != 0:
                f = aug[row][col]
                aug[row] = [a - f * b for a, b in zip(aug[row], aug[col])]
    v_inv = [row[d:] for row in aug]

    P = np.zeros((n_ext, d))
    for i in range(n_ext):
        w = [Fraction(values[j].get(i, "0")) for j in range(d)]
        if any(w):
            P[i] = [float(sum(v_inv[m][j] * w[j] for j in range(d)))
                    for m in range(d)]
    return P


# ---------------------------------------------------------------------------
# The methods
# ---------------------------------------------------------------------------

def _rk23():
    # P. Bogacki, L. F. Shampine, "A 3(2) pair of Runge-Kutta formulas",
    # Appl. Math. Lett. 2 (1989) 321-325.  Numbers (and the cubic Hermite
    # dense output in power form) read from scipy 1.17.1 rk.py, class RK23.
    # FSAL: the 4th stage of the pair is k_s = f(t + h, y_new).
    return ExplicitRKTableau(
        name="RK23",
        order=3,
        error_order=2,
        c=[0, 1 / 2, 3 / 4],
        A=[[0, 0, 0],
           [1 / 2, 0, 0],
           [0, 3 / 4, 0]],
        b=[2 / 9, 1 / 3, 4 / 9],
        e=[5 / 72, -1 / 12, -1 / 9, 1 / 8],
        e_low=None,
        c_extra=[],
        A_extra=[],
        P=[[1, -4 / 3, 5 / 9],
           [0, 1, -2 / 3],
           [0, 4 / 3, -8 / 9],
           [0, -1, 1]],
        dense_order=3,
    )


def _rk45():
    # J. R. Dormand, P. J. Prince, "A family of embedded Runge-Kutta
    # formulae", J. Comput. Appl. Math. 6 (1980) 19-26; quartic dense output
    # of L. F. Shampine, "Some practical Runge-Kutta formulas", Math. Comp.
    # 46 (1986) 135-150 (scipy's P, "optimum value of c_6").  Numbers read
    # from scipy 1.17.1 rk.py, class RK45.  FSAL: 7th stage = k_s.
    return ExplicitRKTableau(
        name="RK45",
        order=5,
        error_order=4,
        c=[0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1],
        A=[[0, 0, 0, 0, 0, 0],
           [1 / 5, 0, 0, 0, 0, 0],
           [3 / 40, 9 / 40, 0, 0, 0, 0],
           [44 / 45, -56 / 15, 32 / 9, 0, 0, 0],
           [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0],
           [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656,
            0]],
        b=[35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
        e=[-71 / 57600, 0, 71 / 16695, -71 / 1920, 17253 / 339200,
           -22 / 525, 1 / 40],
        e_low=None,
        c_extra=[],
        A_extra=[],
        P=[[1, -8048581381 / 2820520608, 8663915743 / 2820520608,
            -12715105075 / 11282082432],
           [0, 0, 0, 0],
           [0, 131558114200 / 32700410799, -68118460800 / 10900136933,
            87487479700 / 32700410799],
           [0, -1754552775 / 470086768, 14199869525 / 1410260304,
            -10690763975 / 1880347072],
           [0, 127303824393 / 49829197408, -318862633887 / 49829197408,
            701980252875 / 199316789632],
           [0, -282668133 / 205662961, 2019193451 / 616988883,
            -1453857185 / 822651844],
           [0, 40617522 / 29380423, -110615467 / 29380423,
            69997945 / 29380423]],
        dense_order=4,
    )


def _dop853():
    # Hairer's DOP853 8(5,3) with its 7th-order dense output (3 extra
    # stages), exactly as scipy's DOP853; raw numbers in
    # _tableau_coefficients.py.  error_order = 7 is scipy's
    # error_estimator_order: the combined estimate
    # |err5|^2 / sqrt(|err5|^2 + 0.01 |err3|^2) behaves like h^8.  The
    # embedded solutions themselves are of order 5 (e) and 3 (e_low).
    s, n_ext = 12, 16
    c_all = np.array(_co.DOP853_C, dtype=np.float64)
    A_all = _dense_from_sparse(_co.DOP853_A, (n_ext, n_ext))
    b = A_all[s, :s].copy()
    e5 = _dense_from_sparse(_co.DOP853_E5, (s + 1,))
    e3 = np.zeros(s + 1)
    e3[:s] = b
    for i, bhh in _co.DOP853_BHH.items():
        e3[i] -= bhh
    D = _dense_from_sparse(_co.DOP853_D, (4, n_ext))
    return ExplicitRKTableau(
        name="DOP853",
        order=8,
        error_order=7,
        c=c_all[:s],
        A=A_all[:s, :s],
        b=b,
        e=e5,
        e_low=e3,
        c_extra=c_all[s + 1:],
        A_extra=A_all[s + 1:],
        P=_dop853_dense_matrix(b, D),
        dense_order=7,
    )


def _tsit5():
    # Tsitouras 5(4) with its free 4th-order interpolant; raw numbers in
    # _tableau_coefficients.py.  FSAL: stage 7 (A row = b) is k_s.
    s = 6
    c_all = np.array(_co.TSIT5_C, dtype=np.float64)
    A_all = _dense_from_sparse(_co.TSIT5_A, (s + 1, s + 1))
    return ExplicitRKTableau(
        name="Tsit5",
        order=5,
        error_order=4,
        c=c_all[:s],
        A=A_all[:s, :s],
        b=A_all[s, :s].copy(),
        e=np.array(_co.TSIT5_BTILDE, dtype=np.float64),
        e_low=None,
        c_extra=[],
        A_extra=[],
        P=np.array(_co.TSIT5_R, dtype=np.float64),
        dense_order=4,
    )


def _vern7():
    # Verner's "most efficient" 7(6) pair with the lazy 7th-order
    # interpolant (his 2024 corrected interpolation stages); raw numbers and
    # provenance in _tableau_coefficients.py.  Stage 11 of the source
    # (c = 1, A row = b) is f(t + h, y_new) and becomes k_s; the remaining
    # five interpolation stages are the extra stages.
    s, r = 10, 5
    n_ext = s + 1 + r
    c = _dense_from_sparse(_co.VERN7_C, (s,))
    b = _dense_from_sparse(_co.VERN7_B, (s,))
    # Sanity check of the mapping above, not a tolerance on the data: the
    # source's 11th-stage row must be b (to the precision of its decimals).
    last = _dense_from_sparse(_co.VERN7_A_LAST, (s,))
    if not np.allclose(last, b, rtol=1e-15, atol=1e-16):
        raise ValueError("Vern7: the source's stage 11 is not f(t+h, y_new)")
    extra_rows = sorted(_co.VERN7_C_EXTRA)
    A_extra = np.zeros((r, n_ext))
    for (row, col), value in _co.VERN7_A_EXTRA.items():
        A_extra[extra_rows.index(row), col] = value
    return ExplicitRKTableau(
        name="Vern7",
        order=7,
        error_order=6,
        c=c,
        A=_dense_from_sparse(_co.VERN7_A, (s, s)),
        b=b,
        e=_dense_from_sparse(_co.VERN7_BTILDE, (s + 1,)),
        e_low=None,
        c_extra=[_co.VERN7_C_EXTRA[k] for k in extra_rows],
        A_extra=A_extra,
        P=_dense_from_node_values(_co.VERN7_DENSE_NODES,
                                  _co.VERN7_DENSE_VALUES, n_ext),
        dense_order=7,
    )


#: The available tableaus, keyed by method name.
TABLEAUS: dict[str, ExplicitRKTableau] = {
    tab.name: tab
    for tab in (_rk23(), _rk45(), _dop853(), _tsit5(), _vern7())
}
