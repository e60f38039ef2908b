"""`hanzoo bench`: latency and throughput of each model in each runtime, beside its FCNet baselines.

A HanNet and its baseline are timed interleaved (A B A B ...) in the same process, so drift on a noisy
machine hits both alike; each cell reports the median and p90 of per-call times over the rounds, and
every HanNet cell its ratio to each baseline. Threads default to 1, as a phone pins one core.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from .. import provenance
from ..errors import HanzooError
from ..files import save_figure
from ..nn.convnet import Backbone
from ..publishing.export import write_graphs
from ..runtimes.sessions import FORMAT_RUNTIMES, MORE_RUNTIMES, RUNTIMES, Predictor, get_runtime, ort_session
from ..storage import store
from ..zoo import registry
from ..zoo.formats import FORMATS
from . import c_loop, site

BATCHES = (1, 64, 1024)
CPU_RUNTIMES = ("torch", "torch-compile", *(f.runtime for f in FORMATS.values()))
WEB = "onnxruntime-web"  # model.onnx in headless Chromium (hanzoo.reports.site), timed inside the page
C_LOOP = c_loop.NAME  # the C exports timed inside a C program (hanzoo.reports.c_loop), not through ctypes
ALL_RUNTIMES = CPU_RUNTIMES + (C_LOOP, "torch-cuda", WEB)
TIMED_ELSEWHERE = (C_LOOP, WEB)  # pseudo-runtimes: timed by their own loop, not through RUNTIMES


_Input = TypeVar("_Input")  # what `fn` takes: a model's input, or None for a measurement of the machine


def _block(fn: Callable[[_Input], object], x: _Input, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn(x)
    return (time.perf_counter() - start) / n


def time_pair(
    fns: dict[str, Predictor], x: np.ndarray | dict[str, np.ndarray], rounds: int, block_s: float = 0.005
) -> dict[str, list[float]]:
    """Per-call seconds for each model over `rounds` interleaved blocks of about `block_s` each; `x` is
    one input for all, or one per model."""
    xs = x if isinstance(x, dict) else {name: x for name in fns}
    calls = {}
    for name, fn in fns.items():
        fn(xs[name])  # warm-up: first-run allocations, XNNPACK packing, ORT arena
        once = _block(fn, xs[name], 3)
        calls[name] = max(1, int(block_s / max(once, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(_block(fn, xs[name], calls[name]))
    return samples


def _artifact_bytes(model_id: str, runtime: str) -> int | None:
    art = {WEB: FORMATS["onnx"].file, C_LOOP: FORMATS["c"].file}.get(runtime) or RUNTIMES[runtime].artifact
    path = registry.EXPORT_DIR / model_id / art if art else registry.get(model_id).dir / "model.safetensors"
    return path.stat().st_size if path.is_file() else None


def _metric(model_id: str) -> dict | None:
    m = registry.get(model_id).metrics
    if not m.trained:
        return None
    return {"name": m.metric, "test": m.value("test")}


def default_models() -> list[str]:
    """What `hanzoo bench --all` times: every shipped HanNet, each with its baselines. Table 4's controls and
    the 20%-training variants (the 80% models' architectures, so the same speed) are not timed."""
    entries = [registry.get(m) for m in registry.shipped()]
    return [e.id for e in entries if e.family == "hannet" and not e.ablation and not e.variant_of]


def latency_check(model_id: str, runtimes: list[str]) -> tuple[list[dict], list[int]]:
    """`hanzoo verify --latency`: a shipped model's fp32 files (and torch) against its baselines, one thread,
    7 rounds, at batch 1 and 1024 (1 and 64 for an image model). The fp16/int8 variants are timed in
    docs/quantization.md. Returns the cells and the batches."""
    # tflite-micro is left out: TFLite Micro's reference kernels, one Python invoke a row, are its parity
    # check, not a device's speed
    rt = [r for r in runtimes if get_runtime(r).precision == "fp32" and r not in MORE_RUNTIMES] + ["torch"]
    batches = (1, 64) if registry.get(model_id).config.takes_images else (1, 1024)
    return bench([model_id], rt, batches, 1, rounds=7)["cells"], list(batches)


def bench(
    model_ids: list[str],
    runtimes: list[str] | None = None,
    batches: tuple[int, ...] = BATCHES,
    threads: int = 1,
    rounds: int = 21,
    progress=None,
) -> dict:
    """Time every model with its shipped FCNet baselines; returns a JSON-ready report."""
    if threads < 1 or rounds < 1:
        raise HanzooError(f"threads and rounds must be at least 1, got threads={threads}, rounds={rounds}")
    runtimes = list(runtimes or available_runtimes())
    for r in runtimes:
        if r not in RUNTIMES and r not in TIMED_ELSEWHERE:
            raise HanzooError(
                f"unknown runtime {r!r}; expected some of {', '.join([*RUNTIMES, *TIMED_ELSEWHERE])}"
            )
    groups = []
    for mid in model_ids:
        entry = registry.get(mid)
        if not entry.shipped:
            raise HanzooError(f"model {mid!r} has no shipped weights to time")
        base = [b.id for b in registry.baselines(mid) if b.shipped] if entry.family == "hannet" else []
        groups.append([mid, *base])
    cells = []
    rng = np.random.default_rng(0)
    with contextlib.ExitStack() as stack:
        web = stack.enter_context(site.browser_timer()) if WEB in runtimes else None
        for group in groups:
            cells += _time_group(group, runtimes, batches, threads, rounds, rng, web, progress)
    report = {
        "machine": provenance.machine(),
        "threads": threads,
        "batches": list(batches),
        "runtimes": runtimes,
        "groups": groups,
        "cells": cells,
    }
    images = [m for g in groups for m in g if registry.get(m).config.takes_images]
    if images:
        cpu = [r for r in runtimes if r != WEB and _covers_images(r)]
        report["head_share"] = head_share(images, cpu, batches, threads, rounds, progress)
    return report


def _time_group(group, runtimes, batches, threads, rounds, rng, web, progress) -> list[dict]:
    """Every cell of one HanNet and its baselines: each runtime, each batch, timed interleaved."""
    cells = []
    shape = registry.get(group[0]).config.input_shape
    for runtime in runtimes:
        if runtime == WEB and len(shape) == 3:
            continue  # in the browser: the Checkerboard and regression groups
        if len(shape) == 3 and not _covers_images(runtime):
            continue  # the C export covers the MLPs
        fns = {}
        if runtime not in TIMED_ELSEWHERE:
            fns = {
                m: RUNTIMES[runtime].load(registry.get(m).dir, registry.EXPORT_DIR / m, threads)
                for m in group
            }
        for batch in image_batches(batches) if len(shape) == 3 else batches:
            x = random_input(rng, batch, shape)
            if runtime == WEB:
                samples = web(group, x, rounds)
            elif runtime == C_LOOP:
                samples = c_loop.time_group(group, x, rounds)
            else:
                samples = time_pair(fns, x, rounds)
            med = {m: statistics.median(s) for m, s in samples.items()}
            for m, s in samples.items():
                cell = {
                    "model": m,
                    "runtime": runtime,
                    "batch": batch,
                    "median_us": med[m] * 1e6,
                    "p90_us": float(np.percentile(s, 90)) * 1e6,
                    "samples_per_s": batch / med[m],
                    "rounds": rounds,
                    "params": registry.get(m).config.num_params,
                    "artifact_bytes": _artifact_bytes(m, runtime),
                    "metric": _metric(m),
                    "path": getattr(fns.get(m), "path", None),
                }
                if m == group[0] and len(group) > 1:
                    cell["ratio_vs"] = {b: med[m] / med[b] for b in group[1:]}
                cells.append(cell)
            if progress:
                progress(f"{group[0]} {runtime} batch {batch}")
    return cells


def _covers_images(runtime: str) -> bool:
    """Whether a runtime covers the image models (torch and torch-cuda run every model, and so does
    onnxruntime-web; the C loop runs the C export, which covers the MLPs)."""
    if runtime == C_LOOP:
        return RUNTIMES["c"].covers(takes_images=True)
    return runtime not in RUNTIMES or RUNTIMES[runtime].covers(takes_images=True)


def image_batches(batches: tuple[int, ...]) -> tuple[int, ...]:
    """Image classifiers are timed up to batch 64: a batch of 1024 images is seconds of conv work per call
    on one core, and the per-image cost is flat by then."""
    return tuple(b for b in batches if b <= 64) or (min(batches),)


def random_input(rng: np.random.Generator, batch: int, shape: tuple[int, ...]) -> np.ndarray:
    """Timing inputs: uniform features in [-1, 1], or random uint8 images."""
    if len(shape) == 3:
        return rng.integers(0, 256, size=(batch, *shape), dtype=np.uint8)
    return rng.uniform(-1, 1, size=(batch, *shape)).astype(np.float32)


def head_share(
    model_ids: list[str],
    runtimes: list[str],
    batches: tuple[int, ...],
    threads: int,
    rounds: int,
    progress=None,
) -> list[dict]:
    """For image classifiers: the head alone (its layers on backbone features, exported the same way) timed
    against the whole classifier, interleaved, in each runtime; share = head / whole."""

    out = []
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        for mid in model_ids:
            net = store.load_model(mid)
            config = replace(net.config, backbone=())
            state = {k: v for k, v in net.state_dict().items() if not k.startswith("backbone.")}
            head_dir = store.write_folder(
                Path(tmp) / mid / "model", f"{mid}-head", "cifar10-features", config, state, {}, ""
            )
            formats = [f for f, rt in FORMAT_RUNTIMES.items() if rt in runtimes]
            head_export = Path(tmp) / mid / "export"
            head_export.mkdir()
            write_graphs(store.load_model(head_dir), head_export, formats)
            for runtime in runtimes:
                fns = {
                    "whole": RUNTIMES[runtime].load(
                        registry.get(mid).dir, registry.EXPORT_DIR / mid, threads
                    ),
                    "head": RUNTIMES[runtime].load(head_dir, head_export, threads),
                }
                for batch in image_batches(batches):
                    xs = {
                        "whole": random_input(rng, batch, net.config.input_shape),
                        "head": random_input(rng, batch, (config.in_features,)),
                    }
                    med = {k: statistics.median(v) for k, v in time_pair(fns, xs, rounds).items()}
                    out.append(
                        {
                            "model": mid,
                            "runtime": runtime,
                            "batch": batch,
                            "whole_us": med["whole"] * 1e6,
                            "head_us": med["head"] * 1e6,
                            "share": med["head"] / med["whole"],
                            "head_params": config.num_params,
                            "params": net.config.num_params,
                        }
                    )
                if progress:
                    progress(f"{mid} head share {runtime}")
    return out


def _importable(module: str) -> bool:
    # an import, not a find_spec: a package that is installed but cannot load counts as absent
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def available_runtimes() -> list[str]:
    out = []
    for r in ALL_RUNTIMES:
        if r in ("onnxruntime", "ort-mobile") and not _importable("onnxruntime"):
            continue
        if r == "torch-cuda" and not torch.cuda.is_available():
            continue
        if r == "litert" and not _importable("ai_edge_litert"):
            continue
        if r == "executorch" and not _importable("executorch.runtime"):
            continue
        if r == WEB and not site.browser_available():
            continue
        if r in RUNTIMES and RUNTIMES[r].missing():  # the c runtime, with no compiler here
            continue
        if r == C_LOOP and c_loop.missing():
            continue
        out.append(r)
    return out


def markdown(report: dict) -> str:
    """The full table, deterministic given the report."""
    lines = [
        "| model | runtime | batch | median us | p90 us | samples/s | vs baseline (median ratio) | params | "
        "artifact B |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for c in report["cells"]:
        ratio = ", ".join(f"{v:.2f}x {k}" for k, v in c.get("ratio_vs", {}).items()) or "-"
        lines.append(
            f"| `{c['model']}` | {c['runtime']} | {c['batch']} | {c['median_us']:.1f} | {c['p90_us']:.1f} | "
            f"{c['samples_per_s']:.0f} | {ratio} | {c['params']} | {c['artifact_bytes'] or '-'} |"
        )
    return "\n".join(lines) + "\n"


def lower_bounds(threads: int = 1, rounds: int = 15) -> dict:
    """What no model can beat in each runtime on this machine, measured with synthetic graphs:
    the fixed cost of one call (a one-node Abs graph at batch 1), the cost per extra node (a chain of
    64 Abs nodes of width 31, as in a Han run), and this core's memory bandwidth and matmul peak."""

    import onnx  # noqa: PLC0415 (the optional [onnx] extra: only these synthetic graphs need it)
    from onnx import TensorProto, helper  # noqa: PLC0415 (as above)

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for nodes in (1, 64):
            graph = helper.make_graph(
                [
                    helper.make_node(
                        "Abs", ["input" if i == 0 else f"t{i}"], [f"t{i + 1}" if i < nodes - 1 else "output"]
                    )
                    for i in range(nodes)
                ],
                "chain",
                [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 31])],
                [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 31])],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 8
            path = Path(tmp) / f"chain{nodes}.onnx"
            onnx.save(model, str(path))
            fn = ort_session(path, threads, mobile=False)
            x = np.zeros((1, 31), dtype=np.float32)
            out[f"onnxruntime_{nodes}_node_us"] = (
                statistics.median(time_pair({"c": fn}, x, rounds)["c"]) * 1e6
            )
    out["onnxruntime_per_node_us"] = (out["onnxruntime_64_node_us"] - out["onnxruntime_1_node_us"]) / 63
    a = np.ones(16 * 2**20 // 4, dtype=np.float32)  # 16 MiB: past L2, as a batch-1024 activation chain is not
    b = np.empty_like(a)
    copy_s = statistics.median(_block(lambda _: np.copyto(b, a), None, 5) for _ in range(rounds))
    out["memory_gb_per_s"] = 2 * a.nbytes / copy_s / 1e9  # read + write
    torch.set_num_threads(threads)
    m = torch.randn(512, 512)
    mm_s = statistics.median(_block(lambda _: m @ m, None, 3) for _ in range(rounds))
    out["matmul_gflops"] = 2 * 512**3 / mm_s / 1e9
    return out


def flops_per_sample(model_id: str) -> int:
    """Multiply-adds x 2 of the exported graph (Han-layers as their two rank-one products; convs included)."""
    backbone = registry.get(model_id).config.backbone
    total = Backbone.flops(backbone) if backbone else 0
    for kind, n_in, n_out, _ in registry.get(model_id).config.layers():
        total += 2 * 4 * (n_out + 1) if kind == "han" else 2 * n_in * n_out
    c = registry.get(model_id).config
    last = c.layers()[-1][2] if c.blocks else c.in_features
    return total + 2 * last * c.out_features


def plot(report: dict, path: Path) -> None:
    """One panel per task: the latency ratio HanNet / baseline (log) against batch size (log), one line per
    (runtime, baseline), with a line at 1 (below it the HanNet is faster). Each series has its own colour: a
    hue per runtime and a shade per baseline, with a marker and line style per baseline as well."""
    import matplotlib  # noqa: PLC0415 (the optional [docs] extra: only the figure needs it)

    matplotlib.use("Agg")  # before pyplot is imported, so no display is ever looked for
    import matplotlib.pyplot as plt  # noqa: PLC0415 (as above)
    from matplotlib.colors import ListedColormap  # noqa: PLC0415 (as above)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415 (as above)

    groups = [g for g in report["groups"] if len(g) > 1]
    if not groups:
        return
    cmap = plt.get_cmap("tab20c")
    assert isinstance(cmap, ListedColormap)  # a qualitative map: a list of colours
    shades = cmap.colors  # 5 hues x 4 shades, dark to light
    ratios = [r for c in report["cells"] for r in c.get("ratio_vs", {}).values()]
    lo, hi = min(ratios + [1.0]) / 1.6, max(ratios + [1.0]) * 1.6
    cols = 2 if len(groups) > 1 else 1
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(7.6 * cols, 4.4 * rows), squeeze=False, layout="constrained"
    )
    for ax, group in zip(axes.ravel(), groups):
        _plot_series(ax, report, group, shades)
        _plot_axes(ax, report, group[0], lo, hi)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
        _plot_legend(ax)
    for ax in axes.ravel()[len(groups) :]:
        ax.axis("off")
    m = report["machine"]
    fig.suptitle(
        f"HanNet / FCNet median latency per call, {report['threads']} thread on {m['cpu']}: below 1 the "
        "HanNet is faster",
        fontsize=10,
    )
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _plot_series(ax, report: dict, group: list[str], shades) -> None:
    """One line per (runtime, baseline): a hue per runtime, a shade, marker and line style per baseline."""
    cell = {(c["model"], c["runtime"], c["batch"]): c for c in report["cells"]}
    hue = {rt: i % 5 for i, rt in enumerate(report["runtimes"])}
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-.")]
    han, bases = group[0], group[1:]
    for j, base in enumerate(bases):
        marker, line = styles[j % len(styles)]
        for rt in report["runtimes"]:
            pts = [
                (b, cell[(han, rt, b)]["ratio_vs"][base]) for b in report["batches"] if (han, rt, b) in cell
            ]
            if not pts:
                continue
            short = base.removeprefix(f"{registry.get(han).task}-")
            ax.plot(
                *zip(*pts),
                marker=marker,
                linestyle=line,
                color=shades[4 * hue[rt] + min(j, 2)],
                markersize=6,
                linewidth=1.8,
                label=f"{rt} vs {short} ({registry.get(base).config.num_params} params)",
            )


def _plot_axes(ax, report: dict, han: str, lo: float, hi: float) -> None:
    """The line at ratio 1 with the HanNet-faster band below it, log axes, and the measured batches as
    ticks."""
    cell = {(c["model"], c["runtime"], c["batch"]): c for c in report["cells"]}
    # the label goes in the legend, so it never covers a data point
    ax.axhline(1.0, color="black", linewidth=1.2, zorder=1, label="ratio 1: HanNet faster below")
    ax.axhspan(lo, 1.0, color="#2ca02c", alpha=0.06, zorder=0, linewidth=0)
    batches = sorted({b for rt in report["runtimes"] for b in report["batches"] if (han, rt, b) in cell})
    ax.set(
        xscale="log",
        yscale="log",
        ylim=(lo, hi),
        xlabel="batch size (log)",
        ylabel="latency ratio HanNet / baseline (log)",
        title=f"{registry.get(han).task}: {han} ({registry.get(han).config.num_params} params)",
    )
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlim(batches[0] / 1.6, batches[-1] * 1.6)


def _plot_legend(ax) -> None:
    """Beside the panel, the ratio-1 line first."""
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles[-1:] + handles[:-1],
        labels[-1:] + labels[:-1],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        title="runtime vs baseline",
        title_fontsize=7,
    )


def report_md(report: dict, bounds: dict) -> str:
    """docs/benchmarks.md, every figure read from the JSON report."""
    m = report["machine"]
    cell = {(c["model"], c["runtime"], c["batch"]): c for c in report["cells"]}
    lines = [
        "# Benchmarks: HanNets against their FCNet baselines",
        "",
        "Generated by `hanzoo bench --all --report docs/` from `docs/benchmarks.json`; do not edit by hand.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {report['threads']} thread(s) per runtime; Python "
        f"{m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, ai-edge-litert "
        f"{m['ai-edge-litert']}; GPU: {m['gpu'] or 'none (torch-cuda not measured)'}.",
        "",
        "Each cell is the median (and p90) per-call latency over interleaved rounds, HanNet and baselines "
        "alternating in the same process. The ratio is HanNet / baseline: below 1 the HanNet is faster.",
        "",
        "![HanNet / baseline latency ratio against batch size, one panel per task](benchmarks.png)",
        "",
        "## Ratios at a glance",
        "",
        "| HanNet | baseline | runtime | " + " | ".join(f"batch {b}" for b in report["batches"]) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in report["batches"]) + " |",
    ]
    for group in report["groups"]:
        for base in group[1:]:
            for rt in report["runtimes"]:
                ratios = [
                    cell[(group[0], rt, b)]["ratio_vs"][base] if (group[0], rt, b) in cell else None
                    for b in report["batches"]
                ]
                lines.append(
                    f"| `{group[0]}` | `{base}` | {rt} | "
                    + " | ".join(f"{r:.2f}x" if r is not None else "-" for r in ratios)
                    + " |"
                )
    lines += ["", "## Full table", "", markdown(report), "## Lower bounds on this machine", ""]
    fixed, per_node = bounds["onnxruntime_1_node_us"], bounds["onnxruntime_per_node_us"]
    lines += [
        f"- ONNX Runtime's fixed cost of one call (a one-node graph at batch 1, through the Python API): "
        f"{fixed:.1f} us; each further node costs {per_node:.2f} us (a 64-node Abs chain of width 31).",
        f"- This core copies memory at {bounds['memory_gb_per_s']:.1f} GB/s (16 MiB, read + write) and "
        f"multiplies 512 x 512 float32 matrices at {bounds['matmul_gflops']:.0f} GFLOP/s.",
        "",
        "| model | ONNX nodes | node-count bound at batch 1 (us) | measured ORT batch 1 (us) | "
        "flops / sample | flop bound at batch 1024 (us) | measured ORT batch 1024 (us) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in dict.fromkeys(c["model"] for c in report["cells"]):
        nodes = sum(
            json.loads((registry.EXPORT_DIR / model / "manifest.json").read_text())["ops"]["onnx"].values()
        )
        fl = flops_per_sample(model)
        b1 = cell.get((model, "onnxruntime", 1))
        b1024 = cell.get((model, "onnxruntime", 1024))
        at1024 = (
            f"{fl * 1024 / (bounds['matmul_gflops'] * 1e3):.1f} | {b1024['median_us']:.1f}"
            if b1024
            else "- | -"
        )  # image classifiers are not timed at batch 1024
        lines.append(
            f"| `{model}` | {nodes} | {fixed + (nodes - 1) * per_node:.1f} | "
            f"{b1['median_us'] if b1 else float('nan'):.1f} | {fl} | {at1024} |"
        )
    lines += ["", *goals_md(report, bounds), analysis(report, bounds), "", *web_md(report)]
    return "\n".join(lines)


FLAGSHIP, FLAGSHIP_BASE = "checkerboard-hannet-20x30", "checkerboard-fcnet-6x100"


def goals(report: dict, bounds: dict) -> list[tuple[str, str, str, bool | None]]:
    """The C export's and the torch path's speed goals, each as (goal, target, measured, met); met is None
    where the report has no cells for it."""
    cell = {(c["model"], c["runtime"], c["batch"]): c["median_us"] for c in report["cells"]}
    han, base = FLAGSHIP, FLAGSHIP_BASE
    out: list[tuple[str, str, str, bool | None]] = []

    def add(goal: str, target: str, value: float | None, fmt: str, ok: Callable[[float], bool]) -> None:
        out.append(
            (
                goal,
                target,
                "not measured" if value is None else fmt.format(value),
                None if value is None else ok(value),
            )
        )

    def us(model: str, runtime: str, batch: int) -> float | None:
        return cell.get((model, runtime, batch))

    loop1, loop1024 = us(han, C_LOOP, 1), us(han, C_LOOP, 1024)
    ort1 = us(han, "onnxruntime", 1)
    add(f"`{han}` in C (the C loop), batch 1", "at most 1 us", loop1, "{:.2f} us", lambda v: v <= 1)
    add(
        "the same, against ONNX Runtime through its Python API",
        "at least 20x faster",
        ort1 / loop1 if ort1 and loop1 else None,
        "{:.0f}x faster",
        lambda v: v >= 20,
    )
    others = [
        v
        for (m, rt, b), v in cell.items()
        if m == han and b == 1024 and rt not in ("c", C_LOOP, "torch-cuda")
    ]
    add(
        f"`{han}` in C, batch 1024, against the fastest other CPU runtime",
        "at least 2x faster",
        min(others) / loop1024 if others and loop1024 else None,
        "{:.2f}x faster",
        lambda v: v >= 2,
    )
    floor = flops_per_sample(han) * 1024 / (bounds["matmul_gflops"] * 1e3) if bounds else None
    add(
        f"`{han}` in C, batch 1024, against the flop floor at this core's matmul rate",
        "within 3x",
        loop1024 / floor if loop1024 and floor else None,
        "{:.1f}x the floor",
        lambda v: v <= 3,
    )
    for rt in ("c", C_LOOP):
        ratios = [r for c in report["cells"] if c["runtime"] == rt for r in c.get("ratio_vs", {}).values()]
        add(
            f"every HanNet against each of its FCNet baselines in {rt}, at every batch",
            "faster (ratio below 1)",
            max(ratios) if ratios else None,
            "worst ratio {:.2f}x",
            lambda v: v < 1,
        )
    compiled, eager = us(han, "torch-compile", 1), us(base, "torch", 1)
    add(
        f"`{han}` with torch.compile against eager `{base}`, batch 1",
        "no slower",
        compiled / eager if compiled and eager else None,
        "{:.2f}x its time",
        lambda v: v <= 1,
    )
    return out


def goals_md(report: dict, bounds: dict) -> list[str]:
    rows = [
        f"| {g} | {t} | {m} | {'-' if ok is None else 'met' if ok else '**missed**'} |"
        for g, t, m, ok in goals(report, bounds)
    ]
    return [
        "## Goals of the C export and the torch path",
        "",
        "Measured in this report, on one core. The C loop times `<name>_run` inside a C program built "
        "with the c runtime's flags (ISO C, -O3, no -ffast-math); the `c` runtime calls the same library "
        "through ctypes, which adds its call cost.",
        "",
        "| goal | target | measured | |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
    ]


def web_md(report: dict) -> list[str]:
    """How onnxruntime-web (WASM, in headless Chromium) compares with native ONNX Runtime, per batch."""
    if WEB not in report["runtimes"]:
        return []
    cell = {(c["model"], c["runtime"], c["batch"]): c for c in report["cells"]}
    rows = []
    for b in report["batches"]:
        pairs = [
            (m, cell[(m, WEB, b)]["median_us"] / cell[(m, "onnxruntime", b)]["median_us"])
            for m in dict.fromkeys(c["model"] for c in report["cells"] if c["runtime"] == WEB)
            if (m, WEB, b) in cell and (m, "onnxruntime", b) in cell
        ]
        if pairs:
            lo, hi = min(pairs, key=lambda p: p[1]), max(pairs, key=lambda p: p[1])
            rows.append(
                f"| {b} | {statistics.median(r for _, r in pairs):.2f}x | {lo[1]:.2f}x (`{lo[0]}`) | "
                f"{hi[1]:.2f}x (`{hi[0]}`) |"
            )
    return [
        "## In the browser: onnxruntime-web against native ONNX Runtime",
        "",
        "onnxruntime-web runs the same `model.onnx` in headless Chromium (WASM backend, 1 thread, the "
        "`hanzoo site` pages), timed inside the page in interleaved blocks, so the browser's round trip is "
        "not counted. Per-call time in the browser over native ONNX Runtime (the Python API) on the same "
        "machine, across the Checkerboard and regression models:",
        "",
        "| batch | median | fastest | slowest |",
        "| ---: | ---: | --- | --- |",
        *rows,
        "",
    ]


def analysis(report: dict, bounds: dict) -> str:
    """The prose of docs/benchmarks.md, with every figure computed from the report."""
    cell = {(c["model"], c["runtime"], c["batch"]): c for c in report["cells"]}
    big, small = max(report["batches"]), min(report["batches"])
    out = ["## Where HanNet wins and where it loses, and why", ""]
    for group in report["groups"]:
        han, bases = group[0], group[1:]
        if registry.get(han).config.takes_images:
            out += [image_analysis(report, group), ""]
            continue
        c = registry.get(han).config
        width = c.width + 1
        n_han = sum(k == "han" for k, *_ in c.layers())
        nodes = {
            m: sum(
                json.loads((registry.EXPORT_DIR / m / "manifest.json").read_text())["ops"]["onnx"].values()
            )
            for m in group
        }
        for base in bases:
            wins_big = [rt for rt in report["runtimes"] if cell[(han, rt, big)]["ratio_vs"][base] < 1]
            wins_small = [rt for rt in report["runtimes"] if cell[(han, rt, small)]["ratio_vs"][base] <= 1]
            at_big = _where(wins_big, report["runtimes"], "faster", "slower")
            at_small = _where(wins_small, report["runtimes"], "no slower", "slower")
            bound = bounds["onnxruntime_1_node_us"] + (nodes[han] - 1) * bounds["onnxruntime_per_node_us"]
            base_ort = (
                cell[(base, "onnxruntime", small)]["median_us"]
                if (base, "onnxruntime", small) in cell
                else None
            )
            act_kb = big * width * 4 / 1024
            traffic_mb = n_han * 3 * 2 * big * width * 4 / 2**20
            out += [
                f"**`{han}` against `{base}`.**",
                "",
                f"- Batch {big}: the HanNet is {at_big}. It does {flops_per_sample(han)} flops per sample "
                f"against {flops_per_sample(base)}, and its weights are {4 * c.num_params / 1024:.0f} KB "
                f"against {4 * registry.get(base).config.num_params / 1024:.0f} KB. Its activation at batch "
                f"{big} is {act_kb:.0f} KB ({width} floats a row with the constant-1 column); each Han-layer "
                f"reads and writes it once per node (3 nodes), so {n_han} layers move about {traffic_mb:.0f} "
                f"MB per call, {traffic_mb / 1024 / bounds['memory_gb_per_s'] * 1e6:.0f} us at this core's "
                f"{bounds['memory_gb_per_s']:.0f} GB/s if it all missed the caches. That traffic, not the "
                "flops, is the floor for standard operators: fusing a reduction, a rank-one update and |.| "
                "into one pass needs a custom kernel.",
                f"- Batch {small}: the HanNet is {at_small}. Here both nets are overhead, not work. Its ONNX "
                f"graph has {nodes[han]} nodes against {nodes[base]}; at ONNX Runtime's measured "
                f"{bounds['onnxruntime_per_node_us']:.2f} us per node and "
                f"{bounds['onnxruntime_1_node_us']:.1f} us per call, the node count alone bounds it at "
                f"{bound:.1f} us"
                + (
                    f", against {base_ort:.1f} us measured for the baseline, so "
                    + (
                        "no graph of this many standard nodes can match the baseline on ONNX Runtime. "
                        if base_ort and bound > base_ort
                        else "the gap to the baseline is the nodes' work beyond that bound. "
                    )
                    if base_ort
                    else ". "
                )
                + "A reflection needs at least a reduction and an update, so no standard-op graph has fewer "
                "than 2 nodes per Han-layer; the 3-node form is one above that. LiteRT's XNNPACK has a far "
                "smaller per-op cost, which is why it behaves differently.",
                "",
            ]
    out += [
        "torch eager is the training and reference runtime: it launches several kernels per Han-layer, "
        "so at batch 1 it is launch-bound. Apps run the exported graphs."
    ]
    return "\n".join(out)


def _where(wins: list[str], runtimes: list[str], good: str, bad: str) -> str:
    """E.g. 'faster on litert and slower on onnxruntime, ort-mobile': `good` on the runtimes in `wins`, `bad`
    on the rest."""
    parts = ([f"{good} on {', '.join(wins)}"] if wins else []) + (
        [f"{bad} on {', '.join(r for r in runtimes if r not in wins)}"] if len(wins) < len(runtimes) else []
    )
    return " and ".join(parts)


def image_analysis(report: dict, group: list[str]) -> str:
    """The CIFAR-10 classifiers: the conv backbone is most of the work, so the head's share says what the
    HanNet head can change."""
    han, base = group[0], group[1]
    cell = {(c["model"], c["runtime"], c["batch"]): c for c in report["cells"]}
    shares = {(h["model"], h["runtime"], h["batch"]): h for h in report.get("head_share", [])}
    c = registry.get(han).config
    lines = [
        f"**`{han}` against `{base}` (whole image classifiers).** Both run the same frozen backbone "
        f"({Backbone.flops(c.backbone) / 1e6:.1f} MFLOP per image); the heads differ: "
        f"{c.head_params} parameters against {registry.get(base).config.head_params}. "
        f"Share = the head alone (the same layers exported the same way, on {c.in_features}-d features) over "
        "the whole "
        "classifier, timed in the same run.",
        "",
        "| runtime | batch | HanNet / FC whole-model ratio | HanNet head share | FC head share |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for rt in report["runtimes"]:
        for b in image_batches(tuple(report["batches"])):
            if (han, rt, b) not in cell:  # a runtime that does not time image models (onnxruntime-web)
                continue
            ratio = cell[(han, rt, b)]["ratio_vs"][base]
            sh = [shares.get((m, rt, b)) for m in (han, base)]
            lines.append(
                f"| {rt} | {b} | {ratio:.2f}x | "
                + " | ".join(f"{100 * s['share']:.2f}%" if s else "-" for s in sh)
                + " |"
            )
    return "\n".join(lines)
