"""GPU latency and throughput: the fused HanNet kernel against CUDA-graph eager, torch.compile and the FCNets.

    python benchmarks/gpu.py [--out docs/gpu.json] [--batches 1,1024,65536] [--reps 200]

Needs a CUDA GPU and triton; it is the one script to run on a GPU machine. In one
process it:
1. checks the fused kernel's parity with the torch fp32 module on the real GPU (whole test split);
2. times, with CUDA events (medians of --reps launches, after warm-up), every shipped HanNet as
   eager, CUDA-graph eager, torch.compile and the fused kernel (column loop and tl.dot), and its
   FCNet baselines as CUDA-graph eager and torch.compile;
3. reports achieved HBM bandwidth and flop rate against the floor: the bytes that must move (input,
   output, weights once) and the flops a row needs;
4. writes everything as JSON (ratios against the baselines measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from hanzoo import fused, load, registry
from hanzoo.runtimes import cuda_graphed
from hanzoo.tasks import get_task
from hanzoo.verify import ABS_TOL

HANNETS = ["checkerboard-hannet-20x30", "elevators-hannet-20x200", "calhousing-hannet-20x200"]


def flops_per_row(net) -> int:
    """Multiply-adds x 2 for the Dense layers; 4n for a Han-layer (dot product, then the update)."""
    total = 0
    for layer in net.layers:
        if hasattr(layer, "linear"):
            total += 2 * layer.linear.weight.numel()
        else:
            total += 4 * layer.width
    return total + 2 * net.head.weight.numel()


def time_cuda(fn, reps: int) -> float:
    """Median seconds per call, each call timed with CUDA events."""
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


def variants(model_id: str, batch: int) -> dict:
    net = load(model_id).cuda()
    x = torch.rand(batch, net.config.in_features, device="cuda") * 2 - 1
    out = {}
    with torch.no_grad():
        out["eager"] = lambda: net(x)
        replay, static_x, _ = cuda_graphed(net, tuple(x.shape))
        static_x.copy_(x)
        out["cuda-graph"] = replay
        compiled = torch.compile(net, mode="max-autotune-no-cudagraphs", dynamic=False)
        graphed_compiled = cuda_graphed(compiled, tuple(x.shape))
        out["torch.compile+cuda-graph"] = graphed_compiled[0]
    if registry.get(model_id).family == "hannet":
        for dot in (False, True):
            kernel = fused.prepare(net, device="cuda", dot=dot)
            if dot and not (kernel.n_pre or kernel.n_post):
                continue
            buf = torch.empty(batch, net.config.out_features, device="cuda")
            out["fused" + (" (tl.dot)" if dot else "")] = lambda k=kernel, b=buf: k(x, b)
    return out, net


def parity(model_id: str) -> dict:
    net = load(model_id).cuda()
    split = get_task(net.meta["task"]).split()
    x = torch.as_tensor(split.x_test, device="cuda")
    with torch.no_grad():
        ref = net.double()(x.double())
    net = load(model_id).cuda()
    res = {}
    for dot in (False, True):
        out = fused.prepare(net, device="cuda", dot=dot)(x).double()
        err = float((out - ref).abs().max())
        res["dot" if dot else "loop"] = {
            "max_abs_err_vs_float64": err,
            "ok": err <= ABS_TOL * max(1.0, float(ref.abs().max())),
        }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/gpu.json")
    ap.add_argument("--batches", default="1,1024,65536")
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit(
            "benchmarks/gpu.py needs a CUDA GPU; on CPU, the kernel is tested by tests/graphs/test_fused.py"
        )
    if fused.available() is not None:
        raise SystemExit(f"fused kernel unavailable: {fused.available()}")
    batches = [int(b) for b in args.batches.split(",")]
    report = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "triton": fused.triton.__version__,
        "reps": args.reps,
        "parity": {},
        "cells": [],
    }
    for hid in HANNETS:
        report["parity"][hid] = parity(hid)
        print(hid, report["parity"][hid], flush=True)
        group = [hid] + [b.id for b in registry.baselines(hid) if b.shipped]
        for batch in batches:
            base_best = {}
            for mid in group:
                fns, net = variants(mid, batch)
                params = sum(p.numel() for p in net.parameters())
                floor_bytes = 4 * (batch * (net.config.in_features + net.config.out_features) + params)
                for name, fn in fns.items():
                    s = time_cuda(fn, args.reps)
                    cell = {
                        "model": mid,
                        "variant": name,
                        "batch": batch,
                        "median_us": s * 1e6,
                        "rows_per_s": batch / s,
                        "floor_bytes": floor_bytes,
                        "achieved_GBps": floor_bytes / s / 1e9,
                        "achieved_TFLOPs": flops_per_row(net) * batch / s / 1e12,
                    }
                    report["cells"].append(cell)
                    print(json.dumps(cell), flush=True)
                    if mid != hid:
                        base_best[mid] = min(base_best.get(mid, float("inf")), s)
            for cell in report["cells"]:
                if cell["model"] == hid and cell["batch"] == batch:
                    cell["ratio_vs_best_baseline_variant"] = {
                        b: cell["median_us"] / 1e6 / t for b, t in base_best.items()
                    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
