"""Trainer throughput: one plain nn.Module run at a time against the stacked sweep (eager and compiled).

    python benchmarks/train_speed.py [--model ID] [--runs 50] [--iterations 300] [--repeats 3]

Prints the median seconds per 1000 iterations for the whole sweep and per run, and the ratio of the
plain loop's cost to each stacked mode's, measured in the same process. Threads: 1 (as the trainer).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hanzoo import build, registry
from hanzoo.stacked import Protocol, StackedNet, train_stacked, tune_allocator
from hanzoo.tasks import get_task


def plain(config, task, x, y, iterations: int) -> float:
    net = build(config, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(iterations):
        idx = torch.randint(0, len(x), (100,), generator=g)
        opt.zero_grad(set_to_none=True)
        task.loss(net(x[idx]), y[idx]).backward()
        opt.step()
    return time.perf_counter() - start


def stacked(config, task, x, y, runs: int, iterations: int, compile: bool) -> float:
    net = StackedNet(config, [build(config, seed=i) for i in range(runs)])
    lrs = torch.full((runs,), 0.01)
    start = time.perf_counter()
    train_stacked(net, task, x, y, lrs, Protocol(iterations=iterations), list(range(runs)), compile=compile)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="checkerboard-hannet-20x30")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tune_allocator()
    entry = registry.get(args.model)
    task = get_task(entry.task)
    s = task.split()
    x, y = torch.as_tensor(s.x_train), torch.as_tensor(s.y_train)

    # Warm-up (and inductor's one-off compile) outside the timed repeats.
    plain(entry.config, task, x, y, 20)
    stacked(entry.config, task, x, y, args.runs, 20, compile=False)
    t0 = time.perf_counter()
    stacked(entry.config, task, x, y, args.runs, 20, compile=True)
    compile_s = time.perf_counter() - t0

    times: dict[str, list[float]] = {"plain (1 run)": [], "stacked eager": [], "stacked compiled": []}
    for _ in range(args.repeats):  # interleaved, so drift hits every mode alike
        times["plain (1 run)"].append(plain(entry.config, task, x, y, args.iterations))
        times["stacked eager"].append(stacked(entry.config, task, x, y, args.runs, args.iterations, False))
        times["stacked compiled"].append(stacked(entry.config, task, x, y, args.runs, args.iterations, True))

    k = 1000 / args.iterations
    per_run_plain = statistics.median(times["plain (1 run)"]) * k
    print(
        f"{entry.id}: {args.runs} runs, {args.iterations} iterations x {args.repeats} repeats, 1 thread; "
        f"first compile {compile_s:.1f} s"
    )
    print(f"{'mode':<18} {'s/1000 it (sweep)':>18} {'s/1000 it per run':>18} {'speed-up vs plain':>18}")
    for mode, ts in times.items():
        sweep = statistics.median(ts) * k * (args.runs if mode.startswith("plain") else 1)
        per_run = sweep / args.runs
        print(f"{mode:<18} {sweep:>18.2f} {per_run:>18.3f} {per_run_plain / per_run:>17.1f}x")


if __name__ == "__main__":
    main()
