"""Tests of the Rosenbrock coefficient data (diffsens._rosenbrock_tableaus).

Pure numpy: nothing here touches the compiled kernels.  The checks:

* the consistency checks of ``RosenbrockTableau.__post_init__`` pass for the
  shipped data and fire (``ValueError``) on corrupted copies;
* exact order conditions: the Rosenbrock elementary weights of all rooted
  trees (Hairer & Wanner II, IV.7) show that ``y_new``, ``y_new - err`` and
  the dense output have exactly the documented orders;
* observed convergence of a small fixed-step numpy stepper for the generic
  transformed form (dense Jacobian in closed form, ``np.linalg.solve`` for
  ``M/(gamma h) - J``) on a nonlinear non-autonomous problem, also with a
  mass matrix ``M != I``; the ``df/dt`` and mass-matrix conventions are shown
  to matter (the wrong variants lose order);
* stiff behaviour (L-stability, stiff accuracy) on
  ``y' = lambda (y - cos t) - sin t`` with ``lambda = -1e6``;
* Rosenbrock23: the generic form reproduces Shampine & Reichelt's ode23s
  formulas (k-variables) to rounding.
"""

import dataclasses

import numpy as np
import pytest

from _rosenbrock_step import generic_step as _ros_step
from _trees import density, rooted_trees
from diffsens import _rosenbrock_tableaus as _mod

RosenbrockTableau = _mod.RosenbrockTableau
ROSENBROCK_TABLEAUS = _mod.ROSENBROCK_TABLEAUS

NAMES = ["Rosenbrock23", "Rodas4", "Rodas5P"]

# (s, q): stages, dense-output rows.
SHAPES = {"Rosenbrock23": (3, 1), "Rodas4": (6, 2), "Rodas5P": (8, 3)}
# (order, error_order, dense_order).
ORDERS = {"Rosenbrock23": (2, 2, 2), "Rodas4": (4, 3, 3),
          "Rodas5P": (5, 4, 4)}

ORDER_TOL = 0.25


@pytest.fixture(params=NAMES)
def tab(request):
    return ROSENBROCK_TABLEAUS[request.param]


# ---------------------------------------------------------------------------
# Structure and consistency
# ---------------------------------------------------------------------------

def test_registry():
    assert list(ROSENBROCK_TABLEAUS) == NAMES
    for name, t in ROSENBROCK_TABLEAUS.items():
        assert isinstance(t, RosenbrockTableau)
        assert t.name == name
        assert (t.order, t.error_order, t.dense_order) == ORDERS[name]


def test_shapes_and_derived_sizes(tab):
    s, q = SHAPES[tab.name]
    assert (tab.n_stages, tab.n_dense) == (s, q)
    assert tab.a.shape == tab.c.shape == (s, s)
    for arr in (tab.alpha, tab.gammas, tab.m, tab.e):
        assert arr.shape == (s,)
    assert tab.H.shape == (q, s)
    for arr in (tab.a, tab.c, tab.alpha, tab.gammas, tab.m, tab.e, tab.H,
                tab.gamma_matrix, tab.alpha_matrix, tab.b, tab.b_embedded):
        assert arr.dtype == np.float64 and arr.flags.c_contiguous
        assert not arr.flags.writeable
    assert isinstance(tab.gamma, float)


def test_immutable(tab):
    with pytest.raises(ValueError):
        tab.m[0] = 1.0
    with pytest.raises(ValueError):
        tab.gamma_matrix[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        tab.gamma = 1.0


def test_consistency_relations(tab):
    # What __post_init__ enforces (in exact arithmetic), restated in floats.
    s = tab.n_stages
    assert np.all(np.triu(tab.a) == 0.0) and np.all(np.triu(tab.c) == 0.0)
    G = np.linalg.inv(np.eye(s) / tab.gamma - tab.c)
    np.testing.assert_allclose(G, tab.gamma_matrix, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(np.diag(tab.gamma_matrix), tab.gamma)
    assert tab.gammas[0] == tab.gamma
    # gammas_i = sum_{j<=i} gamma_ij (diagonal included) ...
    np.testing.assert_allclose(G.sum(axis=1), tab.gammas, rtol=0,
                               atol=1e-13)
    # ... and alpha = row sums of a @ Gamma -- *not* of a itself.
    np.testing.assert_allclose((tab.a @ G).sum(axis=1), tab.alpha, rtol=0,
                               atol=1e-13)
    assert tab.alpha[0] == 0.0 and np.all(tab.a[0] == 0.0)
    assert np.max(np.abs(tab.a.sum(axis=1) - tab.alpha)) > 0.1
    # Order 1 of y_new, y_new - err, and of every dense row.
    assert abs(tab.m @ tab.gammas - 1.0) < 1e-13
    assert abs(tab.e @ tab.gammas) < 1e-13
    np.testing.assert_allclose(tab.H @ tab.gammas, 0.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tab.b.sum(), 1.0, rtol=0, atol=1e-13)
    np.testing.assert_allclose(tab.b_embedded.sum(), 1.0, rtol=0,
                               atol=1e-13)
    # Dense output: 0 at theta = 0, y_new at theta = 1 (whatever H is).
    np.testing.assert_array_equal(tab.dense_weights(0.0), 0.0)
    np.testing.assert_array_equal(tab.dense_weights(1.0), tab.m)


def test_structural_flags():
    r23, r4, r5 = (ROSENBROCK_TABLEAUS[n] for n in NAMES)
    # Rodas methods: y_new = last stage argument + U_{s-1}; err = U_{s-1},
    # so the embedded solution is the last stage's argument.
    for t in (r4, r5):
        assert t.stiffly_accurate and not t.fsal
        np.testing.assert_array_equal(t.e, np.eye(t.n_stages)[-1])
        np.testing.assert_array_equal(t.m[:-1], t.a[-1, :-1])
        assert t.alpha[-1] == t.alpha[-2] == 1.0
        assert t.gammas[-1] == 0.0
        assert t.error_is_last_stage
    # The stage arguments the C step extends from the previous stage's: the
    # last stage of Rodas4, the last two of Rodas5P (none of Rosenbrock23).
    np.testing.assert_array_equal(r4.argument_steps, [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(r5.argument_steps, [0, 0, 0, 0, 0, 0, 1, 1])
    for t in (r4, r5):
        for i in np.flatnonzero(t.argument_steps):
            np.testing.assert_array_equal(t.a[i, :i - 1], t.a[i - 1, :i - 1])
    assert not r23.argument_steps.any() and not r23.error_is_last_stage
    # Rosenbrock23: its third stage is f(t + h, y_new).
    assert r23.fsal and not r23.stiffly_accurate
    d = 1.0 / (2.0 + np.sqrt(2.0))
    assert abs(r23.gamma - d) < 1e-16
    np.testing.assert_allclose(r23.gammas, [d, 0.0, -d], rtol=1e-15)


def test_l_stability(tab):
    # R(inf) = 0 for all three (L-stable), also seen by stepping y' = l y.
    assert abs(tab.stability_at_infinity) < 1e-13
    for z in (-1e8, -1e12):
        y_new, _, _ = _ros_step(tab, lambda t, y: z * y,
                                lambda t, y: np.array([[z]]),
                                lambda t, y: np.zeros(1), 0.0, np.ones(1),
                                1.0)
        assert abs(y_new[0]) < 1e-6


def test_dense_weights_match_nested_form(tab):
    rng = np.random.default_rng(3)
    U = rng.standard_normal((tab.n_stages, 4))
    y = rng.standard_normal(4)
    y_new = y + tab.m @ U
    for theta in np.linspace(0.0, 1.0, 7):
        nested = _dense(tab, y, y_new, U, theta)
        np.testing.assert_allclose(y + tab.dense_weights(theta) @ U, nested,
                                   rtol=1e-13, atol=1e-13)
    W = tab.dense_weights(np.array([0.25, 0.5]))
    assert W.shape == (tab.n_stages, 2)
    np.testing.assert_array_equal(W[:, 1], tab.dense_weights(0.5))


def _corruptions(tab):
    """(label, field changes, expected message fragment) for one tableau."""
    s = tab.n_stages
    out = []

    def changed(field, fn):
        arr = np.array(getattr(tab, field))
        fn(arr)
        return {field: arr}

    def bump(idx, delta):
        def fn(arr):
            arr[idx] += delta
        return fn

    out.append(("a upper", changed("a", bump((0, s - 1), 0.1)),
                "strictly lower triangular"))
    out.append(("c diagonal", changed("c", bump((1, 1), 0.1)),
                "strictly lower triangular"))
    out.append(("a entry", changed("a", bump((s - 1, 0), 1e-8)),
                "alpha[%d]" % (s - 1)))
    out.append(("c entry", changed("c", bump((s - 1, 0), 1e-8)),
                "gammas[%d]" % (s - 1)))
    out.append(("alpha", changed("alpha", bump(1, 1e-8)), "alpha[1]"))
    out.append(("gammas", changed("gammas", bump(1, 1e-8)), "gammas[1]"))
    out.append(("gamma", {"gamma": tab.gamma * (1 + 1e-8)}, "gammas[0]"))
    out.append(("gamma sign", {"gamma": -tab.gamma}, "positive"))
    out.append(("m", changed("m", bump(0, 1e-8)), "m . gammas"))
    # (A rescaled e is consistent: for the Rodas methods err = U_{s-1} =
    # y_new - y_emb has vanishing low-order weights; only its size matters.)
    out.append(("e", changed("e", bump(0, 1e-8)), "m - e"))
    out.append(("e order 2", changed("e", bump(1, 1e-8)), "m - e"))
    out.append(("e zero", {"e": np.zeros(s)}, "identically zero"))
    out.append(("H", changed("H", bump((0, 0), 1e-8)), "H[0]"))
    out.append(("H scale", {"H": 1.001 * tab.H}, "dense output order"))
    out.append(("m shape", {"m": tab.m[:-1]}, "shape"))
    out.append(("H shape", {"H": tab.H[:, :-1]}, "shape"))
    out.append(("H empty", {"H": np.zeros((0, s))}, "shape"))
    out.append(("orders", {"error_order": tab.order + 1}, "error_order"))
    out.append(("dense order", {"dense_order": tab.order + 1},
                "dense_order"))
    out.append(("nan", changed("c", bump((1, 0), np.nan)), "non-finite"))
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
            if label != "nan":
                assert tab.name in str(exc)
        else:
            pytest.fail(f"corruption {label!r} of {tab.name} not detected")


def test_order_two_corruption_detected(tab):
    # A change of y_new's weights that keeps order 1 (m . gammas = 1) but
    # breaks order 2 (m . Gamma (alpha + gammas) = 1/2) is caught.
    g = tab.gammas
    v = tab.gamma_matrix @ (tab.alpha + tab.gammas)
    w = v - (v @ g) / (g @ g) * g       # w . gammas = 0
    w *= 1e-8 / (w @ v)                  # w . v = 1e-8
    m = tab.m + w
    with pytest.raises(ValueError, match="order 2: m "):
        dataclasses.replace(tab, m=m)
    # The same for the dense output (H[0] . v = -1/2).
    H = np.array(tab.H)
    H[0] += w
    with pytest.raises(ValueError, match=r"dense output order 2: H\[0\]"):
        dataclasses.replace(tab, H=H)


# ---------------------------------------------------------------------------
# Exact order conditions (Rosenbrock trees)
# ---------------------------------------------------------------------------

TREES, TREE_SIZE = rooted_trees(7)


def _density(tree):
    return density(tree, TREE_SIZE)


def test_tree_counts():
    assert [len(TREES[k]) for k in range(1, 8)] == [1, 1, 2, 4, 9, 20, 48]


def _phi(tree, alpha, G, store):
    """Elementary weights (over the k-variables) of one tree.

    ``k_i = h f(y + sum_j alpha_ij k_j) + h J sum_j gamma_ij k_j`` gives
    ``phi_i(tau) = 1`` and ``phi_i([t_1..t_m]) = prod_l (alpha phi(t_l))_i
    + [m == 1] (Gamma phi(t_1))_i`` (Hairer & Wanner II, IV.7: the single-
    child trees carry ``beta_ij = alpha_ij + gamma_ij``).
    """
    if tree not in store:
        v = np.ones(alpha.shape[0])
        for child in tree:
            v = v * (alpha @ _phi(child, alpha, G, store))
        if len(tree) == 1:
            v = v + G @ _phi(tree[0], alpha, G, store)
        store[tree] = v
    return store[tree]


def _dense_power_matrix(tab):
    """P (s, q+1): dense weights on U as sum_j P[:, j] theta^(j+1)."""
    s, q = tab.n_stages, tab.n_dense
    P = np.zeros((s, q + 1))
    P[:, 0] = tab.m + tab.H[0]
    for j in range(1, q):
        P[:, j] = tab.H[j] - tab.H[j - 1]
    P[:, q] = -tab.H[q - 1]
    return P


def _observed_tree_order(tab, W):
    """Largest ``p`` such that all order conditions ``<= p`` hold.

    ``W`` (s, d) are weights over ``U``: column j multiplies theta^(j+1)
    (d = 1 for a plain solution).  Converted to the k-variables with
    ``Gamma`` (``U = Gamma k``), the conditions read ``density(t) *
    W_k^T phi(t) = unit vector of degree |t|`` (for d = 1: = 1).  Residuals
    are judged relative to the same sums taken with absolute values;
    satisfied conditions come out below 1e-14, violated ones above 5e-5
    (Rodas5P at order 6), so the threshold 1e-11 is unambiguous.

    Returns
    -------
    order : int
    first_violation : float
        Largest relative residual among the trees of order ``order + 1``.
    """
    G, alpha = tab.gamma_matrix, tab.alpha_matrix
    Wk = G.T @ W
    Wk_abs = np.abs(G).T @ np.abs(W)
    store, store_abs = {}, {}
    d = W.shape[1]
    for k in range(1, max(TREES) + 1):
        worst = 0.0
        for tree in TREES[k]:
            g = _density(tree)
            val = g * (Wk.T @ _phi(tree, alpha, G, store))
            scale = g * (Wk_abs.T @ _phi(tree, np.abs(alpha), np.abs(G),
                                          store_abs))
            target = np.ones(1) if d == 1 else (
                np.eye(d)[k - 1] if k <= d else np.zeros(d))
            worst = max(worst, float(np.max(
                np.abs(val - target) / np.maximum(scale, 1.0))))
        if worst > 1e-11:
            return k - 1, worst
    return max(TREES), 0.0


def test_order_conditions_propagated(tab):
    order, viol = _observed_tree_order(tab, tab.m[:, None])
    assert order == tab.order
    assert viol > 1e-6  # genuinely not of order + 1


def test_order_conditions_embedded(tab):
    order, viol = _observed_tree_order(tab, (tab.m - tab.e)[:, None])
    assert order == tab.error_order
    assert viol > 1e-6
    if tab.name == "Rosenbrock23":
        # err = y3 - y_new: the 3rd-order solution of ode23s is y_new + err.
        order3, viol = _observed_tree_order(tab, (tab.m + tab.e)[:, None])
        assert order3 == 3 and viol > 1e-6


def test_order_conditions_dense(tab):
    order, viol = _observed_tree_order(tab, _dense_power_matrix(tab))
    assert order == tab.dense_order
    assert viol > 1e-6


def test_dense_power_matrix_is_dense_weights(tab):
    P = _dense_power_matrix(tab)
    for theta in (0.1, 0.6, 1.0):
        np.testing.assert_allclose(
            P @ theta ** np.arange(1, tab.n_dense + 2),
            tab.dense_weights(theta), rtol=1e-14, atol=1e-13)


# ---------------------------------------------------------------------------
# Reference stepper for the generic transformed form
# ---------------------------------------------------------------------------

def _dense(tab, y, y_new, U, theta):
    """Nested dense output (1-th) y + th (y_new + (1-th)(K0 + th (K1 ..)))."""
    K = tab.H @ U
    acc = K[-1]
    for r in range(tab.n_dense - 2, -1, -1):
        acc = K[r] + theta * acc
    return (1.0 - theta) * y + theta * (y_new + (1.0 - theta) * acc)


# A nonlinear, coupled, non-autonomous, non-stiff 2-D system with exact
# solution u(t): f = g(t, y) - g(t, u) + M u'  (M y' = f).

def _u(t):
    return np.array([np.exp(np.sin(t)) - 0.5, np.cos(t) + 0.3 * np.sin(2 * t)])


def _du(t):
    return np.array([np.cos(t) * np.exp(np.sin(t)),
                     -np.sin(t) + 0.6 * np.cos(2 * t)])


def _ddu(t):
    return np.array([(np.cos(t) ** 2 - np.sin(t)) * np.exp(np.sin(t)),
                     -np.cos(t) - 1.2 * np.sin(2 * t)])


def _g(t, y):
    return np.array([
        -np.sin(y[0] * y[1]) + 0.5 * np.cos(t) * y[1],
        np.exp(-0.5 * y[0] ** 2) * np.cos(t + y[1]) - 0.2 * y[1] ** 2,
    ])


def _g_y(t, y):
    ex = np.exp(-0.5 * y[0] ** 2)
    cs = np.cos(y[0] * y[1])
    return np.array([
        [-cs * y[1], -cs * y[0] + 0.5 * np.cos(t)],
        [-y[0] * ex * np.cos(t + y[1]), -ex * np.sin(t + y[1]) - 0.4 * y[1]],
    ])


def _g_t(t, y):
    return np.array([-0.5 * np.sin(t) * y[1],
                     -np.exp(-0.5 * y[0] ** 2) * np.sin(t + y[1])])


def _problem(M):
    """(f, jac, dfdt) of M y' = g(t, y) - g(t, u(t)) + M u'(t)."""
    def f(t, y):
        return _g(t, y) - _g(t, _u(t)) + M @ _du(t)

    def jac(t, y):
        return _g_y(t, y)

    def dfdt(t, y):
        u = _u(t)
        return _g_t(t, y) - _g_t(t, u) - _g_y(t, u) @ _du(t) + M @ _ddu(t)

    return f, jac, dfdt


def test_problem_derivatives():
    # The closed-form Jacobian and df/dt of the test problem are right.
    M = np.diag([2.0, 1.0])
    f, jac, dfdt = _problem(M)
    t, y = 0.7, np.array([0.4, -0.9])
    eps = 1e-6
    J_fd = np.column_stack([(f(t, y + eps * e) - f(t, y - eps * e)) / (2 * eps)
                            for e in np.eye(2)])
    np.testing.assert_allclose(jac(t, y), J_fd, rtol=1e-8, atol=1e-9)
    ft_fd = (f(t + eps, y) - f(t - eps, y)) / (2 * eps)
    np.testing.assert_allclose(dfdt(t, y), ft_fd, rtol=1e-8, atol=1e-9)
    # u solves M u' = f(t, u).
    for t in (0.0, 1.3, 2.9):
        np.testing.assert_allclose(M @ _du(t), f(t, _u(t)), atol=1e-15)


# ---------------------------------------------------------------------------
# Observed convergence
# ---------------------------------------------------------------------------

T_END = 3.0
STEP_COUNTS = [2 ** k for k in range(2, 9)]
# Errors below these are too close to round-off to show the asymptotic
# slope (global: ~1e-16 per step over up to 256 steps, with a factor 10 of
# head-room; local: a single step from exact data).
GLOBAL_ERROR_FLOOR = 1e-11
LOCAL_ERROR_FLOOR = 1e-13


def _observed_order(error_of_n, floor, exponent_shift=0):
    """Slope from the finest pair (N, 2N) whose finer error is above floor.

    ``error_of_n(N)`` is computed for N = 4, 8, 16, ...; the last pair before
    the error drops below `floor` is the most asymptotic one still free of
    round-off.  Returns ``log2(e(N) / e(2N)) - exponent_shift``.
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


def _global_error(tab, n, M=None, sign=0, **kw):
    """Max error over [0, T_END] of N fixed steps.

    ``sign = -1`` propagates the embedded solution ``y_new - err``,
    ``sign = +1`` propagates ``y_new + err``.
    """
    M = np.eye(2) if M is None else M
    f, jac, dfdt = _problem(M)
    h = T_END / n
    y = _u(0.0)
    out = 0.0
    for i in range(n):
        t = i * h
        y_new, err, _ = _ros_step(tab, f, jac, dfdt, t, y, h, M=M, **kw)
        y = y_new + sign * err
        out = max(out, float(np.max(np.abs(y - _u(t + h)))))
    return out


_THETAS = np.linspace(0.1, 0.9, 9)


def _local_errors(tab, n, M=None):
    """(max dense-output error, max |err|) over N steps that start exact."""
    M = np.eye(2) if M is None else M
    f, jac, dfdt = _problem(M)
    h = T_END / n
    dense_err = est = 0.0
    for i in range(n):
        t = i * h
        y0 = _u(t)
        y_new, err, U = _ros_step(tab, f, jac, dfdt, t, y0, h, M=M)
        for theta in _THETAS:
            d = _dense(tab, y0, y_new, U, theta) - _u(t + theta * h)
            dense_err = max(dense_err, float(np.max(np.abs(d))))
        est = max(est, float(np.max(np.abs(err))))
    return dense_err, est


def test_observed_order_propagated(tab):
    p = _observed_order(lambda n: _global_error(tab, n), GLOBAL_ERROR_FLOOR)
    assert abs(p - tab.order) < ORDER_TOL, p


def test_observed_order_embedded(tab):
    q = _observed_order(lambda n: _global_error(tab, n, sign=-1),
                        GLOBAL_ERROR_FLOOR)
    assert abs(q - tab.error_order) < ORDER_TOL, q
    if tab.name == "Rosenbrock23":
        q3 = _observed_order(lambda n: _global_error(tab, n, sign=+1),
                             GLOBAL_ERROR_FLOOR)
        assert abs(q3 - 3) < ORDER_TOL, q3


def test_observed_order_dense(tab):
    # Local interpolation error O(h^(dense_order + 1)).
    p = _observed_order(lambda n: _local_errors(tab, n)[0],
                        LOCAL_ERROR_FLOOR, exponent_shift=1)
    assert abs(p - tab.dense_order) < ORDER_TOL, p


def test_observed_order_error_estimate(tab):
    # What the controller sees: |err| ~ h^(error_order + 1) (its exponent is
    # 1 / (error_order + 1)).
    p = _observed_order(lambda n: _local_errors(tab, n)[1],
                        LOCAL_ERROR_FLOOR, exponent_shift=1)
    assert abs(p - tab.error_order) < ORDER_TOL, p


@pytest.mark.parametrize("name", NAMES)
def test_observed_order_mass_matrix(name):
    # M y' = f with M = diag(2, 1) (f built so the solution is still u(t)).
    tab = ROSENBROCK_TABLEAUS[name]
    M = np.diag([2.0, 1.0])
    p = _observed_order(lambda n: _global_error(tab, n, M=M),
                        GLOBAL_ERROR_FLOOR)
    assert abs(p - tab.order) < ORDER_TOL, p
    q = _observed_order(lambda n: _global_error(tab, n, M=M, sign=-1),
                        GLOBAL_ERROR_FLOOR)
    assert abs(q - tab.error_order) < ORDER_TOL, q
    d = _observed_order(lambda n: _local_errors(tab, n, M=M)[0],
                        LOCAL_ERROR_FLOOR, exponent_shift=1)
    assert abs(d - tab.dense_order) < ORDER_TOL, d


@pytest.mark.parametrize("name", ["Rodas4", "Rodas5P"])
def test_wrong_conventions_lose_order(name):
    # Negative controls: the test problem does discriminate the conventions.
    # gammas without the diagonal gamma (the other reading of gamma_i) ...
    tab = ROSENBROCK_TABLEAUS[name]
    wrong = tab.gammas - tab.gamma
    p = _observed_order(lambda n: _global_error(tab, n, gammas=wrong),
                        GLOBAL_ERROR_FLOOR)
    assert p < tab.order - 1.5, p
    # ... or M not applied to the c-terms.
    M = np.diag([2.0, 1.0])
    p = _observed_order(
        lambda n: _global_error(tab, n, M=M, mass_on_c=False),
        GLOBAL_ERROR_FLOOR)
    assert p < tab.order - 1.5, p


# ---------------------------------------------------------------------------
# Stiff problem: y' = lambda (y - cos t) - sin t, solution cos t
# ---------------------------------------------------------------------------

LAMBDA = -1e6


def _stiff_problem():
    def f(t, y):
        return LAMBDA * (y - np.cos(t)) - np.sin(t)

    def jac(t, y):
        return np.array([[LAMBDA]])

    def dfdt(t, y):
        return np.array([LAMBDA * np.sin(t) - np.cos(t)])

    return f, jac, dfdt


# Max |y - cos t| on the slow manifold; Rosenbrock23 (not stiffly accurate)
# has an O(h^2) error there, the Rodas methods are accurate to 1e-8 or so.
STIFF_TOL = {"Rosenbrock23": lambda h: 0.2 * h ** 2,
             "Rodas4": lambda h: 1e-7, "Rodas5P": lambda h: 1e-8}
# Dense-output error bound, relative to h (the interpolants are less
# accurate than the steps on a stiff problem, but stay bounded).
STIFF_DENSE_TOL = {"Rosenbrock23": 0.1, "Rodas4": 0.01, "Rodas5P": 0.01}


def _stiff_run(tab, y0, h, t_end=10.0):
    """Errors of y_new (per step) and max dense error after the first step."""
    f, jac, dfdt = _stiff_problem()
    y = np.array([y0])
    devs, dense_dev = [], 0.0
    for i in range(int(round(t_end / h))):
        t = i * h
        y_old = y
        y, _, U = _ros_step(tab, f, jac, dfdt, t, y, h)
        devs.append(abs(y[0] - np.cos(t + h)))
        assert np.isfinite(y[0])
        if i > 0:
            for theta in (0.25, 0.5, 0.75):
                yd = _dense(tab, y_old, y, U, theta)
                dense_dev = max(dense_dev,
                                abs(yd[0] - np.cos(t + theta * h)))
    return np.array(devs), dense_dev


@pytest.mark.parametrize("h", [0.05, 0.5])
def test_stiff_large_steps(tab, h):
    # |h lambda| = 5e4 .. 5e5: started on the solution, the steps stay
    # bounded and close to cos t, the dense output too.
    tol = STIFF_TOL[tab.name](h)
    devs, dense_dev = _stiff_run(tab, 1.0, h)
    assert devs.max() < tol, devs.max()
    assert dense_dev < STIFF_DENSE_TOL[tab.name] * h, dense_dev
    # A transient of size 1 (y0 = 2) is damped in the first step: R(inf) = 0
    # and |R(z)| = O(1/|z|) ...
    devs, _ = _stiff_run(tab, 2.0, h)
    assert devs[0] < 50.0 / abs(h * LAMBDA) + tol, devs[0]
    # ... and is gone after a few more.
    assert devs[5:].max() < tol, devs[5:].max()


# ---------------------------------------------------------------------------
# Rosenbrock23: generic form == Shampine & Reichelt's k-form
# ---------------------------------------------------------------------------

def _ode23s_step(f, jac, dfdt, t, y, h):
    """ode23s / OrdinaryDiffEq Rosenbrock23 in its k-variables (M = I)."""
    d = 1.0 / (2.0 + np.sqrt(2.0))
    e32 = 6.0 + np.sqrt(2.0)
    n = y.shape[0]
    W = np.eye(n) - h * d * jac(t, y)
    T = dfdt(t, y)
    f0 = f(t, y)
    k1 = np.linalg.solve(W, f0 + h * d * T)
    f1 = f(t + h / 2, y + h / 2 * k1)
    k2 = np.linalg.solve(W, f1 - k1) + k1
    y_new = y + h * k2
    f2 = f(t + h, y_new)
    k3 = np.linalg.solve(W, f2 - e32 * (k2 - f1) - 2 * (k1 - f0) + h * d * T)
    err = h / 6 * (k1 - 2 * k2 + k3)

    def dense(theta):
        return y + h * (theta * (1 - theta) / (1 - 2 * d) * k1
                        + theta * (theta - 2 * d) / (1 - 2 * d) * k2)

    return y_new, err, dense


def _forced_vdp():
    # Van der Pol with mu = 100 plus a time-dependent forcing: nonlinear,
    # non-autonomous, stiff-ish (|h J| up to ~1e2 for the steps below).
    mu = 100.0

    def f(t, y):
        return np.array([y[1],
                         mu * ((1 - y[0] ** 2) * y[1] - y[0])
                         + 3 * np.sin(2 * t) + np.cos(t) * y[0]])

    def jac(t, y):
        return np.array([[0.0, 1.0],
                         [mu * (-2 * y[0] * y[1] - 1) + np.cos(t),
                          mu * (1 - y[0] ** 2)]])

    def dfdt(t, y):
        return np.array([0.0, 6 * np.cos(2 * t) - np.sin(t) * y[0]])

    return f, jac, dfdt


def test_rosenbrock23_equivalence():
    tab = ROSENBROCK_TABLEAUS["Rosenbrock23"]
    f, jac, dfdt = _forced_vdp()
    rng = np.random.default_rng(7)
    for t, y, h in [(0.3, np.array([2.0, 0.0]), 0.01),
                    (1.1, np.array([-1.5, 0.7]), 0.1),
                    (2.0, np.array([0.3, -2.0]), 0.5)] + [
            (rng.uniform(0, 5), rng.uniform(-2, 2, 2),
             10 ** rng.uniform(-3, 0)) for _ in range(5)]:
        y_ref, err_ref, dense_ref = _ode23s_step(f, jac, dfdt, t, y, h)
        y_new, err, U = _ros_step(tab, f, jac, dfdt, t, y, h)
        # The two forms round differently; the differences are of the
        # order of eps times the largest intermediate (|y|, |U_i|; large
        # steps have |U| >> |y| and cancel in y_new), amplified by the
        # condition of W in the two forms' different solves (h = 0.5 here
        # differs by 1.3e-14 relative with one LAPACK build, cond(W) = 12.6).
        scale = max(1.0, float(np.max(np.abs(y))), float(np.max(np.abs(U))))
        W = np.eye(2) - h * tab.gamma * jac(t, y)
        solved = 16 * np.finfo(float).eps * np.linalg.cond(W) * scale
        np.testing.assert_allclose(y_new, y_ref, rtol=0, atol=solved)
        # err = y3 - y_new: OrdinaryDiffEq's utilde, same sign.
        np.testing.assert_allclose(err, err_ref, rtol=0, atol=solved)
        for theta in np.linspace(0.0, 1.0, 11):
            np.testing.assert_allclose(_dense(tab, y, y_new, U, theta),
                                       dense_ref(theta), rtol=0, atol=solved)
        # And the stage variables are the documented combinations of h k_i.
        d = tab.gamma
        W = np.eye(2) - h * d * jac(t, y)
        k1 = np.linalg.solve(W, f(t, y) + h * d * dfdt(t, y))
        np.testing.assert_allclose(U[0], d * h * k1, rtol=1e-13,
                                   atol=1e-15 * scale)
