"""solve_ivp: diffsens against scipy, per problem and method.

``time_diffsens`` and ``time_scipy`` run the same problem at the same
tolerances; compare them within one asv run (ratios), not across machines.
"""
import numpy as np
import scipy.integrate

import diffsens
from diffsens import problems

# scipy's nearest method for the methods scipy does not have
SCIPY_PEER = {"RK23": "RK23", "RK45": "RK45", "DOP853": "DOP853",
              "Tsit5": "RK45", "Vern7": "DOP853"}
TOLERANCES = {"lotka_volterra": (1e-6, 1e-8), "pleiades": (1e-8, 1e-8)}


class SolveIVP:
    params = (["lotka_volterra", "pleiades"], list(SCIPY_PEER))
    param_names = ["problem", "method"]

    def setup(self, problem, method):
        self.prob = problems.get(problem)
        rtol, atol = TOLERANCES[problem]
        self.kwargs = dict(t_eval=self.prob.t_eval, args=(self.prob.p,),
                           rtol=rtol, atol=atol)

    def time_diffsens(self, problem, method):
        diffsens.solve_ivp(self.prob.fun, self.prob.t_span, self.prob.y0,
                           method=method, **self.kwargs)

    def time_scipy(self, problem, method):
        scipy.integrate.solve_ivp(self.prob.fun, self.prob.t_span, self.prob.y0,
                                  method=SCIPY_PEER[method], **self.kwargs)


class DenseOutput:
    """Evaluating the continuous solution at many points."""

    def setup(self):
        prob = problems.get("pleiades")
        self.sol = diffsens.solve_ivp(prob.fun, prob.t_span, prob.y0, method="DOP853",
                                      args=(prob.p,), rtol=1e-10, atol=1e-10,
                                      dense_output=True).sol
        self.t = np.linspace(prob.t_span[0], prob.t_span[1], 10_000)

    def time_sol_eval(self):
        self.sol(self.t)

    def peakmem_sol_eval(self):
        self.sol(self.t)
