"""diffsens: derivatives of ODE solutions at C speed, behind the scipy.integrate API.

Public API
----------
solve_ivp
    Drop-in for `scipy.integrate.solve_ivp`; explicit Runge-Kutta loops in C.
solve_ivp_sens, SensResult, SensSolution
    The solution and its forward sensitivities dy/dp, dy/dy0.
adjoint_gradient, gradient, GradientResult
    Gradients of losses of the solution: adjoints with checkpoints, or the
    cheaper of forward and adjoint.
trace, TracedRHS, TraceError
    Record a right-hand side once; evaluate it (value, JVP, VJP) in C.
Dual
    ForwardDiff-style dual numbers: how a Python ``fun`` gives derivatives.
OdeResult, OdeSolution
    Result types (scipy-compatible).
problems
    Built-in test and benchmark problems with reference solutions.
"""
from ._adjoint import GradientResult, adjoint_gradient, gradient
from ._dual import Dual
from ._ivp import NATIVE_METHODS, solve_ivp
from ._result import OdeResult, OdeSolution
from ._rhs import TracedRHS, TraceError, trace
from ._sens import SensResult, SensSolution, solve_ivp_sens

__version__ = "0.1.0"

__all__ = ["solve_ivp", "solve_ivp_sens", "adjoint_gradient", "gradient", "GradientResult", "SensResult", "SensSolution", "trace",
           "TracedRHS", "TraceError", "Dual", "OdeResult", "OdeSolution",
           "NATIVE_METHODS", "__version__"]
