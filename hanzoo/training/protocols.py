"""Every training configuration in one place: the paper's protocol for each task (TrainingProtocol,
PROTOCOLS), Checkerboard's distillation recipe (DistillRecipe) and the CIFAR-10 backbone's CPU recipe
(BackboneRecipe). The trainers read them; nothing else defines how a model is trained."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..errors import HanzooError
from ..zoo import cifar

__all__ = ["TrainingProtocol", "PROTOCOLS", "DistillRecipe", "BackboneRecipe"]


@dataclass(frozen=True)
class TrainingProtocol:
    """The paper's protocol for a task: stage 1's sweep (LRs x seeds, chosen on validation) and what stage 2
    does with the choice (refit, more seeds, or distillation)."""

    iterations: int = 40000
    batch_size: int = 100
    lrs: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    momentum: float = 0.9
    milestones: tuple[float, ...] = (0.5, 0.7, 0.9)  # fractions of training where the LR is ...
    gamma: float = 0.2  # ... multiplied by this (the paper's "annealed by a factor of 5")
    val_fraction: float = 0.1
    eval_every: int = 200  # iterations between validation checks; 0: once per epoch
    split_seed: int = 1234
    optimizer: str = "sgd"  # "sgd" (with momentum) or "adam"
    epochs: int = 0  # when set, iterations = epochs x (training rows // batch_size)
    refit: bool = True  # stage 2: retrain the chosen init and LR on the whole training split
    weight_decay: float = 0.0  # L2 penalty (as torch.optim.SGD's weight_decay), added to each run's loss
    # without refit: seeds trained at the chosen init and LR; the best validation one ships
    ship_seeds: tuple[int, ...] = ()
    # stage 2 by distillation at the chosen init and LR (hanzoo.training.distill; Checkerboard only)
    distill: bool = False
    record_curves: bool = False  # keep each run's validation and test metric at every check, for plots

    def to_dict(self) -> dict:
        return asdict(self)


# Paper Table 2 (SGD, momentum 0.9, batch 100, 40000 iterations) and Section 3.1 (Adam, LR 1e-3,
# batch 100, 300 epochs, for the regression sets; the epoch is chosen on validation, so no refit).
_REGRESSION = TrainingProtocol(
    lrs=(0.001,), milestones=(), optimizer="adam", epochs=300, eval_every=0, refit=False, record_curves=True
)
# Checkerboard: stage 1 is the paper's grid search (init and LR chosen on validation); stage 2 distils at
# that init and LR (hanzoo.training.distill), the recipe registered in docs/checkerboard-recipe.md from fresh
# random splits before the official split was trained with it. (Before it, the best-validation run of
# 10 seeds shipped: docs/checkerboard-selection.json.)
PROTOCOLS = {
    "checkerboard": TrainingProtocol(refit=False, distill=True),
    "elevators": _REGRESSION,
    "calhousing": _REGRESSION,
    "elevators-20pct": _REGRESSION,
    "calhousing-20pct": _REGRESSION,
    # Paper 3.2.3 / Table 2 for the CIFAR-10 heads: SGD momentum 0.9, batch 1024, 20000 iterations,
    # weight decay 1e-4, the same 10 LRs and annealing; the checkpoint and LR are chosen on the
    # 5000 validation images the backbone never trained on.
    "cifar10": TrainingProtocol(
        iterations=20000, batch_size=1024, weight_decay=1e-4, refit=False, eval_every=500
    ),
}


@dataclass(frozen=True)
class DistillRecipe:
    """Checkerboard's stage 2: teachers refit on the whole training split label uniform points, students
    learn them, and the student closest to the teachers on fresh points ships."""

    teachers: int = 8
    students: int = 8
    points: int = 20000  # soft-labelled uniform points, and as many fresh ones to choose the student

    def to_dict(self) -> dict:
        return {"teachers": self.teachers, "students": self.students, "points": self.points}


@dataclass(frozen=True)
class BackboneRecipe:
    """The CIFAR-10 backbone's CPU recipe (SGD Nesterov, label smoothing, crop and flip), end to end."""

    widths: tuple[int, ...] = (24, 48, 96, 192)
    epochs: int = 52
    batch_size: int = 256
    lr: float = 0.2
    warmup_epochs: int = 2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    val_images: int = cifar.VAL_IMAGES
    split_seed: int = 0
    seed: int = 0
    # Variants measured by experiments/cifar_recipe.py; at their first values (fp32 for precision) they
    # are left out of a record, so records written before they existed still match.
    crop: str = "batch"  # "batch": one crop offset per batch; "sample": one per image
    ema_decay: float = 0.0  # > 0: ship an exponential moving average of the weights (and BN buffers)
    # "bf16": the forward and loss under CPU autocast (convolutions in bfloat16, weights, optimizer and the
    # shipped model in float32), about 2x the images per second on CPUs with bfloat16 dot products
    precision: str = "bf16"

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise HanzooError(f"backbone recipe precision must be 'fp32' or 'bf16'; got {self.precision!r}")

    def record(self) -> dict:
        d = json.loads(json.dumps(asdict(self)))
        for name, default in (("crop", "batch"), ("ema_decay", 0.0), ("precision", "fp32")):
            if d[name] == default:
                del d[name]
        return d
