"""Coefficients of the Rosenbrock (linearly implicit) methods used by diffsens.

Every method is described by one :class:`RosenbrockTableau`.  The C stepper
(``diffsens/_kernels/rosenbrock.c``) is written against the stage convention
below, so one generic step routine and one dense-output evaluator serve all
methods.

Stage convention
----------------
Hairer & Wanner's form with transformed stage variables ``U_i``
(Hairer & Wanner II, Sec. IV.7, eq. (7.4')-(7.5), with a constant mass
matrix ``M`` as in their code ``rodas.f``; also the "Rodas" form of
OrdinaryDiffEq.jl).  For a step from ``(t, y)`` with step size ``h``,
``J = df/dy(t, y)`` and ``f_t = df/dt(t, y)``::

    (M / (gamma h) - J) U_i = f(t + alpha_i h, y + sum_{j<i} a_ij U_j)
                              + M sum_{j<i} (c_ij / h) U_j
                              + gammas_i h f_t,               i = 0 .. s-1
    y_new = y + sum_i m_i U_i
    err   = sum_i e_i U_i             (= y_new - y_emb, see ``error_order``)
    K_r   = sum_i H[r, i] U_i,        r = 0 .. q-1
    y(t + theta h) = (1 - theta) y
                     + theta (y_new + (1 - theta) (K_0 + theta (K_1
                                          + theta (K_2 + ...))))

Signs and scalings, all checked numerically (``tests/
test_rosenbrock_tableaus.py``):

* ``c_ij`` enters with a plus sign and is divided by ``h`` by the kernel;
  it is Hairer's ``C_ij`` (``rodas.f``: ``HC21 = C21/H``) and
  OrdinaryDiffEq's ``C`` (its ``W = J - M/(gamma h)`` and
  ``k_i = W \\ -(f + h d_i f_t + M sum C_ij/h k_j)``: the same equation).
* ``gammas_i`` multiplies ``h f_t``; it is Hairer's / OrdinaryDiffEq's
  ``d_i`` and equals ``sum_{j<=i} gamma_ij`` (row sums of Hairer &
  Wanner's matrix ``Gamma`` *including* its diagonal ``gamma``), so
  ``gammas[0] == gamma``.
* The ``H`` rows act on the ``U_i`` themselves (not on ``U_i / h`` or on
  ``k``-variables): the nested form above is exactly ``rodas.f``'s
  ``CONTRO`` and OrdinaryDiffEq's Rosenbrock interpolant.

Relation to the untransformed form (Hairer & Wanner (7.1)/(7.4), ``k``-
variables with ``k_i = h f(...) + h J sum_{j<=i} gamma_ij k_j``):
``U = Gamma k`` with ``Gamma = (I / gamma - c)^-1``
(:attr:`RosenbrockTableau.gamma_matrix`), ``alpha_ij = (a Gamma)_ij``
(:attr:`~RosenbrockTableau.alpha_matrix`), ``b = m Gamma``.  In particular
the node ``alpha_i`` is the row sum of ``a Gamma``, *not* of ``a``.

Sources
-------
Rodas4
    E. Hairer, G. Wanner, "Solving Ordinary Differential Equations II",
    2nd ed., Springer 1996, Sec. IV.7 (RODAS), and Hairer's Fortran code
    ``rodas.f``, subroutine ``ROCOE`` (``METH=1``), including the
    dense-output rows ``D21..D35``.  Numbers read from an f2c translation of
    ``rodas.f`` (the same digits appear in other ports, e.g. KPP's Rodas4
    ``ros_A``/``ros_C``); bit-identical to OrdinaryDiffEq.jl's
    ``RODAS4A/C/c/d/H`` except ``d_4``, which OrdinaryDiffEq rounds to
    ``-0.0362`` while ``rodas.f`` has ``-0.3620000000000023D-01`` (used
    here; both are the row sum of ``Gamma`` to within rounding).
Rodas5P
    G. Steinebach, "Construction of Rosenbrock-Wanner method Rodas5P and
    numerical benchmarks within the Julia Differential Equations package",
    BIT Numer. Math. 63 (2023) 27.  Numbers (``A``, ``C``, ``gamma``, ``c``,
    ``d``, the three dense rows ``H``) read from OrdinaryDiffEq.jl
    (``lib/OrdinaryDiffEqRosenbrockTableaus/src/rosenbrock_tableaus.jl``,
    commit b211787f; the same numbers as the older
    ``src/tableaus/rosenbrock_tableaus.jl``).  Not cross-checked against a
    second independent source; the exact order conditions (order 5, embedded
    4, dense 4) hold to ~1e-14 in the tests.
Rosenbrock23
    L. F. Shampine, M. W. Reichelt, "The MATLAB ODE Suite", SIAM J. Sci.
    Comput. 18 (1997) 1-22 (``ode23s``), as in OrdinaryDiffEq.jl's
    ``Rosenbrock23`` (``rosenbrock_perform_step.jl``, interpolant in
    ``rosenbrock_interpolants.jl``), transformed exactly into the form above
    (derivation in :func:`_rosenbrock23`).

The test-suite verifies every order exactly (Rosenbrock rooted-tree order
conditions) and by observed convergence with a small numpy stepper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

__all__ = ["RosenbrockTableau", "ROSENBROCK_TABLEAUS"]

# Relative tolerance of the consistency checks.  They are evaluated in exact
# rational arithmetic on the stored doubles, so what is left is the rounding
# of the published coefficients (16-17 significant digits) propagated through
# the products; each residual is judged relative to the same expression
# evaluated with absolute values (observed: <= 2.1e-15 for all three
# methods, largest for the dense-output rows of Rodas4 and Rodas5P).
_RTOL = 1e-13


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
        Read-only copy (a tableau shared by many solvers cannot be modified
        in place behind the validation's back).

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


def _read_only(arr):
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    arr.flags.writeable = False
    return arr


def _fractions(arr):
    """Exact rational copy (nested lists) of a float array."""
    return np.vectorize(Fraction, otypes=[object])(np.asarray(arr)).tolist()


def _exact_gamma_matrix(gamma, c):
    """``Gamma = (I / gamma - C)^-1`` exactly, and the same with ``|C|``.

    ``I / gamma - C`` is lower triangular with diagonal ``1 / gamma``, so
    forward substitution gives ``X_ii = gamma`` and
    ``X_ij = gamma * sum_{j<=k<i} C_ik X_kj`` (``i > j``).

    Parameters
    ----------
    gamma : float
        Diagonal coefficient.
    c : ndarray, shape (s, s)
        Strictly lower triangular ``C``.

    Returns
    -------
    G, G_abs : list of list of Fraction
        ``Gamma`` and the scale matrix obtained with ``|C|`` (an upper bound
        of the magnitudes that cancel in each entry of ``Gamma``).
    """
    s = c.shape[0]
    g = Fraction(gamma)
    C = _fractions(c)
    out = []
    for absolute in (False, True):
        X = [[Fraction(0)] * s for _ in range(s)]
        for j in range(s):
            X[j][j] = g
            for i in range(j + 1, s):
                acc = Fraction(0)
                for k in range(j, i):
                    cik = abs(C[i][k]) if absolute else C[i][k]
                    acc += cik * X[k][j]
                X[i][j] = g * acc
        out.append(X)
    return out[0], out[1]


@dataclass(frozen=True, eq=False)
class RosenbrockTableau:
    """Coefficients of a Rosenbrock method, error estimate and dense output.

    See the module docstring for the stage convention.  All arrays are
    validated and stored as read-only float64 copies on construction.

    Parameters
    ----------
    name : str
        Method name (the key in :data:`ROSENBROCK_TABLEAUS`).
    order : int
        Order of ``y_new`` (with the exact Jacobian).
    error_order : int
        Order used for step-size control: the estimate behaves like
        ``err ~ h**(error_order + 1)``, the kernel's controller exponent is
        ``1 / (error_order + 1)`` (scipy's ``error_estimator_order``).  For
        Rodas4 / Rodas5P it is the order of the embedded solution
        ``y_emb = y_new - err``.  For Rosenbrock23 ``err = y3 - y_new`` is
        the difference to ode23s's 3rd-order companion ``y3 = y_new + err``,
        i.e. an estimate of the local error of ``y_new`` itself: ``err ~
        h**3`` and ``error_order = 2 = order`` (``y_new - err`` is then the
        order-2 combination ``2 y_new - y3``).
    dense_order : int
        Order of the dense output.
    gamma : float
        Diagonal coefficient ``gamma`` (``W = M / (gamma h) - J``).
    a : ndarray, shape (s, s)
        Strictly lower triangular stage-argument coefficients (on ``U``).
    c : ndarray, shape (s, s)
        Strictly lower triangular coefficients of ``M U_j / h`` (the kernel
        divides by ``h``).
    alpha : ndarray, shape (s,)
        Node offsets: stage ``i`` evaluates ``f`` at ``t + alpha_i h``.
    gammas : ndarray, shape (s,)
        Coefficient of ``h df/dt`` in stage ``i`` (``sum_{j<=i} gamma_ij``).
    m : ndarray, shape (s,)
        Weights of ``y_new``.
    e : ndarray, shape (s,)
        Weights of the error estimate ``err = y_new - y_emb``.
    H : ndarray, shape (q, s)
        Dense-output rows ``K_r = H[r] @ U`` (``q >= 1``).

    Raises
    ------
    ValueError
        If shapes disagree or a consistency condition fails: ``a`` or ``c``
        not strictly lower triangular, ``gamma <= 0``, ``gammas`` not the
        row sums of ``Gamma = (I / gamma - c)^-1``, ``alpha`` not the row
        sums of ``a Gamma``, or the order-1 and (for declared orders >= 2)
        order-2 conditions of ``y_new``, of ``y_new - err`` or of the dense
        output violated (e.g. ``m . gammas = 1``, ``e . gammas = 0``,
        ``H . gammas = 0``).

    Notes
    -----
    Derived quantities (:attr:`n_stages`, :attr:`n_dense`,
    :attr:`gamma_matrix`, :attr:`alpha_matrix`, :attr:`b`,
    :attr:`b_embedded`, :attr:`stiffly_accurate`, :attr:`argument_steps`,
    :attr:`error_is_last_stage`, :attr:`fsal`,
    :attr:`stability_at_infinity`) are computed from the data on first
    access and cached; none of them is typed in by hand.
    """

    name: str
    order: int
    error_order: int
    dense_order: int
    gamma: float
    a: np.ndarray
    c: np.ndarray
    alpha: np.ndarray
    gammas: np.ndarray
    m: np.ndarray
    e: np.ndarray
    H: np.ndarray

    # -- construction and validation ----------------------------------------

    def __post_init__(self):
        # Normalise the arrays (frozen dataclass: bypass __setattr__).
        for field_name, ndim in (("a", 2), ("c", 2), ("alpha", 1),
                                 ("gammas", 1), ("m", 1), ("e", 1),
                                 ("H", 2)):
            object.__setattr__(
                self, field_name,
                _frozen_array(getattr(self, field_name), field_name, ndim))
        self._validate()

    def _fail(self, message):
        raise ValueError(f"tableau {self.name!r}: {message}")

    def _check(self, value, scale, target, what):
        """Fail unless ``|value - target| <= _RTOL * max(scale, |target|)``."""
        diff = abs(value - target)
        bound = max(scale, abs(target))
        if diff > Fraction(_RTOL) * bound:
            self._fail(f"{what}: off by {float(diff):.3e} "
                       f"(relative {float(diff / bound):.1e})")

    def _validate(self):
        """Check shapes and the consistency conditions (see class doc)."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("tableau name must be a non-empty string")
        for attr in ("order", "error_order", "dense_order"):
            val = getattr(self, attr)
            if not isinstance(val, (int, np.integer)) or val < 1:
                self._fail(f"{attr} must be a positive integer, got {val!r}")
        if self.error_order > self.order:
            self._fail("error_order cannot exceed order")
        if self.dense_order > self.order:
            self._fail("dense_order cannot exceed order")
        if not (isinstance(self.gamma, (float, int, np.floating))
                and math.isfinite(self.gamma) and self.gamma > 0):
            self._fail(f"gamma must be a positive finite number, "
                       f"got {self.gamma!r}")
        object.__setattr__(self, "gamma", float(self.gamma))

        s = self.a.shape[0]
        if s < 1:
            self._fail("need at least one stage")
        expected = {"a": (s, s), "c": (s, s), "alpha": (s,), "gammas": (s,),
                    "m": (s,), "e": (s,)}
        for attr, shape in expected.items():
            if getattr(self, attr).shape != shape:
                self._fail(f"{attr} must have shape {shape} (s={s}), "
                           f"got {getattr(self, attr).shape}")
        if self.H.shape[0] < 1 or self.H.shape[1] != s:
            self._fail(f"H must have shape (q, {s}) with q >= 1, "
                       f"got {self.H.shape}")
        for attr in ("a", "c"):
            upper = np.argwhere(np.triu(getattr(self, attr)) != 0.0)
            if upper.size:
                i, j = upper[0]
                self._fail(f"{attr} must be strictly lower triangular; "
                           f"{attr}[{i}, {j}] = "
                           f"{float(getattr(self, attr)[i, j])!r}")
        if not np.any(self.e):
            self._fail("e is identically zero (no error estimate)")

        # Exact arithmetic on the stored doubles from here on.
        G, G_abs = _exact_gamma_matrix(self.gamma, self.c)
        A = _fractions(self.a)
        gam = _fractions(self.gammas)
        alp = _fractions(self.alpha)

        # gammas = Gamma @ 1: the df/dt term is that of the autonomised
        # system (Hairer & Wanner (7.4'): gamma_i = sum_{j<=i} gamma_ij).
        for i in range(s):
            self._check(sum(G[i]), sum(G_abs[i]), gam[i],
                        f"gammas[{i}] is not the row sum of "
                        "Gamma = (I/gamma - c)^-1")
        # alpha = (a Gamma) @ 1: stage times consistent with the arguments.
        for i in range(s):
            val = sum(A[i][k] * sum(G[k]) for k in range(i))
            scale = sum(abs(A[i][k]) * sum(G_abs[k]) for k in range(i))
            self._check(val, scale, alp[i],
                        f"alpha[{i}] is not the row sum of a @ Gamma")

        # Elementary weights in U-variables: y' = const gives U = h f Gamma 1
        # = h f gammas; the tree [tau] gives v = Gamma (alpha + gammas).
        v = [sum(G[i][j] * (alp[j] + gam[j]) for j in range(s))
             for i in range(s)]
        v_abs = [sum(G_abs[i][j] * (abs(alp[j]) + abs(gam[j]))
                     for j in range(s)) for i in range(s)]

        def dot(w, x, x_abs):
            return (sum(wi * xi for wi, xi in zip(w, x)),
                    sum(abs(wi) * xi for wi, xi in zip(w, x_abs)))

        gam_abs = [abs(g) for g in gam]
        m = _fractions(self.m)
        emb = [mi - ei for mi, ei in zip(m, _fractions(self.e))]
        for label, w, order in (("m", m, self.order),
                                ("m - e", emb, self.error_order)):
            self._check(*dot(w, gam, gam_abs), Fraction(1),
                        f"order 1: {label} . gammas != 1")
            if order >= 2:
                self._check(*dot(w, v, v_abs), Fraction(1, 2),
                            f"order 2: {label} . Gamma (alpha + gammas) "
                            "!= 1/2")
        # Dense output: exact for y' = const (every K_r vanishes) and, for
        # dense_order >= 2, for y'' = const: H[0] . v = -1/2, H[r] . v = 0.
        for r, row in enumerate(_fractions(self.H)):
            self._check(*dot(row, gam, gam_abs), Fraction(0),
                        f"dense output order 1: H[{r}] . gammas != 0")
            if self.dense_order >= 2:
                self._check(*dot(row, v, v_abs),
                            Fraction(-1, 2) if r == 0 else Fraction(0),
                            f"dense output order 2: H[{r}] . Gamma "
                            "(alpha + gammas) != "
                            f"{'-1/2' if r == 0 else '0'}")

    # -- derived properties --------------------------------------------------

    @cached_property
    def n_stages(self) -> int:
        """int: Number ``s`` of stages (linear solves per step)."""
        return int(self.a.shape[0])

    @cached_property
    def n_dense(self) -> int:
        """int: Number ``q`` of dense-output rows ``K_r``."""
        return int(self.H.shape[0])

    @cached_property
    def gamma_matrix(self) -> np.ndarray:
        """ndarray, shape (s, s): Hairer & Wanner's ``Gamma = (gamma_ij)``.

        Lower triangular with diagonal ``gamma``; ``Gamma = (I / gamma -
        c)^-1`` (correctly rounded from exact arithmetic), so that the
        ``k``-variables of the untransformed method are ``k = Gamma^-1 U``.
        """
        G, _ = _exact_gamma_matrix(self.gamma, self.c)
        return _read_only(np.array([[float(x) for x in row] for row in G]))

    @cached_property
    def alpha_matrix(self) -> np.ndarray:
        """ndarray, shape (s, s): ``alpha_ij`` of the untransformed method.

        ``a Gamma`` (correctly rounded); its row sums are :attr:`alpha`.
        """
        G, _ = _exact_gamma_matrix(self.gamma, self.c)
        A = _fractions(self.a)
        s = self.n_stages
        return _read_only(np.array(
            [[float(sum(A[i][k] * G[k][j] for k in range(s)))
              for j in range(s)] for i in range(s)]))

    @cached_property
    def b(self) -> np.ndarray:
        """ndarray, shape (s,): weights ``m Gamma`` of the ``k``-variables."""
        return _read_only(self.m @ self.gamma_matrix)

    @cached_property
    def b_embedded(self) -> np.ndarray:
        """ndarray, shape (s,): ``(m - e) Gamma`` (weights of y_new - err)."""
        return _read_only((self.m - self.e) @ self.gamma_matrix)

    @cached_property
    def stiffly_accurate(self) -> bool:
        """bool: ``y_new`` is the last stage's argument plus ``U_{s-1}``.

        ``m_i = a_{s-1,i}`` (``i < s-1``), ``m_{s-1} = 1`` and
        ``alpha_{s-1} = 1``: Hairer & Wanner's ``b_i = beta_si``, which
        implies ``R(inf) = 0`` (Rodas4, Rodas5P).
        """
        s = self.n_stages
        return bool(self.alpha[-1] == 1.0 and self.m[-1] == 1.0
                    and np.array_equal(self.m[:s - 1], self.a[-1, :s - 1]))

    @cached_property
    def argument_steps(self) -> np.ndarray:
        """ndarray of bool, shape (s,): stage ``i``'s argument is stage
        ``i-1``'s plus ``a_{i,i-1} U_{i-1}``.

        Row ``i`` of ``a`` repeats row ``i-1`` bit for bit before column
        ``i-1`` (``i >= 2``), as the last stages of Rodas4 and Rodas5P do, so
        a step sums one term there instead of ``i``.
        """
        steps = np.array([i >= 2 and np.array_equal(self.a[i, :i - 1], self.a[i - 1, :i - 1])
                          for i in range(self.n_stages)], dtype=bool)
        steps.flags.writeable = False
        return steps

    @cached_property
    def error_is_last_stage(self) -> bool:
        """bool: the error estimate is ``U_{s-1}`` (``e`` a unit vector),
        as in Rodas4 and Rodas5P."""
        unit = np.zeros(self.n_stages)
        unit[-1] = 1.0
        return bool(np.array_equal(self.e, unit))

    @cached_property
    def fsal(self) -> bool:
        """bool: the last stage evaluates ``f(t + h, y_new)``.

        ``alpha_{s-1} == 1`` and ``a[s-1] == m`` bit for bit, so that value
        of ``f`` is the next step's ``f(t, y)`` (Rosenbrock23).
        """
        return bool(self.alpha[-1] == 1.0
                    and np.array_equal(self.a[-1], self.m))

    @cached_property
    def stability_at_infinity(self) -> float:
        """float: ``R(inf) = 1 - b Beta^-1 1`` of the stability function.

        ``R(z) = 1 + z b (I - z Beta)^-1 1`` with ``Beta = alpha_matrix +
        gamma_matrix`` (Hairer & Wanner IV.7); 0 for an L-stable method.
        """
        beta = self.alpha_matrix + self.gamma_matrix
        return float(1.0 - self.b @ np.linalg.solve(
            beta, np.ones(self.n_stages)))

    def dense_weights(self, theta):
        """Weights of ``U_0 .. U_{s-1}`` in the dense output at `theta`.

        Parameters
        ----------
        theta : float or array_like
            Normalised position(s) ``(t_out - t) / h`` in ``[0, 1]``.

        Returns
        -------
        ndarray, shape (s,) or (s, len(theta))
            ``w(theta) = theta m + theta (1 - theta) sum_r theta**r H[r]``,
            so that ``y(t + theta h) = y + sum_i w_i(theta) U_i`` (the
            nested form of the module docstring, expanded).
        """
        theta = np.asarray(theta, dtype=np.float64)
        powers = theta[..., None] ** np.arange(self.n_dense)
        w = (theta[..., None] * self.m
             + (theta * (1.0 - theta))[..., None] * (powers @ self.H))
        return np.moveaxis(w, -1, 0)

    def __repr__(self):
        return (f"RosenbrockTableau(name={self.name!r}, order={self.order}, "
                f"error_order={self.error_order}, s={self.n_stages}, "
                f"q={self.n_dense}, dense_order={self.dense_order})")


# ---------------------------------------------------------------------------
# The methods
# ---------------------------------------------------------------------------

def _rosenbrock23():
    # Shampine & Reichelt's ode23s as OrdinaryDiffEq.jl's Rosenbrock23, with
    # d = 1/(2 + sqrt 2), e32 = 6 + sqrt 2, W = I - h d J (M = I; the mass
    # matrix form below is the natural generalisation, as in OrdinaryDiffEq):
    #   k1 = W^-1 (f0 + h d T)
    #   f1 = f(t + h/2, y + h/2 k1),          k2 = W^-1 (f1 - k1) + k1
    #   y_new = y + h k2,                     f2 = f(t + h, y_new)
    #   k3 = W^-1 (f2 - e32 (k2 - f1) - 2 (k1 - f0) + h d T)
    #   err_ode = h/6 (k1 - 2 k2 + k3) = y3 - y_new,
    #   y3 = y + h/6 (k1 + 4 k2 + k3)  (order 3; OrdinaryDiffEq Rosenbrock32)
    #   y(theta) = y + h (theta(1-theta) k1 + theta(theta-2d) k2) / (1-2d)
    # With W / (d h) = I/(d h) - J (gamma = d):
    #   U0 = d h k1:            (W/(dh)) U0 = f0 + d h T
    #   U1 = d h (k2 - k1):     (W/(dh)) U1 = f1 - k1 = f1 - U0/(d h)
    #   Since k2 - f1 = d h J (k2 - k1) = J U1 and k1 - f0 = J U0 + d h T,
    #   k3's right-hand side is f2 - e32 J U1 - 2 J U0 - d h T; the J terms
    #   are absorbed by U2 = d h k3 - 2 U0 - e32 U1:
    #                        (W/(dh)) U2 = f2 - (2 U0 + e32 U1)/(d h) - d h T
    # so  a10 = 1/(2d), a20 = a21 = 1/d, c10 = -1/d, c20 = -2/d,
    #     c21 = -e32/d, alpha = (0, 1/2, 1), gammas = (d, 0, -d),
    #     m = (1/d, 1/d, 0),  err_ode = (U0 + (e32 - 2) U1 + U2) / (6 d),
    #     dense: theta (1-theta) h (k1 - k2)/(1-2d) = theta (1-theta) K0 with
    #     K0 = -U1 / (d (1-2d)).
    # Closed forms (r = sqrt 2): d = 1 - r/2, 1/d = 2 + r, 1/(2d) = 1 + r/2,
    # e32/d = 14 + 8 r, (e32 - 2)/(6d) = (5 + 3 r)/3, 1/(d(1-2d)) = 4 + 3 r.
    # err = err_ode (OrdinaryDiffEq's sign): y_new - err = 2 y_new - y3.
    r = math.sqrt(2.0)
    inv_d = 2.0 + r
    return RosenbrockTableau(
        name="Rosenbrock23",
        order=2,
        error_order=2,
        dense_order=2,
        gamma=1.0 - r / 2.0,
        a=[[0.0, 0.0, 0.0],
           [1.0 + r / 2.0, 0.0, 0.0],
           [inv_d, inv_d, 0.0]],
        c=[[0.0, 0.0, 0.0],
           [-inv_d, 0.0, 0.0],
           [-2.0 * inv_d, -(14.0 + 8.0 * r), 0.0]],
        alpha=[0.0, 0.5, 1.0],
        gammas=[1.0 - r / 2.0, 0.0, -(1.0 - r / 2.0)],
        m=[inv_d, inv_d, 0.0],
        e=[inv_d / 6.0, (5.0 + 3.0 * r) / 3.0, inv_d / 6.0],
        H=[[0.0, -(4.0 + 3.0 * r), 0.0]],
    )


def _rodas4():
    # Hairer & Wanner's RODAS (rodas.f, ROCOE, METH=1).  Stiffly accurate:
    # y_new = Y_5 + U_5 (m = a[5] + unit 5) and the embedded solution is the
    # last stage's argument Y_5 = y + sum a_5j U_j (err = U_5).  The dense
    # rows D2j, D3j (j = 1..5; U_5 has weight 0) act on the U_i.
    a = np.zeros((6, 6))
    a[1, 0] = 0.1544000000000000e+01
    a[2, :2] = [0.9466785280815826e+00, 0.2557011698983284e+00]
    a[3, :3] = [0.3314825187068521e+01, 0.2896124015972201e+01,
                0.9986419139977817e+00]
    a[4, :4] = [0.1221224509226641e+01, 0.6019134481288629e+01,
                0.1253708332932087e+02, -0.6878860361058950e+00]
    a[5, :4] = a[4, :4]
    a[5, 4] = 1.0
    c = np.zeros((6, 6))
    c[1, 0] = -0.5668800000000000e+01
    c[2, :2] = [-0.2430093356833875e+01, -0.2063599157091915e+00]
    c[3, :3] = [-0.1073529058151375e+00, -0.9594562251023355e+01,
                -0.2047028614809616e+02]
    c[4, :4] = [0.7496443313967647e+01, -0.1024680431464352e+02,
                -0.3399990352819905e+02, 0.1170890893206160e+02]
    c[5, :5] = [0.8083246795921522e+01, -0.7981132988064893e+01,
                -0.3152159432874371e+02, 0.1631930543123136e+02,
                -0.6058818238834054e+01]
    m = np.append(a[5, :5], 1.0)
    return RosenbrockTableau(
        name="Rodas4",
        order=4,
        error_order=3,
        dense_order=3,
        gamma=0.25,
        a=a,
        c=c,
        alpha=[0.0, 0.386, 0.21, 0.63, 1.0, 1.0],
        gammas=[0.25, -0.1043, 0.1035, -0.3620000000000023e-01, 0.0, 0.0],
        m=m,
        e=[0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        H=[[0.1012623508344586e+02, -0.7487995877610167e+01,
            -0.3480091861555747e+02, -0.7992771707568823e+01,
            0.1025137723295662e+01, 0.0],
           [-0.6762803392801253e+00, 0.6087714651680015e+01,
            0.1643084320892478e+02, 0.2476722511418386e+02,
            -0.6594389125716872e+01, 0.0]],
    )


def _rodas5p():
    # Steinebach's Rodas5P (numbers from OrdinaryDiffEq.jl, see module
    # docstring).  Stiffly accurate like Rodas4: rows 6 and 7 of a extend
    # row 5 by ones, m = a[7] + unit 7, err = U_7 (embedded = Y_7).
    a = np.zeros((8, 8))
    a[1, 0] = 3.0
    a[2, :2] = [2.849394379747939, 0.45842242204463923]
    a[3, :3] = [-6.954028509809101, 2.489845061869568, -10.358996098473584]
    a[4, :4] = [2.8029986275628964, 0.5072464736228206, -0.3988312541770524,
                -0.04721187230404641]
    a[5, :5] = [-7.502846399306121, 2.561846144803919, -11.627539656261098,
                -0.18268767659942256, 0.030198172008377946]
    a[6, :5] = a[5, :5]
    a[6, 5] = 1.0
    a[7, :6] = a[6, :6]
    a[7, 6] = 1.0
    c = np.zeros((8, 8))
    c[1, 0] = -14.155112264123755
    c[2, :2] = [-17.97296035885952, -2.859693295451294]
    c[3, :3] = [147.12150275711716, -1.41221402718213, 71.68940251302358]
    c[4, :4] = [165.43517024871676, -0.4592823456491126, 42.90938336958603,
                -5.961986721573306]
    c[5, :5] = [24.854864614690072, -3.0009227002832186, 47.4931110020768,
                5.5814197821558125, -0.6610691825249471]
    c[6, :6] = [30.91273214028599, -3.1208243349937974, 77.79954646070892,
                34.28646028294783, -19.097331116725623, -28.087943162872662]
    c[7, :7] = [37.80277123390563, -3.2571969029072276, 112.26918849496327,
                66.9347231244047, -40.06618937091002, -54.66780262877968,
                -9.48861652309627]
    gamma = 0.21193756319429014
    return RosenbrockTableau(
        name="Rodas5P",
        order=5,
        error_order=4,
        dense_order=4,
        gamma=gamma,
        a=a,
        c=c,
        alpha=[0.0, 0.6358126895828704, 0.4095798393397535,
               0.9769306725060716, 0.4288403609558664, 1.0, 1.0, 1.0],
        gammas=[gamma, -0.42387512638858027, -0.3384627126235924,
                1.8046452872882734, 2.325825639765069, 0.0, 0.0, 0.0],
        m=np.append(a[7, :7], 1.0),
        e=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        H=[[25.948786856663858, -2.5579724845846235, 10.433815404888879,
            -2.3679251022685204, 0.524948541321073, 1.1241088310450404,
            0.4272876194431874, -0.17202221070155493],
           [-9.91568850695171, -0.9689944594115154, 3.0438037242978453,
            -24.495224566215796, 20.176138334709044, 15.98066361424651,
            -6.789040303419874, -6.710236069923372],
           [11.419903575922262, 2.8879645146136994, 72.92137995996029,
            80.12511834622643, -52.072871366152654, -59.78993625266729,
            -0.15582684282751913, 4.883087185713722]],
    )


#: The available Rosenbrock tableaus, keyed by method name.
ROSENBROCK_TABLEAUS: dict[str, RosenbrockTableau] = {
    tab.name: tab for tab in (_rosenbrock23(), _rodas4(), _rodas5p())
}
