"""Trainer throughput: the stacked sweep's closed-form step against its autograd step, against the trainer
of an earlier commit, and against the floor.

    python benchmarks/train_speed.py [--model ID ...] [--runs 50] [--iterations 300] [--repeats 3]
                                     [--before REV] [--report docs]
    python benchmarks/train_speed.py --render [--report docs]   # the page again from its JSON

For each model, interleaved (so drift hits every mode alike), it times:
- plain: one ordinary nn.Module run with torch.optim.SGD, the loop a newcomer would write;
- autograd: the stacked sweep with torch's backward of the compiled loss, kept as
  `train_stacked(..., backward="autograd")`. It shares every later change but the step itself (run
  groups, the gather inside the compiled function), so it isolates what the hand-written step gives;
- before: the stacked trainer of commit REV (default 4d013e7, the last before hanzoo.training.backprop), as it
  was, in a worker process of its own that imports that commit's package (`git archive`);
- closed-form: the stacked sweep with hanzoo.training.backprop's hand-written step (the trainer's default).
It prints the median seconds per run per 1000 iterations, the speed-ups over autograd and over the
earlier trainer, and the floor: the step's flops (counted below) at the core's measured single-thread
sgemm rate. Threads: 1, as the trainer. With --report it writes DIR/train-speed.json and .md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from hanzoo import build, provenance
from hanzoo.nn.models import ModelConfig
from hanzoo.training.protocols import TrainingProtocol
from hanzoo.training.stacked import StackedNet, train_stacked, tune_allocator
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task

MODES = ("plain", "autograd", "before", "closed-form")
TARGET = 3.0  # the speed-up over the earlier trainer that the closed-form step was built for
BEFORE = "4d013e7"  # the stacked trainer before the hand-written step: autograd of the compiled loss
ROOT = Path(__file__).resolve().parents[1]

# The earlier trainer's side of the comparison. It reads "MODEL RUNS ITERATIONS" lines on stdin and
# answers each with the seconds one stacked training took; the first line of a model also compiles.
WORKER = """
import sys, time, torch
from hanzoo import build
try:
    from hanzoo.zoo import registry
    from hanzoo.zoo.tasks import get_task
    from hanzoo.training.stacked import StackedNet, train_stacked, tune_allocator
    try:
        from hanzoo.training.protocols import TrainingProtocol
    except ImportError:  # the layer subpackages, before training/protocols.py
        from hanzoo.training.stacked import Protocol as TrainingProtocol
except ImportError:  # a commit from before the layer subpackages
    from hanzoo import registry
    from hanzoo.tasks import get_task
    from hanzoo.stacked import Protocol as TrainingProtocol, StackedNet, train_stacked, tune_allocator
torch.set_num_threads(1)
tune_allocator()
compile = sys.argv[1] == "compile"
for line in sys.stdin:
    model_id, runs, iterations = line.split()
    runs, iterations = int(runs), int(iterations)
    entry = registry.get(model_id)
    task = get_task(entry.task)
    s = task.split()
    x, y = torch.as_tensor(s.x_train), torch.as_tensor(s.y_train)
    net = StackedNet(entry.config, [build(entry.config, seed=i) for i in range(runs)])
    protocol = TrainingProtocol(iterations=iterations, milestones=())
    start = time.perf_counter()
    train_stacked(net, task, x, y, torch.full((runs,), 0.01), protocol, list(range(runs)), compile=compile)
    print(time.perf_counter() - start, flush=True)
"""


class EarlierTrainer:
    """A worker process running commit `rev`'s package: that commit's hanzoo/, unpacked from git."""

    def __init__(self, rev: str, compile: bool = True) -> None:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "hanzoo"], capture_output=True)
        if archive.returncode:  # not a checkout, or a clone without that commit
            raise RuntimeError(f"cannot read commit {rev} here: {archive.stderr.decode().strip()}")
        self.dir = tempfile.TemporaryDirectory()
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(self.dir.name, filter="data")
        env = os.environ | {"PYTHONPATH": self.dir.name}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, "compile" if compile else "eager"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.dir.name,
        )

    def seconds(self, model_id: str, runs: int, iterations: int) -> float:
        self.proc.stdin.write(f"{model_id} {runs} {iterations}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the earlier trainer's worker stopped (exit {self.proc.wait()})")
        return float(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self.dir.cleanup()


def step_flops(config: ModelConfig, batch: int) -> int:
    """Floating-point operations of one training step of one run (forward, backward, update).

    A fully connected layer in -> out costs 2 in out per sample for each of its forward, weight
    gradient and input gradient (the first layer has no input gradient). A Han-layer of width n costs
    18 n per sample: the forward's dot product (2n), update and bias (3n) and |.| (n); the backward's
    sign product (n), dot product (2n), input update (3n), bias sum (n) and the two batch sums in du
    (4n), with the c^2 term counted once per layer. The update is 3 flops per parameter.
    """
    flops, params = 0, 0
    layers = [(kind, n_in, n_out) for kind, n_in, n_out, _ in config.layers()]
    layers.append(("fc", layers[-1][2], config.out_features))
    for i, (kind, n_in, n_out) in enumerate(layers):
        if kind == "fc":
            flops += batch * 2 * n_in * n_out * (2 if i == 0 else 3) + batch * 2 * n_out  # bias, act
            params += n_in * n_out + n_out
        else:
            flops += batch * 18 * n_in + 4 * n_in
            params += 2 * n_in
    return flops + 3 * params


def sgemm_gflops(seconds: float = 1.0) -> float:
    """The core's single-thread float32 matrix-multiply rate (1024^3), the floor's yardstick."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 1024**3 * n / (time.perf_counter() - start) / 1e9


def stream_gbs(seconds: float = 1.0) -> float:
    """The core's main-memory bandwidth for c = a + b on 64 MB arrays (3 x 4 bytes moved per element)."""
    a, b, c = torch.rand(2**24), torch.rand(2**24), torch.empty(2**24)
    torch.add(a, b, out=c)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.add(a, b, out=c)
        n += 1
    return 12 * 2**24 * n / (time.perf_counter() - start) / 1e9


def update_bytes(config: ModelConfig) -> int:
    """Main-memory traffic of one SGD update of one run: read p, buf and g, write p and buf (4 bytes each).
    It only matters where the parameters outgrow the caches (FCNet-6x300: 1.8 MB a run)."""
    return 5 * 4 * config.num_params


def plain(config: ModelConfig, task, x, y, iterations: int) -> float:
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


def stacked(config: ModelConfig, task, x, y, runs: int, iterations: int, backward: str) -> float:
    net = StackedNet(config, [build(config, seed=i) for i in range(runs)])
    lrs = torch.full((runs,), 0.01)
    protocol = TrainingProtocol(iterations=iterations, milestones=())
    start = time.perf_counter()
    train_stacked(net, task, x, y, lrs, protocol, list(range(runs)), compile=True, backward=backward)
    return time.perf_counter() - start


def measure(
    model_id: str,
    runs: int,
    iterations: int,
    repeats: int,
    gflops: float,
    gbs: float,
    before: EarlierTrainer | None = None,
) -> dict:
    entry = registry.get(model_id)
    task = get_task(entry.task)
    s = task.split()
    x, y = torch.as_tensor(s.x_train), torch.as_tensor(s.y_train)
    time_of = {
        "plain": lambda n: plain(entry.config, task, x, y, n) * runs,  # as if each run went alone
        "autograd": lambda n: stacked(entry.config, task, x, y, runs, n, "autograd"),
        "before": lambda n: before.seconds(model_id, runs, n) if before else float("nan"),
        "closed-form": lambda n: stacked(entry.config, task, x, y, runs, n, "closed-form"),
    }
    for mode in MODES:  # warm-up, and inductor's one-off compile, outside the timed repeats
        time_of[mode](10)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(repeats):
        for mode in MODES:
            times[mode].append(time_of[mode](iterations))
    per_run = {m: statistics.median(t) * 1000 / iterations / runs for m, t in times.items()}
    flops = step_flops(entry.config, 100)
    floor = flops * 1000 / (gflops * 1e9)
    traffic = update_bytes(entry.config) * 1000 / (gbs * 1e9)
    return {
        "model": model_id,
        "runs": runs,
        "iterations": iterations,
        "repeats": repeats,
        "seconds_per_run_per_1000": per_run,
        "speedup_over_autograd": {m: per_run["autograd"] / t for m, t in per_run.items()},
        "speedup_over_before": {m: per_run["before"] / t for m, t in per_run.items()},
        "step_flops_per_run": flops,
        "floor_seconds_per_run_per_1000": floor,
        "closed_form_over_floor": per_run["closed-form"] / floor,
        "update_traffic_seconds_per_run_per_1000": traffic,
    }


def render(report: dict) -> str:
    before = report["before"]
    lines = [
        "# Trainer throughput",
        "",
        "Made by `python benchmarks/train_speed.py --report docs` on "
        f"{report['machine']} (1 thread, torch {report['torch']}). Seconds per run per 1000 iterations "
        "(batch 100), median of the repeats, every mode interleaved in the same run. *autograd* is "
        "today's trainer with torch's backward in place of the hand-written step; *before* is the "
        f"stacked trainer of commit {before}, the last before the hand-written step, run as it was in a "
        "worker process. The floor is the step's flops at this core's measured sgemm rate "
        f"({report['sgemm_gflops']:.0f} GFLOP/s), a bound no fp32 step reaches. The update's traffic is "
        "the SGD update's main-memory reads and writes at this core's measured bandwidth "
        f"({report['stream_gbs']:.0f} GB/s), which no flop count sees: it is what keeps a wide FCNet "
        "from its floor.",
        "",
        f"| model | runs | plain | autograd | before ({before}) | closed-form | speed-up over autograd "
        "| over before | floor | closed-form / floor | update's traffic |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["models"]:
        t = r["seconds_per_run_per_1000"]
        lines.append(
            f"| {r['model']} | {r['runs']} | {t['plain']:.3f} | {t['autograd']:.3f} | {t['before']:.3f} "
            f"| {t['closed-form']:.3f} | {r['speedup_over_autograd']['closed-form']:.2f}x "
            f"| {r['speedup_over_before']['closed-form']:.2f}x | {r['floor_seconds_per_run_per_1000']:.3f} "
            f"| {r['closed_form_over_floor']:.1f}x | {r['update_traffic_seconds_per_run_per_1000']:.3f} |"
        )
    lines += [
        "",
        "## Against the target",
        "",
        f"The target is a closed-form step at least {TARGET:g}x faster per run than the trainer of {before}. "
        "*Needed* is that trainer's time over the target; *at most* is its time over the floor, the most "
        "any fp32 step could give on this core. A run-major C++ kernel of the Han-layers, tried by "
        "`experiments/han_chain_kernel.py`, was slower than inductor's code of the same chain, and is "
        "not used.",
        "",
        "| model | before | needed | closed-form | speed-up | at most | met | short by |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in report["models"]:
        t, x = r["seconds_per_run_per_1000"], r["speedup_over_before"]["closed-form"]
        best = t["before"] / r["floor_seconds_per_run_per_1000"]
        short = "" if x >= TARGET else f"{TARGET / x:.2f}x"
        lines.append(
            f"| {r['model']} | {t['before']:.3f} | {t['before'] / TARGET:.3f} | {t['closed-form']:.3f} "
            f"| {x:.2f}x | {best:.2f}x | {'yes' if x >= TARGET else '**no**'} | {short} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["checkerboard-hannet-20x30", "checkerboard-fcnet-6x300"])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", default=BEFORE, help=f"the earlier trainer's commit (default {BEFORE})")
    ap.add_argument("--report", type=Path, help="write train-speed.json and train-speed.md into this folder")
    ap.add_argument(
        "--render", action="store_true", help="only rewrite train-speed.md from the JSON beside it"
    )
    args = ap.parse_args()
    if args.render:
        source = (args.report or ROOT / "docs") / "train-speed.json"
        if not source.is_file():
            raise SystemExit(f"{source} is missing: measure first, with --report {source.parent}")
        source.with_suffix(".md").write_text(render(json.loads(source.read_text())))
        return
    torch.set_num_threads(1)
    tune_allocator()
    gflops, gbs = sgemm_gflops(), stream_gbs()
    print(f"sgemm, 1 thread: {gflops:.1f} GFLOP/s; memory: {gbs:.1f} GB/s")
    print(f"{'model':<28} {'mode':<12} {'s/run/1000 it':>14} {'vs autograd':>12} {'vs before':>10}")
    results = []
    before = EarlierTrainer(args.before)
    try:
        for model_id in args.model:
            r = measure(model_id, args.runs, args.iterations, args.repeats, gflops, gbs, before)
            results.append(r)
            for mode in MODES:
                t, x = r["seconds_per_run_per_1000"][mode], r["speedup_over_autograd"][mode]
                b = r["speedup_over_before"][mode]
                print(f"{model_id:<28} {mode:<12} {t:>14.4f} {x:>11.2f}x {b:>9.2f}x")
            print(f"{model_id:<28} {'floor':<12} {r['floor_seconds_per_run_per_1000']:>14.4f}")
            print(f"{model_id:<28} {'update':<12} {r['update_traffic_seconds_per_run_per_1000']:>14.4f}")
    finally:
        before.close()
    if args.report:
        report = {
            "machine": f"{provenance.cpu_name()} ({platform.machine()})",
            "torch": torch.__version__,
            "before": args.before,
            "sgemm_gflops": gflops,
            "stream_gbs": gbs,
            "models": results,
        }
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "train-speed.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.report / "train-speed.md").write_text(render(report))


if __name__ == "__main__":
    main()
