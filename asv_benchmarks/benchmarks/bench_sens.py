"""Forward sensitivities: cost of dy/dp relative to the plain solve.

Compare ``time_sens`` with ``time_plain`` of the same parameters: the ratio
is what the derivatives cost.
"""
import numpy as np

import diffsens
from diffsens import problems

TOLERANCES = {"lotka_volterra": (1e-6, 1e-8), "brusselator_1d": (1e-6, 1e-8),
              "one_compartment_oral": (1e-8, 1e-10)}


class ForwardSensitivity:
    params = (list(TOLERANCES), ["traced", "python"], ["dual", "continuous"])
    param_names = ["problem", "rhs", "sens"]

    def setup(self, problem, rhs, sens):
        self.prob = prob = problems.get(problem)
        self.fun = diffsens.trace(prob.fun, prob.y0, prob.p) if rhs == "traced" else prob.fun
        rtol, atol = TOLERANCES[problem]
        self.kwargs = dict(t_eval=prob.t_eval, rtol=rtol, atol=atol, method="Tsit5")

    def time_sens(self, problem, rhs, sens):
        diffsens.solve_ivp_sens(self.fun, self.prob.t_span, self.prob.y0, self.prob.p,
                                sens=sens, **self.kwargs)

    def time_plain(self, problem, rhs, sens):
        diffsens.solve_ivp(self.fun, self.prob.t_span, self.prob.y0, args=(self.prob.p,),
                           **self.kwargs)


class ChunkedSensitivity:
    """Brusselator (32 states) w.r.t. y0 and p: one pass vs chunks of 8."""
    params = ([None, 8],)
    param_names = ["chunk_size"]

    def setup(self, chunk_size):
        self.prob = prob = problems.get("brusselator_1d")
        self.fun = diffsens.trace(prob.fun, prob.y0, prob.p)

    def time_sens_p_and_y0(self, chunk_size):
        diffsens.solve_ivp_sens(self.fun, self.prob.t_span, self.prob.y0, self.prob.p,
                                wrt=("p", "y0"), chunk_size=chunk_size, rtol=1e-6,
                                atol=1e-8)


def _stiff_in_the_middle(t, y, p):
    """Stiff only around t = 5 (lambda peaks at 1e5): 'auto' runs Tsit5,
    Rodas5P, Tsit5."""
    lam = 1 + 1e5 * np.exp(-((t - 5) / 0.5) ** 2)
    return -lam * (y - p[0] * np.cos(t)) - p[0] * np.sin(t)


class AutoSensitivity:
    """method='auto' with sensitivities against the plain 'auto' solve and
    against Rodas5P throughout (the stiff method where it is not needed)."""
    params = (["auto", "Rodas5P"],)
    param_names = ["method"]

    def setup(self, method):
        self.fun = diffsens.trace(_stiff_in_the_middle, [1.0], [1.0])
        self.kwargs = dict(t_eval=np.linspace(0.0, 10.0, 41), rtol=1e-8, atol=1e-10,
                           method=method)

    def time_sens(self, method):
        diffsens.solve_ivp_sens(self.fun, (0.0, 10.0), [1.0], [1.0], sens="continuous",
                                **self.kwargs)

    def time_plain(self, method):
        diffsens.solve_ivp(self.fun, (0.0, 10.0), [1.0], args=([1.0],), **self.kwargs)
