"""A tape's value pass compiled to machine code (``trace(..., compile=True)``).

The interpreter (``_kernels/tape.c``) pays for every operand an index load
and for every op a dispatch; on a right-hand side made of many small
products and sums (POLLU) that is about five times the cost of the same
function written in C.  Here the program the interpreter runs is written out
as straight-line C instead, one statement per op, compiled with the system C
compiler and loaded; the tape's value pass is then that function.

It computes exactly what the interpreter computes, in the same order, with
the same op definitions (``_kernels/tape_ops.h``), so its results are the
interpreter's bit for bit.  It is written twice: for ``f`` alone, and filling
every slot as the interpreter does, for the reverse sweep that follows.  The
dual lanes, reverse sweep and second-order pass stay interpreted.

Libraries are cached by the digest of their source and of the headers it
includes, in ``$DIFFSENS_CACHE_DIR`` or the user's cache folder, so a model
compiles once.
"""
import ctypes
import functools
import hashlib
import math
import os
import shutil
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass

import numpy as np

from ._kernels._core import _rows_digest
from ._schedule import SUM_END
from ._trace import Op

__all__ = ["MAX_OPS", "NativeValue", "c_compiler", "compile_value_pass", "shared_library",
           "value_pass_source"]

FLAGS = ["-O2", "-fPIC", "-shared", "-fno-math-errno", "-ffp-contract=off"]
# Past this many ops straight-line code loses: measured on a 1-D Brusselator,
# at 2550 ops it ran as fast as the interpreter (whose blocks of like ops run
# as loops) and took 3 s to compile; at 6800 ops it ran slower, and at 34000
# ops 2.8x slower after 140 s of compiling (the code outgrows the
# instruction cache).  At 850 ops it ran 1.8x faster after 0.7 s.
MAX_OPS = 2000
FUNCTION = "ds_native_value"    # fills every slot (the reverse sweep reads them)
FUNCTION_F = "ds_native_f"       # dy alone
_KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_kernels")

_BINARY = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*", Op.DIV: "/"}


@dataclass(frozen=True)
class NativeValue:
    """A compiled value pass: its two functions' addresses in their loaded
    library (``address``: every slot filled; ``address_f``: dy alone)."""
    address: int
    address_f: int
    rows_digest: str     # what it was compiled from (checked by TapeFunction)
    path: str
    library: object      # the ctypes.CDLL: the address is valid while it lives


def c_compiler():
    """The C compiler to use: ``$CC``, Python's own, or cc/gcc/clang; None if none."""
    for name in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if name:
            found = shutil.which(name.split()[0])
            if found:
                return found
    return None


def _literal(x):
    """A double as C source that reads back exactly (None: not finite)."""
    x = float(x)
    return f"({x.hex()})" if math.isfinite(x) else None


def value_pass_source(program, rows):
    """C source of the value pass of ``program`` (a ``_schedule.Program``)
    run op by op as ``rows`` (``TapeFunction.rows``): the functions
    ``ds_native_value`` and ``ds_native_f``, ``ds_tape_value_fn``s (tape.h)."""
    n, m = program.n, program.m
    n_const = program.consts.shape[0]
    first = 1 + n + m + n_const
    lc_slot, lc_weight = program.lc_slot, program.lc_weight
    names = {0: "t"}
    names.update({1 + i: f"y{i}" for i in range(n)})
    names.update({1 + n + i: f"p{i}" for i in range(m)})
    for i, c in enumerate(program.consts):
        slot = 1 + n + m + i
        names[slot] = _literal(c) or f"v[{slot}]"   # v holds the constants too

    def x(slot):
        return names[int(slot)]

    statements = []      # (slot, expression) op by op
    for r, (code, a, b, c) in enumerate(np.asarray(rows).tolist()):
        slot = first + r
        if code in _BINARY:
            expr = f"{x(a)} {_BINARY[code]} {x(b)}"
        elif code == Op.NEG:
            expr = f"-{x(a)}"
        elif code == Op.SQUARE:
            expr = f"{x(a)} * {x(a)}"
        elif code == Op.SUM:
            terms, j = ([], []), a
            for side in terms:
                while lc_slot[j] != SUM_END:
                    side.append(x(lc_slot[j]))
                    j += 1
                j += 1
            plus, minus = (" + ".join(["0.0"] + side) for side in terms)
            expr = f"({plus}) - ({minus})"
        elif code == Op.PROD3:
            expr = f"{x(a)} * {x(b)} * {x(c)}"
        elif code == Op.PROD:
            expr = " * ".join(x(s) for s in lc_slot[b:c])
        elif code == Op.LINCOMB:
            expr = " + ".join(["0.0"] + [f"{_literal(lc_weight[j]) or f'tape->lc_weight[{j}]'}"
                                         f" * {x(lc_slot[j])}" for j in range(b, c)])
        elif code == Op.POWI:
            expr = f"op_eval(DS_OP_POWI, {x(a)}, 0.0, 0.0, {int(b)}, 0).v"
        else:
            expr = f"op_eval({int(code)}, {x(a)}, {x(b)}, {x(c)}, 0, 0).v"
        names[slot] = f"s{slot}"
        statements.append((slot, expr))
    outputs = [x(s) for s in program.outputs]
    lines = ['#include "tape.h"', '#include "tape_ops.h"', "",
             "/* generated by diffsens/_native.py from a traced right-hand side */"]
    for name, slots in ((FUNCTION, True), (FUNCTION_F, False)):
        store = " v[{0}] = {1};" if slots else ""
        lines += [
            f"int {name}(const ds_tape *tape, double *v, double t, const double *y,",
            "    const double *p, double *dy)",
            "{",
            "    (void)tape;",
            f"    const double *pv = p != NULL ? p : v + {1 + n};",
        ]
        if slots:
            lines.append("    v[0] = t;")
        lines += [f"    const double y{i} = y[{i}];" + store.format(1 + i, f"y{i}")
                  for i in range(n)]
        lines += [f"    const double p{i} = pv[{i}];" for i in range(m)]
        if m:   # (a later call may pass p = NULL: the slots hold it)
            lines.append("    if (p != NULL) {")
            lines += [f"        v[{1 + n + i}] = p{i};" for i in range(m)]
            lines.append("    }")
        lines += [f"    const double s{slot} = {expr};" + store.format(slot, f"s{slot}")
                  for slot, expr in statements]
        lines += [f"    dy[{q}] = {value};" for q, value in enumerate(outputs)]
        lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


def _private(folder):
    """Whether only this user can put files into ``folder`` (a library loaded
    from it runs as this user)."""
    if not hasattr(os, "getuid"):
        return True
    info = os.stat(folder)
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _cache_dir():
    """Where compiled tapes are kept: ``$DIFFSENS_CACHE_DIR``, else the
    user's cache folder; a fresh private temporary folder if neither can be
    written or another user could write there."""
    folder = os.environ.get("DIFFSENS_CACHE_DIR")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "diffsens", "native")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if os.access(folder, os.W_OK) and _private(folder):
            return folder
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="diffsens-native-")


@functools.lru_cache(maxsize=None)
def _headers():
    """The headers a compiled tape includes (another diffsens version's
    layout or op definitions must not be served from the cache)."""
    parts = []
    for name in ("rhs.h", "tape.h", "tape_ops.h"):
        with open(os.path.join(_KERNELS, name)) as fh:
            parts.append(fh.read())
    return "\0".join(parts)


def shared_library(source, flags=FLAGS):
    """Compile C ``source`` (which may include the kernels' headers) into a
    shared library, or find it in the cache, and load it (a ``ctypes.CDLL``).

    Raises
    ------
    RuntimeError
        If there is no C compiler, or it fails; the message says how to go on
        without one (``compile=False``).
    """
    cc = c_compiler()
    if cc is None:
        raise RuntimeError("trace(..., compile=True) needs a C compiler and found none "
                           "(set CC, or install cc/gcc/clang); compile=False evaluates the "
                           "same tape in the interpreter.")
    key = hashlib.sha256("\0".join([source, _headers(), cc, *flags]).encode()).hexdigest()[:32]
    folder = _cache_dir()
    path = os.path.join(folder, f"lib-{key}.so")
    if not os.path.exists(path):
        fd, src = tempfile.mkstemp(suffix=".c", dir=folder)
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        partial = src[:-2] + ".so"
        try:
            done = subprocess.run([cc, *flags, "-I", _KERNELS, src, "-o", partial, "-lm"],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"compiling the tape with {cc} failed "
                                   f"(compile=False evaluates it in the interpreter):\n"
                                   f"{done.stderr.strip()[-2000:]}")
            os.replace(partial, path)   # atomic: another process may be compiling it too
        finally:
            for leftover in (src, partial):
                if os.path.exists(leftover):
                    os.remove(leftover)
    return path, ctypes.CDLL(path)


def compile_value_pass(program, rows):
    """Compile (or find in the cache) the value pass of ``program`` and load
    it; raises RuntimeError as `shared_library` does."""
    path, library = shared_library(value_pass_source(program, rows))
    address, address_f = (ctypes.cast(getattr(library, name), ctypes.c_void_p).value
                          for name in (FUNCTION, FUNCTION_F))
    return NativeValue(address, address_f, _rows_digest(program, rows), path, library)
