"""Peer comparison: diffsens against scipy on the same problems, one run.

Run ``python -m diffsens.bench`` (``--quick`` for fewer repeats).  Every row
times diffsens and its peer in the same process, in alternating rounds of
about 20 milliseconds, and prints the median times, the median of the per-round
ratios (peer / diffsens: above 1 means diffsens is faster) and both errors
against the problem's reference solution.  Absolute times on a shared machine
are noise; the ratios are the signal.
"""
import argparse
import gc
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import scipy.integrate

from . import problems
from ._ivp import solve_ivp
from ._native import c_compiler
from ._rhs import trace
from ._sens import solve_ivp_sens

__all__ = ["Case", "default_cases", "run_case", "main"]


@dataclass
class Case:
    """One comparison: a problem, tolerances and two contenders.

    ``ours`` and ``peer`` are zero-argument callables returning the end state
    (or the outputs compared against ``reference``; the peer's against
    ``peer_reference`` when it computes something else, as a cost baseline).
    """
    label: str
    ours: Callable[[], np.ndarray]
    peer: Callable[[], np.ndarray]
    peer_name: str
    reference: np.ndarray
    peer_reference: Optional[np.ndarray] = None


def _calls_per_round(fn, target=2e-2):
    """How many calls of ``fn`` make a round of about ``target`` seconds.

    Measured warm: a first call may do one-off work (a loss recorded on
    first use, caches filled), and sizing the rounds by it would make them
    a few calls long, each timed cold after the other contender's round."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= target / 10 or calls >= 100:
            break
    return max(1, min(1000, int(target * calls / max(elapsed, 1e-9))))


def _round(fn, calls):
    """Seconds per call over ``calls`` calls, with the garbage collector off
    (as `timeit` does: a collection of the large heap that jax leaves
    would otherwise land on whichever contender happens to trigger it)."""
    gc.disable()
    try:
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t) / calls
    finally:
        gc.enable()


def _paired(ours, peer, repeats, min_time):
    """Seconds per call of both contenders and their ratio, timed in
    alternating rounds of ~20 ms each.

    On a shared machine the speed of the whole machine drifts by 2x over
    seconds; timing one contender after the other lets that drift into the
    ratio.  Alternating rounds expose both to the same drift, and the median
    of the per-round ratios (peer / ours) cancels it.  Each timed round
    follows an untimed quarter round of the same contender, so that neither
    is timed cold after the other's round (whose runtime, jax's say, evicts
    the caches and the branch history).
    """
    calls = [_calls_per_round(ours), _calls_per_round(peer)]
    times = ([], [])
    start = time.perf_counter()
    while len(times[0]) < repeats or time.perf_counter() - start < 2 * min_time:
        _round(ours, max(1, calls[0] // 4))
        times[0].append(_round(ours, calls[0]))
        _round(peer, max(1, calls[1] // 4))
        times[1].append(_round(peer, calls[1]))
        if len(times[0]) >= 100 * repeats:
            break
    t_ours, t_peer = np.array(times[0]), np.array(times[1])
    return float(np.median(t_ours)), float(np.median(t_peer)), \
        float(np.median(t_peer / t_ours))


def _alone(fn, repeats, min_time):
    """Seconds per call of one contender (its peer failed)."""
    calls = _calls_per_round(fn)
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        times.append(_round(fn, calls))
    return float(np.median(times))


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
    cases.extend(traced_cases(lv, lv_ref))
    cases.extend(tape_cost_cases())
    cases.extend(sensitivity_cases(lv))
    cases.extend(stiff_cases())
    cases.extend(adjoint_cases(lv))
    return cases


def cvode_solver(prob, rtol, atol, times=None):
    """scikit-sundae's CVODE (BDF, dense direct solver) on ``prob`` with a
    Python right-hand side: a runner returning y (n, nt) at ``times``
    (default ``prob.t_eval``); None if scikit-sundae is not installed."""
    try:
        from sksundae.cvode import CVODE
    except ImportError:
        return None
    fun, p = prob.fun, prob.p

    def rhs(t, y, yp):
        yp[:] = fun(t, y, p)

    solver = CVODE(rhs, rtol=rtol, atol=atol, max_num_steps=1_000_000)
    times = prob.t_eval if times is None else times
    tspan = np.concatenate([[prob.t_span[0]], times])

    def run():
        return solver.solve(tspan, prob.y0).y[1:].T
    return run


def stiff_cases():
    """ROBER (t in [0, 1e5], 50 log-spaced outputs, rtol 1e-6, atol 1e-10):
    traced Rodas5P against CVODE (scikit-sundae) and scipy's BDF."""
    rober = problems.get("rober_1e5")
    reference = scipy.integrate.solve_ivp(rober.fun, rober.t_span, rober.y0, method="Radau",
                                          t_eval=rober.t_eval, args=(rober.p,), jac=rober.jac,
                                          rtol=1e-12, atol=1e-16).y
    rhs = trace(rober.fun, rober.y0, rober.p)
    kwargs = dict(t_eval=rober.t_eval, args=(rober.p,), rtol=1e-6, atol=1e-10)

    def traced():
        return solve_ivp(rhs, rober.t_span, rober.y0, method="Rodas5P", **kwargs).y

    def python_fun():
        return solve_ivp(rober.fun, rober.t_span, rober.y0, method="Rodas5P", **kwargs).y

    def scipy_bdf():
        return scipy.integrate.solve_ivp(rober.fun, rober.t_span, rober.y0, method="BDF",
                                         **kwargs).y

    cases = [Case("rober Rodas5P traced", traced, scipy_bdf, "scipy BDF (Python fun)",
                  reference),
             Case("rober Rodas5P Python fun", python_fun, scipy_bdf,
                  "scipy BDF (Python fun)", reference)]
    cvode = cvode_solver(rober, 1e-6, 1e-10)
    if cvode is not None:
        cases.append(Case("rober Rodas5P traced", traced, cvode,
                          "CVODE sksundae (Python fun)", reference))
    return cases + rober_sensitivity_cost_cases(rober, rhs, reference)


def _rober_tight_sensitivities(rober, rhs):
    """ROBER's dy/dk at its outputs, the references of the sensitivity and
    adjoint rows.  (Rodas5P at 1e-10 ... 1e-13 agree to 1e-9; Rodas4 creeps
    towards it.)"""
    return solve_ivp_sens(rhs, rober.t_span, rober.y0, rober.p, method="Rodas5P",
                          sens="continuous", t_eval=rober.t_eval, rtol=1e-12, atol=1e-17)


def rober_sensitivity_cost_cases(rober, rhs, reference):
    """What dy/dk (3 rate constants) costs on ROBER with Rodas5P: the peer
    column is the plain traced solve, so ``ratio`` = plain / sensitivities
    (0.5: the sensitivities cost twice the plain solve).  sens='dual' (the
    default: the derivative of the discrete solution, the plain solve's
    steps; CVODES's default, errconS off, computes the same) and
    'continuous' (error control on S too)."""
    tight = _rober_tight_sensitivities(rober, rhs)
    sens_reference = tight.sens.reshape(-1, len(rober.t_eval))   # each dy_i/dk_j its own scale
    kwargs = dict(t_eval=rober.t_eval, rtol=1e-6, atol=1e-10)

    def plain():
        return solve_ivp(rhs, rober.t_span, rober.y0, method="Rodas5P",
                         args=(rober.p,), **kwargs).y

    cases = []
    for sens, label in (("dual", "rober dy/dk Rodas5P dual"),
                        ("continuous", "rober dy/dk Rodas5P continuous")):
        def sensitivities(sens=sens):
            res = solve_ivp_sens(rhs, rober.t_span, rober.y0, rober.p, method="Rodas5P",
                                 sens=sens, **kwargs)
            return res.sens.reshape(-1, len(rober.t_eval))

        cases.append(Case(label, sensitivities, plain, "diffsens plain (cost)",
                          sens_reference, peer_reference=reference))
    return cases


def _lv_fd_reference(lv):
    """dy/dp of Lotka-Volterra at t_eval by central differences of tight solves."""
    h, cols = 1e-6, []
    for j in range(lv.m):
        step = np.zeros(lv.m)
        step[j] = h
        plus, minus = [scipy.integrate.solve_ivp(lv.fun, lv.t_span, lv.y0, method="DOP853",
                                                 t_eval=lv.t_eval, args=(lv.p + s,),
                                                 rtol=1e-13, atol=1e-14).y
                       for s in (step, -step)]
        cols.append((plus - minus) / (2 * h))
    return np.stack(cols, axis=1)          # (n, m, nt)


def sensitivity_cases(lv):
    """dy/dp of Lotka-Volterra (4 parameters, 101 outputs, rtol 1e-6): traced
    and Python ``sens='dual'`` against diffrax jacfwd and scipy finite differences."""
    reference = _lv_fd_reference(lv)
    rhs = trace(lv.fun, lv.y0, lv.p)
    kwargs = dict(t_eval=lv.t_eval, rtol=1e-6, atol=1e-8, method="Tsit5")

    def traced():
        return solve_ivp_sens(rhs, lv.t_span, lv.y0, lv.p, **kwargs).sens

    def python_fun():
        return solve_ivp_sens(lv.fun, lv.t_span, lv.y0, lv.p, **kwargs).sens

    def scipy_fd():
        """Forward differences: m + 1 scipy RK45 solves."""
        base = scipy.integrate.solve_ivp(lv.fun, lv.t_span, lv.y0, t_eval=lv.t_eval,
                                         args=(lv.p,), rtol=1e-6, atol=1e-8).y
        cols = []
        for j in range(lv.m):
            p = lv.p.copy()
            h = 1e-7 * max(abs(p[j]), 1.0)   # ~sqrt(rtol * eps): the usual compromise
            p[j] += h
            cols.append((scipy.integrate.solve_ivp(lv.fun, lv.t_span, lv.y0, t_eval=lv.t_eval,
                                                   args=(p,), rtol=1e-6, atol=1e-8).y - base) / h)
        return np.stack(cols, axis=1)

    cases = [Case("lv dy/dp Tsit5 traced dual", traced, scipy_fd,
                  "scipy RK45 fwd differences", reference),
             Case("lv dy/dp Tsit5 Python dual", python_fun, scipy_fd,
                  "scipy RK45 fwd differences", reference)]
    jacfwd = diffrax_jacfwd(lv, diffrax_lotka_volterra, "Tsit5", 1e-6, 1e-8)
    if jacfwd is not None:
        cases.append(Case("lv dy/dp Tsit5 traced dual", traced, jacfwd,
                          "diffrax jacfwd (jit)", reference))
    return cases


def diffrax_jacfwd(prob, vector_field, solver_name, rtol, atol):
    """``jax.jacfwd`` (``ForwardMode``) of a jit-compiled diffrax solve,
    returning dy/dp as (n, m, nt); None without jax/diffrax."""
    solve = _diffrax_solve(prob, vector_field, solver_name, rtol, atol, forward_mode=True)
    if solve is None:
        return None
    import jax
    return _compiled(jax.jacfwd(solve), prob, lambda jac: np.transpose(jac, (1, 2, 0)))


def tape_cost_cases():
    """POLLU evaluated at 10000 states by the tape, interpreted and compiled
    (``trace(..., compile=True)``), and by hand-written C (compiled now;
    skipped without a compiler).  Here the ratio is below 1: its inverse is
    what the tape costs relative to hand-written code.  Every side is one call
    into C; 10000 states make the calls' own costs (the tape's ~3 us of
    argument checks, ctypes) under 1%."""
    from ._bench_native import compiled_pollu
    hand = compiled_pollu()
    if hand is None:
        return []
    pollu = problems.get("pollu")
    Y = np.random.default_rng(0).random((10000, pollu.n))
    reference = hand(Y, pollu.p)
    cases = []
    for compile, label in ((False, "pollu f x10000 tape"),
                           (True, "pollu f x10000 compiled tape")):
        fn = trace(pollu.fun, pollu.y0, pollu.p, compile=compile).function
        cases.append(Case(label, lambda fn=fn: fn.value_batch(0.0, Y, pollu.p),
                          hand.bound(Y, pollu.p), "hand-written C", reference))
    return cases


def traced_cases(lv, lv_ref):
    """Traced Lotka-Volterra (Tsit5, rtol 1e-6) against scipy and diffrax."""
    rhs = trace(lv.fun, lv.y0, lv.p)
    kwargs = dict(t_eval=lv.t_eval, args=(lv.p,), rtol=1e-6, atol=1e-8)

    def ours():
        return solve_ivp(rhs, lv.t_span, lv.y0, method="Tsit5", **kwargs).y

    def scipy_rk45():
        return scipy.integrate.solve_ivp(lv.fun, lv.t_span, lv.y0, **kwargs).y

    cases = [Case("lotka_volterra Tsit5 traced", ours, scipy_rk45,
                  "scipy RK45 (Python fun)", lv_ref)]
    diffrax_run = diffrax_solver(lv, diffrax_lotka_volterra, "Tsit5", 1e-6, 1e-8)
    if diffrax_run is not None:
        cases.append(Case("lotka_volterra Tsit5 traced", ours, diffrax_run,
                          "diffrax Tsit5 (jit)", lv_ref))
        if c_compiler() is not None:
            # against compiled code, the tape compiled too (trace(..., compile=True))
            compiled = trace(lv.fun, lv.y0, lv.p, compile=True)

            def ours_compiled():
                return solve_ivp(compiled, lv.t_span, lv.y0, method="Tsit5", **kwargs).y

            cases.append(Case("lotka_volterra Tsit5 compiled", ours_compiled,
                              diffrax_run, "diffrax Tsit5 (jit)", lv_ref))
    return cases


def diffrax_lotka_volterra(t, y, p):
    """Lotka-Volterra as a diffrax user writes it (jax.numpy)."""
    import jax.numpy as jnp
    a, b, c, d = p[0], p[1], p[2], p[3]
    x, z = y[0], y[1]
    return jnp.stack([a * x - b * x * z, -c * z + d * x * z])


def _diffrax_solve(prob, vector_field, solver_name, rtol, atol, forward_mode=False):
    """``solve(p, y0) -> ys (nt, n)``: diffrax at ``prob.t_eval`` (float64,
    PIDController), not yet jit-compiled; None without jax/diffrax."""
    try:
        import jax
        import jax.numpy as jnp
        import diffrax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    term = diffrax.ODETerm(vector_field)
    solver = getattr(diffrax, solver_name)()
    saveat = diffrax.SaveAt(ts=jnp.asarray(prob.t_eval))
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    adjoint = diffrax.ForwardMode() if forward_mode else diffrax.RecursiveCheckpointAdjoint()
    t0, t1 = prob.t_span

    def solve(p, y0):
        return diffrax.diffeqsolve(term, solver, t0=t0, t1=t1, dt0=None, y0=y0, args=p,
                                   saveat=saveat, max_steps=1_000_000, adjoint=adjoint,
                                   stepsize_controller=controller).ys
    return solve


def _compiled(fn, prob, convert):
    """jit ``fn(p, y0)``, compile it outside the timing, return a runner."""
    import jax
    import jax.numpy as jnp
    compiled = jax.jit(fn)
    p, y0 = jnp.asarray(prob.p), jnp.asarray(prob.y0)
    compiled(p, y0).block_until_ready()

    def run():
        return convert(np.asarray(compiled(p, y0).block_until_ready()))
    return run


def diffrax_solver(prob, vector_field, solver_name, rtol, atol):
    """A jit-compiled diffrax solve of ``prob`` returning (n, nt), or None
    when jax/diffrax are not installed."""
    solve = _diffrax_solve(prob, vector_field, solver_name, rtol, atol)
    return None if solve is None else _compiled(solve, prob, lambda ys: ys.T)


# ---------------------------------------------------------------------------
# Adjoint gradients
# ---------------------------------------------------------------------------

def _adjoint_gradient():
    """``diffsens.adjoint_gradient``, or None while this build lacks it."""
    import diffsens
    return getattr(diffsens, "adjoint_gradient", None)


def _succeeded(res):
    """``res``, or RuntimeError with its message when the solve failed."""
    if getattr(res, "status", 0) != 0:
        raise RuntimeError(f"status {res.status}: {res.message}")
    return res


def _per_component(grad):
    """Gradients as a column (m, 1): `_error` then scales every component by
    its own reference size (ROBER's dL/dk2 is ~1e-12 of dL/dk1)."""
    return np.asarray(grad, dtype=float).reshape(-1, 1)


def _chain_rule(res, dgdy, wrt_y0=False):
    """Gradient of a loss with dL/dY = ``dgdy`` (n, nt) from forward
    sensitivities ``res.sens`` (n, m, nt) (and ``res.sens_y0`` (n, n, nt))."""
    grad = np.einsum("it,imt->m", dgdy, res.sens)
    if wrt_y0:
        grad = np.concatenate([grad, np.einsum("it,imt->m", dgdy, res.sens_y0)])
    return grad


def _sum_of_squares(Y, p):
    """Sum of y**2 over all states and outputs (LV, Brusselator)."""
    return (Y * Y).sum()


def _rober_loss(Y, p):
    """Sum of y1 over the 50 output times."""
    return Y[0].sum()


def diffrax_rober(t, y, p):
    """ROBER as a diffrax user writes it (jax.numpy)."""
    import jax.numpy as jnp
    k1, k2, k3 = p[0], p[1], p[2]
    a, b, c = k1 * y[0], k3 * y[1] * y[2], k2 * y[1] * y[1]
    return jnp.stack([-a + b, a - b - c, c])


def diffrax_grad(prob, vector_field, solver_name, rtol, atol, loss):
    """``jax.grad`` w.r.t. p of ``loss(ys)`` through a diffrax solve
    (``RecursiveCheckpointAdjoint``), jit-compiled outside the timing;
    the runner returns grad_p (m,).  None without jax/diffrax."""
    solve = _diffrax_solve(prob, vector_field, solver_name, rtol, atol)
    if solve is None:
        return None
    import jax
    return _compiled(jax.grad(lambda p, y0: loss(solve(p, y0))), prob, lambda g: g)


def _failed_peer(message):
    """A peer that could not run: its row reports NaN and ``message``."""
    def run():
        return np.nan
    run.failure = message
    return run


def adjoint_cases(lv=None):
    """Adjoint gradients: Lotka-Volterra and ROBER against diffrax ``jax.grad``
    (``RecursiveCheckpointAdjoint``), and forward sensitivities against the
    adjoint on an N x N Brusselator as n + m grows (the crossover).
    Empty while ``diffsens.adjoint_gradient`` is missing."""
    adjoint_gradient = _adjoint_gradient()
    if adjoint_gradient is None:
        return []
    lv = problems.get("lotka_volterra") if lv is None else lv
    return (_lv_adjoint_cases(lv, adjoint_gradient)
            + _rober_adjoint_cases(adjoint_gradient)
            + brusselator_crossover_cases(adjoint_gradient))


def _lv_adjoint_cases(lv, adjoint_gradient):
    """LV (rtol 1e-6, atol 1e-8, 101 outputs), L = sum y**2, dL/dp."""
    tight = solve_ivp_sens(lv.fun, lv.t_span, lv.y0, lv.p, method="DOP853",
                           t_eval=lv.t_eval, rtol=1e-13, atol=1e-14)
    reference = _per_component(_chain_rule(tight, 2 * tight.y))
    rhs = trace(lv.fun, lv.y0, lv.p)
    kwargs = dict(t_eval=lv.t_eval, loss=_sum_of_squares, method="Tsit5",
                  rtol=1e-6, atol=1e-8)

    def ours(adjoint):
        return lambda: _per_component(_succeeded(adjoint_gradient(
            rhs, lv.t_span, lv.y0, lv.p, adjoint=adjoint, **kwargs)).grad_p)

    def forward():
        res = solve_ivp_sens(rhs, lv.t_span, lv.y0, lv.p, method="Tsit5",
                             t_eval=lv.t_eval, rtol=1e-6, atol=1e-8)
        return _per_component(_chain_rule(res, 2 * res.y))

    # 'discrete' differentiates the discrete solution, as diffrax's
    # RecursiveCheckpointAdjoint does; 'gauss' (the default) is the
    # continuous adjoint
    grad = diffrax_grad(lv, diffrax_lotka_volterra, "Tsit5", 1e-6, 1e-8,
                        lambda ys: (ys * ys).sum())
    peer = None if grad is None else (lambda: _per_component(grad()))
    return _adjoint_rows("lv dL/dp Tsit5", ("discrete", "gauss"), ours, reference,
                         (forward, "diffsens forward dual"), (peer, "jax.grad Tsit5 (jit)"))


def _adjoint_rows(prefix, strategies, ours, reference, *peers):
    """A row per strategy and peer: ``ours(strategy)`` against each
    ``(peer, name)`` whose peer is not None."""
    return [Case(f"{prefix} adjoint={adjoint} traced", ours(adjoint), peer, name, reference)
            for adjoint in strategies for peer, name in peers if peer is not None]


def _rober_adjoint_cases(adjoint_gradient):
    """ROBER (t in [0, 1e5], 50 log-spaced outputs, rtol 1e-6, atol 1e-10),
    L = sum of y1 at the outputs, dL/dp: Rodas5P adjoint against diffrax
    Kvaerno5 ``jax.grad``."""
    rober = problems.get("rober_1e5")
    dgdy = np.zeros((rober.n, len(rober.t_eval)))
    dgdy[0] = 1.0
    rhs = trace(rober.fun, rober.y0, rober.p)
    tight = _rober_tight_sensitivities(rober, rhs)
    reference = _per_component(_chain_rule(tight, dgdy))
    kwargs = dict(t_eval=rober.t_eval, rtol=1e-6, atol=1e-10)

    def ours(adjoint):
        def run():
            res = adjoint_gradient(rhs, rober.t_span, rober.y0, rober.p, loss=_rober_loss,
                                   method="Rodas5P", adjoint=adjoint, **kwargs)
            return _per_component(_succeeded(res).grad_p)
        return run

    def forward():
        res = solve_ivp_sens(rhs, rober.t_span, rober.y0, rober.p, method="Rodas5P",
                             sens="continuous", **kwargs)
        return _per_component(_chain_rule(res, dgdy))

    peer = peer_name = None      # stays None without diffrax
    try:
        grad = diffrax_grad(rober, diffrax_rober, "Kvaerno5", 1e-6, 1e-10,
                            lambda ys: ys[:, 0].sum())
        if grad is not None:
            value = grad()
            if not np.all(np.isfinite(value)):
                raise FloatingPointError(f"non-finite gradient {value}")
            peer, peer_name = (lambda: _per_component(grad())), "jax.grad Kvaerno5 (jit)"
    except Exception as exc:        # diffrax's failure is a result, not a crash
        peer = _failed_peer(f"{type(exc).__name__}: {exc}")
        peer_name = "jax.grad Kvaerno5 FAILED"
    # 'gauss' (the default) integrates the continuous adjoint, restarting at
    # each output; 'discrete' reverses the forward steps, as jax.grad does
    return _adjoint_rows("rober dL/dp Rodas5P", ("gauss", "discrete"), ours, reference,
                         (forward, "diffsens fwd continuous"), (peer, peer_name))


def brusselator_2d(N):
    """``(fun, y0, p)`` of the N x N periodic 2-D Brusselator (2 N^2 states,
    3 parameters), y = (u, v) flattened; the asv sensitivity-scaling and
    adjoint benchmarks use it too."""
    idx = np.arange(N * N).reshape(N, N)
    up, down = np.roll(idx, 1, 0).ravel(), np.roll(idx, -1, 0).ravel()
    left, right = np.roll(idx, 1, 1).ravel(), np.roll(idx, -1, 1).ravel()
    h2 = float(N * N)

    def fun(t, y, p):
        a, b, alpha = p[0], p[1], p[2]
        u, v = y[:N * N], y[N * N:]
        lap_u = (u[up] + u[down] + u[left] + u[right] - 4 * u) * h2
        lap_v = (v[up] + v[down] + v[left] + v[right] - 4 * v) * h2
        uuv = u * u * v
        return np.concatenate([a + uuv - (b + 1) * u + alpha * lap_u,
                               b * u - uuv + alpha * lap_v])

    x = np.linspace(0, 1, N, endpoint=False)
    X, Y = np.meshgrid(x, x)
    y0 = np.concatenate([(22 * Y * (1 - Y) ** 1.5).ravel(),
                         (27 * X * (1 - X) ** 1.5).ravel()])
    return fun, y0, np.array([1.0, 3.4, 0.002])


#: The crossover Brusselator: t in [0, 1], 11 outputs, L = sum of y**2 at the
#: outputs.  Not stiff at N <= 10 (|lambda|max ~ 21; Tsit5 takes ~55 steps,
#: Rodas5P ~65 at 10x the cost), so Tsit5.
BRUSSELATOR_T_SPAN = (0.0, 1.0)
BRUSSELATOR_T_EVAL = np.linspace(0.0, 1.0, 11)
BRUSSELATOR_SIZES = (2, 5, 10)


def brusselator_crossover_cases(adjoint_gradient, sizes=BRUSSELATOR_SIZES):
    """dL/d(p, y0) of the N x N Brusselator (n = 2 N^2, n + m = 4 N^2 + 3):
    adjoint (diffsens column) against forward dual sensitivities (peer
    column), so ``ratio`` = forward / adjoint: below 1 the forward pass wins
    (small N), above 1 the adjoint does."""
    cases = []
    for N in sizes:
        fun, y0, p = brusselator_2d(N)
        rhs = trace(fun, y0, p)
        kwargs = dict(t_eval=BRUSSELATOR_T_EVAL, method="Tsit5", rtol=1e-6, atol=1e-8)
        tight = solve_ivp_sens(rhs, BRUSSELATOR_T_SPAN, y0, p, method="Vern7",
                               t_eval=BRUSSELATOR_T_EVAL, wrt=("p", "y0"),
                               rtol=1e-12, atol=1e-14)
        reference = _chain_rule(tight, 2 * tight.y, wrt_y0=True)

        def adjoint(rhs=rhs, y0=y0, p=p):
            res = _succeeded(adjoint_gradient(rhs, BRUSSELATOR_T_SPAN, y0, p,
                                              loss=_sum_of_squares, **kwargs))
            return np.concatenate([res.grad_p, res.grad_y0])

        def forward(rhs=rhs, y0=y0, p=p):
            res = solve_ivp_sens(rhs, BRUSSELATOR_T_SPAN, y0, p, wrt=("p", "y0"), **kwargs)
            return _chain_rule(res, 2 * res.y, wrt_y0=True)

        cases.append(Case(f"bruss2d N={N} dL/d(p,y0) n+m={4 * N * N + 3}", adjoint,
                          forward, "diffsens forward dual", reference))
    return cases


def _error(value, reference):
    """Largest error relative to each component's own scale (ROBER's y2 is
    ~1e-5 of y1: a single global scale would hide its errors)."""
    value, reference = np.asarray(value), np.asarray(reference)
    scale = np.max(np.abs(reference), axis=-1, keepdims=True) if reference.ndim > 1 \
        else np.max(np.abs(reference))
    return float(np.max(np.abs(value - reference) / np.maximum(scale, 1e-300)))


def _first_value(fn):
    """(the value ``fn`` returns, None) -- its warm-up call -- or (nan,
    "Error: ...") when it raises or is a peer marked as failed (``fn.failure``)."""
    failure = getattr(fn, "failure", None)
    if failure is not None:
        return np.nan, failure
    try:
        return fn(), None
    except Exception as exc:         # one failing contender must not end the table
        return np.nan, f"{type(exc).__name__}: {exc}"


def run_case(case, repeats=7, min_time=0.2):
    """Time both contenders of ``case`` in alternating rounds; returns a dict
    of figures.  A contender that raises gets NaN figures and its error in
    ``note``."""
    v_ours, fail_ours = _first_value(case.ours)
    v_peer, fail_peer = _first_value(case.peer)
    t_ours = t_peer = ratio = np.nan
    if not (fail_ours or fail_peer):
        t_ours, t_peer, ratio = _paired(case.ours, case.peer, repeats, min_time)
    elif not fail_ours:
        t_ours = _alone(case.ours, repeats, min_time)
    elif not fail_peer:
        t_peer = _alone(case.peer, repeats, min_time)
    row = {
        "label": case.label, "peer": case.peer_name,
        "ours_s": t_ours, "peer_s": t_peer, "ratio": ratio,
        "ours_err": np.nan if fail_ours else _error(v_ours, case.reference),
        "peer_err": np.nan if fail_peer else _error(
            v_peer, case.reference if case.peer_reference is None else case.peer_reference),
    }
    notes = [f"{who} failed: {why}" for who, why in (("diffsens", fail_ours),
                                                     (case.peer_name, fail_peer)) if why]
    if notes:
        row["note"] = "; ".join(notes)
    return row


def _ratio_text(ratio):
    """Two decimals below 10 (a cost ratio near 0.5 must read as such)."""
    return f"{ratio:.1f}" if ratio >= 10 else f"{ratio:.2f}"


def print_table(rows, file=None):
    header = (f"{'case':<34} {'peer':<24} {'diffsens':>10} {'peer':>10} "
              f"{'ratio':>7}  {'err diffsens':>12} {'err peer':>10}")
    print(header, file=file)
    print("-" * len(header), file=file)
    for r in rows:
        print(f"{r['label']:<34} {r['peer']:<24} {r['ours_s'] * 1e3:>8.3f}ms "
              f"{r['peer_s'] * 1e3:>8.3f}ms {_ratio_text(r['ratio']):>6}x  "
              f"{r['ours_err']:>12.2e} {r['peer_err']:>10.2e}", file=file)
    for r in rows:
        if r.get("note"):
            print(f"note: {r['label']} / {r['peer']}: {r['note']}", file=file)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m diffsens.bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--filter", default="", help="only cases whose label contains this")
    ns = parser.parse_args(argv)
    repeats, min_time = (3, 0.05) if ns.quick else (7, 0.3)
    rows = [run_case(c, repeats, min_time) for c in default_cases() if ns.filter in c.label]
    print("ratio = median over alternating rounds of peer time / diffsens time "
          "(above 1: diffsens faster); err = max relative error vs reference")
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
