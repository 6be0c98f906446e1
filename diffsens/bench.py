"""Peer comparison: diffsens against scipy on the same problems, one run.

Run ``python -m diffsens.bench`` (``--quick`` for fewer repeats).  Every row
times diffsens and its peer back to back in the same process and prints the
medians, their ratio (peer / diffsens: above 1 means diffsens is faster) and
both errors against the problem's reference solution.  Absolute times on a
shared machine are noise; the ratios are the signal.
"""
import argparse
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.integrate

from . import problems
from ._ivp import solve_ivp

__all__ = ["Case", "default_cases", "run_case", "main"]


@dataclass
class Case:
    """One comparison: a problem, tolerances and two contenders.

    ``ours`` and ``peer`` are zero-argument callables returning the end state
    (or the outputs compared against ``reference``).
    """
    label: str
    ours: Callable[[], np.ndarray]
    peer: Callable[[], np.ndarray]
    peer_name: str
    reference: np.ndarray


def _timed(fn, repeats, min_time):
    """Median seconds per call; repeats until ``min_time`` seconds have passed."""
    result = fn()  # warm-up (and the value whose error is reported)
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 50 * repeats:
            break
    return float(np.median(times)), result


def lotka_volterra_scipy_docs(t, z, a, b, c, d):
    """Lotka-Volterra exactly as scipy's solve_ivp documentation writes it."""
    x, y = z
    return [a*x - b*x*y, -c*y + d*x*y]


def _solve_case(label, prob, method, peer_method, rtol, atol, use_t_eval, reference,
                fun=None, args=None):
    t_eval = prob.t_eval if use_t_eval else None
    fun = prob.fun if fun is None else fun
    kwargs = dict(t_eval=t_eval, args=(prob.p,) if args is None else args,
                  rtol=rtol, atol=atol)

    def ours():
        res = solve_ivp(fun, prob.t_span, prob.y0, method=method, **kwargs)
        return res.y if use_t_eval else res.y[:, -1]

    def peer():
        res = scipy.integrate.solve_ivp(fun, prob.t_span, prob.y0,
                                        method=peer_method, **kwargs)
        return res.y if use_t_eval else res.y[:, -1]

    return Case(label, ours, peer, f"scipy {peer_method}", reference)


def _reference_outputs(prob):
    """A tight solution at the problem's t_eval (DOP853, rtol 1e-13)."""
    res = scipy.integrate.solve_ivp(prob.fun, prob.t_span, prob.y0, method="DOP853",
                                    t_eval=prob.t_eval, args=(prob.p,),
                                    rtol=1e-13, atol=1e-14)
    return res.y


def default_cases():
    """The benchmark suite: Lotka-Volterra (2 states) and Pleiades (28 states).

    Lotka-Volterra runs twice: with the function of scipy's documentation
    (scalar parameters, returns a list: ~1 us a call) and with
    ``problems.get("lotka_volterra").fun`` (a parameter array and
    ``np.array``: ~2 us a call, so the user's own code weighs more).
    """
    lv = problems.get("lotka_volterra")
    lv_ref = _reference_outputs(lv)
    plei = problems.get("pleiades")
    cases = []
    for method, peer in [("RK45", "RK45"), ("RK23", "RK23"), ("DOP853", "DOP853"),
                         ("Tsit5", "RK45"), ("Vern7", "DOP853")]:
        cases.append(_solve_case(f"lotka_volterra {method} rtol=1e-6", lv, method,
                                 peer, 1e-6, 1e-8, True, lv_ref,
                                 fun=lotka_volterra_scipy_docs, args=tuple(lv.p)))
    cases.append(_solve_case("lotka_volterra RK45 (p array fun)", lv, "RK45", "RK45",
                             1e-6, 1e-8, True, lv_ref))
    for method, peer in [("RK45", "RK45"), ("DOP853", "DOP853"), ("Vern7", "DOP853")]:
        cases.append(_solve_case(f"pleiades {method} rtol=1e-10", plei, method,
                                 peer, 1e-10, 1e-10, False, plei.y_ref))
    return cases


def _error(value, reference):
    return float(np.max(np.abs(value - reference)) / max(np.max(np.abs(reference)), 1e-300))


def run_case(case, repeats=7, min_time=0.2):
    """Time both contenders of ``case``; returns a dict of figures."""
    t_ours, v_ours = _timed(case.ours, repeats, min_time)
    t_peer, v_peer = _timed(case.peer, repeats, min_time)
    return {
        "label": case.label, "peer": case.peer_name,
        "ours_s": t_ours, "peer_s": t_peer, "ratio": t_peer / t_ours,
        "ours_err": _error(v_ours, case.reference),
        "peer_err": _error(v_peer, case.reference),
    }


def print_table(rows, file=None):
    header = (f"{'case':<32} {'peer':<13} {'diffsens':>10} {'peer':>10} "
              f"{'ratio':>7}  {'err diffsens':>12} {'err peer':>10}")
    print(header, file=file)
    print("-" * len(header), file=file)
    for r in rows:
        print(f"{r['label']:<32} {r['peer']:<13} {r['ours_s'] * 1e3:>8.3f}ms "
              f"{r['peer_s'] * 1e3:>8.3f}ms {r['ratio']:>6.1f}x  "
              f"{r['ours_err']:>12.2e} {r['peer_err']:>10.2e}", file=file)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m diffsens.bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--filter", default="", help="only cases whose label contains this")
    ns = parser.parse_args(argv)
    repeats, min_time = (3, 0.05) if ns.quick else (7, 0.3)
    rows = [run_case(c, repeats, min_time) for c in default_cases() if ns.filter in c.label]
    print("ratio = peer median / diffsens median (above 1: diffsens faster); "
          "err = max relative error vs reference")
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
