"""`hanzoo train`: a registry model through both stages of its protocol (hanzoo.training.stacked runs
them), then its model folder: weights, config, metrics.json (hanzoo.zoo.record) and card.

Stage 1 is the paper's sweep, chosen on validation; stage 2, as the task's protocol asks, refits on the
whole training split, trains more seeds, or distils (hanzoo.training.distill). The test split is scored once,
at the end, for the record.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import HanzooError
from ..files import file_sha256
from ..nn.models import ModelConfig, Net
from ..publishing import hub
from ..storage import card, store
from ..storage.evaluate import evaluate
from ..zoo import registry
from ..zoo.record import Record
from ..zoo.tasks import Regression, Split, Task, get_task
from . import backbone
from .backbone import features_task
from .distill import distill_stage
from .protocols import PROTOCOLS, BackboneRecipe, TrainingProtocol
from .selection import RunResult, select
from .stacked import SweepResult, fit_scaling, refit, sweep

# --- training a registry model: both stages, then its model folder ----------------------------


@dataclass
class Stages:
    """What both stages of one training produced: the record and the model folder are made from it."""

    stage1: SweepResult  # its protocol is the one the record states (iterations resolved from epochs)
    chosen: RunResult  # stage 1's pick: stage 2 runs at its (init, LR)
    stage2: SweepResult | None  # a refit or more seeds; None: the chosen stage-1 run itself ships

    @property
    def protocol(self) -> TrainingProtocol:
        assert self.stage1.protocol is not None  # a stage-1 sweep records the protocol it ran
        return self.stage1.protocol

    @property
    def shipped(self) -> RunResult:
        return self.stage2.runs[self.stage2.selected] if self.stage2 is not None else self.chosen

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        return (self.stage2 if self.stage2 is not None else self.stage1).state_dict

    @property
    def at_chosen(self) -> list[RunResult]:
        """The healthy stage-1 runs at the chosen (init, LR): its seeds."""
        hp = (self.chosen.init, self.chosen.lr)
        return [r for r in self.stage1.runs if (r.init, r.lr) == hp and r.status == "ok"]

    @property
    def peers(self) -> list[RunResult]:
        """The healthy runs the shipped one was picked from; the card gives their spread over seeds."""
        if self.stage2 is None:
            return self.at_chosen
        return [r for r in self.stage2.runs if r.status == "ok"]

    @property
    def stage2_seconds(self) -> float:
        return self.stage2.seconds if self.stage2 is not None else 0.0


def train(
    model_id: str,
    out_dir: str | Path | None = None,
    *,
    threads: int | None = None,
    iterations: int | None = None,
    epochs: int | None = None,
    seeds: tuple[int, ...] | None = None,
    lrs: tuple[float, ...] | None = None,
    inits: list[str] | None = None,
    progress: bool = True,
    compile: bool = True,
    reuse_sweep: bool = False,
) -> Path:
    """`hanzoo train`: a registry model by its own recipe, its folder written; returns the folder.

    The CIFAR-10 backbone trains by its CPU recipe (hanzoo.training.backbone; `epochs` shortens it) on
    every core unless `threads` says otherwise. Anything else runs the paper's protocol for its task
    (`protocol_for`, with the overrides given) through `train_model`, on one thread unless `threads` says
    otherwise: the stacked sweep is one computation over many small nets, faster on one thread per process
    than spread over cores."""
    entry = registry.get(model_id)
    if entry.family == "backbone":
        ignored = {
            "iterations": iterations,
            "seeds": seeds,
            "lrs": lrs,
            "inits": inits,
            "reuse_sweep": reuse_sweep,
        }
        given = [k for k, v in ignored.items() if v]
        if given:
            raise HanzooError(
                f"{model_id} trains by its own recipe, which takes epochs only; drop {', '.join(given)}"
            )
        torch.set_num_threads(threads or os.cpu_count() or 1)
        recipe = replace(BackboneRecipe(), epochs=epochs) if epochs else BackboneRecipe()
        return backbone.train_and_package(
            entry, Path(out_dir) if out_dir else None, recipe, progress=progress
        )
    torch.set_num_threads(threads or 1)
    return train_model(
        model_id,
        out_dir,
        inits=inits,
        protocol=protocol_for(model_id, iterations, epochs, seeds, lrs),
        progress=progress,
        compile=compile,
        reuse_sweep=reuse_sweep,
    )


def train_model(
    model_id: str,
    out_dir: str | Path | None = None,
    inits: list[str] | None = None,
    protocol: TrainingProtocol | None = None,
    progress: bool = True,
    compile: bool = True,
    reuse_sweep: bool = False,
) -> Path:
    """Run the paper's sweep for a registry model, then its stage 2, and write its model folder;
    returns the folder.

    With `reuse_sweep`, stage 1 is not run again: its records are read from the model folder's
    metrics.json and the same selection rule is applied to them.
    """
    entry = registry.get(model_id)
    if entry.family == "backbone":
        raise HanzooError(
            f"{model_id} is not trained by the paper's sweep but by its own recipe: use train()"
        )
    protocol = _check_protocol(entry, protocol)
    task, train_config, frozen = _training_task(entry)
    split = task.split()
    dest = Path(out_dir) if out_dir else entry.dir
    if reuse_sweep:
        stage1 = _recorded_sweep(dest, protocol, task)
    else:
        stage1 = sweep(train_config, task, split, protocol, inits=inits, progress=progress, compile=compile)
    chosen = stage1.runs[select(stage1.runs, task)]
    assert stage1.protocol is not None  # a stage-1 sweep records the protocol it ran
    stage2 = run_stage2(train_config, task, split, stage1.protocol, chosen, progress, compile)
    stages = Stages(stage1, chosen, stage2)

    config = replace(entry.config, init=stages.shipped.init)
    scaling = fit_scaling(split) if task.standardize else None  # as every stage computed it
    state = _with_backbone(stages.state_dict, frozen)
    final = evaluate_shipped(_shipped_net(config, state, scaling, frozen), entry, task, split, frozen)
    metrics = build_record(entry, task, split, stages, final, scaling, frozen)
    return _write_folder(dest, entry, config, state, metrics, scaling, frozen)


def protocol_for(
    model_id: str,
    iterations: int | None = None,
    epochs: int | None = None,
    seeds: tuple[int, ...] | None = None,
    lrs: tuple[float, ...] | None = None,
) -> TrainingProtocol:
    """The paper's protocol for a model's task, with what the caller overrides (`hanzoo train`'s
    --iterations, --epochs, --seeds, --lrs). An iteration count given without epochs replaces the task's
    epoch-based length, which would otherwise win."""
    entry = registry.get(model_id)
    base = _check_protocol(entry, None)
    over = {
        k: v for k, v in (("iterations", iterations), ("epochs", epochs), ("seeds", seeds), ("lrs", lrs)) if v
    }
    if iterations and not epochs:
        over["epochs"] = 0
    return TrainingProtocol(**(base.to_dict() | over))


def _check_protocol(entry: registry.ModelEntry, protocol: TrainingProtocol | None) -> TrainingProtocol:
    if entry.task not in PROTOCOLS and protocol is None:
        raise HanzooError(f"cannot train {entry.id}: {registry.train_advice(entry.id)}")
    return protocol or PROTOCOLS[entry.task]


def _training_task(entry: registry.ModelEntry) -> tuple[Task, ModelConfig, Net | None]:
    """The task the nets train on, their config, and the frozen backbone model when only a head
    trains (then on the backbone's cached features)."""
    if entry.frozen:
        task, frozen = features_task(entry.frozen)
        return task, replace(entry.config, backbone=()), frozen
    return get_task(entry.task), entry.config, None


def _recorded_sweep(folder: Path, protocol: TrainingProtocol, task: Task) -> SweepResult:
    """Stage 1 as recorded in `folder`'s metrics.json, for --reuse-sweep. Its weights were not kept, so
    its state_dict is empty and a stage 2 must follow."""
    old = store.read_metrics(folder)
    if not old.get("sweep"):
        raise HanzooError(f"--reuse-sweep needs a metrics.json with a sweep in {folder}")
    if not _same_stage1(old.get("protocol", {}), protocol):
        now = json.loads(json.dumps(protocol.to_dict()))
        differ = [
            f"{k} {v} (now {now[k]})" for k, v in old.get("protocol", {}).items() if k in now and now[k] != v
        ]
        raise HanzooError(
            f"the sweep in {folder / 'metrics.json'} was run with another protocol: "
            + ", ".join(d for d in differ if not d.startswith(("refit ", "ship_seeds ", "distill ")))
            + " (override them, e.g. --lrs, to reuse it)"
        )
    runs = [RunResult(**r) for r in old["sweep"]]
    seconds = old["sweep_wall_seconds"] if "sweep_wall_seconds" in old else old["wall_seconds"]
    if not (protocol.refit or protocol.ship_seeds or protocol.distill):
        raise HanzooError(
            "--reuse-sweep cannot ship a stage-1 run (its weights were not kept); "
            "use a protocol with a refit, ship_seeds or distill stage"
        )
    return SweepResult(runs, select(runs, task), {}, seconds, protocol.iterations / seconds, protocol)


def _same_stage1(recorded: dict, protocol: TrainingProtocol) -> bool:
    """Whether a recorded protocol ran stage 1 as `protocol` would.

    Fields added since the record was written take their defaults; what happens after stage 1
    (refit, ship_seeds, distill) may differ, since --reuse-sweep exists to rerun just that part.
    """
    fields = TrainingProtocol.__dataclass_fields__
    old = TrainingProtocol(**{k: v for k, v in recorded.items() if k in fields})

    def stage1_part(p: TrainingProtocol) -> dict:
        as_recorded = json.loads(json.dumps(p.to_dict()))  # tuples -> lists
        return {k: v for k, v in as_recorded.items() if k not in ("refit", "ship_seeds", "distill")}

    return stage1_part(old) == stage1_part(protocol)


def run_stage2(
    config: ModelConfig,
    task: Task,
    split: Split,
    protocol: TrainingProtocol,
    chosen: RunResult,
    progress: bool = True,
    compile: bool = True,
) -> SweepResult | None:
    """Stage 2 at stage 1's chosen (init, LR), as the protocol asks: a refit on the whole training
    split, more seeds on the same split, or none (None: the chosen stage-1 run is shipped)."""
    if protocol.refit:
        return refit(
            config, task, split, protocol, chosen.init, chosen.lr, progress=progress, compile=compile
        )
    if protocol.distill:
        return distill_stage(config, task, split, protocol, chosen.init, chosen.lr, progress, compile)
    if protocol.ship_seeds:
        # The best validation run of the new seeds is shipped: experiments/checkerboard_selection.py
        # shows why, on fresh splits.
        return sweep(
            config,
            task,
            split,
            replace(protocol, lrs=(chosen.lr,), seeds=protocol.ship_seeds),
            inits=[chosen.init],
            progress=progress,
            compile=compile,
        )
    return None


def _with_backbone(state: dict[str, torch.Tensor], frozen: Net | None) -> dict[str, torch.Tensor]:
    """A head's state as the whole classifier ships it: the frozen backbone's weights, then the head."""
    if frozen is None:
        return state
    return {f"backbone.{k}": v for k, v in frozen.backbone.state_dict().items()} | dict(state)


def _shipped_net(
    config: ModelConfig, state: dict[str, torch.Tensor], scaling: dict | None, frozen: Net | None
) -> Net:
    # The plain module, not the stacked one: the record's figures come through the same code as
    # `hanzoo eval`.
    net = Net(config)
    net.load_state_dict(state)
    if frozen is not None:
        preprocessing = frozen.meta["preprocessing"]
        net.backbone.set_stats(preprocessing["image_mean"], preprocessing["image_std"])
    else:
        net.set_scaling(scaling)
    return net.eval()


def evaluate_shipped(
    net: Net, entry: registry.ModelEntry, task: Task, split: Split, frozen: Net | None
) -> dict[str, dict[str, float]]:
    """The shipped model's figures on the train and test parts. A head on frozen features is scored
    as the whole classifier, on the task's images."""
    if frozen is None:
        return evaluate(net, task, split)
    images = get_task(entry.task)
    return evaluate(net, images, images.split())


def build_record(
    entry: registry.ModelEntry,
    task: Task,
    split: Split,
    stages: Stages,
    final: dict[str, dict[str, float]],
    scaling: dict | None,
    frozen: Net | None,
) -> Record:
    """The model's metrics.json: the shipped run's figures, how it was chosen, and every run."""
    protocol, runs, chosen, shipped = stages.protocol, stages.stage1.runs, stages.chosen, stages.shipped
    m = task.metric
    stage2 = [asdict(r) for r in stages.stage2.runs] if stages.stage2 is not None else []
    only_stage2 = (protocol.ship_seeds or protocol.distill) and not protocol.refit  # not a refit
    seconds = stages.stage1.seconds
    return Record.build(
        model_id=entry.id,
        task=entry.task if frozen is not None else task.name,
        metric=m,
        higher_is_better=task.higher_is_better,
        selected={
            "init": shipped.init,
            "lr": shipped.lr,
            "seed": shipped.seed,
            "iterations": protocol.iterations if protocol.refit else shipped.best_iteration,
            "train": final["train"],
            "test": final["test"],
        },
        seeds_at_selected=_seed_spread(stages.peers, m),
        selection_rule=_selection_rule(protocol, m, None if split.x_val is None else len(split.x_val)),
        wall_seconds=seconds + stages.stage2_seconds,
        stage1={
            "init": chosen.init,
            "lr": chosen.lr,
            "val_mean": float(np.mean([r.val[m] for r in stages.at_chosen])),
        },
        protocol=protocol.to_dict(),
        protocol_text=_protocol_text(protocol, runs, frozen is not None, bool(scaling)),
        failed_runs=sum(r.status != "ok" for r in runs),
        sweep=[asdict(r) for r in runs],
        refit=stage2 if protocol.refit else [],
        stage2=stage2 if only_stage2 else [],
        sweep_wall_seconds=seconds,
        refit_wall_seconds=stages.stage2_seconds if protocol.refit else 0.0,
        stage2_wall_seconds=stages.stage2_seconds if only_stage2 else 0.0,
        sweep_iterations_per_second=protocol.iterations / seconds,
        **(
            {"distillation": stages.stage2.distillation}
            if stages.stage2 and stages.stage2.distillation
            else {}
        ),
        **_data_record(entry, task, split, shipped, frozen),
    )


def _data_record(
    entry: registry.ModelEntry, task: Task, split: Split, shipped: RunResult, frozen: Net | None
) -> dict:
    """Where the data came from: the split, for tasks that draw their own; for a head, the frozen
    backbone and the head's figures on its features."""
    record: dict = {}
    if isinstance(task, Regression):  # the one kind of task that draws its own split
        record["split"] = {
            "train_fraction": task.train_fraction,
            "split_seed": task.split_seed,
            "train_rows": len(split.x_train),
            "test_rows": len(split.x_test),
        }
    if frozen is not None:
        assert split.x_val is not None  # a head's features task holds out the backbone's validation images
        record["backbone"] = {
            "model_id": entry.frozen,
            "weights_sha256": file_sha256(frozen.folder / "model.safetensors"),
            "feature_width": task.n_in,
            "train_images": len(split.x_train),
            "val_images": len(split.x_val),
            "test_images": len(split.x_test),
        }
        record["head_on_features"] = {"test": shipped.test, "val": shipped.val}
    return record


def _seed_spread(runs: list[RunResult], metric: str) -> dict[str, dict]:
    spread: dict[str, dict[str, Any]] = {
        part: {"values": [getattr(r, part)[metric] for r in runs]} for part in ("train", "test")
    }
    for s in spread.values():
        s["mean"], s["std"] = float(np.mean(s["values"])), float(np.std(s["values"]))
    return spread


def _selection_rule(protocol: TrainingProtocol, metric: str, own_val_rows: int | None) -> str:
    """The card's sentence for how the shipped run was chosen. `own_val_rows`: the size of the task's
    own validation part (CIFAR-10: images the backbone never saw), used instead of a carved one."""
    if own_val_rows is None:
        validation = (
            f"a validation split of {100 * protocol.val_fraction:.0f}% is carved from the training split "
            f"(seed {protocol.split_seed})"
        )
    else:
        validation = f"the task's own validation part ({own_val_rows} rows) is used"
    stage1 = (
        f"{validation}; each run keeps its checkpoint with the best validation {metric} (loss breaks ties, "
        f"checked every {protocol.eval_every} iterations); the init and LR are those with the fewest failed "
        f"runs, then the best mean validation {metric} over seeds"
    )
    if protocol.refit:
        return (
            f"stage 1: {stage1}. Stage 2: every seed is retrained at that init and LR on the whole "
            "training split, keeping its final iterate; the run with the lowest training loss is shipped."
        )
    if protocol.distill:
        return (
            f"stage 1: {stage1}. Stage 2 distils at that init and LR (docs/checkerboard-recipe.md, "
            "registered before this run): teachers refit on the whole training split label points drawn "
            "uniformly from the square with their mean output; students train on the training points "
            "plus those; the student whose outputs agree best with the teachers' on fresh uniform points "
            "is shipped."
        )
    if protocol.ship_seeds:
        return (
            f"stage 1: {stage1}. Stage 2: {len(protocol.ship_seeds)} seeds are trained at that init and "
            f"LR on the same split, and the one with the best validation {metric} is shipped."
        )
    return (
        f"{stage1}; the shipped run is, among that init and LR's seeds, the one with the best "
        f"validation {metric}."
    )


def _protocol_text(
    protocol: TrainingProtocol, runs: list[RunResult], frozen: bool, standardized: bool
) -> str:
    optimizer = f"SGD momentum {protocol.momentum}" if protocol.optimizer == "sgd" else "Adam"
    length = f"{protocol.iterations} iterations"
    if protocol.epochs:
        length = f"{protocol.epochs} epochs ({length})"
    schedule = (
        f", LR x{protocol.gamma} at {list(protocol.milestones)} of training" if protocol.milestones else ""
    )
    text = (
        f"{optimizer}, batch {protocol.batch_size}, {length}{schedule}, LRs {list(protocol.lrs)}, "
        f"inits {sorted({r.init for r in runs})}, seeds {list(protocol.seeds)}"
    )
    if protocol.weight_decay:
        text += f", weight decay {protocol.weight_decay}"
    if frozen:
        return text + "; cross-entropy loss on the frozen backbone's features."
    if standardized:
        return text + "; MSE loss on standardized inputs and targets (statistics of the training split)."
    return text + "; MSE loss."


def _write_folder(
    dest: Path,
    entry: registry.ModelEntry,
    config: ModelConfig,
    state: dict[str, torch.Tensor],
    metrics: Record,
    scaling: dict | None,
    frozen: Net | None,
) -> Path:
    folder = store.write_folder(
        dest,
        entry.id,
        entry.task,
        config,
        state,
        metrics,
        card.render(entry, config, metrics),
        scaling=scaling,
        preprocessing=frozen.meta["preprocessing"] if frozen is not None else None,
    )
    hub.repin_if_bundled(folder)  # retraining a shipped model changes the files its pins describe
    return folder
