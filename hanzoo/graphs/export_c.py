"""Write an MLP as plain C99 (model.h, model.c) from the plan in `lower.py`: no runtime, no heap, no
mutable global, nothing beyond <math.h>, so the same two files build for a server, a phone or a
microcontroller.

The arrays are the plan's own float32 arrays: v = 2u/||u||^2 precomputed, a regression net's scaling
folded into its ends. Only the constant-1 column is dropped: a graph format needs it to fold a bias into
a Gemm, while C adds the bias directly.

Two code paths give the same bits (the same operations in the same order on each row):
- one row at a time, held in a small array;
- blocks of BLOCK_ROWS rows, features-major, with the loop over rows innermost: each row keeps its own
  accumulator, so the compiler vectorizes across rows without reassociating any sum (no -ffast-math).
Rows that do not fill a block take the one-row path. A build with BLOCK_ROWS defined to 1 (cc -D) leaves
the block path out: the smallest code and stack, for a microcontroller, whose FPU has no vector unit for
blocks of rows to fill.

The weights are written as hex floats, which C99 converts exactly (6.4.4.2), so the compiled model holds
the plan's float32 values on any compiler; the bytes depend on the weights alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import HanzooError
from ..nn.models import Net
from ..version import __version__
from ..zoo.tasks import Checkerboard, Regression, get_task
from .lower import DenseStep, HanStep, lower

BLOCK_ROWS = 16
PER_LINE = 6  # numbers per line of an array
ACTS = {"abs": "ACT_ABS", "relu": "ACT_RELU", None: "ACT_NONE"}


@dataclass
class CDense:
    weight: np.ndarray  # [out, in] float32
    bias: np.ndarray  # [out] float32
    act: str | None


@dataclass
class CHan:
    v: np.ndarray  # [n] 2u/||u||^2
    neg_u: np.ndarray  # [n] -u
    bias: np.ndarray  # [n]
    act: str


def c_name(model_id: str) -> str:
    """The C identifier of a model: its id with every other character as '_' (the symbols and macros of
    two models never clash, so both link into one program)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", model_id)
    return name if name[:1].isalpha() else f"m_{name}"


def c_layers(steps: list[DenseStep | HanStep]) -> list[CDense | CHan]:
    """The plan without its constant-1 column: each Dense layer with a plain bias, and a Han-layer as
    (v, -u, bias)."""
    out: list[CDense | CHan] = []
    for k, s in enumerate(steps):
        if isinstance(s, HanStep):
            n = s.p.shape[0] - 1
            out.append(CHan(s.p[:n, 0], s.q[0, :n], s.q[1, :n], s.act))
            continue
        w, b = s.weight, s.bias
        if b is None:  # the bias rides in the last input column, the constant 1
            w, b = w[:, :-1], w[:, -1]
        if k + 1 < len(steps) and isinstance(steps[k + 1], HanStep):
            # the last row emits the constant 1 for the Han run: zero weights, bias 1
            if w[-1].any() or b[-1] != 1:
                raise ValueError(f"plan step {k}: the constant-1 row is not (0, ..., 0; 1)")
            w, b = w[:-1], b[:-1]
        out.append(CDense(np.ascontiguousarray(w), np.ascontiguousarray(b), s.act))
    return out


def hex_float(x: float) -> str:
    """A float32 value as a C99 hex-float literal, exact and as short as its bits allow."""
    if not math.isfinite(x):
        raise HanzooError(f"the C export cannot hold a non-finite weight ({x})")
    mantissa, exponent = float(x).hex().split("p")  # Python writes 13 hex digits; float32 needs 6
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"


def _array(name: str, a: np.ndarray) -> list[str]:
    values = [hex_float(v) for v in np.asarray(a, dtype=np.float32).ravel().tolist()]
    lines = [f"static const float {name}[{len(values)}] = {{"]
    for i in range(0, len(values), PER_LINE):
        lines.append("    " + ", ".join(values[i : i + PER_LINE]) + ",")
    return lines + ["};"]


def _width(layers: list[CDense | CHan], n_in: int) -> int:
    dims = [n_in]
    for layer in layers:
        dims += list(layer.weight.shape) if isinstance(layer, CDense) else [len(layer.v)]
    return max(dims)


def _inputs_doc(task_name: str, n_in: int) -> list[str]:
    task = get_task(task_name)
    names = list(task.features) or [f"feature {i}" for i in range(n_in)]
    lines = [f" * Input x: rows x {n_in} float32, row-major, raw features (no scaling to apply):"]
    for i, name in enumerate(names):
        unit = task.units.get(name, "as in the dataset (its source states no unit)")
        lines.append(f" *   column {i}: {name}, {unit}")
    return lines


def _outputs_doc(task_name: str, n_out: int) -> list[str]:
    task = get_task(task_name)
    lines = [f" * Output y: rows x {n_out} float32, row-major, in task units:"]
    if isinstance(task, Checkerboard):
        lines += [
            f" *   the {n_out} scores, trained toward the 0/1 label (no unit);",
            f" *   the decision: class 1 where (y[0] + y[1]) / 2 > {task.THRESHOLD:g}f, else class 0",
            " *   (computed in float, as the other formats' `decision` output)",
        ]
    elif isinstance(task, Regression):
        unit = task.units.get(task.target, "the dataset's own units (its source states none)")
        lines.append(f" *   column 0: {task.target}, in {unit}")
    elif task.decision_output == "class":
        lines.append(f" *   the {n_out} logits (no unit); the class is the index of the largest")
    return lines


def stack_bytes(width: int, block_rows: int = BLOCK_ROWS) -> int:
    """The scratch the run function puts on the stack: two buffers of `width` floats per row of a block,
    and two for one row (the paths run one after the other, but a compiler may inline both); a build
    with blocks of 1 row has the one-row path alone."""
    return 4 * 2 * width * (block_rows + 1 if block_rows > 1 else 1)


def build_header(net: Net, model_id: str, task_name: str, weights_sha256: str) -> str:
    name = c_name(model_id)
    up = name.upper()
    layers = c_layers(lower(net))
    n_in, n_out = net.config.in_features, net.config.out_features
    width = _width(layers, n_in)
    han = sum(isinstance(layer, CHan) for layer in layers)
    lines = [
        f"/* {model_id} in plain C99: generated by hanzoo {__version__} from the lowered plan. Do not edit;",
        f" * `hanzoo export {model_id} --format c` writes it again.",
        " *",
        f" * Model:   {model_id} (task {task_name}), {net.config.num_params} parameters, "
        f"{len(layers) - han} dense and {han} Han-layers",
        f" * Weights: sha256 {weights_sha256} (model.safetensors)",
        " *",
        *_inputs_doc(task_name, n_in),
        *_outputs_doc(task_name, n_out),
        " *",
        f" * Run:     int {name}_run(const float *x, float *y, size_t rows);",
        " *          returns 0, or 1 if x or y is NULL (then nothing is read or written). x and y must",
        " *          not overlap. Re-entrant: no heap, no mutable global; the weights are static const",
        " *          (flash on a microcontroller).",
        f" * Stack:   at most {up}_STACK_BYTES bytes of scratch: {stack_bytes(width)} with blocks of "
        f"{BLOCK_ROWS} rows,",
        f" *          {stack_bytes(width, 1)} with blocks of 1.",
        f" * Paths:   whole blocks of {up}_BLOCK_ROWS rows run features-major, vectorized",
        " *          across rows; the rows left over run one at a time, with the same operations in the",
        " *          same order, so any split of a batch gives the same bits.",
        f" *          -D{up}_BLOCK_ROWS=1 builds the one-row path alone: the least flash and stack, for",
        " *          a microcontroller (its FPU has no vector unit for blocks of rows to fill).",
        " * Build:   cc -std=c99 -O3 -c model.c. ISO C mode keeps each a*b+c as two roundings (GNU modes",
        " *          let gcc fuse them into FMAs where the CPU has them, which moves the last bits);",
        " *          -ffast-math is not needed for speed, and would reorder the sums.",
        " */",
        f"#ifndef HANZOO_{up}_H",
        f"#define HANZOO_{up}_H",
        "",
        "#include <stddef.h>",
        "",
        f"#define {up}_N_IN {n_in}",
        f"#define {up}_N_OUT {n_out}",
        f"#ifndef {up}_BLOCK_ROWS",
        f"#define {up}_BLOCK_ROWS {BLOCK_ROWS}",
        "#endif",
        f"#define {up}_STACK_BYTES (4 * 2 * {width} * ({up}_BLOCK_ROWS > 1 ? {up}_BLOCK_ROWS + 1 : 1))",
        "",
        f"int {name}_run(const float *x, float *y, size_t rows);",
        "",
        f"#endif /* HANZOO_{up}_H */",
    ]
    return "\n".join(lines) + "\n"


_COMMON = """
enum act { ACT_NONE, ACT_ABS, ACT_RELU };

static float act(float z, enum act a)
{
    if (a == ACT_ABS)
        return fabsf(z);
    if (a == ACT_RELU)
        return z < 0.0f ? 0.0f : z; /* NaN passes, as in torch */
    return z;
}

/* y = act(W x + b): the bias first, then the products in input order */
static void dense_row(const float *restrict w, const float *restrict b, int n_in, int n_out, enum act a,
                      const float *restrict x, float *restrict y)
{
    int o, i;
    for (o = 0; o < n_out; o++) {
        float acc = b[o];
        for (i = 0; i < n_in; i++)
            acc += w[o * n_in + i] * x[i];
        y[o] = act(acc, a);
    }
}
"""

_HAN_ROW = """
/* h = act(h + (s (-u) + bias)), s = v.h with v = 2u/||u||^2: a Han-layer, in place */
static void han_row(const float *restrict v, const float *restrict neg_u, const float *restrict bias,
                    int n, enum act a, float *restrict h)
{
    int i;
    float s = 0.0f;
    for (i = 0; i < n; i++)
        s += v[i] * h[i];
    for (i = 0; i < n; i++)
        h[i] = act(h[i] + (s * neg_u[i] + bias[i]), a);
}
"""

# the block path, left out of a build with BLOCK_ROWS 1 (#if BLOCK > 1 around it)
_BLOCK = """
/* The loops over the rows of a block are the ones to vectorize. gcc would unroll them whole and vectorize
 * the loop around them instead, as in-order sums over the features: the same bits, but slow. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define ACROSS_ROWS _Pragma("GCC unroll 1")
#else
#define ACROSS_ROWS
#endif

/* act() on a block, one loop per activation, so each loop vectorizes */
static void act_block(float *z, enum act a)
{
    int r;
    if (a == ACT_ABS)
        for (r = 0; r < BLOCK; r++)
            z[r] = fabsf(z[r]);
    else if (a == ACT_RELU)
        for (r = 0; r < BLOCK; r++)
            z[r] = z[r] < 0.0f ? 0.0f : z[r];
}

/* dense_row on BLOCK rows, features-major (x[i * BLOCK + r]): one accumulator per row */
static void dense_block(const float *restrict w, const float *restrict b, int n_in, int n_out,
                        enum act a, const float *restrict x, float *restrict y)
{
    int o, i, r;
    for (o = 0; o < n_out; o++) {
        float acc[BLOCK];
        for (r = 0; r < BLOCK; r++)
            acc[r] = b[o];
        for (i = 0; i < n_in; i++) {
            const float wi = w[o * n_in + i];
            ACROSS_ROWS
            for (r = 0; r < BLOCK; r++)
                acc[r] += wi * x[i * BLOCK + r];
        }
        act_block(acc, a);
        for (r = 0; r < BLOCK; r++)
            y[o * BLOCK + r] = acc[r];
    }
}
"""

_HAN_BLOCK = """
static void han_block(const float *restrict v, const float *restrict neg_u, const float *restrict bias,
                      int n, enum act a, float *restrict h)
{
    int i, r;
    float s[BLOCK];
    for (r = 0; r < BLOCK; r++)
        s[r] = 0.0f;
    for (i = 0; i < n; i++) {
        const float vi = v[i];
        ACROSS_ROWS
        for (r = 0; r < BLOCK; r++)
            s[r] += vi * h[i * BLOCK + r];
    }
    for (i = 0; i < n; i++) {
        float z[BLOCK];
        ACROSS_ROWS
        for (r = 0; r < BLOCK; r++)
            z[r] = h[i * BLOCK + r] + (s[r] * neg_u[i] + bias[i]);
        act_block(z, a);
        for (r = 0; r < BLOCK; r++)
            h[i * BLOCK + r] = z[r];
    }
}
"""


def _calls(layers: list[CDense | CHan], block: bool) -> list[str]:
    """The layers as calls on two buffers: a Dense layer reads one and writes the other, a Han-layer
    works in place. Returns the calls; the result is in `a` or `b` as the last line says."""
    suffix = "block" if block else "row"
    cur, other = "a", "b"
    lines = []
    for k, layer in enumerate(layers):
        if isinstance(layer, CDense):
            n_out, n_in = layer.weight.shape
            lines.append(
                f"    dense_{suffix}(l{k}_w, l{k}_b, {n_in}, {n_out}, {ACTS[layer.act]}, {cur}, {other});"
            )
            cur, other = other, cur
        else:
            lines.append(
                f"    han_{suffix}(l{k}_v, l{k}_neg_u, l{k}_b, {len(layer.v)}, {ACTS[layer.act]}, {cur});"
            )
    return lines + [cur]


def build_source(net: Net, model_id: str) -> str:
    name = c_name(model_id)
    up = name.upper()
    layers = c_layers(lower(net))
    n_in = net.config.in_features
    width = _width(layers, n_in)
    lines = [
        f"/* {model_id}: the weights and the two code paths (see model.h). hanzoo {__version__}. */",
        '#include "model.h"',
        "",
        "#include <math.h>",
        "",
        f"#define BLOCK {up}_BLOCK_ROWS",
        f"#define N_IN {up}_N_IN",
        f"#define N_OUT {up}_N_OUT",
        f"#define WIDTH {width} /* the widest layer */",
        "",
    ]
    for k, layer in enumerate(layers):
        if isinstance(layer, CDense):
            n_out, k_in = layer.weight.shape
            lines.append(f"/* layer {k}: dense {k_in} -> {n_out}, {layer.act or 'no activation'} */")
            lines += _array(f"l{k}_w", layer.weight) + _array(f"l{k}_b", layer.bias)
        else:
            lines.append(f"/* layer {k}: Han-layer of width {len(layer.v)}, {layer.act} */")
            lines += _array(f"l{k}_v", layer.v) + _array(f"l{k}_neg_u", layer.neg_u)
            lines += _array(f"l{k}_b", layer.bias)
    han = any(isinstance(layer, CHan) for layer in layers)
    *row, row_out = _calls(layers, block=False)
    *blk, blk_out = _calls(layers, block=True)
    lines += _COMMON.splitlines() + (_HAN_ROW.splitlines() if han else [])
    lines += [
        "",
        "static void run_row(const float *x, float *y)",
        "{",
        "    float a[WIDTH], b[WIDTH];",
        "    int i;",
        "    for (i = 0; i < N_IN; i++)",
        "        a[i] = x[i];",
        *row,
        "    for (i = 0; i < N_OUT; i++)",
        f"        y[i] = {row_out}[i];",
        "}",
        "",
        "#if BLOCK > 1",
        *_BLOCK.splitlines(),
        *(_HAN_BLOCK.splitlines() if han else []),
        "",
        "static void run_block(const float *x, float *y)",
        "{",
        "    float a[WIDTH * BLOCK], b[WIDTH * BLOCK];",
        "    int i, r;",
        "    for (r = 0; r < BLOCK; r++)",
        "        for (i = 0; i < N_IN; i++)",
        "            a[i * BLOCK + r] = x[r * N_IN + i];",
        *blk,
        "    for (r = 0; r < BLOCK; r++)",
        "        for (i = 0; i < N_OUT; i++)",
        f"            y[r * N_OUT + i] = {blk_out}[i * BLOCK + r];",
        "}",
        "#endif /* BLOCK > 1 */",
        "",
        f"int {name}_run(const float *x, float *y, size_t rows)",
        "{",
        "    size_t r = 0;",
        "    if (x == NULL || y == NULL)",
        "        return 1;",
        "#if BLOCK > 1",
        "    for (; r + BLOCK <= rows; r += BLOCK)",
        "        run_block(x + r * N_IN, y + r * N_OUT);",
        "#endif",
        "    for (; r < rows; r++)",
        "        run_row(x + r * N_IN, y + r * N_OUT);",
        "    return 0;",
        "}",
    ]
    return "\n".join(lines) + "\n"


def build_c(net: Net, model_id: str, task_name: str, weights_sha256: str) -> dict[str, str]:
    """The C export of an MLP: {"model.h": text, "model.c": text}."""
    if net.config.takes_images:
        raise HanzooError(
            f"the C export covers the MLP models; {model_id} is an image model (a conv backbone), which it "
            "leaves out: export it as onnx, ort, tflite or pte"
        )
    return {
        "model.h": build_header(net, model_id, task_name, weights_sha256),
        "model.c": build_source(net, model_id),
    }
