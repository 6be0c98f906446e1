"""Stiff test problems: HIRES, ROBER, POLLU and the 1-D Brusselator.

HIRES, ROBER and POLLU follow the Test Set for IVP Solvers (Mazzia &
Magherini, Univ. Bari) as carried by the R package deTestSet 1.1.7.4; the
parameter vectors are in the order of that definition (k1, k2, ...).
"""

from __future__ import annotations

import numpy as np

from ._problem import Problem

__all__ = ["HIRES", "ROBER", "ROBER_1E5", "POLLU", "BRUSSELATOR_1D",
           "BRUSSELATOR_BOUNDARY"]

_TESTSET_REF = (
    "Test Set for IVP Solvers (Mazzia & Magherini) reference, as carried by "
    "R deTestSet 1.1.7.4 (R/ex_reference.R): RADAU5 at rtol=atol=1.1e-18")


def _testset_ref(agreement):
    return (_TESTSET_REF + "; scipy Radau (rtol 1e-12, analytic jac) agrees "
            "to " + agreement + " relative")


# ---------------------------------------------------------------------------
# HIRES
# ---------------------------------------------------------------------------

def _hires_fun(t, y, p):
    k1, k2, k3, k4, k5, k6, k7, k8, k9, oks = p
    y1, y2, y3, y4, y5, y6, y7, y8 = y
    r = k7 * y6 * y8
    f7 = r - (k2 + k8 + k9) * y7
    return np.array([
        -k1 * y1 + k2 * y2 + k6 * y3 + oks,
        k1 * y1 - (k2 + k3) * y2,
        -(k6 + k1) * y3 + k2 * y4 + k5 * y5,
        k3 * y2 + k1 * y3 - (k4 + k2) * y4,
        -(k5 + k1) * y5 + k2 * (y6 + y7),
        -r + k8 * y4 + k1 * y5 - k2 * y6 + k8 * y7,
        f7,
        -f7,
    ])


def _hires_jac(t, y, p):
    k1, k2, k3, k4, k5, k6, k7, k8, k9, oks = p
    y6 = y[5]
    y8 = y[7]
    a = k7 * y8
    b = k7 * y6
    c = k2 + k8 + k9
    return np.array([
        [-k1, k2, k6, 0.0, 0.0, 0.0, 0.0, 0.0],
        [k1, -(k2 + k3), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, -(k6 + k1), k2, k5, 0.0, 0.0, 0.0],
        [0.0, k3, k1, -(k4 + k2), 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, -(k5 + k1), k2, k2, 0.0],
        [0.0, 0.0, 0.0, k8, k1, -a - k2, k8, -b],
        [0.0, 0.0, 0.0, 0.0, 0.0, a, -c, b],
        [0.0, 0.0, 0.0, 0.0, 0.0, -a, c, -b],
    ])


HIRES = Problem(
    name="hires",
    description=("HIRES: 8-species chemical model of plant light-dependent "
                 "morphogenesis (Schaefer 1975; HNW II, Sec. IV.10; HIRES in "
                 "the Test Set for IVP Solvers)"),
    fun=_hires_fun,
    jac=_hires_jac,
    y0=[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057],
    p=[1.71, 0.43, 8.32, 0.69, 0.035, 8.32, 280.0, 0.69, 0.69, 0.0007],
    t_span=(0.0, 321.8122),
    y_ref=[
        0.0007371312573325668, 0.0001442485726316185,
        5.888729740967575e-05, 0.001175651343283149,
        0.002386356198831331, 0.006238968252742796,
        0.002849998395185769, 0.002850001604814231,
    ],
    ref_source=_testset_ref("1.9e-14"),
    stiff=True,
)


# ---------------------------------------------------------------------------
# ROBER
# ---------------------------------------------------------------------------

def _rober_fun(t, y, p):
    k1, k2, k3 = p
    y1, y2, y3 = y
    a = k1 * y1
    b = k3 * y2 * y3
    c = k2 * y2 * y2
    return np.array([-a + b, a - b - c, c])


def _rober_jac(t, y, p):
    k1, k2, k3 = p
    y1, y2, y3 = y
    return np.array([
        [-k1, k3 * y3, k3 * y2],
        [k1, -k3 * y3 - 2.0 * k2 * y2, -k3 * y2],
        [0.0, 2.0 * k2 * y2, 0.0],
    ])


_ROBER_DESCRIPTION = (
    "ROBER: Robertson's autocatalytic reaction, 3 species, rates "
    "(k1, k2, k3) = (0.04, 3e7, 1e4) (Robertson 1966; HNW II, Sec. IV.1; "
    "ROBER in the Test Set for IVP Solvers)")

ROBER = Problem(
    name="rober",
    description=_ROBER_DESCRIPTION + ", t in [0, 1e11]",
    fun=_rober_fun,
    jac=_rober_jac,
    y0=[1.0, 0.0, 0.0],
    p=[0.04, 3.0e7, 1.0e4],
    t_span=(0.0, 1.0e11),
    y_ref=[2.083340149701255e-08, 8.333360770334713e-14, 0.999999979166505],
    ref_source=_testset_ref("7.1e-13"),
    stiff=True,
)

ROBER_1E5 = Problem(
    name="rober_1e5",
    description=_ROBER_DESCRIPTION + ", t in [0, 1e5], log-spaced output",
    fun=_rober_fun,
    jac=_rober_jac,
    y0=[1.0, 0.0, 0.0],
    p=[0.04, 3.0e7, 1.0e4],
    t_span=(0.0, 1.0e5),
    t_eval=np.logspace(-5, 5, 50),
    y_ref=None,
    ref_source="none (y1 + y2 + y3 = 1 is conserved exactly)",
    stiff=True,
)


# ---------------------------------------------------------------------------
# POLLU
# ---------------------------------------------------------------------------

# Reaction j (0-based) has rate r_j = k_j * y[_POLLU_A[j]] * y_ext[_POLLU_B[j]]
# where y_ext = (y, 1), i.e. index 20 stands for "no second reactant".
_POLLU_A = np.array([0, 1, 4, 6, 6, 6, 8, 8, 10, 10, 12, 9, 13,
                     0, 2, 3, 3, 15, 15, 16, 18, 18, 0, 18, 19])
_POLLU_B = np.array([20, 3, 1, 20, 20, 5, 20, 5, 1, 0, 20, 1, 20,
                     5, 20, 20, 20, 20, 20, 5, 20, 20, 3, 0, 20])

# Net stoichiometry: species (1-based) -> {reaction (1-based): coefficient},
# transcribed from the Test Set's right-hand side.
_POLLU_NET = (
    {1: -1, 10: -1, 14: -1, 23: -1, 24: -1,
     2: 1, 3: 1, 9: 1, 11: 1, 12: 1, 22: 1, 25: 1},    # y1
    {2: -1, 3: -1, 9: -1, 12: -1, 1: 1, 21: 1},         # y2
    {15: -1, 1: 1, 17: 1, 19: 1, 22: 1},                # y3
    {2: -1, 16: -1, 17: -1, 23: -1, 15: 1},             # y4
    {3: -1, 4: 2, 6: 1, 7: 1, 13: 1, 20: 1},            # y5
    {6: -1, 8: -1, 14: -1, 20: -1, 3: 1, 18: 2},        # y6
    {4: -1, 5: -1, 6: -1, 13: 1},                       # y7
    {4: 1, 5: 1, 6: 1, 7: 1},                           # y8
    {7: -1, 8: -1},                                     # y9
    {12: -1, 7: 1, 9: 1},                               # y10
    {9: -1, 10: -1, 8: 1, 11: 1},                       # y11
    {9: 1},                                             # y12
    {11: -1, 10: 1},                                    # y13
    {13: -1, 12: 1},                                    # y14
    {14: 1},                                            # y15
    {18: -1, 19: -1, 16: 1},                            # y16
    {20: -1},                                           # y17
    {20: 1},                                            # y18
    {21: -1, 22: -1, 24: -1, 23: 1, 25: 1},             # y19
    {25: -1, 24: 1},                                    # y20
)


def _pollu_stoichiometry():
    s = np.zeros((20, 25))
    for i, row in enumerate(_POLLU_NET):
        for j, coef in row.items():
            s[i, j - 1] = coef
    s.setflags(write=False)
    return s


_POLLU_S = _pollu_stoichiometry()
_POLLU_ONE = np.ones(1)


def _pollu_fun(t, y, p):
    y_ext = np.concatenate((y, _POLLU_ONE))
    return _POLLU_S @ (p * y[_POLLU_A] * y_ext[_POLLU_B])


def _pollu_jac(t, y, p):
    y_ext = np.concatenate((y, _POLLU_ONE))
    j = np.arange(25)
    drdy = np.zeros((25, 21))
    drdy[j, _POLLU_A] += p * y_ext[_POLLU_B]
    drdy[j, _POLLU_B] += p * y[_POLLU_A]
    return _POLLU_S @ drdy[:, :20]


POLLU = Problem(
    name="pollu",
    description=("POLLU: air-pollution model, 20 species, 25 reactions "
                 "(Verwer 1994; POLLU in the Test Set for IVP Solvers)"),
    fun=_pollu_fun,
    jac=_pollu_jac,
    y0=[0.0, 0.2, 0.0, 0.04, 0.0, 0.0, 0.1, 0.3, 0.01, 0.0,
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.007, 0.0, 0.0, 0.0],
    p=[0.35, 26.6, 12300.0, 0.00086, 0.00082, 15000.0, 0.00013, 24000.0,
       16500.0, 9000.0, 0.022, 12000.0, 1.88, 16300.0, 4800000.0, 0.00035,
       0.0175, 100000000.0, 444000000000.0, 1240.0, 2.1, 5.78, 0.0474,
       1780.0, 3.12],
    t_span=(0.0, 60.0),
    y_ref=[
        0.05646255480022769, 0.1342484130422339, 4.139734331099427e-09,
        0.005523140207484359, 2.018977262302196e-07, 1.464541863493966e-07,
        0.07784249118997964, 0.3245075353396018, 0.007494013383880406,
        1.622293157301561e-08, 1.135863833257075e-08, 0.002230505975721359,
        0.000208716288279863, 1.396921016840158e-05, 0.008964884856898295,
        4.352846369330103e-18, 0.006899219696263405, 0.0001007803037365946,
        1.772146513969984e-06, 5.682943292316392e-05,
    ],
    ref_source=_testset_ref("1.6e-14"),
    stiff=True,
)


# ---------------------------------------------------------------------------
# Brusselator, 1-D reaction-diffusion, method of lines
# ---------------------------------------------------------------------------

#: Dirichlet boundary values (u, v) at x = 0 and x = 1 (HNW II).
BRUSSELATOR_BOUNDARY = (1.0, 3.0)


def _brusselator_fun(t, y, p):
    A, B, alpha = p
    n = y.shape[0] // 2
    c = alpha * (n + 1) ** 2
    # w[k] = (u_k, v_k) for k = 0..n+1, including the boundary values
    w = np.empty((n + 2, 2), dtype=np.result_type(y, p))
    w[0] = BRUSSELATOR_BOUNDARY
    w[-1] = BRUSSELATOR_BOUNDARY
    w[1:-1] = y.reshape(n, 2)
    u = w[1:-1, 0]
    v = w[1:-1, 1]
    u2v = u * u * v
    out = c * (w[:-2] - 2.0 * w[1:-1] + w[2:])
    out[:, 0] += A + u2v - (B + 1.0) * u
    out[:, 1] += B * u - u2v
    return out.reshape(2 * n)


def _brusselator_jac(t, y, p):
    A, B, alpha = p
    u = y[0::2]
    v = y[1::2]
    n = u.shape[0]
    c = alpha * (n + 1) ** 2
    iu = np.arange(0, 2 * n, 2)
    iv = iu + 1
    jac = np.zeros((2 * n, 2 * n))
    jac[iu, iu] = 2.0 * u * v - (B + 1.0) - 2.0 * c
    jac[iu, iv] = u * u
    jac[iv, iu] = B - 2.0 * u * v
    jac[iv, iv] = -u * u - 2.0 * c
    jac[iu[1:], iu[:-1]] = c
    jac[iu[:-1], iu[1:]] = c
    jac[iv[1:], iv[:-1]] = c
    jac[iv[:-1], iv[1:]] = c
    return jac


_BRU_N = 16
_BRU_X = np.arange(1, _BRU_N + 1) / (_BRU_N + 1)
_BRU_Y0 = np.empty(2 * _BRU_N)
_BRU_Y0[0::2] = 1.0 + np.sin(2.0 * np.pi * _BRU_X)
_BRU_Y0[1::2] = 3.0

BRUSSELATOR_1D = Problem(
    name="brusselator_1d",
    description=("1-D Brusselator u_t = A + u^2 v - (B+1) u + alpha u_xx, "
                 "v_t = B u - u^2 v + alpha v_xx, p = (A, B, alpha) = "
                 "(1, 3, 1/50), u = 1, v = 3 at x = 0, 1, N = 16 interior "
                 "points, state (u1, v1, u2, v2, ...) (HNW II, Sec. IV.1)"),
    fun=_brusselator_fun,
    jac=_brusselator_jac,
    y0=_BRU_Y0,
    p=[1.0, 3.0, 1.0 / 50.0],
    t_span=(0.0, 10.0),
    y_ref=[
        0.84960158979290000, 3.1904560864652500, 0.71836941449258167,
        3.3556860571469327, 0.61554021917427203, 3.4828607012642302,
        0.54124862528458670, 3.5714351218191501, 0.49082532348312462,
        3.6281223128079588, 0.45856712364688686, 3.6618337982497456,
        0.43971370307470423, 3.6805225383255060, 0.43109082244537678,
        3.6897315531019448, 0.43115603481638326, 3.6921082247999665,
        0.43992150065952161, 3.6873161698879454, 0.45895270696501041,
        3.6720751019101871, 0.49143883760775876, 3.6403317844378261,
        0.54212814641161381, 3.5838350934895166, 0.61665160280798657,
        3.4936752912298669, 0.71951894202147268, 3.3634904100881597,
        0.85039369700804099, 3.1944513934058137,
    ],
    ref_source=(
        "adaptive Gragg-Bulirsch-Stoer extrapolation in mpmath (dps 40, "
        "tol 1e-30; tol 1e-24 agrees to 6e-26), 17 significant digits; "
        "scipy Radau (rtol 1e-12, atol 1e-14) agrees to 1.2e-13 relative"),
    stiff=True,
)
del _BRU_X, _BRU_Y0
