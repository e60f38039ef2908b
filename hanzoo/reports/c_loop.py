"""The C exports timed from C: `hanzoo bench`'s `c-loop` rows.

The `c` runtime calls the library through ctypes, and at batch 1 that call costs more than the model. To
see what an app's native code or firmware gets, the models of a group are linked into one small program
that times each `<name>_run` in a C loop, interleaved across the models as `time_pair` does, built with
the c runtime's flags (ISO C, -O3, neither -march=native nor -ffast-math).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import HanzooError
from ..graphs.export_c import c_name
from ..runtimes import native
from ..zoo import registry
from ..zoo.formats import FORMATS

__all__ = ["NAME", "missing", "time_group"]

NAME = "c-loop"
OBJECT_FLAGS = ("-std=c99", "-O3")  # the c runtime's code generation, as objects of a program

HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

%(declarations)s
typedef int (*run_fn)(const float *, float *, size_t);
static const run_fn RUNS[] = {%(runs)s};
enum { MODELS = sizeof RUNS / sizeof RUNS[0] };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* seconds per call over `calls` calls; the output is read back so no call can be left out */
static double block(run_fn run, const float *x, float *y, size_t rows, long calls, volatile float *sink) {
    double start = now();
    for (long i = 0; i < calls; i++) {
        run(x, y, rows);
        *sink += y[0];
    }
    return (now() - start) / (double)calls;
}

int main(int argc, char **argv) {
    if (argc != 6) return 2;
    size_t rows = (size_t)atol(argv[1]), n_in = (size_t)atol(argv[2]), n_out = (size_t)atol(argv[3]);
    int rounds = atoi(argv[4]);
    double block_s = atof(argv[5]);
    float *x = malloc(rows * n_in * sizeof *x), *y = malloc(rows * n_out * sizeof *y);
    if (!x || !y || fread(x, sizeof *x, rows * n_in, stdin) != rows * n_in) return 3;
    volatile float sink = 0;
    long calls[MODELS];
    for (int m = 0; m < MODELS; m++) {
        RUNS[m](x, y, rows); /* warm-up */
        double once = block(RUNS[m], x, y, rows, 3, &sink);
        calls[m] = once > 0 && block_s / once > 1 ? (long)(block_s / once) : 1;
    }
    for (int r = 0; r < rounds; r++)
        for (int m = 0; m < MODELS; m++)
            printf("%%d %%.9e\n", m, block(RUNS[m], x, y, rows, calls[m], &sink));
    return 0;
}
"""


def missing() -> str | None:
    """Why the C loop cannot be timed here (no compiler), or None."""
    return native.missing()


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, timeout=native.COMPILE_TIMEOUT_S, **kw)
    if out.returncode != 0:
        err = out.stderr.decode(errors="replace") if isinstance(out.stderr, bytes) else out.stderr
        raise HanzooError(f"{what} failed: {(err or '').strip().splitlines()[:1] or out.returncode}")
    return out


def build(model_ids: list[str], folder: Path) -> Path:
    """The timing program of `model_ids`' C exports (the shipped export/<id>/model.c), in `folder`."""
    cc = native.compiler()
    if cc is None:
        raise HanzooError(f"the c-loop timing cannot run: {native.missing()}")
    objects = []
    for i, mid in enumerate(model_ids):
        source = registry.EXPORT_DIR / mid / FORMATS["c"].file
        if not source.is_file():
            raise HanzooError(f"{source} is missing; run `hanzoo export {mid} --format c` first")
        obj = folder / f"m{i}.o"
        _run([*cc, *OBJECT_FLAGS, "-c", "-o", str(obj), str(source)], f"compiling {source}")
        objects.append(str(obj))
    names = [f"{c_name(m)}_run" for m in model_ids]
    harness = folder / "time_loop.c"
    harness.write_text(
        HARNESS
        % {
            "declarations": "\n".join(f"int {n}(const float *x, float *y, size_t rows);" for n in names),
            "runs": ", ".join(names),
        }
    )
    program = folder / "time_loop"
    _run([*cc, *OBJECT_FLAGS, "-o", str(program), str(harness), *objects, "-lm"], "linking the C timing loop")
    return program


def time_group(
    model_ids: list[str], x: np.ndarray, rounds: int, block_s: float = 0.005
) -> dict[str, list[float]]:
    """Per-call seconds of each model's `<name>_run` on `x` (rows x features), over `rounds` interleaved
    blocks of about `block_s` each, timed inside one C program."""
    n_outs = {registry.get(m).config.out_features for m in model_ids}
    x = np.ascontiguousarray(x, dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        program = build(model_ids, Path(tmp))
        args = [str(len(x)), str(x.shape[1]), str(max(n_outs)), str(rounds), repr(block_s)]
        out = _run([str(program), *args], "the C timing loop", input=x.tobytes())
    samples: dict[str, list[float]] = {m: [] for m in model_ids}
    for line in out.stdout.decode().splitlines():
        index, seconds = line.split()
        samples[model_ids[int(index)]].append(float(seconds))
    if any(len(s) != rounds for s in samples.values()):
        raise HanzooError(f"the C timing loop gave {[len(s) for s in samples.values()]} rounds, not {rounds}")
    return samples
