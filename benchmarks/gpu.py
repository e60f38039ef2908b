"""GPU latency and throughput: the fused HanNet kernel against CUDA-graph eager, torch.compile and the FCNets.

    python benchmarks/gpu.py [--out docs/gpu.json] [--md docs/gpu.md] [--batches 1,1024,65536] [--reps 200]
    python benchmarks/gpu.py --render          # docs/gpu.md's measured section from docs/gpu.json
    TRITON_INTERPRET=1 python benchmarks/gpu.py --device cpu ...   # a smoke run of the code paths, no timing

Needs a CUDA GPU and triton; it is the one script to run on a GPU machine. In one process it:
1. checks the fused kernel's parity with the torch module on the real GPU (whole test split, against
   float64), launched directly and replayed from a CUDA graph;
2. times, with CUDA events (medians of --reps launches, after warm-up), every shipped HanNet as
   eager, CUDA-graph eager, torch.compile (in a CUDA graph) and the fused kernel (column loop and
   tl.dot, each launched from Python and replayed from a CUDA graph, as the torch-cuda runtime runs
   it), and its FCNet baselines as eager, CUDA-graph eager and torch.compile;
3. reports achieved HBM bandwidth and flop rate against the floor: the bytes that must move (input,
   output, weights once) and the flops a row needs;
4. writes everything as JSON after every model (ratios against the baselines measured in the same
   run), and the measured section of docs/gpu.md from that JSON.

With --tune it first sweeps the fused kernel's launch (BLOCK_M rows per program x num_warps, each
replayed from a CUDA graph) at batches 1024 and 65536 on random inputs, picks for each tile width the
configuration with the least total time over the HanNets of that width, and measures everything after
with it; `fused.LAUNCH` ships that choice (docs/gpu.json's "launch").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import triton

from hanzoo import load
from hanzoo.graphs import fused
from hanzoo.runtimes.sessions import cuda_graphed
from hanzoo.runtimes.verify import ABS_TOL
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task

HANNETS = ["checkerboard-hannet-20x30", "elevators-hannet-20x200", "calhousing-hannet-20x200"]
# The design targets docs/gpu.md states: (HanNet, FCNet, batch, what is compared, the bound).
TARGETS = [
    ("checkerboard-hannet-20x30", "checkerboard-fcnet-6x100", 1, "latency", 1.0),
    ("checkerboard-hannet-20x30", "checkerboard-fcnet-6x100", 65536, "throughput", 10.0),
    ("elevators-hannet-20x200", "elevators-fcnet-5x200", 65536, "throughput", 2.0),
    ("calhousing-hannet-20x200", "calhousing-fcnet-5x200", 65536, "throughput", 2.0),
]
BEGIN, END = "<!-- measured: begin -->", "<!-- measured: end -->"
# The launch sweep. More floats of the tile per thread than this spill registers, so those are not tried.
MAX_TILE_PER_THREAD = 256


def flops_per_row(net) -> int:
    """Multiply-adds x 2 for the Dense layers; 4n for a Han-layer (dot product, then the update)."""
    total = 0
    for layer in net.layers:
        if hasattr(layer, "linear"):
            total += 2 * layer.linear.weight.numel()
        else:
            total += 4 * layer.width
    return total + 2 * net.head.weight.numel()


def timer(device: str):
    """Median seconds per call: CUDA events on a GPU, the wall clock in a CPU smoke run."""

    def on_gpu(fn, reps: int) -> float:
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return statistics.median(times)

    def on_cpu(fn, reps: int) -> float:
        fn()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    return on_gpu if device == "cuda" else on_cpu


class Variants:
    """The ways to run one model on one device; torch.compile is built once per model and reused."""

    def __init__(self, model_id: str, device: str):
        self.model_id, self.device = model_id, device
        self.net = load(model_id).to(device).eval()
        self.hannet = registry.get(model_id).family == "hannet"
        if device == "cuda":
            # Dynamo's cache is per code object, shared by every Net: without a reset, the models
            # measured earlier fill it and later ones fall back to eager without a word.
            torch._dynamo.reset()
        self.compiled = torch.compile(self.net) if device == "cuda" else None
        self.launch: list[int] | None = None  # the fused kernel's [BLOCK_M, num_warps] at the last batch

    def at(self, batch: int) -> dict:
        net, dev = self.net, self.device
        x = torch.rand(batch, net.config.in_features, device=dev) * 2 - 1
        out = {}

        def eager():
            with torch.no_grad():
                return net(x)

        out["eager"] = eager
        if dev == "cuda":
            out["cuda-graph"] = graphed(net, x)[0]
            out["torch.compile+cuda-graph"] = graphed(self.compiled, x)[0]
        if self.hannet:
            for dot in (False, True):
                kernel = fused.prepare(net, device=dev, dot=dot)
                if dot and not (kernel.n_pre or kernel.n_post):
                    continue  # no W x W Dense layer: the tl.dot kernel would be the loop one
                buf = torch.empty(batch, net.config.out_features, device=dev)
                name = "fused (tl.dot)" if dot else "fused"
                out[name] = lambda k=kernel, b=buf: k(x, b)
                if dev == "cuda":  # as the torch-cuda runtime runs it: no Python launch overhead
                    out[f"{name}+cuda-graph"] = graphed(kernel, x)[0]
                self.launch = list(kernel.launch(batch))
        return out


def graphed(fn, x: torch.Tensor) -> tuple:
    """`fn` in a CUDA graph (runtimes.cuda_graphed) with `x` already in its input: (replay, output)."""
    replay, static_x, static_out = cuda_graphed(fn, tuple(x.shape))
    static_x.copy_(x)
    return replay, static_out


def parity(model_id: str, device: str, rows: int | None) -> dict:
    """The fused kernel (both Dense modes) against the float64 torch module on the test split."""
    net = load(model_id).to(device)
    x_test = get_task(net.meta["task"]).split().x_test[:rows]
    x = torch.as_tensor(x_test, device=device)
    with torch.no_grad():
        ref = load(model_id).to(device).double()(x.double())
    bound = ABS_TOL * max(1.0, float(ref.abs().max()))

    def check(out: torch.Tensor) -> dict:
        err = float((out.double() - ref).abs().max())
        return {"max_abs_err_vs_float64": err, "bound": bound, "ok": err <= bound}

    kernels = {dot: fused.prepare(net, device=device, dot=dot) for dot in (False, True)}
    res = {"rows": int(x.shape[0]), "loop": check(kernels[False](x)), "dot": check(kernels[True](x))}
    if device == "cuda":  # the torch-cuda runtime's path: the default (tl.dot) kernel replayed from a graph
        replay, out = graphed(kernels[True], x)
        replay()
        res["graph"] = check(out)
    return res


def tune(args, time_it) -> tuple[list[dict], list[dict]]:
    """Time the default (tl.dot) kernel in a CUDA graph for every launch in the grid; choose per tile width.

    Random inputs, not a test split: the launch changes no result, only the time."""
    cells = []
    for hid in args.models.split(","):
        net = load(hid).to(args.device).eval()
        for batch in (int(b) for b in args.tune_batches.split(",")):
            x = torch.rand(batch, net.config.in_features, device=args.device) * 2 - 1
            for block_m in (int(b) for b in args.block_ms.split(",")):
                for warps in (int(w) for w in args.warps.split(",")):
                    kernel = fused.prepare(net, device=args.device)
                    if block_m * kernel.block_n > MAX_TILE_PER_THREAD * 32 * warps:
                        continue
                    kernel.block_m, kernel.num_warps = block_m, warps
                    cell = {
                        "model": hid,
                        "block_n": kernel.block_n,
                        "batch": batch,
                        "block_m": block_m,
                        "num_warps": warps,
                    }
                    try:
                        fn = graphed(kernel, x)[0] if args.device == "cuda" else (lambda k=kernel, x=x: k(x))
                        cell["median_us"] = time_it(fn, args.reps) * 1e6
                    except Exception as e:  # a launch Triton cannot compile is recorded, not fatal
                        cell["error"] = f"{type(e).__name__}: {str(e)[:200]}"
                    cells.append(cell)
                    print(json.dumps(cell), flush=True)
    return cells, choose(cells)


def choose(cells: list[dict]) -> list[dict]:
    """Per (tile width, batch): the launch with the least total time over the HanNets of that width.

    A launch that failed for any of them is out."""
    chosen = []
    for block_n, batch in sorted({(c["block_n"], c["batch"]) for c in cells}):
        group = [c for c in cells if (c["block_n"], c["batch"]) == (block_n, batch)]
        failed = {(c["block_m"], c["num_warps"]) for c in group if "error" in c}
        totals: dict[tuple[int, int], float] = {}
        for c in group:
            key = (c["block_m"], c["num_warps"])
            if key not in failed:
                totals[key] = totals.get(key, 0.0) + c["median_us"]
        block_m, warps = min(totals, key=totals.get)
        chosen.append({"block_n": block_n, "batch": batch, "block_m": block_m, "num_warps": warps})
    return chosen


def launch_table(chosen: list[dict]) -> dict[tuple[int, int], tuple[int, int]]:
    return {(c["block_n"], c["batch"]): (c["block_m"], c["num_warps"]) for c in chosen}


def measure(args) -> dict:
    report = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (smoke run, not a timing)",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "reps": args.reps,
        "timing": "CUDA events, median of reps single launches after 10 warm-up calls"
        if args.device == "cuda"
        else "wall clock (smoke run)",
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "parity": {},
        "cells": [],
    }
    time_it = timer(args.device)
    if args.tune:
        report["launch_sweep"], chosen = tune(args, time_it)
        fused.LAUNCH.clear()
        fused.LAUNCH.update(launch_table(chosen))  # everything measured below runs with the choice
    report["launch_tuned"] = bool(args.tune)
    report["launch"] = [
        {"block_n": n, "batch": b, "block_m": m, "num_warps": w}
        for (n, b), (m, w) in sorted(fused.LAUNCH.items())
    ]
    batches = [int(b) for b in args.batches.split(",")]
    for hid in args.models.split(","):
        report["parity"][hid] = parity(hid, args.device, args.parity_rows)
        print(hid, json.dumps(report["parity"][hid]), flush=True)
        group = [hid] + [b.id for b in registry.baselines(hid) if b.shipped]
        for mid in group:
            runs = Variants(mid, args.device)
            params = sum(p.numel() for p in runs.net.parameters())
            for batch in batches:
                row_bytes = 4 * (runs.net.config.in_features + runs.net.config.out_features)
                floor_bytes = batch * row_bytes + 4 * params
                for name, fn in runs.at(batch).items():
                    s = time_it(fn, args.reps)
                    cell = {
                        "model": mid,
                        "hannet": hid,
                        "variant": name,
                        "batch": batch,
                        "params": params,
                        "median_us": s * 1e6,
                        "rows_per_s": batch / s,
                        "floor_bytes": floor_bytes,
                        "achieved_GBps": floor_bytes / s / 1e9,
                        "achieved_TFLOPs": flops_per_row(runs.net) * batch / s / 1e12,
                    }
                    if name.startswith("fused"):
                        cell["launch"] = runs.launch
                    report["cells"].append(cell)
                    print(json.dumps(cell), flush=True)
            del runs
            torch.cuda.empty_cache() if args.device == "cuda" else None
            report["ratios"] = ratios(report["cells"])
            write(report, args.out)  # after every model, so a run cut short still leaves its figures
    return report


def best(cells: list[dict], model: str, batch: int) -> dict | None:
    mine = [c for c in cells if c["model"] == model and c["batch"] == batch]
    return min(mine, key=lambda c: c["median_us"]) if mine else None


def ratios(cells: list[dict]) -> list[dict]:
    """Each HanNet's best variant against each baseline's best variant, batch by batch (>1: HanNet faster)."""
    rows = []
    for c in cells:
        if c["model"] == c["hannet"]:
            continue
        han, base = best(cells, c["hannet"], c["batch"]), c
        if han is None or base is not best(cells, c["model"], c["batch"]):
            continue
        rows.append(
            {
                "hannet": c["hannet"],
                "baseline": c["model"],
                "batch": c["batch"],
                "hannet_variant": han["variant"],
                "baseline_variant": base["variant"],
                "speedup": base["median_us"] / han["median_us"],
            }
        )
    return rows


def write(report: dict, path: str) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)


def render(report: dict) -> str:
    """docs/gpu.md's measured section: every figure comes from the JSON."""
    lines = [
        f"Measured on **{report['device']}** with torch {report['torch']} and triton {report['triton']}, "
        f"{report['date']}. Timing: {report['timing']} ({report['reps']} reps). TF32 "
        f"{'on' if report['tf32'] else 'off'} (plain fp32 throughout).",
        "",
        "### Parity of the fused kernel on the GPU",
        "",
        "| model | rows | column loop: max abs err | tl.dot: max abs err | in a CUDA graph | bound "
        "| within |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for mid, p in report["parity"].items():
        modes = [p[k] for k in ("loop", "dot", "graph") if k in p]
        graph = f"{p['graph']['max_abs_err_vs_float64']:.2e}" if "graph" in p else "not run"
        lines.append(
            f"| {mid} | {p['rows']} | {p['loop']['max_abs_err_vs_float64']:.2e} | "
            f"{p['dot']['max_abs_err_vs_float64']:.2e} | {graph} | {p['loop']['bound']:.0e} | "
            f"{'yes' if all(m['ok'] for m in modes) else '**no**'} |"
        )
    lines += ["", *render_launch(report)]
    lines += [
        "",
        "### Design targets",
        "",
        "| HanNet | FCNet | batch | compared | target | measured | met |",
        "| --- | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for han, base, batch, what, bound in TARGETS:
        key = (han, base, batch)
        r = next(
            (r for r in report.get("ratios", []) if (r["hannet"], r["baseline"], r["batch"]) == key), None
        )
        if r is None:
            continue
        lines.append(
            f"| {han} ({r['hannet_variant']}) | {base} ({r['baseline_variant']}) | {batch} | {what} | "
            f">= {bound:g}x | {r['speedup']:.2f}x | {'yes' if r['speedup'] >= bound else '**no**'} |"
        )
    lines += [
        "",
        "Ratios are the FCNet's best median time over the HanNet's best, in the same run (>1: the "
        "HanNet is faster).",
        "",
        "### The fastest way to run each HanNet",
        "",
        "| HanNet | batch | fastest | median µs | fused kernel µs | fused / fastest |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for hid in report["parity"]:
        for batch in sorted({c["batch"] for c in report["cells"] if c["model"] == hid}):
            top = best(report["cells"], hid, batch)
            kernel = best([c for c in report["cells"] if c["variant"].startswith("fused")], hid, batch)
            lines.append(
                f"| {hid} | {batch} | {top['variant']} | {top['median_us']:.1f} | {kernel['variant']}: "
                f"{kernel['median_us']:.1f} | {kernel['median_us'] / top['median_us']:.2f} |"
            )
    lines.append("")
    for hid in report["parity"]:
        lines += [
            f"### {hid} and its baselines",
            "",
            "| model | variant | batch | median µs | rows/s | GB/s (floor bytes) | TFLOP/s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for c in (c for c in report["cells"] if c["hannet"] == hid):
            lines.append(
                f"| {c['model']} | {c['variant']} | {c['batch']} | {c['median_us']:.1f} | "
                f"{c['rows_per_s']:.3g} | {c['achieved_GBps']:.3g} | {c['achieved_TFLOPs']:.3g} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_launch(report: dict) -> list[str]:
    """The fused kernel's launch: the table every fused figure below ran with, and the sweep behind it."""
    lines = [
        "### Launch of the fused kernel",
        "",
        "| BLOCK_N (width rounded up) | batch | BLOCK_M | num_warps |",
        "| ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {c['block_n']} | {c['batch']} | {c['block_m']} | {c['num_warps']} |"
        for c in report.get("launch", [])
    ]
    if not report.get("launch", []):
        lines.append("| any | any | 4096 / BLOCK_N, 16 to 128 | 4 |")
    if not report.get("launch_tuned"):
        return lines
    sweep = report["launch_sweep"]
    chosen = {(c["block_n"], c["batch"]): (c["block_m"], c["num_warps"]) for c in report["launch"]}
    warps = sorted({c["num_warps"] for c in sweep})
    lines += [
        "",
        "Chosen by `--tune` in this run: the median µs of the default (tl.dot) kernel in a CUDA graph on "
        "random inputs, for each BLOCK_M (rows) and num_warps (columns); the choice, in bold, has the "
        "least total time over the HanNets of its BLOCK_N. A launch with more than "
        f"{MAX_TILE_PER_THREAD} floats of the tile per thread is not tried (-).",
    ]
    for model in dict.fromkeys(c["model"] for c in sweep):
        for batch in sorted({c["batch"] for c in sweep if c["model"] == model}):
            mine = {
                (c["block_m"], c["num_warps"]): c for c in sweep if (c["model"], c["batch"]) == (model, batch)
            }
            pick = chosen.get((next(iter(mine.values()))["block_n"], batch))
            lines += [
                "",
                f"{model}, batch {batch}:",
                "",
                "| BLOCK_M | " + " | ".join(f"{w} warp{'s' * (w > 1)}" for w in warps) + " |",
                "| ---: |" + " ---: |" * len(warps),
            ]
            for block_m in sorted({m for m, _ in mine}):
                row = []
                for w in warps:
                    c = mine.get((block_m, w))
                    text = "-" if c is None else "failed" if "error" in c else f"{c['median_us']:.1f}"
                    row.append(f"**{text}**" if (block_m, w) == pick else text)
                lines.append(f"| {block_m} | " + " | ".join(row) + " |")
    return lines


def splice(md: str, section: str) -> str:
    """Replace what lies between the markers in docs/gpu.md; the prose around them is kept."""
    if BEGIN not in md or END not in md:
        raise SystemExit(f"docs/gpu.md has no {BEGIN} ... {END} section to fill")
    head, rest = md.split(BEGIN, 1)
    return head + BEGIN + "\n" + section + rest[rest.index(END) :]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/gpu.json")
    ap.add_argument(
        "--md", default="docs/gpu.md", help="the page whose measured section is rewritten ('' for none)"
    )
    ap.add_argument("--batches", default="1,1024,65536")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--models", default=",".join(HANNETS), help="HanNets to measure, each with its baselines")
    ap.add_argument(
        "--parity-rows", type=int, default=None, help="test rows for the parity check (default: all)"
    )
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument(
        "--tune", action="store_true", help="sweep the fused kernel's launch first and use the best"
    )
    ap.add_argument("--tune-batches", default="1024,65536")
    ap.add_argument("--block-ms", default="16,32,64,128,256", help="BLOCK_M values the sweep tries")
    ap.add_argument("--warps", default="1,2,4,8", help="num_warps values the sweep tries")
    ap.add_argument("--render", action="store_true", help="only rewrite --md from --out")
    args = ap.parse_args(argv)
    if args.render:
        report = json.loads(Path(args.out).read_text())
    else:
        if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("a CPU smoke run needs TRITON_INTERPRET=1, set before the command")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit(
                "benchmarks/gpu.py needs a CUDA GPU; on CPU, tests/graphs/test_fused.py tests the kernel"
            )
        if fused.available() is not None:
            raise SystemExit(f"fused kernel unavailable: {fused.available()}")
        report = measure(args)
        print(f"wrote {args.out}")
    if args.md:
        md = Path(args.md)
        md.write_text(splice(md.read_text(), render(report)))
        print(f"wrote {args.md}", file=sys.stderr)


if __name__ == "__main__":
    main()
