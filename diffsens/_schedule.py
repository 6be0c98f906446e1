"""Scheduling a recorded tape into blocks for the C interpreter.

The tracer (``_trace.py``) records one scalar op at a time.  Each op costs
the interpreter a dispatch and a round trip through memory, which is most of
the cost for right-hand sides made of many small products and sums
(mass-action kinetics).  So, before the C interpreter sees it:

* chains of products ``(a * b) * c`` whose inner product has no other use
  become one PROD op, and linear combinations with unit weights become SUM
  ops (no weights to load; each term list ends with a mark, so a short
  list costs no loop bounds): fewer ops to dispatch;
* ops are grouped by dependency level and kind into blocks, the program
  format the C side checks and keeps; it runs them op by op in that order
  (``ds_tape_linearize``), with threaded dispatch.

See ``_kernels/tape.h`` for the program format.
"""
from dataclasses import dataclass

import numpy as np

from ._trace import Op

__all__ = ["Program", "schedule"]

# Scheduler-only op codes (tape.h): the tracer never records these.
SUM, PROD = Op.SUM, Op.PROD
SUM_END = -1   # DS_SUM_END in tape.h: ends a SUM's plus list and its minus list
PROD_MAX = 8   # DS_PROD_MAX in tape.h

_UNARY = {Op.NEG, Op.ABS, Op.EXP, Op.LOG, Op.LOG1P, Op.EXPM1, Op.SQRT, Op.SIN,
          Op.COS, Op.TAN, Op.TANH, Op.SINH, Op.COSH, Op.ARCTAN, Op.ARCSIN,
          Op.ARCCOS, Op.SQUARE}


@dataclass(frozen=True)
class Program:
    """A tape in the block form that ``_kernels/tape.h`` executes."""
    n: int
    m: int
    consts: np.ndarray      # float64 (n_const,)
    blocks: np.ndarray      # int32 (n_blocks, 3): code, count, first arg
    args: np.ndarray        # int32, operand-major per block
    lc_slot: np.ndarray     # int32
    lc_weight: np.ndarray   # float64
    outputs: np.ndarray     # int32 (n,)
    n_ops: int
    autonomous: bool        # t (slot 0) is read by no op and is no output

    @property
    def n_blocks(self):
        return self.blocks.shape[0]


def _operands(code, a, b, c, lc_slot):
    """Slots an op reads."""
    if code == Op.LINCOMB:
        return [int(s) for s in lc_slot[a:a + b]]
    if code in _UNARY or code == Op.POWI:
        return [a]
    if code == Op.SELECT:
        return [a, b, c]
    return [a, b]


def _fuse(tape, base):
    """The tape's ops as a list of (code, operands, extra), with product chains
    fused into PROD and unit-weight LINCOMBs turned into SUM.

    ``extra`` is the POWI exponent or the LINCOMB weights; for SUM, operands
    are (plus, minus).  Dead ops (absorbed into a PROD) are None.
    """
    ops = np.asarray(tape.ops, dtype=np.int64).reshape(-1, 4)
    lc_slot = np.asarray(tape.lc_slot, dtype=np.int64)
    lc_weight = np.asarray(tape.lc_weight, dtype=np.float64)
    uses = np.zeros(base + len(ops), dtype=np.int64)
    for code, a, b, c in ops:
        for s in _operands(code, a, b, c, lc_slot):
            uses[s] += 1
    for s in np.asarray(tape.outputs):
        uses[s] += 1

    fused = []
    for code, a, b, c in ops:
        code, a, b, c = int(code), int(a), int(b), int(c)
        if code == Op.MUL:
            # x * (y * z) -> PROD(y, z, x) when y * z has no other use: the
            # product runs left to right, so the rounding is exactly the same
            factors = [a, b]
            for inner, other in ((a, b), (b, a)):
                k = inner - base
                if inner >= base and uses[inner] == 1 and fused[k] is not None \
                        and fused[k][0] in (Op.MUL, PROD) \
                        and len(fused[k][1]) < PROD_MAX:
                    factors = list(fused[k][1]) + [other]
                    fused[k] = None
                    break
            fused.append((Op.MUL if len(factors) == 2 else PROD, factors, None))
        elif code == Op.LINCOMB:
            weights = lc_weight[a:a + b]
            slots = [int(s) for s in lc_slot[a:a + b]]
            if np.all(np.isin(np.abs(weights), (1.0, 2.0, 3.0))):
                # small integer weights as repeated terms: no weights to load
                plus = [s for s, w in zip(slots, weights) if w > 0 for _ in range(int(w))]
                minus = [s for s, w in zip(slots, weights) if w < 0 for _ in range(int(-w))]
                fused.append((SUM, (plus, minus), None))
            else:
                fused.append((Op.LINCOMB, slots, weights))
        elif code == Op.POWI:
            fused.append((code, [a], c))
        else:
            fused.append((code, _operands(code, a, b, c, lc_slot), None))
    return fused


def _reads(code, operands):
    return operands[0] + operands[1] if code == SUM else operands


def schedule(tape):
    """Fuse, then group ``tape``'s ops into level-ordered blocks; renumber slots."""
    n, m = tape.n, tape.m
    consts = np.asarray(tape.consts, dtype=np.float64)
    base = 1 + n + m + consts.shape[0]
    fused = _fuse(tape, base)
    live = [i for i, op in enumerate(fused) if op is not None]
    n_ops = len(live)

    # dependency levels over the live ops (old slot numbers)
    level_of_slot = {}
    level = np.zeros(n_ops, dtype=np.int64)
    for k, i in enumerate(live):
        code, operands, _ = fused[i]
        deps = [level_of_slot[s] for s in _reads(code, operands) if s >= base]
        level[k] = 1 + max(deps) if deps else 0
        level_of_slot[base + i] = level[k]
    codes = np.array([fused[i][0] for i in live], dtype=np.int64)

    # blocks: by level, then op code; ops keep their recorded order inside
    order = np.lexsort((np.arange(n_ops), codes, level))
    new_slot = {s: s for s in range(base)}
    for rank, k in enumerate(order):
        new_slot[base + live[k]] = base + rank

    def renamed(slots):
        return [new_slot[s] for s in slots]

    blocks, args, lc_slots, lc_weights = [], [], [], []
    n_args = 0
    start = 0
    while start < n_ops:
        stop = start
        key = (level[order[start]], codes[order[start]])
        while stop < n_ops and (level[order[stop]], codes[order[stop]]) == key:
            stop += 1
        members = [fused[live[k]] for k in order[start:stop]]
        code = int(key[1])
        if code in (Op.LINCOMB, PROD, SUM):
            offsets = [len(lc_slots)]
            for _, operands, weights in members:
                if code == SUM:
                    # plus terms, -1, minus terms, -1: the interpreter walks
                    # a list to its end mark (no bounds to set up per list)
                    plus, minus = operands
                    listed = renamed(plus) + [SUM_END] + renamed(minus) + [SUM_END]
                else:
                    listed = renamed(operands)
                lc_slots.extend(listed)
                lc_weights.extend(weights if weights is not None else [1.0] * len(listed))
                offsets.append(len(lc_slots))
            block_args = [offsets]
        elif code == Op.POWI:
            block_args = [[new_slot[ops[0]] for _, ops, _ in members],
                          [exponent for _, _, exponent in members]]
        else:
            width = len(members[0][1])
            block_args = [[new_slot[ops[j]] for _, ops, _ in members] for j in range(width)]
        blocks.append((code, stop - start, n_args))
        for arr in block_args:
            args.append(np.asarray(arr, dtype=np.int64))
            n_args += len(arr)
        start = stop

    def frozen(a, dtype):
        a = np.ascontiguousarray(a, dtype=dtype)
        a.setflags(write=False)
        return a

    return Program(
        n=n, m=m, consts=frozen(consts, np.float64),
        blocks=frozen(np.asarray(blocks, dtype=np.int64).reshape(-1, 3), np.int32),
        args=frozen(np.concatenate(args) if args else np.zeros(0), np.int32),
        lc_slot=frozen(np.asarray(lc_slots, dtype=np.int64), np.int32),
        lc_weight=frozen(np.asarray(lc_weights, dtype=np.float64), np.float64),
        outputs=frozen(renamed(int(s) for s in tape.outputs), np.int32),
        n_ops=n_ops, autonomous=_autonomous(fused, live, tape.outputs))


def _autonomous(fused, live, outputs):
    """Whether no live op reads t (slot 0) and no output is t itself."""
    if any(int(s) == 0 for s in outputs):
        return False
    return not any(0 in _reads(fused[i][0], fused[i][1]) for i in live)
