"""Distillation for Checkerboard (hanzoo.training.distill): teachers, soft labels, students, the shipped
one."""

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hanzoo.errors import HanzooError
from hanzoo.training.distill import distill, uniform_points
from hanzoo.training.protocols import PROTOCOLS, DistillRecipe
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task, random_checkerboard_split

ROOT = Path(__file__).resolve().parents[2]


def _short():
    return replace(PROTOCOLS["checkerboard"], iterations=60, eval_every=30)


def test_student_is_chosen_by_agreement_with_the_teachers_not_by_test():
    entry = registry.get("checkerboard-hannet-20x30")
    split = random_checkerboard_split(7)
    r = distill(
        entry.config,
        get_task("checkerboard"),
        split,
        _short(),
        "han-normal",
        0.05,
        DistillRecipe(teachers=2, students=3, points=200),
        progress=False,
        compile=False,
    )
    assert len(r.teachers) == 2 and len(r.students) == 3 and len(r.agreement) == 3
    ok = [i for i, s in enumerate(r.students) if s.status == "ok"]
    assert r.selected == min(ok, key=lambda i: r.agreement[i])
    # the shipped weights are the selected student's and load into the ordinary module
    net = registry.get("checkerboard-hannet-20x30").config
    from hanzoo.nn.models import build

    module = build(net, seed=0)
    module.load_state_dict(r.state_dict)
    assert 0 <= r.ensemble_test["accuracy"] <= 100


def test_soft_points_cover_the_square_and_are_seeded():
    a, b = uniform_points(5000, 1), uniform_points(5000, 1)
    assert torch.equal(a, b) and not torch.equal(a, uniform_points(5000, 2))
    assert a.min() >= -1 and a.max() <= 1 and a.shape == (5000, 2)
    assert (a < -0.9).any() and (a > 0.9).any()


def test_distillation_is_for_the_checkerboard_square_only():
    entry = registry.get("elevators-hannet-20x200")
    with pytest.raises(HanzooError, match="Checkerboard square"):
        distill(
            entry.config, get_task("elevators"), get_task("elevators").split(), _short(), "han-normal", 0.01
        )


def test_recipe_page_is_rendered_from_its_json_and_states_the_rule():
    spec = importlib.util.spec_from_file_location(
        "checkerboard_recipe", ROOT / "experiments" / "checkerboard_recipe.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    report = json.loads((ROOT / "docs" / "checkerboard-recipe.json").read_text())
    assert (ROOT / "docs" / "checkerboard-recipe.md").read_text() == mod.render(report)
    assert report["summary"] == mod.summarize(report["records"])
    assert len(report["records"]) >= 5
    # fresh random splits only: never the official split's seed, never the probe's splits
    assert all(r["split_seed"] not in (301, 302, 303) for r in report["records"])
