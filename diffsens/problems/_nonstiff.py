"""Non-stiff test problems: Lotka-Volterra, Pleiades, Arenstorf, Lorenz-96.

All reference values are typed in below; the offline computations that
produced them are described in each problem's ``ref_source``.
"""

from __future__ import annotations

import numpy as np

from ._problem import Problem

__all__ = [
    "LOTKA_VOLTERRA",
    "PLEIADES",
    "ARENSTORF",
    "ARENSTORF_PERIOD",
    "LORENZ96",
    "lotka_volterra_first_integral",
]


# ---------------------------------------------------------------------------
# Lotka-Volterra
# ---------------------------------------------------------------------------

def _lotka_volterra_fun(t, y, p):
    a, b, c, d = p
    x, z = y
    return np.array([a * x - b * x * z, -c * z + d * x * z])


def _lotka_volterra_jac(t, y, p):
    a, b, c, d = p
    x, z = y
    return np.array([[a - b * z, -b * x],
                     [d * z, -c + d * x]])


def lotka_volterra_first_integral(y, p):
    """First integral of the Lotka-Volterra system.

    For ``x' = a x - b x y``, ``y' = -c y + d x y`` the quantity

    .. math:: V(x, y) = d x - c \\ln x + b y - a \\ln y

    is constant along every solution with ``x, y > 0``.

    Parameters
    ----------
    y : array_like, shape (2,) or (2, k)
        State(s) ``(x, y)``; a 2-D array holds one state per column, as in
        the ``y`` attribute returned by :func:`scipy.integrate.solve_ivp`.
    p : array_like, shape (4,)
        Parameters ``(a, b, c, d)``.

    Returns
    -------
    float or ndarray
        ``V`` for each state.

    Examples
    --------
    >>> from diffsens.problems import LOTKA_VOLTERRA as prob
    >>> from diffsens.problems import lotka_volterra_first_integral as V
    >>> bool(abs(V(prob.y_ref, prob.p) - V(prob.y0, prob.p)) < 1e-14)
    True
    """
    a, b, c, d = np.asarray(p, dtype=np.float64)
    x, z = np.asarray(y, dtype=np.float64)
    return d * x - c * np.log(x) + b * z - a * np.log(z)


LOTKA_VOLTERRA = Problem(
    name="lotka_volterra",
    description=("Lotka-Volterra predator-prey model x' = a x - b x y, "
                 "y' = -c y + d x y (Lotka 1925, Volterra 1926; "
                 "HNW I, Sec. I.16)"),
    fun=_lotka_volterra_fun,
    jac=_lotka_volterra_jac,
    y0=[1.0, 1.0],
    p=[1.5, 1.0, 3.0, 1.0],
    t_span=(0.0, 10.0),
    t_eval=np.linspace(0.0, 10.0, 101),
    y_ref=[1.0263447675750893, 0.90969107813604162],
    ref_source=(
        "mpmath.odefun (Taylor series) at mp.dps=40, rounded to 17 "
        "significant digits; an independent adaptive Gragg-Bulirsch-Stoer "
        "extrapolation in mpmath (order 24, tol 1e-32) agrees to 1e-28, "
        "scipy DOP853 (rtol 1e-13, atol 1e-15) to 8e-14 relative"),
    stiff=False,
)


# ---------------------------------------------------------------------------
# Pleiades (PLEI)
# ---------------------------------------------------------------------------

_PLEI_EYE = np.eye(7)


def _pleiades_fun(t, y, p):
    # p holds the seven masses (G = 1); dx[i, j] = x_j - x_i.
    x = y[0:7]
    z = y[7:14]
    dx = x[np.newaxis, :] - x[:, np.newaxis]
    dz = z[np.newaxis, :] - z[:, np.newaxis]
    r2 = dx * dx + dz * dz + _PLEI_EYE  # unit diagonal avoids 0/0
    w = p / (r2 * np.sqrt(r2))
    w = w - w * _PLEI_EYE
    return np.concatenate((y[14:28], (w * dx).sum(axis=1),
                           (w * dz).sum(axis=1)))


def _pleiades_jac(t, y, p):
    x = y[0:7]
    z = y[7:14]
    dx = x[np.newaxis, :] - x[:, np.newaxis]
    dz = z[np.newaxis, :] - z[:, np.newaxis]
    r2 = dx * dx + dz * dz + _PLEI_EYE
    mr3 = p / (r2 * np.sqrt(r2))          # m_j / r_ij^3
    mr5 = 3.0 * mr3 / r2                   # 3 m_j / r_ij^5
    off = 1.0 - _PLEI_EYE
    wxx = (mr3 - mr5 * dx * dx) * off      # d(ax_i)/d(x_j), j != i
    wxz = -mr5 * dx * dz * off             # d(ax_i)/d(z_j) = d(az_i)/d(x_j)
    wzz = (mr3 - mr5 * dz * dz) * off      # d(az_i)/d(z_j), j != i
    jac = np.zeros((28, 28))
    jac[np.arange(14), np.arange(14, 28)] = 1.0
    jac[14:21, 0:7] = wxx - np.diag(wxx.sum(axis=1))
    jac[14:21, 7:14] = wxz - np.diag(wxz.sum(axis=1))
    jac[21:28, 0:7] = jac[14:21, 7:14]
    jac[21:28, 7:14] = wzz - np.diag(wzz.sum(axis=1))
    return jac


PLEIADES = Problem(
    name="pleiades",
    description=("Pleiades: planar 7-body gravitational problem, masses "
                 "m_i = i, state (x, y, x', y') (HNW I, Sec. II.10; PLEI in "
                 "the Test Set for IVP Solvers, Mazzia & Magherini)"),
    fun=_pleiades_fun,
    jac=_pleiades_jac,
    y0=[3.0, 3.0, -1.0, -3.0, 2.0, -2.0, 2.0,        # x
        3.0, -3.0, 2.0, 0.0, 0.0, -4.0, 4.0,         # y
        0.0, 0.0, 0.0, 0.0, 0.0, 1.75, -1.5,         # x'
        0.0, 0.0, 0.0, -1.25, 1.0, 0.0, 0.0],        # y'
    p=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
    t_span=(0.0, 3.0),
    y_ref=[
        0.3706139143970502, 3.237284092057233, -3.222559032418324,
        0.6597091455775310, 0.3425581707156584, 1.562172101400631,
        -0.7003092922212495, -3.943437585517392, -3.271380973972550,
        5.225081843456543, -2.590612434977470, 1.198213693392275,
        -0.2429682344935824, 1.091449240428980, 3.417003806314313,
        1.354584501625501, -2.590065597810775, 2.025053734714242,
        -1.155815100160448, -0.8072988170223021, 0.5952396354208710,
        -3.741244961234010, 0.3773459685750630, 0.9386858869551073,
        0.3667922227200571, -0.3474046353808490, 2.344915448180937,
        -1.947020434263292,
    ],
    ref_source=(
        "published reference of the Test Set for IVP Solvers (plei.f, "
        "PSIDE at rtol=atol=1e-16, Cray C90; also in R deTestSet "
        "src/Ex_pleiades.f); verified here with an adaptive "
        "Gragg-Bulirsch-Stoer extrapolation in mpmath (dps 40, tol 1e-30, "
        "orders 16 and 24 agree to 3e-27): the published digits are "
        "correct to 1.8e-15 absolute, 2.9e-15 relative"),
    stiff=False,
)


# ---------------------------------------------------------------------------
# Arenstorf orbit
# ---------------------------------------------------------------------------

def _arenstorf_fun(t, y, p):
    mu = p[0]
    mup = 1.0 - mu
    x, z, vx, vz = y
    r1sq = (x + mu) ** 2 + z * z
    r2sq = (x - mup) ** 2 + z * z
    d1 = r1sq * np.sqrt(r1sq)
    d2 = r2sq * np.sqrt(r2sq)
    return np.array([
        vx,
        vz,
        x + 2.0 * vz - mup * (x + mu) / d1 - mu * (x - mup) / d2,
        z - 2.0 * vx - mup * z / d1 - mu * z / d2,
    ])


def _arenstorf_jac(t, y, p):
    mu = p[0]
    mup = 1.0 - mu
    x, z, vx, vz = y
    a = x + mu
    b = x - mup
    r1sq = a * a + z * z
    r2sq = b * b + z * z
    i1 = 1.0 / (r1sq * np.sqrt(r1sq))  # 1/r1^3
    i2 = 1.0 / (r2sq * np.sqrt(r2sq))
    k1 = 3.0 * i1 / r1sq                # 3/r1^5
    k2 = 3.0 * i2 / r2sq
    dxx = 1.0 - mup * (i1 - k1 * a * a) - mu * (i2 - k2 * b * b)
    dxz = mup * k1 * a * z + mu * k2 * b * z
    dzz = 1.0 - mup * (i1 - k1 * z * z) - mu * (i2 - k2 * z * z)
    return np.array([[0.0, 0.0, 1.0, 0.0],
                     [0.0, 0.0, 0.0, 1.0],
                     [dxx, dxz, 0.0, 2.0],
                     [dxz, dzz, -2.0, 0.0]])


#: Period of the Arenstorf orbit (HNW I, eq. (0.2)).
ARENSTORF_PERIOD = 17.0652165601579625588917206249

ARENSTORF = Problem(
    name="arenstorf",
    description=("Arenstorf orbit: periodic solution of the restricted "
                 "three-body problem (earth-moon), mu = 0.012277471, state "
                 "(x, y, x', y'), one period (Arenstorf 1963; HNW I, "
                 "Sec. II.0)"),
    fun=_arenstorf_fun,
    jac=_arenstorf_jac,
    y0=[0.994, 0.0, 0.0, -2.00158510637908252240537862224],
    p=[0.012277471],
    t_span=(0.0, ARENSTORF_PERIOD),
    y_ref=[0.99399999999999974, -8.5936769588733766e-16,
           -1.3977212690147212e-13, -2.0015851063791231],
    ref_source=(
        "adaptive Gragg-Bulirsch-Stoer extrapolation in mpmath (dps 40, "
        "tol 1e-30; tol 1e-24 agrees to 5e-20, order 16 to 2e-26), 17 "
        "significant digits; with the published 30-digit y0 and T the orbit "
        "closes only to |y(T) - y0| = 1.4e-13, so y_ref equals y0 to that "
        "accuracy"),
    stiff=False,
)


# ---------------------------------------------------------------------------
# Lorenz-96
# ---------------------------------------------------------------------------

def _lorenz96_fun(t, y, p):
    n = y.shape[0]
    i = np.arange(n)
    return (y[(i + 1) % n] - y[i - 2]) * y[i - 1] - y + p[0]


def _lorenz96_jac(t, y, p):
    n = y.shape[0]
    i = np.arange(n)
    jac = np.zeros((n, n))
    jac[i, (i + 1) % n] = y[i - 1]
    jac[i, i - 2] = -y[i - 1]
    jac[i, i - 1] = y[(i + 1) % n] - y[i - 2]
    jac[i, i] = -1.0
    return jac


_L96_Y0 = np.full(40, 8.0)
_L96_Y0[19] += 0.01

LORENZ96 = Problem(
    name="lorenz96",
    description=("Lorenz-96 model y_i' = (y_{i+1} - y_{i-2}) y_{i-1} - y_i "
                 "+ F, cyclic, 40 states, forcing F = 8, y0 = F with "
                 "y0[19] += 0.01 (Lorenz 1996)"),
    fun=_lorenz96_fun,
    jac=_lorenz96_jac,
    y0=_L96_Y0,
    p=[8.0],
    t_span=(0.0, 1.0),
    y_ref=[
        7.4232197623286312, 6.8313692688043300, 8.0751604911665975,
        8.7578085363175186, 8.0800009340974468, 7.5698429860880764,
        7.8893599957015587, 8.2048700880838816, 8.0518511153657177,
        7.8459103148284802, 7.9110310332105903, 8.0801675461253669,
        8.1690606373410796, 8.1639130031450174, 8.0342802991456207,
        7.7489056274079138, 7.5056800774886478, 7.6646768977712126,
        8.3303712586074158, 8.9647166581935615, 8.5064259056780288,
        6.9174876578883533, 6.0780811447478124, 7.2058697729763056,
        9.5585696663055443, 10.173648781260381, 6.7290836838793290,
        4.3509593646103764, 6.2478094214323564, 10.080745413099508,
        10.901197876847738, 5.9288440344869821, 4.2469346084015470,
        7.3693772243875661, 10.855145064816966, 9.2190639928326297,
        5.4905301886009147, 6.3336059693429987, 9.0477748622012783,
        9.5679442138858915,
    ],
    ref_source=(
        "adaptive Gragg-Bulirsch-Stoer extrapolation in mpmath (dps 40, "
        "tol 1e-30; tol 1e-24 agrees to 3e-22), 17 significant digits; "
        "scipy DOP853 (rtol 1e-13, atol 1e-15) agrees to 9e-11 relative"),
    stiff=False,
)
del _L96_Y0
