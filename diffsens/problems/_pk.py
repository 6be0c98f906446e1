"""Pharmacokinetic test problems.

One-compartment model with first-order oral absorption and linear
elimination (Bateman function), with typical theophylline values.
"""

from __future__ import annotations

import numpy as np

from ._problem import Problem

__all__ = ["ONE_COMPARTMENT_ORAL", "bateman"]


def bateman(t, dose, ka, ke, V=1.0):
    """Closed-form central compartment of the one-compartment oral model.

    Solves ``g' = -ka g``, ``c' = ka g / V - ke c`` with ``g(0) = dose``,
    ``c(0) = 0``::

        c(t) = dose ka / (V (ka - ke)) (exp(-ke t) - exp(-ka t))

    evaluated in the cancellation-free form
    ``dose ka / V exp(-ke t) (-expm1(-(ka - ke) t)) / (ka - ke)``, whose
    limit ``dose ka / V t exp(-ke t)`` is used when ``ka == ke``.

    Parameters
    ----------
    t : float or array_like
        Time(s) since the dose (same unit as ``1/ka``).
    dose : float or array_like
        Dose put into the gut compartment at ``t = 0``.
    ka, ke : float or array_like
        Absorption and elimination rate constants.
    V : float or array_like, optional
        Volume of distribution. With the default ``V = 1`` the result is the
        amount in the central compartment; otherwise it is a concentration.

    Returns
    -------
    float or ndarray
        Central amount/concentration, broadcast over the inputs.

    Examples
    --------
    >>> from diffsens.problems import bateman
    >>> round(float(bateman(2.0, 4.02, 1.5, 0.08, 0.5)), 6)
    6.814382
    """
    t, dose, ka, ke, V = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (t, dose, ka, ke, V)))
    d = ka - ke
    nonzero = d != 0.0
    safe_d = np.where(nonzero, d, 1.0)
    frac = np.where(nonzero, -np.expm1(-safe_d * t) / safe_d, t)
    out = dose * ka / V * np.exp(-ke * t) * frac
    return out[()] if out.ndim == 0 else out


def _one_compartment_oral_fun(t, y, p):
    ka, ke, V = p
    gut, conc = y
    absorbed = ka * gut
    return np.array([-absorbed, absorbed / V - ke * conc])


def _one_compartment_oral_jac(t, y, p):
    ka, ke, V = p
    return np.array([[-ka, 0.0],
                     [ka / V, -ke]])


_DOSE = 4.02          # mg/kg, subject 1 of the Theoph data
_KA, _KE, _V = 1.5, 0.08, 0.5
_T_END = 24.0

ONE_COMPARTMENT_ORAL = Problem(
    name="one_compartment_oral",
    description=("One-compartment PK model with first-order oral absorption "
                 "for theophylline: gut amount [mg/kg] and plasma "
                 "concentration [mg/L], p = (ka [1/h], ke [1/h], V [L/kg]), "
                 "dose 4.02 mg/kg (Boeckmann, Sheiner & Beal 1994; Pinheiro "
                 "& Bates 2000)"),
    fun=_one_compartment_oral_fun,
    jac=_one_compartment_oral_jac,
    y0=[_DOSE, 0.0],
    p=[_KA, _KE, _V],
    t_span=(0.0, _T_END),
    # nominal sampling times of the Theoph study (hours after the dose)
    t_eval=[0.0, 0.25, 0.5, 1.0, 2.0, 3.5, 5.0, 7.0, 9.0, 12.0, 24.0],
    y_ref=[_DOSE * np.exp(-_KA * _T_END),
           bateman(_T_END, _DOSE, _KA, _KE, _V)],
    ref_source=("closed form: gut = dose exp(-ka t), concentration = "
                "bateman(t, dose, ka, ke, V), evaluated in float64"),
    stiff=False,
)
