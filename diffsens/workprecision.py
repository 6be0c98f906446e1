"""Work-precision of the stiff solvers on the Test Set problems.

``python -m diffsens.workprecision`` solves HIRES, POLLU and ROBER (to
``t = 1e11``) at a ladder of tolerances with diffsens's Rosenbrock methods
(traced right-hand sides), CVODE through scikit-sundae (when installed) and
scipy's BDF, Radau and LSODA, and prints, for each solve, the accuracy in
significant digits of the end state against the Test Set reference
(``-log10 max |y - y_ref| / (1 + |y_ref|)``, the Test Set's mixed error) and
the time.  ``--plot FILE.png`` draws the error-vs-time figure (matplotlib).
"""
import argparse
import time

import numpy as np
import scipy.integrate

from . import problems
from ._ivp import solve_ivp
from ._rhs import trace
from .bench import cvode_solver

__all__ = ["significant_digits", "work_precision", "main"]

PROBLEMS = ("hires", "pollu", "rober")
TOLERANCES = (1e-4, 1e-6, 1e-8, 1e-10)


def significant_digits(y, y_ref):
    """Mixed-error significant digits, as the Test Set for IVP Solvers reports."""
    err = np.max(np.abs(np.asarray(y) - y_ref) / (1.0 + np.abs(y_ref)))
    return float(-np.log10(max(err, 1e-300)))


def _solvers(prob, tol):
    """name -> zero-argument callable returning the end state."""
    rhs = trace(prob.fun, prob.y0, prob.p)
    span, y0, args = prob.t_span, prob.y0, (prob.p,)
    out = {}
    for method in ("Rodas5P", "Rodas4", "Rosenbrock23"):
        out[f"diffsens {method}"] = (
            lambda m=method: solve_ivp(rhs, span, y0, method=m, args=args,
                                       rtol=tol, atol=tol).y[:, -1])
    cvode = cvode_solver(prob, tol, tol, times=[span[1]])
    if cvode is not None:
        out["CVODE (sksundae)"] = lambda: cvode()[:, -1]
    for method in ("BDF", "Radau", "LSODA"):
        out[f"scipy {method}"] = (
            lambda m=method: scipy.integrate.solve_ivp(prob.fun, span, y0, method=m, args=args,
                                                       jac=prob.jac, rtol=tol, atol=tol).y[:, -1])
    return out


def work_precision(names=PROBLEMS, tolerances=TOLERANCES, max_seconds=20.0):
    """Rows (problem, solver, tol, digits, seconds); a solver that took longer
    than ``max_seconds`` at one tolerance is not run at tighter ones."""
    rows = []
    for name in names:
        prob = problems.get(name)
        too_slow = set()
        for tol in tolerances:
            for solver, run in _solvers(prob, tol).items():
                if solver in too_slow:
                    continue
                start = time.perf_counter()
                try:
                    y = run()
                    digits = significant_digits(y, prob.y_ref)
                except Exception as exc:   # a peer failing is a data point, not a crash
                    digits = float("nan")
                    print(f"  {name} {solver} tol={tol:g}: {type(exc).__name__}: {exc}")
                seconds = time.perf_counter() - start
                rows.append((name, solver, tol, digits, seconds))
                if seconds > max_seconds:
                    too_slow.add(solver)
    return rows


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = sorted({r[0] for r in rows}, key=PROBLEMS.index)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for solver in sorted({r[1] for r in rows if r[0] == name}):
            pts = [(r[4], r[3]) for r in rows if r[0] == name and r[1] == solver]
            ax.loglog([p[0] for p in pts], [10.0 ** -p[1] for p in pts], "o-", label=solver)
        ax.set_title(name.upper())
        ax.set_xlabel("time [s]")
        ax.set_ylabel("mixed error")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m diffsens.workprecision",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", default=list(PROBLEMS), choices=PROBLEMS)
    parser.add_argument("--tolerances", nargs="*", type=float, default=list(TOLERANCES),
                        help="rtol = atol ladder (default: %(default)s)")
    parser.add_argument("--plot", metavar="FILE.png", help="save the figure (matplotlib)")
    ns = parser.parse_args(argv)
    if ns.plot:
        try:   # before minutes of solves, not after
            import matplotlib   # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'diffsens[plot]' "
                         "(or pip install matplotlib)")
    rows = work_precision(ns.problems, ns.tolerances)
    print(f"{'problem':<8} {'solver':<24} {'tol':>7} {'digits':>7} {'time':>10}")
    for name, solver, tol, digits, seconds in rows:
        print(f"{name:<8} {solver:<24} {tol:>7.0e} {digits:>7.2f} {seconds * 1e3:>8.2f}ms")
    if ns.plot:
        _plot(rows, ns.plot)
        print(f"figure: {ns.plot}")
    return rows


if __name__ == "__main__":
    main()
