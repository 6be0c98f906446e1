"""Built-in test and benchmark initial-value problems with reference solutions.

Every problem is an immutable :class:`Problem` holding a plain NumPy
right-hand side ``fun(t, y, p)``, the initial value ``y0``, the nominal
parameters ``p``, the time span, optionally suggested output times, a
reference solution ``y_ref`` at the final time (with its provenance in
``ref_source``) and, for all built-in problems, an analytic Jacobian
``jac(t, y, p)``.

=========================  ====  ====  ==============  ======================
name                        n     m    t_span          y_ref
=========================  ====  ====  ==============  ======================
``lotka_volterra``          2     4    (0, 10)         mpmath ``odefun``
``pleiades``                28    7    (0, 3)          IVP Test Set (PLEI)
``arenstorf``               4     1    (0, T)          mpmath extrapolation
``lorenz96``                40    1    (0, 1)          mpmath extrapolation
``hires``                   8     10   (0, 321.8122)   IVP Test Set
``rober``                   3     3    (0, 1e11)       IVP Test Set
``rober_1e5``               3     3    (0, 1e5)        None
``pollu``                   20    25   (0, 60)         IVP Test Set
``brusselator_1d``          32    3    (0, 10)         mpmath extrapolation
``one_compartment_oral``    2     3    (0, 24)         closed form (Bateman)
=========================  ====  ====  ==============  ======================

(``T = 17.0652165601579625588917206249`` is the Arenstorf period.)

Call SciPy with the parameters passed through ``args``::

    from scipy.integrate import solve_ivp
    sol = solve_ivp(prob.fun, prob.t_span, prob.y0, args=(prob.p,),
                    jac=prob.jac, method="Radau" if prob.stiff else "DOP853")

References
----------
E. Hairer, S. P. Norsett, G. Wanner, *Solving Ordinary Differential
Equations I* (HNW I), and E. Hairer, G. Wanner, *... II* (HNW II), Springer.
F. Mazzia, C. Magherini, *Test Set for IVP Solvers*, University of Bari.

Examples
--------
>>> from diffsens import problems
>>> prob = problems.get("lotka_volterra")
>>> prob.n, prob.m
(2, 4)
>>> prob.fun(0.0, prob.y0, prob.p)
array([ 0.5, -2. ])
>>> from scipy.integrate import solve_ivp
>>> sol = solve_ivp(prob.fun, prob.t_span, prob.y0, args=(prob.p,),
...                 method="DOP853", rtol=1e-10, atol=1e-12)
>>> bool(abs(sol.y[:, -1] - prob.y_ref).max() < 1e-7)
True
"""

from ._problem import Problem
from ._nonstiff import (
    ARENSTORF,
    ARENSTORF_PERIOD,
    LORENZ96,
    LOTKA_VOLTERRA,
    PLEIADES,
    lotka_volterra_first_integral,
)
from ._stiff import (
    BRUSSELATOR_1D,
    BRUSSELATOR_BOUNDARY,
    HIRES,
    POLLU,
    ROBER,
    ROBER_1E5,
)
from ._pk import ONE_COMPARTMENT_ORAL, bateman

__all__ = [
    "Problem",
    "PROBLEMS",
    "get",
    "LOTKA_VOLTERRA",
    "PLEIADES",
    "ARENSTORF",
    "ARENSTORF_PERIOD",
    "LORENZ96",
    "HIRES",
    "ROBER",
    "ROBER_1E5",
    "POLLU",
    "BRUSSELATOR_1D",
    "BRUSSELATOR_BOUNDARY",
    "ONE_COMPARTMENT_ORAL",
    "lotka_volterra_first_integral",
    "bateman",
]

#: Registry of all built-in problems, keyed by :attr:`Problem.name`.
PROBLEMS = {
    prob.name: prob
    for prob in (
        LOTKA_VOLTERRA,
        PLEIADES,
        ARENSTORF,
        LORENZ96,
        HIRES,
        ROBER,
        ROBER_1E5,
        POLLU,
        BRUSSELATOR_1D,
        ONE_COMPARTMENT_ORAL,
    )
}


def get(name):
    """Return the built-in problem called `name`.

    Parameters
    ----------
    name : str
        A key of :data:`PROBLEMS` (case-insensitive; ``-`` may replace
        ``_``).

    Returns
    -------
    Problem
        The shared, immutable problem instance.

    Raises
    ------
    KeyError
        If no problem of that name exists.

    Examples
    --------
    >>> from diffsens import problems
    >>> problems.get("ROBER").stiff
    True
    """
    key = str(name).strip().lower().replace("-", "_")
    try:
        return PROBLEMS[key]
    except KeyError:
        raise KeyError(f"unknown problem {name!r}; available: "
                       f"{', '.join(sorted(PROBLEMS))}") from None
