"""Distillation for Checkerboard: teachers trained on the training points label the whole square.

    teachers  K nets refit on the whole training split (the chosen init and LR, K seeds)
    labels    N points drawn uniformly from [-1, 1]^2, each labelled with the teachers' mean output
    students  S nets trained the same way on the training points plus those N soft-labelled points
    ship      the student that agrees best (lowest MSE) with the teachers' mean on N fresh uniform points

The teachers see the training labels only, and the student is chosen by agreement with the teachers,
so no test point enters training or selection: the test figures stay honest. A HanNet's seeds
differ mostly in how they fill the space between the training points; the ensemble's mean averages
that out, and the students learn it everywhere instead of only at the 1640 labelled points.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from ..errors import HanzooError
from ..nn.models import ModelConfig
from ..zoo.tasks import Split, Task
from .protocols import DistillRecipe, TrainingProtocol
from .selection import RunResult
from .stacked import StackedNet, SweepResult, scored_runs, train_seeds

__all__ = ["REGISTERED", "DistillResult", "uniform_points", "distill", "distill_stage"]

# The commit that registered the recipe (docs/checkerboard-recipe.md) before the official split was
# trained with it; each distilled model's card links it.
REGISTERED = "67dfe3836e835fbb3016b63c1d162c136f5779a3"


@dataclass
class DistillResult:
    teachers: list[RunResult]
    ensemble_test: dict[str, float]  # the teachers' mean output on the test split
    students: list[RunResult]
    agreement: list[float]  # each student's MSE against the teachers' mean on the fresh points
    selected: int  # index into students
    state_dict: dict[str, torch.Tensor]
    seconds: float


def uniform_points(n: int, seed: int) -> torch.Tensor:
    """n points uniform on the Checkerboard square [-1, 1]^2."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g) * 2 - 1


@torch.no_grad()
def _outputs(net: StackedNet, x: torch.Tensor) -> torch.Tensor:
    return net.predict(x)  # [R, N, out]


def distill(
    config: ModelConfig,
    task: Task,
    split: Split,
    protocol: TrainingProtocol,
    init: str,
    lr: float,
    recipe: DistillRecipe | None = None,
    seed: int = 0,
    progress: bool = True,
    compile: bool = True,
) -> DistillResult:
    """Teachers, soft labels, students and the shipped student, as the module docstring says."""
    if task.name != "checkerboard":
        raise HanzooError(f"distillation is defined for the Checkerboard square, not {task.name!r}")
    recipe = recipe or DistillRecipe()
    x = torch.as_tensor(split.x_train, dtype=torch.float32)
    y = torch.as_tensor(split.y_train, dtype=torch.float32)
    parts = {"train": (x, y), "test": (torch.as_tensor(split.x_test), torch.as_tensor(split.y_test))}
    start = time.perf_counter()

    t_seeds = list(range(recipe.teachers))
    teachers, t_bad = train_seeds(
        config, task, x, y, protocol, init, lr, t_seeds, "teachers", progress, compile
    )
    t_runs = scored_runs(teachers, task, t_bad, parts, init, lr, t_seeds, protocol.iterations)
    healthy = torch.tensor([r.status == "ok" for r in t_runs])
    if not healthy.any():
        raise HanzooError("every teacher diverged or collapsed; nothing to distill")

    def ensemble(points: torch.Tensor) -> torch.Tensor:
        return _outputs(teachers, points)[healthy].mean(dim=0)

    soft_x = uniform_points(recipe.points, seed)
    fresh_x = uniform_points(recipe.points, seed + 1)
    soft_y, fresh_y = ensemble(soft_x), ensemble(fresh_x)
    ens_test = task.metrics(ensemble(parts["test"][0]), parts["test"][1])

    s_seeds = list(range(100, 100 + recipe.students))  # not the teachers' seeds: other inits, other batches
    xs, ys = torch.cat([x, soft_x]), torch.cat([y, soft_y])
    students, s_bad = train_seeds(
        config, task, xs, ys, protocol, init, lr, s_seeds, "students", progress, compile
    )
    s_runs = scored_runs(students, task, s_bad, parts, init, lr, s_seeds, protocol.iterations)
    agreement = ((_outputs(students, fresh_x) - fresh_y) ** 2).mean(dim=(1, 2))
    ok = [i for i, r in enumerate(s_runs) if r.status == "ok"]
    if not ok:
        raise HanzooError("every student diverged or collapsed; nothing to ship")
    selected = min(ok, key=lambda i: float(agreement[i]))
    return DistillResult(
        t_runs,
        {k: float(v) for k, v in ens_test.items() if k != "constant"},
        s_runs,
        [float(a) for a in agreement],
        selected,
        students.state_dict(selected),
        time.perf_counter() - start,
    )


def distill_stage(
    config: ModelConfig,
    task: Task,
    split: Split,
    protocol: TrainingProtocol,
    init: str,
    lr: float,
    progress: bool = True,
    compile: bool = True,
) -> SweepResult:
    """Distillation as a training's stage 2: the students are its runs, the teachers go in the record."""
    recipe = DistillRecipe()
    r = distill(config, task, split, protocol, init, lr, recipe, progress=progress, compile=compile)
    record = {
        "recipe": recipe.to_dict(),
        "registered": {"page": "docs/checkerboard-recipe.md", "commit": REGISTERED},
        "teachers": [asdict(t) for t in r.teachers],
        "ensemble_test": r.ensemble_test,
        "agreement_mse": r.agreement,
        "student_seeds": [t.seed for t in r.students],
    }
    return SweepResult(
        r.students,
        r.selected,
        r.state_dict,
        r.seconds,
        2 * protocol.iterations / r.seconds,
        protocol,
        distillation=record,
    )
