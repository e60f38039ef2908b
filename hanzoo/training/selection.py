"""How runs are chosen, from validation scores alone: the best checkpoint within a run (`better`), the
init and LR and then the run of a sweep (`select`), and the run a refit ships (`select_refit`). The
test split is never read here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import HanzooError
from ..zoo.tasks import Task

__all__ = ["RunResult", "better", "select", "select_refit"]


@dataclass
class RunResult:
    init: str
    lr: float
    seed: int
    status: str  # "ok", "diverged" (non-finite loss) or "collapsed" (constant prediction)
    best_iteration: int
    fit: dict = field(default_factory=dict)  # the training split less the validation part
    val: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    curve: dict | None = None  # validation and test metric at every check (regression), for plots


def better(
    acc: torch.Tensor,
    loss: torch.Tensor,
    best_acc: torch.Tensor,
    best_loss: torch.Tensor,
    higher_is_better: bool,
) -> torch.Tensor:
    """Per run: is (metric, loss) better than the best so far? Metric first, loss breaks ties."""
    gain = acc > best_acc if higher_is_better else acc < best_acc
    return gain | ((acc == best_acc) & (loss < best_loss))


def select(runs: list[RunResult], task: Task) -> int:
    """Choose the hyperparameters (init, LR), then the run, from validation scores alone.

    (init, LR): fewest failed runs (diverged or collapsed), then the best mean validation metric
    over its seeds, then the lowest mean validation loss. Run: among those runs' healthy seeds, the
    best validation metric, validation loss breaking ties.
    """
    sign = 1 if task.higher_is_better else -1
    ok = [r for r in runs if r.status == "ok"]
    if not ok:
        raise HanzooError("every run of the sweep diverged or collapsed; nothing to select")

    def lr_key(hp: tuple[str, float]) -> tuple[float, float, float]:
        mine = [r for r in ok if (r.init, r.lr) == hp]
        failed = sum((r.init, r.lr) == hp for r in runs) - len(mine)
        return (
            -failed,
            float(np.mean([sign * r.val[task.metric] for r in mine])),
            -float(np.mean([r.val[task.loss_name] for r in mine])),
        )

    hp = max({(r.init, r.lr) for r in ok}, key=lr_key)
    candidates = [i for i, r in enumerate(runs) if (r.init, r.lr) == hp and r.status == "ok"]
    return max(candidates, key=lambda i: (sign * runs[i].val[task.metric], -runs[i].val[task.loss_name]))


def select_refit(runs: list[RunResult]) -> int:
    """The healthy refit run with the lowest training loss."""
    ok = [i for i, r in enumerate(runs) if r.status == "ok"]
    if not ok:
        raise HanzooError("every refit run diverged or collapsed; nothing to ship")
    return min(ok, key=lambda i: runs[i].train["mse"])
