"""Tests of the explicit Runge--Kutta coefficient data (diffsens._tableaus).

Pure numpy: nothing here touches the compiled kernels.  Three kinds of
checks:

* the consistency checks of ``ExplicitRKTableau.__post_init__`` pass for the
  shipped data and fire (``ValueError``) on corrupted copies;
* exact order conditions: the elementary weights of all rooted trees up to
  order 9 (Butcher's B-series theory) show that the propagated solution, the
  embedded solution(s) and the dense output have exactly the documented
  orders;
* observed convergence of a tiny fixed-step numpy stepper driven by the
  tableau data on problems with closed-form solutions (global error of the
  propagated and embedded solutions, local error of the interpolant and of
  the error estimate).
"""

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

from _trees import density, rooted_trees
from diffsens import _tableaus as _tab_mod

ExplicitRKTableau = _tab_mod.ExplicitRKTableau
TABLEAUS = _tab_mod.TABLEAUS
_coeffs = _tab_mod._co

NAMES = ["RK23", "RK45", "DOP853", "Tsit5", "Vern7"]

# (s, r, d): main stages, extra dense-output stages, dense polynomial degree.
SHAPES = {
    "RK23": (3, 0, 3),
    "RK45": (6, 0, 4),
    "DOP853": (12, 3, 7),
    "Tsit5": (6, 0, 4),
    "Vern7": (10, 5, 7),
}

# Order of the embedded solution y_new -/+ err.  Equal to error_order except
# for DOP853, whose error_order (7, scipy's error_estimator_order) is the
# order of the combined 5th/3rd-order estimate; its embedded solutions are of
# order 5 (e) and 3 (e_low).
EMBEDDED_ORDER = {"RK23": 2, "RK45": 4, "DOP853": 5, "Tsit5": 4, "Vern7": 6}
EMBEDDED_LOW_ORDER = {"DOP853": 3}

# Last main stage with c == 1 (paired with k_s for stiffness detection).
STIFFNESS_STAGE = {"RK23": -1, "RK45": 5, "DOP853": 11, "Tsit5": 5,
                   "Vern7": 9}

ORDER_TOL = 0.2


@pytest.fixture(params=NAMES)
def tab(request):
    return TABLEAUS[request.param]


# ---------------------------------------------------------------------------
# Structure and consistency
# ---------------------------------------------------------------------------

def test_registry():
    assert list(TABLEAUS) == NAMES
    for name, t in TABLEAUS.items():
        assert isinstance(t, ExplicitRKTableau)
        assert t.name == name


def test_shapes_and_derived_sizes(tab):
    s, r, d = SHAPES[tab.name]
    assert (tab.n_stages, tab.n_extra, tab.dense_degree) == (s, r, d)
    assert tab.c.shape == (s,) and tab.A.shape == (s, s)
    assert tab.b.shape == (s,) and tab.e.shape == (s + 1,)
    assert tab.c_extra.shape == (r,)
    assert tab.A_extra.shape == (r, s + 1 + r)
    assert tab.P.shape == (s + 1 + r, d)
    assert (tab.e_low is not None) == (tab.name == "DOP853")
    for arr in (tab.c, tab.A, tab.b, tab.e, tab.c_extra, tab.A_extra, tab.P):
        assert arr.dtype == np.float64 and arr.flags.c_contiguous


def test_immutable(tab):
    assert not tab.A.flags.writeable and not tab.P.flags.writeable
    with pytest.raises(ValueError):
        tab.b[0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        tab.order = 1


def test_consistency_relations(tab):
    # What __post_init__ enforces, restated independently.
    s, r = tab.n_stages, tab.n_extra
    assert tab.c[0] == 0.0
    assert np.all(np.triu(tab.A) == 0.0)
    np.testing.assert_allclose(tab.A.sum(axis=1), tab.c, rtol=0, atol=5e-14)
    assert abs(tab.b.sum() - 1.0) < 1e-14
    assert abs(tab.e.sum()) < 1e-14
    if tab.e_low is not None:
        assert abs(tab.e_low.sum()) < 1e-14
    for j in range(r):
        assert np.all(tab.A_extra[j, s + 1 + j:] == 0.0)
    np.testing.assert_allclose(tab.A_extra.sum(axis=1), tab.c_extra,
                               rtol=0, atol=5e-14)
    # Dense output: y_new at theta = 1, f(t, y) at theta = 0 and (true for
    # all five interpolants) f(t + h, y_new) = k_s at theta = 1, i.e. the
    # piecewise interpolant is C^1.
    b_ext = np.concatenate([tab.b, np.zeros(1 + r)])
    scale = np.abs(tab.P).sum(axis=1)
    assert np.all(np.abs(tab.dense_weights(1.0) - b_ext) <= 1e-13 * scale)
    np.testing.assert_array_equal(tab.dense_weights(0.0), 0.0)
    e0 = np.zeros(s + 1 + r)
    e0[0] = 1.0
    np.testing.assert_allclose(tab.P[:, 0], e0, rtol=0, atol=1e-13)
    es = np.zeros(s + 1 + r)
    es[s] = 1.0
    deriv_at_1 = tab.P @ np.arange(1, tab.dense_degree + 1)
    assert np.all(np.abs(deriv_at_1 - es) <= 1e-13 * (scale + 1))


def _corruptions(tab):
    """(label, field changes, expected message fragment) for one tableau."""
    s, r = tab.n_stages, tab.n_extra
    out = []

    def changed(field, fn):
        arr = np.array(getattr(tab, field))
        fn(arr)
        return {field: arr}

    def bump(idx, delta):
        def fn(arr):
            arr[idx] += delta
        return fn

    out.append(("A upper", changed("A", bump((0, s - 1), 0.1)),
                "strictly lower triangular"))
    out.append(("A row sum", changed("A", bump((s - 1, 0), 1e-8)),
                "row"))
    out.append(("c[0]", changed("c", bump(0, 0.1)), "c[0]"))
    out.append(("b sum", changed("b", bump(0, 1e-8)), "sum(b)"))
    out.append(("e sum", changed("e", bump(0, 1e-8)), "sum(e)"))
    out.append(("e zero", {"e": np.zeros(s + 1)}, "identically zero"))
    out.append(("b shape", {"b": tab.b[:-1]}, "shape"))
    out.append(("e shape", {"e": tab.e[:-1]}, "shape"))
    out.append(("P rows", {"P": tab.P[:-1]}, "shape"))
    out.append(("P sum", changed("P", bump((1, -1), 1e-7)), "theta=1"))

    def shift_first_col(arr):
        arr[1, 0] += 1e-6   # keeps the row sum: dense y_new stays right
        arr[1, 1] -= 1e-6
    out.append(("P first column", changed("P", shift_first_col), "theta=0"))
    out.append(("orders", {"error_order": tab.order}, "error_order"))
    if tab.e_low is not None:
        out.append(("e_low sum", changed("e_low", bump(0, 1e-8)),
                    "sum(e_low)"))
    if r:
        out.append(("A_extra later stage",
                    changed("A_extra", bump((0, s + 1), 0.1)),
                    "later stage"))
        out.append(("A_extra row sum",
                    changed("A_extra", bump((r - 1, 0), 1e-8)),
                    "A_extra"))
    return out


def test_corrupted_copies_raise(tab):
    # An unmodified copy is accepted ...
    dataclasses.replace(tab)
    # ... and every single corruption is caught with a clear message.
    for label, changes, fragment in _corruptions(tab):
        try:
            dataclasses.replace(tab, **changes)
        except ValueError as exc:
            assert fragment in str(exc), (label, str(exc))
            assert tab.name in str(exc)
        else:
            pytest.fail(f"corruption {label!r} of {tab.name} not detected")


# ---------------------------------------------------------------------------
# Exact order conditions (rooted trees / B-series)
# ---------------------------------------------------------------------------

TREES, TREE_SIZE = rooted_trees(9)


def _gamma(tree):
    return density(tree, TREE_SIZE)


def test_tree_counts():
    # OEIS A000081: 1, 1, 2, 4, 9, 20, 48, 115, 286
    assert [len(TREES[k]) for k in range(1, 10)] == [
        1, 1, 2, 4, 9, 20, 48, 115, 286]


def _extended_matrix(tab):
    """Butcher matrix over k_0..k_{s+r}; row s (k_s) holds b."""
    s, r = tab.n_stages, tab.n_extra
    n = s + 1 + r
    A = np.zeros((n, n))
    A[:s, :s] = tab.A
    A[s, :s] = tab.b
    A[s + 1:] = tab.A_extra
    return A


def _observed_tree_order(A, W):
    """Largest ``p`` such that the weights satisfy all conditions <= p.

    ``W`` has shape (n, m): column j are the weights of theta^(j+1) (m = 1
    for a plain quadrature row b).  The conditions are
    ``gamma(t) * W^T phi(t) = unit vector of degree |t|`` (for m = 1: = 1).
    Residuals are judged relative to the same sums taken with absolute
    values; satisfied conditions come out below 1e-15, violated ones above
    1e-7 for all tableaus here, so the 1e-12 threshold is unambiguous.

    Returns
    -------
    order : int
    first_violation : float
        Largest relative residual among the trees of order ``order + 1``.
    """
    cache, cache_abs = {}, {}
    A_abs = np.abs(A)

    def phi(tree, mat, store):
        if tree not in store:
            v = np.ones(mat.shape[0])
            for child in tree:
                v = v * (mat @ phi(child, mat, store))
            store[tree] = v
        return store[tree]

    m = W.shape[1]
    for k in range(1, max(TREES) + 1):
        worst = 0.0
        for tree in TREES[k]:
            g = _gamma(tree)
            val = g * (W.T @ phi(tree, A, cache))
            target = np.ones(1) if m == 1 else np.eye(m)[k - 1] if k <= m \
                else np.zeros(m)
            scale = g * (np.abs(W).T @ phi(tree, A_abs, cache_abs))
            worst = max(worst, float(np.max(
                np.abs(val - target) / np.maximum(scale, 1.0))))
        if worst > 1e-12:
            return k - 1, worst
    return max(TREES), 0.0


def _embedded_weights(tab, e):
    n = tab.n_stages + 1 + tab.n_extra
    w = np.zeros(n)
    w[:tab.n_stages] = tab.b
    w[:tab.n_stages + 1] -= e
    return w[:, None]


def test_order_conditions_propagated(tab):
    A = _extended_matrix(tab)
    w = np.zeros(A.shape[0])
    w[:tab.n_stages] = tab.b
    order, viol = _observed_tree_order(A, w[:, None])
    assert order == tab.order
    assert viol > 1e-7  # genuinely not of order + 1


def test_order_conditions_embedded(tab):
    A = _extended_matrix(tab)
    order, viol = _observed_tree_order(A, _embedded_weights(tab, tab.e))
    assert order == EMBEDDED_ORDER[tab.name]
    assert viol > 1e-7
    # Either sign convention of e gives the same order (2 y_new - y_emb).
    order_flipped, _ = _observed_tree_order(A, _embedded_weights(tab, -tab.e))
    assert order_flipped == order
    if tab.name != "DOP853":
        assert tab.error_order == order
    if tab.e_low is not None:
        order_low, viol = _observed_tree_order(
            A, _embedded_weights(tab, tab.e_low))
        assert order_low == EMBEDDED_LOW_ORDER[tab.name]
        assert viol > 1e-7


def test_order_conditions_dense(tab):
    order, viol = _observed_tree_order(_extended_matrix(tab), tab.P)
    assert order == tab.dense_order
    assert viol > 1e-7


# ---------------------------------------------------------------------------
# Cross-checks of derived data against the raw source representation
# ---------------------------------------------------------------------------

def test_dop853_dense_matches_scipy_nested_form():
    # scipy's Dop853DenseOutput evaluates the nested form
    #   y_old + x (F0 + (1-x)(F1 + x (F2 + (1-x)(F3 + ...))))
    # with F0 = dy, F1 = h f_old - dy, F2 = 2 dy - h (f_new + f_old),
    # F[3:] = h D @ K.  Rebuild it from the raw numbers and compare with the
    # expanded matrix P on random stage values.
    t = TABLEAUS["DOP853"]
    s = t.n_stages
    D = np.zeros((4, s + 1 + t.n_extra))
    for (i, j), v in _coeffs.DOP853_D.items():
        D[i, j] = v
    rng = np.random.default_rng(1)
    K = rng.standard_normal((s + 1 + t.n_extra, 3))
    h = 0.37
    y_old = rng.standard_normal(3)
    dy = h * (t.b @ K[:s])
    F = [dy, h * K[0] - dy, 2 * dy - h * (K[s] + K[0])]
    F += list(h * (D @ K))
    for x in np.linspace(0.0, 1.0, 11):
        y = np.zeros(3)
        for i, f in enumerate(reversed(F)):
            y = (y + f) * (x if i % 2 == 0 else 1 - x)
        y += y_old
        y_p = y_old + h * (t.dense_weights(x) @ K)
        np.testing.assert_allclose(y_p, y, rtol=0, atol=1e-12)


def test_vern7_dense_reproduces_node_values():
    # P was reconstructed from the interpolant's values at seven nodes.
    t = TABLEAUS["Vern7"]
    for node, values in zip(_coeffs.VERN7_DENSE_NODES,
                            _coeffs.VERN7_DENSE_VALUES):
        theta = float(Fraction(node))
        w = t.dense_weights(theta)
        expected = np.zeros_like(w)
        for i, v in values.items():
            expected[i] = float(v)
        # Allow for the rounding of the evaluation itself: the monomial
        # coefficients reach ~1e3 and cancel to O(0.1) values.
        bound = 4e-16 * (np.abs(t.P) @ theta ** np.arange(1, 8))
        assert np.all(np.abs(w - expected) <= bound + 1e-17)


# ---------------------------------------------------------------------------
# Stability boundary and stiffness stage
# ---------------------------------------------------------------------------

def _stability_by_stepping(tab, x):
    """R(-x) for each x, from one step of y' = -x y with h = 1."""
    x = np.asarray(x, dtype=float)
    y_new, _ = _rk_step(tab, lambda t, y: -x * y, 0.0, np.ones_like(x), 1.0)
    return y_new


def test_stability_boundary_values():
    # Dormand-Prince 5(4): 3.3066 (dopri5's stiffness threshold is 3.25).
    assert abs(TABLEAUS["RK45"].stability_boundary - 3.3) < 0.05
    # DOP853: the real stability interval of scipy's/Hairer's coefficients
    # is 6.3937 (checked by stepping below); 6.1 is the conservative
    # stiffness threshold used in dop853.f, not the boundary itself.
    assert abs(TABLEAUS["DOP853"].stability_boundary - 6.3937) < 1e-3
    # Classical 3rd-order polynomial 1 + z + z^2/2 + z^3/6: 2.5127.
    assert abs(TABLEAUS["RK23"].stability_boundary - 2.5127453) < 1e-6


def test_stability_boundary_by_stepping(tab):
    xb = tab.stability_boundary
    assert 2.0 < xb < 10.0
    inside = _stability_by_stepping(tab, np.linspace(0.0, xb, 4001)[1:])
    assert np.max(np.abs(inside)) <= 1.0 + 1e-12
    outside = _stability_by_stepping(tab, xb * (1.0 + 1e-4))
    assert abs(outside) > 1.0
    # The cached polynomial agrees with the stepper.
    xs = np.linspace(0.0, 1.2 * xb, 50)
    np.testing.assert_allclose(
        np.polynomial.polynomial.polyval(-xs, tab.stability_polynomial),
        _stability_by_stepping(tab, xs), rtol=1e-12, atol=1e-13)


def test_stiffness_stage(tab):
    i = tab.stiffness_stage
    assert i == STIFFNESS_STAGE[tab.name]
    if i >= 0:
        assert tab.c[i] == 1.0
        assert not np.any(tab.c[i + 1:] == 1.0)
    else:
        assert not np.any(tab.c == 1.0)


# ---------------------------------------------------------------------------
# Observed convergence with a fixed-step numpy stepper
# ---------------------------------------------------------------------------

def _rk_step(tab, f, t, y, h, extras=False):
    """One step with the tableau's stage convention; returns (y_new, K)."""
    s, r = tab.n_stages, tab.n_extra
    K = np.zeros((s + 1 + (r if extras else 0),) + np.shape(y))
    K[0] = f(t, y)
    for i in range(1, s):
        K[i] = f(t + tab.c[i] * h, y + h * (tab.A[i, :i] @ K[:i]))
    y_new = y + h * (tab.b @ K[:s])
    K[s] = f(t + h, y_new)
    if extras:
        for j in range(r):
            n = s + 1 + j
            K[n] = f(t + tab.c_extra[j] * h,
                     y + h * (tab.A_extra[j, :n] @ K[:n]))
    return y_new, K


# Problems with closed-form solutions.
def _rotation(t, y):
    return np.array([y[1], -y[0]])


def _rotation_exact(t):
    return np.array([np.sin(t), np.cos(t)])


def _expsin(t, y):
    # y' = y cos t, y(0) = 1  ->  y = exp(sin t)  (scalar, non-autonomous)
    return y * np.cos(t)


def _expsin_exact(t):
    return np.array([np.exp(np.sin(t))])


def _manufactured_exact(t):
    return np.array([np.exp(np.sin(t)) - 0.5, np.cos(t) + 0.3 * np.sin(2 * t)])


def _manufactured_dexact(t):
    return np.array([np.cos(t) * np.exp(np.sin(t)),
                     -np.sin(t) + 0.6 * np.cos(2 * t)])


def _manufactured_g(t, y):
    return np.array([
        -np.sin(y[0] * y[1]) + 0.5 * np.cos(t) * y[1],
        np.exp(-0.5 * y[0] ** 2) * np.cos(t + y[1]) - 0.2 * y[1] ** 2,
    ])


def _manufactured(t, y):
    # Nonlinear, coupled, non-autonomous 2-D system whose exact solution is
    # _manufactured_exact: f = g(t, y) - g(t, u(t)) + u'(t).
    u = _manufactured_exact(t)
    return _manufactured_g(t, y) - _manufactured_g(t, u) + \
        _manufactured_dexact(t)


PROBLEMS = {
    "rotation": (_rotation, _rotation_exact),
    "expsin": (_expsin, _expsin_exact),
    "manufactured": (_manufactured, _manufactured_exact),
}

T_END = 2 * np.pi
# Errors below these are too close to round-off to show the asymptotic
# slope.  Global errors accumulate ~1e-16 per step over up to 1024 steps
# (plus the rounding of the coefficients, ~1e-16 relative, which acts like a
# step-size independent error); a single step from exact data only carries
# ~1e-16 * |y|.  Both floors leave at least a factor 10 of head-room.
GLOBAL_ERROR_FLOOR = 1e-12
LOCAL_ERROR_FLOOR = 1e-13
STEP_COUNTS = [2 ** k for k in range(1, 11)]


def _observed_order(error_of_n, floor, exponent_shift=0):
    """Slope from the finest pair (N, 2N) whose finer error is above floor.

    ``error_of_n(N)`` is computed for N = 2, 4, 8, ...; the last pair before
    the error drops below `floor` is the most asymptotic one that is still
    free of round-off.  Returns ``log2(e(N) / e(2N)) - exponent_shift``.
    """
    prev = None
    best = None
    for n in STEP_COUNTS:
        err = error_of_n(n)
        if err < floor:
            break
        if prev is not None:
            best = np.log2(prev / err)
        prev = err
    assert best is not None, "errors never above the round-off floor"
    return best - exponent_shift


def _global_error(tab, problem, n, weights=None):
    """Max error over [0, T_END] of N fixed steps.

    With ``weights`` (an error vector over k_0..k_s) the propagated solution
    is the embedded one, ``y_new - h * weights @ K``.
    """
    f, exact = PROBLEMS[problem]
    h = T_END / n
    y = exact(0.0)
    err = 0.0
    for i in range(n):
        t = i * h
        y_new, K = _rk_step(tab, f, t, y, h)
        if weights is not None:
            y_new = y_new - h * (weights @ K)
        y = y_new
        err = max(err, float(np.max(np.abs(y - exact(t + h)))))
    return err


_THETAS = np.linspace(0.1, 0.9, 9)


def _dense_local_error(tab, problem, n):
    """Max interpolation error over [0, T_END]; every step starts exact."""
    f, exact = PROBLEMS[problem]
    h = T_END / n
    W = tab.dense_weights(_THETAS)
    err = 0.0
    for i in range(n):
        t = i * h
        y0 = exact(t)
        _, K = _rk_step(tab, f, t, y0, h, extras=True)
        y_dense = y0[:, None] + h * (K.T @ W)
        y_true = np.stack([exact(t + th * h) for th in _THETAS], axis=1)
        err = max(err, float(np.max(np.abs(y_dense - y_true))))
    return err


def _error_estimate(tab, K, h):
    """Size of the step's error estimate (scipy's norm for DOP853)."""
    K = K[:tab.n_stages + 1]
    err5 = np.linalg.norm(tab.e @ K)
    if tab.e_low is None:
        return abs(h) * err5
    err3 = np.linalg.norm(tab.e_low @ K)
    return abs(h) * err5 ** 2 / np.sqrt(err5 ** 2 + 0.01 * err3 ** 2)


def _estimate_local(tab, problem, n):
    f, exact = PROBLEMS[problem]
    h = T_END / n
    out = 0.0
    for i in range(n):
        t = i * h
        _, K = _rk_step(tab, f, t, exact(t), h)
        out = max(out, _error_estimate(tab, K, h))
    return out


def test_observed_order_propagated(tab):
    # Global error on the rotation problem: O(h^order).  (RK45, Tsit5 and
    # Vern7 are tuned to have tiny principal error coefficients; on the
    # nonlinear problems their next-order term dominates all the way down to
    # round-off, so the slope there is not the order.  The nonlinear order
    # conditions are covered exactly by test_order_conditions_propagated.)
    p = _observed_order(lambda n: _global_error(tab, "rotation", n),
                        GLOBAL_ERROR_FLOOR)
    assert abs(p - tab.order) < ORDER_TOL, p


@pytest.mark.parametrize("problem", ["manufactured", "rotation"])
def test_observed_order_embedded(tab, problem):
    # Global error of the embedded solution on a nonlinear non-autonomous
    # system and on the rotation: O(h^q), q = EMBEDDED_ORDER.
    q = _observed_order(lambda n: _global_error(tab, problem, n, tab.e),
                        GLOBAL_ERROR_FLOOR)
    assert abs(q - EMBEDDED_ORDER[tab.name]) < ORDER_TOL, q
    if tab.e_low is not None:
        q = _observed_order(
            lambda n: _global_error(tab, problem, n, tab.e_low),
            GLOBAL_ERROR_FLOOR)
        assert abs(q - EMBEDDED_LOW_ORDER[tab.name]) < ORDER_TOL, q


def test_observed_order_dense(tab):
    # Local interpolation error O(h^(dense_order + 1)) on y' = y cos t.
    p = _observed_order(lambda n: _dense_local_error(tab, "expsin", n),
                        LOCAL_ERROR_FLOOR, exponent_shift=1)
    assert abs(p - tab.dense_order) < ORDER_TOL, p


def test_observed_order_error_estimate(tab):
    # The estimate the step-size controller sees scales like
    # h^(error_order + 1) (for DOP853 the combined scipy estimate, h^8).
    p = _observed_order(lambda n: _estimate_local(tab, "rotation", n),
                        LOCAL_ERROR_FLOOR, exponent_shift=1)
    assert abs(p - tab.error_order) < ORDER_TOL, p
