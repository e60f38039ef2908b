"""docs/quantization.md: every shipped model's fp16 and int8 variants, measured against fp32, and which
of them ship by hanzoo.publishing.ship's rule.

For each model and variant (hanzoo.graphs.precision), on this machine: the task metric on the whole test split
and its change from fp32, the largest output error, the file's size, the median latency at batch 1 and
at a large batch against the fp32 file in the same runtime (timed interleaved, 1 thread), and the ops
the runtime executes (how many quantize/dequantize nodes, and which ops still compute in float).

`python -m hanzoo.reports.quantization` measures and writes docs/quantization.json and .md (the machine must
be otherwise idle: the latencies are compared within one run, but noise still widens them);
`--render` rewrites the .md from the .json alone, which is what the docs test checks. Shipping what it
decided (writing the winning variants into export/<id>/) is `python -m hanzoo.publishing.ship`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .. import provenance
from ..errors import HanzooError
from ..files import DOCS, written_atomically
from ..graphs.export_tflite import tflite_tensor_ops
from ..graphs.precision import FP16_MAX
from ..publishing.export import export_variants, onnx_package
from ..publishing.ship import FASTER, SLOWER, SMALLER, QuantizationReport, decide
from ..runtimes.sessions import RUNTIMES, runtime_for
from ..runtimes.verify import VARIANT_TOLERANCE
from ..zoo import registry
from ..zoo.registry import PRECISIONS, VARIANT_FILES, VARIANT_FORMATS
from ..zoo.tasks import get_task
from .bench import random_input, time_pair

ROUNDS = 15
INT_OPS = ("QLinear", "QGemm", "MatMulInteger", "ConvInteger", "DynamicQuantize")


def onnx_ops_as_run(path: Path) -> dict[str, int]:
    """The op histogram of an ONNX file as ONNX Runtime runs it (after its graph optimizations fuse
    QuantizeLinear/DequantizeLinear pairs into integer kernels, or fold fp16 casts)."""
    import onnxruntime as ort  # noqa: PLC0415 - optional runtime; the measurement needs it anyway

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(Path(tmp) / "run.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        graph = onnx_package().load(so.optimized_model_filepath).graph
        return dict(sorted(Counter(n.op_type for n in graph.node).items()))


def op_summary(fmt: str, path: Path) -> dict:
    """Op counts, the quantize/dequantize count, and the compute ops that stay float."""
    if fmt == "onnx":
        ops = onnx_ops_as_run(path)
        qdq = sum(n for op, n in ops.items() if op in ("QuantizeLinear", "DequantizeLinear"))
        floating = sorted(
            op
            for op in ops
            if op not in ("QuantizeLinear", "DequantizeLinear", "Cast") and not op.startswith(INT_OPS)
        )
    else:
        pairs = tflite_tensor_ops(path.read_bytes())
        ops = dict(sorted(Counter(op for op, _ in pairs).items()))
        qdq = sum(n for op, n in ops.items() if op in ("QUANTIZE", "DEQUANTIZE"))
        floating = sorted({op for op, is_float in pairs if is_float and op not in ("QUANTIZE", "DEQUANTIZE")})
        return {
            "ops": ops,
            "quantize_dequantize": qdq,
            "float_ops": floating,
            "xnnpack_partitions": _partitions(path),
        }
    return {"ops": ops, "quantize_dequantize": qdq, "float_ops": floating}


def _beyond_fp16(onnx_path: Path) -> list[str]:
    """The fp32 graph's weights with a value beyond float16's range (a regression model folds its
    input and target scaling into its first and last layers)."""
    from onnx import numpy_helper  # noqa: PLC0415 - optional extra, loaded with the graphs

    graph = onnx_package().load(str(onnx_path)).graph
    return [i.name for i in graph.initializer if np.abs(numpy_helper.to_array(i)).max(initial=0) > FP16_MAX]


def _partitions(path: Path) -> int:
    """How many pieces XNNPACK takes the graph in: 1 when it runs every op; more when ops it cannot run
    (on LiteRT's own kernels) split it."""
    from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 - optional runtime

    interp = Interpreter(model_path=str(path), num_threads=1)
    try:
        interp.allocate_tensors()
    except RuntimeError as e:
        raise HanzooError(f"LiteRT cannot prepare {path.name}: {str(e).splitlines()[0]}") from None
    return sum(op["op_name"] == "DELEGATE" for op in interp._get_ops_details())  # noqa: SLF001 - no public API


def _latency(model_id: str, folder: Path, fmt: str, precision: str, batches: tuple[int, ...]) -> dict:
    entry = registry.get(model_id)
    fns = {
        "fp32": RUNTIMES[runtime_for(fmt)].load(entry.dir, folder, 1),
        precision: RUNTIMES[runtime_for(fmt, precision)].load(entry.dir, folder, 1),
    }
    rng = np.random.default_rng(0)
    out = {}
    for b in batches:
        t = time_pair(fns, random_input(rng, b, entry.config.input_shape), ROUNDS)
        fp32, var = statistics.median(t["fp32"]), statistics.median(t[precision])
        out[str(b)] = {"fp32_us": 1e6 * fp32, "variant_us": 1e6 * var, "ratio": var / fp32}
    return out


def measure_model(model_id: str) -> list[dict]:
    """Every variant of one shipped model, built in a scratch copy of its export folder."""
    entry = registry.get(model_id)
    beyond = _beyond_fp16(registry.EXPORT_DIR / model_id / registry.ARTIFACTS["onnx"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / model_id
        shutil.copytree(registry.EXPORT_DIR / model_id, folder)
        for name in VARIANT_FILES.values():
            (folder / name).unlink(missing_ok=True)
        for precision in PRECISIONS:
            for fmt in VARIANT_FORMATS:
                row: dict[str, Any] = {
                    "model": model_id,
                    "family": entry.family,
                    "task": entry.task,
                    "format": fmt,
                    "precision": precision,
                    "metric": get_task(entry.task).metric,
                    "beyond_fp16": beyond,
                }
                try:
                    row |= _measure_variant(model_id, folder, fmt, precision)
                except HanzooError as e:  # a variant that cannot be built or run still gets its row
                    row |= {"error": str(e).replace(str(folder), f"export/{model_id}"), "bytes": None}
                row["ships"], row["why"] = decide(row)
                rows.append(row)
    return rows


def _measure_variant(model_id: str, folder: Path, fmt: str, precision: str) -> dict:
    entry = registry.get(model_id)
    batches = (1, 64) if entry.config.takes_images else (1, 1024)
    export_variants(model_id, precision, [fmt], folder)
    parity = json.loads((folder / "manifest.json").read_text())["parity"]
    ref, r = parity["reference"], parity["runtimes"][runtime_for(fmt, precision)]
    path = folder / VARIANT_FILES[(fmt, precision)]
    return {
        "fp32": ref["value"],
        "value": r["metric"],
        "delta": r["metric"] - ref["value"],
        "metric_ok": r["ok"],
        "max_abs_err": r["max_abs_err"],
        "decisions_differ": r["decisions_differ"],
        "bytes": path.stat().st_size,
        "fp32_bytes": (folder / registry.ARTIFACTS[fmt]).stat().st_size,
        "latency": _latency(model_id, folder, fmt, precision, batches),
        **op_summary(fmt, path),
    }


def measure(model_ids: list[str] | None = None, progress: bool = True) -> dict:
    from rich.progress import track  # noqa: PLC0415 - only the long measurement shows progress

    ids = model_ids or registry.shipped()
    rows = [row for mid in track(ids, "quantizing", disable=not progress) for row in measure_model(mid)]
    return {
        "rows": rows,
        "tolerance": VARIANT_TOLERANCE,
        "rule": {"slower": SLOWER, "smaller": SMALLER, "faster": FASTER},
        "rounds": ROUNDS,
        "threads": 1,
        "machine": provenance.machine_line(),
        "versions": provenance.versions()
        | {
            d: provenance.dist_version(d) for d in ("onnx", "onnxruntime", "tensorflow-cpu", "ai-edge-litert")
        },
    }


def _fmt_metric(metric: str, v: float) -> str:
    return f"{v:.4f}" if metric == "nrmse" else f"{v:.2f}"


def _delta(row: dict) -> str:
    if row["metric"] == "nrmse":
        return f"{100 * row['delta'] / row['fp32']:+.2f}%"
    return f"{row['delta']:+.2f}"


def render(report: dict) -> str:
    """docs/quantization.md from the measured report alone."""
    rows, tol, rule = report["rows"], report["tolerance"], report["rule"]
    shipped = [r for r in rows if r["ships"]]
    lines = [
        "# Reduced precision: fp16 and int8 variants, measured",
        "",
        "Generated by `python -m hanzoo.reports.quantization` from docs/quantization.json; do not edit.",
        f"Measured on {report['machine']}; every runtime on 1 thread, {report['rounds']} interleaved rounds "
        "per latency; with " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v) + ".",
        "",
        "`hanzoo export ID --precision fp16|int8` writes the variants beside the fp32 files:",
        "",
        "- **fp16**: weights stored in half precision; input, output and arithmetic stay float32. ONNX: "
        "float16 initializers, each cast back to float32 (ONNX Runtime folds the casts at load). TFLite: "
        "the converter's float16 weights, dequantized once by XNNPACK.",
        "- **int8**: static quantization calibrated on 1000 rows (or images) of the training split, never "
        "validation or test data. ONNX: QDQ format through `onnxruntime.quantization` (uint8 activations "
        "and per-channel int8 weights, the pair ONNX Runtime fuses into integer kernels on x86-64; min-max "
        "calibration). TFLite: the converter's full-integer kernels "
        "from a representative dataset; input and output stay float32 (the graph quantizes at its ends).",
        "",
        "## The rule: a variant ships only where it wins",
        "",
        f"- Its task metric on the whole test split is within the variant tolerance of fp32 (what "
        f"`hanzoo verify` checks): {tol['accuracy']} accuracy points on Checkerboard, {tol['top1_error']} "
        f"top-1 points on CIFAR-10, {100 * tol['nrmse']:g}% relative NRMSE.",
        f"- It is not slower: its median latency is at most {rule['slower']:.2f}x the fp32 file's in the "
        "same runtime at every batch timed (the margin is the timing noise of this machine).",
        f"- It gains something: at most {rule['smaller']:.2f}x the fp32 file's bytes, or at most "
        f"{rule['faster']:.2f}x its time at some batch.",
        "",
        f"Shipped: {len(shipped)} of {len(rows)} variants"
        + (
            " (" + ", ".join(sorted({f"{r['precision']} {r['format']}" for r in shipped})) + ")."
            if shipped
            else "."
        )
        + " They live in `export/<id>/` beside the fp32 files, are pinned in the Hub manifest, ship in the "
        "wheel (but the image models', which come from the Hub with their model), and `hanzoo verify` "
        "checks them.",
        "",
        *_summary(rows),
        *_analysis(rows),
        "## Every model and variant",
        "",
        "Max abs err: the largest |variant - torch fp32| output on the test split. Latency: median "
        "microseconds per call, variant / fp32 in the same runtime. Q/DQ: quantize and dequantize ops "
        "in the graph as the runtime executes it. Float ops: compute ops that stay float32. XNNPACK: the "
        "pieces LiteRT's XNNPACK delegate takes a TFLite graph in (1: it runs every op; more: ops it cannot "
        "run split the graph, and run on LiteRT's own kernels between the pieces).",
        "",
        "| model | variant | metric (fp32) | change | max abs err | bytes (fp32) | batch 1 | large batch | "
        "Q/DQ | float ops | XNNPACK | ships |",
        "| --- | --- | --- | ---: | ---: | --- | --- | --- | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| `{r['model']}` | {r['precision']} {r['format']} | - | - | - | - | - | - | - | - | - | "
                f"no: {r['why']} |"
            )
            continue
        (b1, big) = list(r["latency"].items())
        lines.append(
            f"| `{r['model']}` | {r['precision']} {r['format']} | {r['metric']} "
            f"{_fmt_metric(r['metric'], r['value'])} ({_fmt_metric(r['metric'], r['fp32'])}) | {_delta(r)} | "
            f"{r['max_abs_err']:.3g} | {r['bytes']} ({r['bytes'] / r['fp32_bytes']:.2f}x) | "
            f"{b1[1]['variant_us']:.0f} us ({b1[1]['ratio']:.2f}x) | "
            f"{big[1]['variant_us']:.0f} us at {big[0]} ({big[1]['ratio']:.2f}x) | "
            f"{r['quantize_dequantize']} | {', '.join(r['float_ops']) or '-'} | "
            f"{r.get('xnnpack_partitions', '-')} | {'yes' if r['ships'] else 'no'}: {r['why']} |"
        )
    return "\n".join(lines) + "\n"


def _summary(rows: list[dict]) -> list[str]:
    """The result per family and variant: how far the metric moves, and how many ship."""
    out = [
        "## In short",
        "",
        "| variant | family | models | metric within tolerance | worst change | ships |",
        "| --- | --- | ---: | ---: | --- | ---: |",
    ]
    keys = sorted({(r["precision"], r["format"], r["family"]) for r in rows})
    for precision, fmt, family in keys:
        group = [r for r in rows if (r["precision"], r["format"], r["family"]) == (precision, fmt, family)]
        ran = [r for r in group if "error" not in r]
        worst = (
            max(ran, key=lambda r: abs(r["delta"]) / (abs(r["fp32"]) if r["metric"] == "nrmse" else 1))
            if ran
            else None
        )
        out.append(
            f"| {precision} {fmt} | {family} | {len(group)} | {sum(r['metric_ok'] for r in ran)}"
            + (f" ({len(group) - len(ran)} do not run)" if len(ran) < len(group) else "")
            + " | "
            + (f"`{worst['model']}` {worst['metric']} {_delta(worst)}" if worst else "-")
            + f" | {sum(r['ships'] for r in group)} |"
        )
    return [*out, ""]


def _ran(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if "error" not in r and all(r[k] == v for k, v in match.items())]


def _ok(rows: list[dict]) -> str:
    return f"{sum(r['metric_ok'] for r in rows)} of {len(rows)}"


def _analysis(rows: list[dict]) -> list[str]:
    """HanNets against FCNets, in words, every figure taken from the rows."""
    han, fc = ({"family": "hannet"}, {"family": "fcnet"})
    kept = ", ".join(sorted({f"`{r['model']}`" for r in _ran(rows, precision="int8") if r["metric_ok"]}))
    heads = [r for r in _ran(rows, precision="int8", task="cifar10", **han)]
    lines = [
        "## HanNets against FCNets",
        "",
        f"- **fp16** keeps the task metric for {_ok(_ran(rows, precision='fp16', format='onnx', **han))} "
        f"HanNets and {_ok(_ran(rows, precision='fp16', format='onnx', **fc))} FCNets in ONNX. ONNX "
        "Runtime turns the half-precision weights back into float32 when it loads them, so the file is "
        "smaller and the speed is the fp32 file's.",
        f"- **int8** keeps it for {_ok(_ran(rows, precision='int8', **han))} HanNet variants and "
        f"{_ok(_ran(rows, precision='int8', **fc))} FCNet ones ({kept or 'none'}). "
        + _int8_losses(rows)
        + " Every layer rounds its activations to 8 bits, and a chain of 20 compounds it"
        + (
            ": the 20-layer FCNets of the Checkerboard ablation lose more than the 6- and 10-layer ones"
            if _deeper_loses_more(rows)
            else ""
        )
        + ". A reflection keeps the norm of what passes through, which in principle suits one scale per "
        "tensor; it does not save the HanNets here."
        + (
            " Where the HanNet is a small head on a conv backbone (CIFAR-10), its int8 variants keep the "
            "metric."
            if heads and all(r["metric_ok"] for r in heads)
            else ""
        ),
        *_runtime_notes(rows),
        *_scaling_notes(rows),
    ]
    return [*lines, ""]


def _deeper_loses_more(rows: list[dict]) -> bool:
    """Whether every 20-layer Checkerboard FCNet loses more accuracy under int8 than every shallower one."""
    fcnets = _ran(rows, precision="int8", family="fcnet", task="checkerboard")
    deep = [abs(r["delta"]) for r in fcnets if registry.get(r["model"]).config.depth >= 20]
    shallow = [abs(r["delta"]) for r in fcnets if registry.get(r["model"]).config.depth < 20]
    return bool(deep and shallow) and min(deep) > max(shallow)


def _int8_losses(rows: list[dict]) -> str:
    """The worst int8 change per task kind and family, as a sentence."""

    def worst(task_kind: str, family: str) -> float:
        group = [
            r
            for r in _ran(rows, precision="int8", family=family)
            if (r["metric"] == "nrmse") == (task_kind == "regression") and r["task"] != "cifar10"
        ]
        if not group:
            return float("nan")
        if task_kind == "regression":
            return max(r["value"] / r["fp32"] for r in group)
        return max(abs(r["delta"]) for r in group)

    return (
        f"On Checkerboard it moves a HanNet's accuracy by up to {worst('checkerboard', 'hannet'):.1f} "
        f"points and an FCNet's by up to {worst('checkerboard', 'fcnet'):.1f}; on the regressions it "
        f"multiplies a HanNet's NRMSE by up to {worst('regression', 'hannet'):.1f} and an FCNet's by up to "
        f"{worst('regression', 'fcnet'):.1f}."
    )


def _runtime_notes(rows: list[dict]) -> list[str]:
    out = []
    onnx_rows = {r["model"]: r for r in _ran(rows, precision="int8", format="onnx", task="checkerboard")}
    h, f = onnx_rows.get("checkerboard-hannet-20x30"), onnx_rows.get("checkerboard-fcnet-6x100")
    if h and f:
        out.append(
            "- **ONNX Runtime** fuses each Han-layer's dot product into an integer kernel (QLinearMatMul), "
            "but the update (a Gemm that adds x back) and Abs have none, so they stay float between "
            f"quantize and dequantize pairs: {h['quantize_dequantize']} Q/DQ ops run in the int8 "
            f"Checkerboard HanNet against {f['quantize_dequantize']} in FCNet-6x100, and it takes "
            f"{h['latency']['1024']['ratio']:.2f}x the fp32 time at batch 1024 where FCNet-6x100 takes "
            f"{f['latency']['1024']['ratio']:.2f}x."
        )
    lite = {r["model"]: r for r in _ran(rows, precision="int8", format="tflite", task="checkerboard")}
    h, f = lite.get("checkerboard-hannet-20x30"), lite.get("checkerboard-fcnet-6x100")
    if h and f:
        out.append(
            "- **LiteRT** runs every op of the int8 TFLite files in integers, ABS included, but XNNPACK "
            f"takes the Checkerboard HanNet's graph in {h['xnnpack_partitions']} pieces (FCNet-6x100's "
            f"in {f['xnnpack_partitions']}): the int8 ABS ops between them run on LiteRT's reference "
            f"kernels, at {h['latency']['1024']['ratio']:.2f}x the fp32 time at batch 1024."
        )
    failed = sorted({r["model"] for r in rows if "error" in r})
    if failed:
        out.append(
            f"- {len(failed)} models have a variant that does not run "
            f"({', '.join(f'`{m}`' for m in failed)}); the table gives each runtime's own error."
        )
    return out


def _scaling_notes(rows: list[dict]) -> list[str]:
    clamped = sorted({r["model"] for r in rows if r["beyond_fp16"]})
    lost = sorted(
        r["model"]
        for r in _ran(rows, precision="fp16", format="tflite")
        if r["beyond_fp16"] and not r["metric_ok"]
    )
    if not clamped:
        return []
    return [
        f"- **fp16 and folded scaling.** {len(clamped)} regression models fold their input or target "
        "scaling into a first or last layer with values beyond float16's 65504 (a target in dollars, or an "
        "input column with a tiny spread). The ONNX fp16 variant keeps those tensors float32; the TFLite "
        "converter clamps them to 65504"
        + (f", which costs the metric of {', '.join(f'`{m}`' for m in lost)}." if lost else ".")
    ]


def merged(old: dict, new: dict) -> dict:
    """`new` with the rows of every model it did not measure kept from `old`, in registry order: re-measuring
    one retrained model leaves the others' rows as they were."""
    fresh = {r["model"] for r in new["rows"]}
    rows = [r for r in old["rows"] if r["model"] not in fresh] + new["rows"]
    order = {m: i for i, m in enumerate(registry.shipped())}
    return new | {"rows": sorted(rows, key=lambda r: order.get(r["model"], len(order)))}


def write(report: dict, docs: Path = DOCS) -> list[Path]:
    docs.mkdir(parents=True, exist_ok=True)
    checked = QuantizationReport.from_json(report).to_json()  # the shape every reader relies on
    with written_atomically(docs / "quantization.json") as tmp:
        tmp.write_text(json.dumps(checked, indent=1) + "\n")
    with written_atomically(docs / "quantization.md") as tmp:
        tmp.write_text(render(report))
    return [docs / "quantization.json", docs / "quantization.md"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m hanzoo.reports.quantization", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "models", nargs="*", help="model ids (default: every shipped model; the others' rows are kept)"
    )
    ap.add_argument("--docs", type=Path, default=DOCS, help="output folder (default: the checkout's docs/)")
    ap.add_argument("--render", action="store_true", help="rewrite quantization.md from quantization.json")
    args = ap.parse_args(argv)
    stored = args.docs / "quantization.json"
    if args.render:
        report = QuantizationReport.read(stored).to_json()
    else:
        report = measure(args.models or None)
        if args.models and stored.exists():
            report = merged(QuantizationReport.read(stored).to_json(), report)
    for path in write(report, args.docs):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
