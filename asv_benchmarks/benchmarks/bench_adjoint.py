"""Adjoint gradients: cost per strategy, the crossover against forward
sensitivities, and memory bounded by the checkpoints.

``AdjointLotkaVolterra`` / ``AdjointRober``: dL/dp (and dL/dy0) of a loss of
the outputs at t_eval, per adjoint strategy (ROBER: the strategies that work
with a Rosenbrock method on a stiff problem; 'backsolve' fails there by
design).
``Crossover``: dL/d(p, y0) of the N x N Brusselator (n + m = 4 N^2 + 3):
forward dual sensitivities against the adjoint; the forward pass wins for
small N, the adjoint for large N.
``CheckpointMemory``: a bank of 64 harmonic oscillators over ~1e5 Tsit5
steps; the adjoint stores one checkpoint every ``checkpoints`` steps and
replays one segment at a time, so peak memory follows ``checkpoints`` (a
segment of stored steps), not the step count.
"""
import numpy as np

import diffsens
from diffsens import problems
from diffsens.bench import (BRUSSELATOR_T_EVAL, BRUSSELATOR_T_SPAN, brusselator_2d)


def _require_adjoint():
    """Skip (NotImplementedError) without ``diffsens.adjoint_gradient``."""
    if not hasattr(diffsens, "adjoint_gradient"):
        raise NotImplementedError("diffsens.adjoint_gradient is not in this build")


def _checked_gradient(*args, **kwargs):
    """One ``adjoint_gradient`` call for ``setup``: skips a strategy this build
    does not know, fails loudly (not a timing of a failed solve) on status -1."""
    try:
        res = diffsens.adjoint_gradient(*args, **kwargs)
    except ValueError as exc:
        if "`adjoint`" in str(exc):
            raise NotImplementedError(str(exc)) from None
        raise
    if res.status != 0:
        raise RuntimeError(f"adjoint_gradient failed: {res.message}")
    return res


def _sum_of_squares(Y, p):
    return (Y * Y).sum()


def _sum_of_y1(Y, p):
    return Y[0].sum()


class AdjointLotkaVolterra:
    """LV, 101 outputs, L = sum of y**2, Tsit5 at rtol 1e-6, atol 1e-8."""
    params = (["gauss", "interpolating", "quadrature", "backsolve", "discrete",
               "reversible"],
              ["traced", "python"])
    param_names = ["adjoint", "rhs"]

    def setup(self, adjoint, rhs):
        self.prob = prob = problems.get("lotka_volterra")
        self.fun = diffsens.trace(prob.fun, prob.y0, prob.p) if rhs == "traced" else prob.fun
        self.kwargs = dict(t_eval=prob.t_eval, loss=_sum_of_squares, method="Tsit5",
                           adjoint=adjoint, rtol=1e-6, atol=1e-8)
        _require_adjoint()
        _checked_gradient(self.fun, prob.t_span, prob.y0, prob.p, **self.kwargs)

    def time_adjoint_gradient(self, adjoint, rhs):
        diffsens.adjoint_gradient(self.fun, self.prob.t_span, self.prob.y0, self.prob.p,
                                  **self.kwargs)


class AdjointRober:
    """ROBER on [0, 1e5], 50 log-spaced outputs, L = sum of y1, Rodas5P at
    rtol 1e-6, atol 1e-10."""
    params = (["gauss", "interpolating", "quadrature", "discrete"],)
    param_names = ["adjoint"]

    def setup(self, adjoint):
        _require_adjoint()
        self.prob = prob = problems.get("rober_1e5")
        self.fun = diffsens.trace(prob.fun, prob.y0, prob.p)
        self.kwargs = dict(t_eval=prob.t_eval, loss=_sum_of_y1, method="Rodas5P",
                           adjoint=adjoint, rtol=1e-6, atol=1e-10)
        _checked_gradient(self.fun, prob.t_span, prob.y0, prob.p, **self.kwargs)

    def time_adjoint_gradient(self, adjoint):
        diffsens.adjoint_gradient(self.fun, self.prob.t_span, self.prob.y0, self.prob.p,
                                  **self.kwargs)

    def time_forward_sens(self, adjoint):
        """The forward alternative (independent of ``adjoint``; m = 3)."""
        diffsens.solve_ivp_sens(self.fun, self.prob.t_span, self.prob.y0, self.prob.p,
                                method="Rodas5P", sens="continuous",
                                t_eval=self.prob.t_eval, rtol=1e-6, atol=1e-10)


class Crossover:
    """dL/d(p, y0) of the N x N Brusselator, t in [0, 1], 11 outputs,
    L = sum of y**2, Tsit5 at rtol 1e-6, atol 1e-8 (not stiff at N <= 10)."""
    params = ([2, 5, 10], ["forward", "adjoint"])
    param_names = ["N", "strategy"]

    def setup(self, N, strategy):
        if strategy == "adjoint":
            _require_adjoint()
        fun, self.y0, self.p = brusselator_2d(N)
        self.rhs = diffsens.trace(fun, self.y0, self.p)
        self.kwargs = dict(t_eval=BRUSSELATOR_T_EVAL, method="Tsit5", rtol=1e-6, atol=1e-8)
        if strategy == "adjoint":
            _checked_gradient(self.rhs, BRUSSELATOR_T_SPAN, self.y0, self.p,
                              loss=_sum_of_squares, **self.kwargs)

    def time_gradient(self, N, strategy):
        if strategy == "adjoint":
            diffsens.adjoint_gradient(self.rhs, BRUSSELATOR_T_SPAN, self.y0, self.p,
                                      loss=_sum_of_squares, **self.kwargs)
        else:
            res = diffsens.solve_ivp_sens(self.rhs, BRUSSELATOR_T_SPAN, self.y0, self.p,
                                          wrt=("p", "y0"), **self.kwargs)
            dgdy = 2 * res.y
            np.einsum("it,imt->m", dgdy, res.sens)
            np.einsum("it,imt->m", dgdy, res.sens_y0)


#: 64 oscillators x'' = -p_k x, p in [1, 2]: Tsit5 at rtol = atol = 1e-10
#: takes ~1.4e5 steps over [0, 4000] (~1e5 over [0, 3000]).
OSCILLATORS = 64
OSCILLATOR_T_SPAN = (0.0, 4000.0)


def oscillator_bank(t, y, p):
    x, v = y[:OSCILLATORS], y[OSCILLATORS:]
    return np.concatenate([v, -p * x])


class CheckpointMemory:
    """Peak memory of a ~1.4e5-step adjoint gradient (n = 128, m = 64) of
    L = sum of x(T) (dgdy: ones on the positions at T): it grows with
    ``checkpoints`` (the steps of one replayed segment), not with the
    136518 steps.  First measurement (gauss, ~88 MB baseline process):
    +4 MB at 100, +28 MB at 1000, +206 MB at 10000 (~20 KB a stored step).
    Runs ~4-5 s each."""
    params = ([100, 1000, 10000],)
    param_names = ["checkpoints"]
    timeout = 120

    def setup(self, checkpoints):
        _require_adjoint()
        self.p = np.linspace(1.0, 2.0, OSCILLATORS)
        self.y0 = np.concatenate([np.ones(OSCILLATORS), np.zeros(OSCILLATORS)])
        self.rhs = diffsens.trace(oscillator_bank, self.y0, self.p)
        self.dgdy = np.zeros((2 * OSCILLATORS, 1))
        self.dgdy[:OSCILLATORS] = 1.0

    def peakmem_adjoint_gradient(self, checkpoints):
        diffsens.adjoint_gradient(self.rhs, OSCILLATOR_T_SPAN, self.y0, self.p,
                                  t_eval=[OSCILLATOR_T_SPAN[1]], dgdy=self.dgdy,
                                  method="Tsit5", checkpoints=checkpoints,
                                  rtol=1e-10, atol=1e-10)
