"""Traced right-hand sides: solves without Python in the loop, and the cost
of the tape (interpreted, and compiled) against hand-written C.
"""
import numpy as np

import diffsens
from diffsens import problems
from diffsens._bench_native import compiled_pollu
from diffsens._native import c_compiler

TOLERANCES = {"lotka_volterra": (1e-6, 1e-8), "pleiades": (1e-8, 1e-8)}


class TracedSolve:
    params = (["lotka_volterra", "pleiades"], ["RK45", "Tsit5", "DOP853", "Vern7"])
    param_names = ["problem", "method"]

    def setup(self, problem, method):
        self.prob = problems.get(problem)
        self.rhs = diffsens.trace(self.prob.fun, self.prob.y0, self.prob.p)
        self.compiled = _compiled(self.prob)
        rtol, atol = TOLERANCES[problem]
        self.kwargs = dict(t_eval=self.prob.t_eval, args=(self.prob.p,),
                           rtol=rtol, atol=atol, method=method)

    def time_traced(self, problem, method):
        diffsens.solve_ivp(self.rhs, self.prob.t_span, self.prob.y0, **self.kwargs)

    def time_traced_compiled(self, problem, method):
        if self.compiled is None:
            raise NotImplementedError("no C compiler to compile the tape")
        diffsens.solve_ivp(self.compiled, self.prob.t_span, self.prob.y0, **self.kwargs)

    def time_python_fun(self, problem, method):
        diffsens.solve_ivp(self.prob.fun, self.prob.t_span, self.prob.y0, **self.kwargs)


def _compiled(prob):
    """The problem's tape with its value pass compiled, or None without a compiler."""
    if c_compiler() is None:
        return None
    return diffsens.trace(prob.fun, prob.y0, prob.p, compile=True)


class TapeEvaluation:
    """1000 evaluations of POLLU: the tape, interpreted and compiled, vs
    hand-written C (its arrays converted for ctypes once, in setup)."""

    def setup(self):
        self.prob = problems.get("pollu")
        self.rhs = diffsens.trace(self.prob.fun, self.prob.y0, self.prob.p)
        self.Y = np.random.default_rng(0).random((1000, self.prob.n))
        self.hand = compiled_pollu()
        if self.hand is None:
            raise NotImplementedError("no C compiler for the hand-written reference")
        self.hand_bound = self.hand.bound(self.Y, self.prob.p)
        self.compiled = _compiled(self.prob)

    def time_tape(self):
        self.rhs.function.value_batch(0.0, self.Y, self.prob.p)

    def time_compiled_tape(self):
        self.compiled.function.value_batch(0.0, self.Y, self.prob.p)

    def time_hand_written_c(self):
        self.hand_bound()

    def time_tape_jvp_all_lanes(self):
        self.rhs.jacobian(0.0, self.Y[0], self.prob.p)

    def time_tape_vjp(self):
        self.rhs.vjp(0.0, self.Y[0], self.prob.p, self.Y[1])

    def time_tape_second_order(self):
        # the stiff sensitivities' pass: all n state directions against 3
        # sensitivity directions, and their mixed second derivatives
        self.rhs.function.jvp2(0.0, self.Y[0], self.prob.p, np.eye(self.prob.n),
                               self.Y[1:4].T)
