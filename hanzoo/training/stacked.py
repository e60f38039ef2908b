"""The paper's training protocol as stacked computations: a sweep (learning rates x seeds) trained at once.

On nets this small, Python and dispatch overhead dominate, not flops. So the R runs of a sweep are
one computation: every parameter carries a leading run dimension and each layer is one batched
matmul (`baddbmm`) over all runs. A step costs about as many torch ops as one plain run's step, and
its backward is written out by hand (hanzoo.training.backprop), with torch's autograd kept as the reference.

Selection never looks at the test split. A validation split is carved from the training split
(seeded, `val_fraction`). Within a run the checkpoint with the best validation score is kept
(metric first, then validation loss). The learning rate with the best mean validation score over
seeds is chosen, and among its seeds the run with the best validation score is shipped.
The test split is scored once, at the end, for the record.
"""

from __future__ import annotations

import ctypes
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import cast

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..errors import HanzooError
from ..nn.layers import ACTIVATIONS
from ..nn.models import ModelConfig, Net, build
from ..zoo.tasks import Split, Task
from . import backprop, selection
from .optimizers import StackedAdam, StackedSGD
from .protocols import TrainingProtocol
from .selection import RunResult, select, select_refit

__all__ = [
    "carve_validation",
    "StackedNet",
    "SweepResult",
    "BatchStream",
    "compiled",
    "BACKWARDS",
    "GROUP_BYTES",
    "run_groups",
    "step_function",
    "train_stacked",
    "stacked_metrics",
    "fit_scaling",
    "tune_allocator",
    "progress_bar",
    "run_status",
    "run_figures",
    "sweep",
    "refit",
    "train_seeds",
    "scored_runs",
]


def carve_validation(split: Split, fraction: float, seed: int) -> tuple[Split, np.ndarray, np.ndarray]:
    """Split the training part into fit and validation parts; the test part is passed through."""
    if split.x_val is not None:  # the task's own held-out part
        assert split.y_val is not None  # a task that holds out inputs holds out their targets too
        return Split(split.x_train, split.y_train, split.x_test, split.y_test), split.x_val, split.y_val
    n = len(split.x_train)
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(fraction * n))
    val, fit = perm[:n_val], perm[n_val:]
    return (
        Split(split.x_train[fit], split.y_train[fit], split.x_test, split.y_test),
        split.x_train[val],
        split.y_train[val],
    )


class StackedNet:
    """R copies of one architecture with independent parameters, run as one computation.

    Parameters are plain leaf tensors with a leading run dimension; `state_dict(r)` gives run r in
    the key layout of `models.Net`, so a trained run loads into the ordinary module.
    """

    def __init__(self, config: ModelConfig, nets: list[Net]) -> None:
        self.config = config
        states = [n.state_dict() for n in nets]
        self.names = list(states[0])
        self.params = [
            torch.stack([state[k] for state in states]).detach().clone().requires_grad_(True)
            for k in self.names
        ]
        self.act_names = [act for _, _, _, act in config.layers()]
        self.kinds = [kind for kind, _, _, _ in config.layers()]
        # the widest hidden layer's activations per sample (a net without hidden layers: its input or output)
        self.width = max(
            (n for _, _, n, _ in config.layers()), default=max(config.in_features, config.out_features)
        )

    @property
    def runs(self) -> int:
        return self.params[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [R, B, in] -> [R, B, out]."""
        p = iter(self.params)
        for kind, name in zip(self.kinds, self.act_names):
            act = ACTIVATIONS[name]
            if kind == "fc":
                w, b = next(p), next(p)
                x = act(torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))
            else:
                u, b = next(p), next(p)
                v = u * (2.0 / (u * u).sum(-1, keepdim=True))
                # Elementwise rather than bmm: batched matrix-vector products are slow on the CPU.
                s = (x * u.unsqueeze(1)).sum(-1, keepdim=True)  # [R, B, 1]: one dot product per sample
                x = act(torch.addcmul(x + b.unsqueeze(1), s, v.unsqueeze(1), value=-1.0))
        w, b = next(p), next(p)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Every run's outputs on the same rows: x [N, in] -> [R, N, out].

        Rows go through in chunks of about 1 MB of activations: a whole test split at once makes each
        op a pass over main memory (16512 rows x 5 runs x 200 wide is 66 MB a tensor), which made
        evaluation 15x slower than the chunked loop. Rows are independent, so chunking changes no bit.
        """
        rows = max(16, 2**18 // (self.runs * self.width))
        return torch.cat([self.forward(c.expand(self.runs, *c.shape)) for c in x.split(rows)], dim=1)

    def state_dict(self, r: int, params: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        return {k: t[r].detach().clone() for k, t in zip(self.names, params or self.params)}


@dataclass
class SweepResult:
    runs: list[RunResult]
    selected: int  # index into runs
    state_dict: dict[str, torch.Tensor]
    seconds: float
    iterations_per_second: float
    protocol: TrainingProtocol | None = None  # as run (iterations resolved from epochs)
    scaling: dict | None = None  # standardization statistics, for regression tasks
    distillation: dict | None = None  # a distillation stage's teachers, ensemble and recipe


class BatchStream:
    """Per-seed epoch shuffles: runs that share a seed see the same minibatches, whatever their LR."""

    def __init__(self, n: int, batch: int, seeds: list[int], iterations: int) -> None:
        self.n, self.batch = n, batch
        self.unique = sorted(set(seeds))
        self.row = torch.tensor([self.unique.index(s) for s in seeds])
        self.gens = [torch.Generator().manual_seed(10_000 + s) for s in self.unique]
        self.order: torch.Tensor | None = None
        self.pos = n  # past the end: the first next() shuffles

    def next(self) -> torch.Tensor:
        if self.pos + self.batch > self.n:
            self.order = torch.stack([torch.randperm(self.n, generator=g) for g in self.gens])
            self.pos = 0
        assert self.order is not None
        idx = self.order[:, self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx[self.row]  # [R, B]


def compiled(fn: Callable, compile: bool = True) -> Callable:
    """`fn` compiled by inductor when possible, else `fn` itself.

    Eager PyTorch makes one pass over memory per op; inductor fuses each layer's dot product,
    rank-one update, bias and |.|, and their backward, into a few loops, which is most of a step.
    Without a working C++ toolchain it falls back to eager, with a warning.
    """
    if not compile:
        return fn
    fast = torch.compile(fn, dynamic=False)

    def guarded(*args):
        nonlocal fast
        if fast is not fn:
            try:
                return fast(*args)
            except Exception as e:  # noqa: BLE001 - any compiler failure means: run eager
                warnings.warn(
                    f"torch.compile failed ({type(e).__name__}: {e}); training eagerly", stacklevel=2
                )
                fast = fn
        return fn(*args)

    return guarded


BACKWARDS = ("closed-form", "autograd")
GROUP_BYTES = 320 * 1024  # one layer's activations per compiled call: what stays in a core's L2 cache
Step = Callable[[torch.Tensor], torch.Tensor]


def run_groups(runs: int, floats_per_run: int) -> list[slice]:
    """The runs split into near-equal groups whose activations per layer fit GROUP_BYTES (float32).

    A step over 50 HanNet-20x30 runs at once streams each 600 KB activation through memory; in groups
    of 25 they stay in cache, and each run's step is about 10% cheaper (benchmarks/train_speed.py)."""
    per = max(1, GROUP_BYTES // (4 * floats_per_run))
    n = -(-runs // per)
    bounds = [runs * i // n for i in range(n + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def step_function(
    net: StackedNet,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
    opt: StackedSGD | StackedAdam,
    protocol: TrainingProtocol,
    compile: bool,
    backward: str = "closed-form",
) -> Step:
    """One training step of every run on the minibatch rows `idx` [R, B], in place; returns which
    runs' loss was finite before the step.

    "closed-form" is hanzoo.training.backprop's hand-written backward (SGD's update fused into it);
    "autograd" is torch's backward of the same loss, kept as its reference and the benchmark's
    baseline.
    """
    if backward not in BACKWARDS:
        raise HanzooError(f"unknown backward {backward!r}; expected one of {list(BACKWARDS)}")
    if backward == "autograd":
        return _autograd_step(net, task, x, y, opt, protocol.weight_decay, compile)
    if isinstance(opt, StackedSGD):
        return _closed_form_sgd(net, task, x, y, opt, protocol, compile)
    grads = compiled(partial(backprop.loss_and_grads, net.kinds, net.act_names, task), compile)
    params = [p.detach() for p in net.params]

    def adam_step(idx: torch.Tensor) -> torch.Tensor:
        loss, g = grads(params, x[idx].transpose(1, 2), y[idx], opt.loss_weights(), protocol.weight_decay)
        opt.step(g)
        return torch.isfinite(loss)

    return adam_step


def _closed_form_sgd(
    net: StackedNet,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
    opt: StackedSGD,
    protocol: TrainingProtocol,
    compile: bool,
) -> Step:
    step = compiled(partial(backprop.sgd_step, net.kinds, net.act_names, task), compile)
    groups = run_groups(net.runs, net.width * protocol.batch_size)
    params = [p.detach() for p in net.params]  # the same storage, updated in place
    views = [  # each group's slice of every parameter, buffer and LR: updating a view updates the whole
        ([p[g] for p in params], [b[g] for b in opt.bufs], opt.lrs[g]) for g in groups
    ]
    m, wd = protocol.momentum, protocol.weight_decay

    def sgd_groups(idx: torch.Tensor) -> torch.Tensor:
        finite = torch.ones(net.runs, dtype=torch.bool)
        for g, (p, b, lr) in zip(groups, views):
            # A group whose runs have all diverged (parked, at LR 0) is skipped: at the large LRs of a
            # grid that is most of the sweep's runs, and skipping changes nothing they would compute.
            if lr.any():
                finite[g] = step(p, b, x, y, idx[g], lr, m, wd)
        return finite

    return sgd_groups


def _autograd_step(
    net: StackedNet,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
    opt: StackedSGD | StackedAdam,
    wd: float,
    compile: bool,
) -> Step:
    loss_fn = compiled(lambda xb, yb: task.loss(net.forward(xb), yb), compile)

    def autograd_step(idx: torch.Tensor) -> torch.Tensor:
        loss = loss_fn(x[idx], y[idx])
        if wd:  # wd/2 ||p||^2 has gradient wd p: torch.optim.SGD's weight_decay
            loss = loss + 0.5 * wd * sum(p.pow(2).flatten(1).sum(1) for p in net.params)
        (loss * opt.loss_weights().to(loss.dtype)).sum().backward()
        opt.step([cast(torch.Tensor, p.grad) for p in net.params])  # backward() just set every .grad
        for p in net.params:
            p.grad = None
        return torch.isfinite(loss.detach())

    return autograd_step


def train_stacked(
    net: StackedNet,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
    lrs: torch.Tensor,
    protocol: TrainingProtocol,
    seeds: list[int],
    evaluate: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    compile: bool = False,
    backward: str = "closed-form",
) -> torch.Tensor:
    """Train every run of `net` in place; returns a bool tensor [R], True for runs that diverged.

    `evaluate(it)` is called every eval_every iterations and at the end, `progress(it)` every step.
    """
    opt = (
        StackedSGD(net.params, lrs, protocol.momentum)
        if protocol.optimizer == "sgd"
        else StackedAdam(net.params, lrs)
    )
    step = step_function(net, task, x, y, opt, protocol, compile, backward)
    stream = BatchStream(len(x), protocol.batch_size, seeds, protocol.iterations)
    milestones = {math.floor(f * protocol.iterations) for f in protocol.milestones}
    alive = torch.ones(net.runs, dtype=torch.bool)
    initial = [p.detach().clone() for p in net.params]
    for it in range(protocol.iterations):
        if it in milestones:
            opt.scale_lr(protocol.gamma)
        finite = step(stream.next())  # [R]
        if not finite.all() and (bad := ~finite & alive).any():
            # A diverged run is parked at its init with LR 0, so it costs nothing and harms no other
            # run (no op mixes runs, so this step's non-finite update touched only its own).
            alive &= ~bad
            with torch.no_grad():
                for p, p0 in zip(net.params, initial):
                    p[bad] = p0[bad]
            opt.park(bad)
        if evaluate is not None and ((it + 1) % protocol.eval_every == 0 or it + 1 == protocol.iterations):
            evaluate(it + 1)
        if progress is not None:
            progress(it + 1)
    return ~alive


@torch.no_grad()
def stacked_metrics(
    net: StackedNet, task: Task, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, unscale=None
) -> dict[str, torch.Tensor]:
    saved, net.params = net.params, params
    try:
        out = net.predict(x)
    finally:
        net.params = saved
    m = task.metrics(unscale(out) if unscale else out, y)
    m["constant"] = out.std(dim=1).amax(dim=-1) < 1e-6  # a collapsed run predicts one value everywhere
    return m


def fit_scaling(split: Split) -> dict[str, list[float]]:
    """Standardization statistics from the training split alone (a constant column keeps std 1)."""

    def stats(a: np.ndarray) -> tuple[list[float], list[float]]:
        mean, std = a.astype(np.float64).mean(axis=0), a.astype(np.float64).std(axis=0)
        return mean.tolist(), np.where(std > 0, std, 1.0).tolist()

    (xm, xs), (ym, ys) = stats(split.x_train), stats(split.y_train)
    return {"x_mean": xm, "x_std": xs, "y_mean": ym, "y_std": ys}


def tune_allocator() -> None:
    """Keep glibc from returning every freed activation buffer to the OS: on these small stacked
    tensors (~0.5 MB) the mmap/munmap and page faults per op cost about 10% of a step."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def progress_bar(total: int, label: str, enabled: bool):

    class Bar:
        def __init__(self) -> None:
            self.p = Progress(
                TextColumn("[bold]train[/] " + label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                disable=not enabled,
                transient=False,
            )
            self.task = self.p.add_task("train", total=total)

        def __enter__(self):
            self.p.__enter__()
            return self

        def __exit__(self, *exc):
            return self.p.__exit__(*exc)

        def advance(self, it: int) -> None:
            if it % 50 == 0 or it == total:  # rich's refresh is not free at thousands of steps/s
                self.p.update(self.task, completed=it)
            if enabled and not self.p.console.is_terminal and it * 20 // total > (it - 1) * 20 // total:
                # Logs (nohup, CI) get a plain line every 5%, since a live bar only draws on a terminal.
                t = self.p.tasks[0]
                eta = f", about {t.time_remaining:.0f} s left" if t.time_remaining else ""
                print(f"train {label}: {it}/{total} iterations, {t.elapsed:.0f} s{eta}", flush=True)

    return Bar()


# --- stage 1: the sweep -----------------------------------------------------------------------


@dataclass
class _SweepData:
    """A sweep's tensors. Inputs are standardized wherever they are fed to the nets; the training
    targets are standardized too, but the scored targets stay in their own units, since outputs
    are unscaled before scoring."""

    x: torch.Tensor  # the fit part's inputs and targets, as trained on
    y: torch.Tensor
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]]  # fit, val, train, test: as scored
    scaling: dict[str, list[float]] | None
    unscale: Callable[[torch.Tensor], torch.Tensor] | None


def _sweep_data(task: Task, split: Split, protocol: TrainingProtocol, dtype: torch.dtype) -> _SweepData:
    fit, x_val, y_val = carve_validation(split, protocol.val_fraction, protocol.split_seed)
    scaling = fit_scaling(split) if task.standardize else None
    sc = {k: torch.tensor(v, dtype=dtype) for k, v in (scaling or {}).items()}

    def as_t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype)

    def standardized(a: np.ndarray, which: str) -> torch.Tensor:
        return (as_t(a) - sc[f"{which}_mean"]) / sc[f"{which}_std"] if sc else as_t(a)

    def unscale(out: torch.Tensor) -> torch.Tensor:
        return out * sc["y_std"] + sc["y_mean"]

    x = standardized(fit.x_train, "x")
    parts = {
        "fit": (x, as_t(fit.y_train)),
        "val": (standardized(x_val, "x"), as_t(y_val)),
        "train": (standardized(split.x_train, "x"), as_t(split.y_train)),
        "test": (standardized(split.x_test, "x"), as_t(split.y_test)),
    }
    return _SweepData(x, standardized(fit.y_train, "y"), parts, scaling, unscale if sc else None)


def _resolve_schedule(protocol: TrainingProtocol, steps_per_epoch: int) -> TrainingProtocol:
    """The protocol with epoch counts turned into iterations (`epochs`, and `eval_every` 0)."""
    if protocol.epochs:
        protocol = replace(protocol, iterations=protocol.epochs * steps_per_epoch)
    if protocol.eval_every == 0:
        protocol = replace(protocol, eval_every=steps_per_epoch)
    return protocol


class _BestCheckpoints:
    """Each run's parameters at its best validation check so far (metric first, loss breaks ties).

    With `record_curves` it also keeps every run's validation and test metric at each check, for
    plots; selection never reads the test curve.
    """

    def __init__(self, net: StackedNet, task: Task, data: _SweepData, record_curves: bool) -> None:
        self.net, self.task, self.data = net, task, data
        self.params = [p.detach().clone() for p in net.params]
        worst = -math.inf if task.higher_is_better else math.inf
        self.metric = torch.full((net.runs,), worst, dtype=torch.float64)
        self.loss = torch.full((net.runs,), math.inf, dtype=torch.float64)
        self.iteration = torch.zeros(net.runs, dtype=torch.int64)
        self.curves: dict[str, list] | None = (
            {"iterations": [], "val": [], "test": []} if record_curves else None
        )

    def check(self, it: int) -> None:
        net, task, unscale = self.net, self.task, self.data.unscale
        m = stacked_metrics(net, task, net.params, *self.data.parts["val"], unscale)
        acc, loss = m[task.metric].double(), m[task.loss_name].double()
        better = selection.better(acc, loss, self.metric, self.loss, task.higher_is_better) & torch.isfinite(
            loss
        )
        self.metric[better], self.loss[better], self.iteration[better] = acc[better], loss[better], it
        for b, p in zip(self.params, net.params):
            b[better] = p.detach()[better]
        if self.curves is not None:
            test = stacked_metrics(net, task, net.params, *self.data.parts["test"], unscale)
            self.curves["iterations"].append(it)
            self.curves["val"].append(acc.tolist())
            self.curves["test"].append(test[task.metric].tolist())

    def curve(self, r: int) -> dict | None:
        if self.curves is None:
            return None
        c = self.curves
        return {
            "iterations": c["iterations"],
            "val": [v[r] for v in c["val"]],
            "test": [v[r] for v in c["test"]],
        }


def run_status(diverged: torch.Tensor, scored_fit: dict[str, torch.Tensor], r: int) -> str:
    return "diverged" if diverged[r] else "collapsed" if scored_fit["constant"][r] else "ok"


def run_figures(scored: dict[str, dict[str, torch.Tensor]], r: int) -> dict[str, dict[str, float]]:
    """Run r's figures on each scored part, as RunResult fields."""
    return {part: {n: float(v[r]) for n, v in m.items() if n != "constant"} for part, m in scored.items()}


def sweep(
    config: ModelConfig,
    task: Task,
    split: Split,
    protocol: TrainingProtocol,
    inits: list[str] | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    compile: bool = True,
) -> SweepResult:
    """Train every (init, lr, seed) as one stacked computation, then select without the test set.

    Regression tasks train on standardized data (statistics from the training split) and are scored
    in target units."""
    data = _sweep_data(task, split, protocol, dtype)
    protocol = _resolve_schedule(protocol, len(data.x) // protocol.batch_size)
    grid = [
        (init, lr, seed) for init in inits or [config.init] for lr in protocol.lrs for seed in protocol.seeds
    ]
    nets = [build(replace(config, init=init), seed=seed).to(dtype) for init, _, seed in grid]
    net = StackedNet(config, nets)
    lrs = torch.tensor([lr for _, lr, _ in grid], dtype=dtype)
    seeds = [seed for _, _, seed in grid]
    best = _BestCheckpoints(net, task, data, protocol.record_curves)

    tune_allocator()
    bar = progress_bar(protocol.iterations, f"{net.runs} runs", enabled=progress)
    start = time.perf_counter()
    with bar:
        diverged = train_stacked(
            net, task, data.x, data.y, lrs, protocol, seeds, best.check, bar.advance, compile=compile
        )
    seconds = time.perf_counter() - start

    scored = {k: stacked_metrics(net, task, best.params, *xy, data.unscale) for k, xy in data.parts.items()}
    runs = [
        RunResult(
            init,
            lr,
            seed,
            run_status(diverged, scored["fit"], r),
            int(best.iteration[r]),
            curve=best.curve(r),
            **run_figures(scored, r),
        )
        for r, (init, lr, seed) in enumerate(grid)
    ]
    selected = select(runs, task)
    state = net.state_dict(selected, best.params)
    return SweepResult(runs, selected, state, seconds, protocol.iterations / seconds, protocol, data.scaling)


# --- stage 2 ----------------------------------------------------------------------------------


def refit(
    config: ModelConfig,
    task: Task,
    split: Split,
    protocol: TrainingProtocol,
    init: str,
    lr: float,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    compile: bool = True,
) -> SweepResult:
    """Stage 2: retrain every seed at the chosen (init, LR) on the whole training split.

    The paper's protocol trains on all of it; the validation part only served to choose the
    hyperparameters. With no held-out data left, each run keeps its final iterate (the schedule ends
    annealed), and the run with the lowest training loss is shipped.
    """
    x, y = torch.as_tensor(split.x_train, dtype=dtype), torch.as_tensor(split.y_train, dtype=dtype)
    seeds = list(protocol.seeds)
    start = time.perf_counter()
    net, diverged = train_seeds(
        config, task, x, y, protocol, init, lr, seeds, f"refit, {len(seeds)} seeds", progress, compile
    )
    seconds = time.perf_counter() - start
    parts = {
        "train": (x, y),
        "test": (torch.as_tensor(split.x_test, dtype=dtype), torch.as_tensor(split.y_test, dtype=dtype)),
    }
    runs = scored_runs(net, task, diverged, parts, init, lr, seeds, protocol.iterations)
    for r in runs:
        r.fit = r.train  # the whole training split is what each run fit
    selected = select_refit(runs)
    return SweepResult(runs, selected, net.state_dict(selected), seconds, protocol.iterations / seconds)


def train_seeds(
    config: ModelConfig,
    task: Task,
    x: torch.Tensor,
    y: torch.Tensor,
    protocol: TrainingProtocol,
    init: str,
    lr: float,
    seeds: list[int],
    label: str,
    progress: bool = True,
    compile: bool = True,
) -> tuple[StackedNet, torch.Tensor]:
    """One run per seed at a fixed (init, LR), trained together on (x, y) for the protocol's iterations;
    returns the stacked net (each run at its final iterate) and which runs diverged."""
    net = StackedNet(config, [build(replace(config, init=init), seed=s).to(x.dtype) for s in seeds])
    lrs = torch.full((net.runs,), lr, dtype=x.dtype)
    tune_allocator()
    with progress_bar(protocol.iterations, label, enabled=progress) as bar:
        diverged = train_stacked(
            net, task, x, y, lrs, protocol, list(seeds), None, bar.advance, compile=compile
        )
    return net, diverged


def scored_runs(
    net: StackedNet,
    task: Task,
    diverged: torch.Tensor,
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]],
    init: str,
    lr: float,
    seeds: list[int],
    iterations: int,
) -> list[RunResult]:
    """Each run's final iterate scored on `parts` ({"train": (x, y), "test": ...}); "train" decides a run's
    status."""
    scored = {k: stacked_metrics(net, task, net.params, *xy) for k, xy in parts.items()}
    return [
        RunResult(init, lr, s, run_status(diverged, scored["train"], r), iterations, **run_figures(scored, r))
        for r, s in enumerate(seeds)
    ]
