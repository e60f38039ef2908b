"""The tflite-micro runtime's library: TensorFlow Lite for Microcontrollers' Python interpreter (PyPI
`tflite-micro`), which runs TFLM's own reference kernels on a .tflite file at its static shapes (batch 1:
one row per invoke), and the smallest tensor arena that file runs in, found by bisection.

An arena too small for a file can take the interpreter down with the process (seen: SIGSEGV after "Failed
to allocate temp memory"), so each probe of the search runs in a child process of its own, and a probe
passes only when the child invokes the file and gives the outputs it gives in an ample arena.

The arena is the Python interpreter's. It allocates through TFLM's recording allocator, whose records take a
little more of the arena's tail than the plain allocator's, so the figure bounds from above what the same TFLM
release's MicroInterpreter needs for the file on a device (where the kernels and the model stay in flash)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .. import provenance
from ..errors import HanzooError

__all__ = [
    "PACKAGE",
    "DIST",
    "GRANULE",
    "INSTALL",
    "runtime",
    "interpreter",
    "version",
    "outputs_in",
    "arena_bytes",
]

PACKAGE = "tflite_micro"  # the import
DIST = "tflite-micro"  # the PyPI distribution
INSTALL = "pip install 'hanzoo[tflm]'"
GRANULE = 16  # TFLM aligns every buffer in its arena to 16 bytes (MicroArenaBufferAlignment)
PROBE_TIMEOUT_S = 300

# One probe: the file in an arena of argv[2] bytes, invoked once on zeros; its outputs printed as hex.
_PROBE = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
d = it.get_input_details(0)
it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), 0)
it.invoke()
outs = []
for i in range(int(sys.argv[3])):
    outs.append(np.ascontiguousarray(it.get_output(i)).tobytes().hex())
print(" ".join(outs))
"""


def runtime():
    """tflite_micro's runtime module, or one line saying how to install it."""
    try:
        from tflite_micro.python.tflite_micro import (  # noqa: PLC0415 - optional runtime, loaded on use
            runtime as tflm,
        )
    except ImportError:
        raise HanzooError(
            f"the tflite-micro runtime needs TensorFlow Lite for Microcontrollers: {INSTALL}"
        ) from None
    return tflm


def interpreter(data: bytes, arena: int | None = None):
    """A TFLM interpreter of a .tflite file's bytes (arena None: the interpreter's default, ten times the
    file's size), or one line saying why not."""
    tflm = runtime()
    try:
        return tflm.Interpreter.from_bytes(data, arena_size=arena)
    except (RuntimeError, ValueError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HanzooError(f"TFLite Micro cannot load the file: {why}") from None


def version() -> str:
    """The installed tflite-micro release (its arena sizes are that release's)."""
    return provenance.dist_version(DIST)


def outputs_in(path: Path, arena: int, outputs: int) -> str | None:
    """The `outputs` outputs of the .tflite file at `path` invoked on zeros in an arena of `arena` bytes, in a
    child process, as hex; None where TFLM cannot create or invoke it there (or crashes)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path), str(arena), str(outputs)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def arena_bytes(path: Path, outputs: int) -> int:
    """The smallest arena (a multiple of GRANULE bytes) in which TFLM creates and invokes the .tflite file at
    `path` (which has `outputs` outputs) and gives the outputs it gives in an ample one."""
    runtime()  # says how to install it, rather than failing every probe
    path = Path(path)
    high = -(-10 * path.stat().st_size // GRANULE) * GRANULE  # the interpreter's own default
    want = outputs_in(path, high, outputs)
    while want is None:
        high *= 2
        if high > 1 << 31:
            raise HanzooError(f"TFLite Micro cannot run {path} in any arena up to 2 GiB")
        want = outputs_in(path, high, outputs)
    low = 0  # an arena known to be too small (no file runs in none)
    while high - low > GRANULE:
        mid = (low + high) // 2 // GRANULE * GRANULE
        if outputs_in(path, mid, outputs) == want:
            high = mid
        else:
            low = mid
    return high
