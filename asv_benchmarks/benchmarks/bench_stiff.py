"""Stiff solvers and stiff forward sensitivities.

``StiffSolve``: ROBER with the Rosenbrock methods against scipy's BDF.
``StiffSensitivityCost``: ROBER's dy/dk against its plain solve.
``SensitivityScaling``: a 2-D Brusselator on an N x N grid (2 N^2 states)
with Rodas5P, plain and with dy/dp (m = 3) and dy/d(p, y0) (m = 3 + 2 N^2):
each step factors W once and reuses its LU for every sensitivity column, so
the cost grows like n^3 + m n^2 rather than (n (m + 1))^3.
"""
import numpy as np
import scipy.integrate

import diffsens
from diffsens import problems
from diffsens.bench import brusselator_2d


class StiffSolve:
    params = (["Rodas5P", "Rodas4", "Rosenbrock23"], ["traced", "python"])
    param_names = ["method", "rhs"]

    def setup(self, method, rhs):
        self.prob = prob = problems.get("rober_1e5")
        self.fun = diffsens.trace(prob.fun, prob.y0, prob.p) if rhs == "traced" else prob.fun
        self.kwargs = dict(t_eval=prob.t_eval, args=(prob.p,), rtol=1e-6, atol=1e-10)

    def time_diffsens(self, method, rhs):
        diffsens.solve_ivp(self.fun, self.prob.t_span, self.prob.y0, method=method,
                           **self.kwargs)

    def time_scipy_bdf(self, method, rhs):
        scipy.integrate.solve_ivp(self.prob.fun, self.prob.t_span, self.prob.y0,
                                  method="BDF", **self.kwargs)


class StiffSensitivityCost:
    """ROBER dy/dk (3 rate constants) with Rodas5P against the plain solve:
    ``time_sens / time_plain`` is what the sensitivities cost, 'dual' (the
    plain solve's steps) and 'continuous' (error control on S too)."""
    params = (["dual", "continuous"],)
    param_names = ["sens"]

    def setup(self, sens):
        self.prob = prob = problems.get("rober_1e5")
        self.rhs = diffsens.trace(prob.fun, prob.y0, prob.p)
        self.kwargs = dict(t_eval=prob.t_eval, rtol=1e-6, atol=1e-10, method="Rodas5P")

    def time_sens(self, sens):
        diffsens.solve_ivp_sens(self.rhs, self.prob.t_span, self.prob.y0, self.prob.p,
                                sens=sens, **self.kwargs)

    def time_plain(self, sens):
        diffsens.solve_ivp(self.rhs, self.prob.t_span, self.prob.y0, args=(self.prob.p,),
                           **self.kwargs)


class SensitivityScaling:
    params = ([2, 4, 6], ["plain", "p", "p_and_y0"])
    param_names = ["N", "derivatives"]

    def setup(self, N, derivatives):
        fun, self.y0, self.p = brusselator_2d(N)
        self.rhs = diffsens.trace(fun, self.y0, self.p)

    def time_rodas5p(self, N, derivatives):
        kwargs = dict(method="Rodas5P", rtol=1e-6, atol=1e-8)
        if derivatives == "plain":
            diffsens.solve_ivp(self.rhs, (0.0, 1.0), self.y0, args=(self.p,), **kwargs)
        else:
            wrt = "p" if derivatives == "p" else ("p", "y0")
            diffsens.solve_ivp_sens(self.rhs, (0.0, 1.0), self.y0, self.p,
                                    sens="continuous", wrt=wrt, **kwargs)
