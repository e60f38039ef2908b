"""Every shipped model must still give the figures on its card."""

import json

import numpy as np
import pytest

from hanzoo import load
from hanzoo.runtimes.verify import check_metric
from hanzoo.storage import card
from hanzoo.storage.evaluate import outputs as predict
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task

SHIPPED = [e for e in registry.MODELS.values() if e.shipped]
REQUIRED = {"checkerboard-hannet-20x30", "checkerboard-fcnet-6x100"}


def test_required_models_are_shipped():
    assert REQUIRED <= {e.id for e in SHIPPED}


def _training_images_here() -> bool:
    from hanzoo.zoo import cifar

    try:
        cifar.full_tarball()
        return True
    except Exception:  # noqa: BLE001 - CI clones have only the vendored test split
        return False


@pytest.mark.golden
@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.id)
def test_reevaluation_matches_metrics_and_card(entry, feature_cache):
    """The shipped weights still give the recorded figures, within verify's float32 rule (any CPU)."""
    net = load(entry.id)
    task = get_task(entry.task)
    if entry.config.backbone:  # the test images are vendored; the training images only where the tarball is
        parts = {"test": task.test_data()}
        if _training_images_here() and entry.family != "backbone":
            s = task.split()
            parts["train"] = (s.x_train, s.y_train)
    else:
        s = task.split()
        parts = {"train": (s.x_train, s.y_train), "test": (s.x_test, s.y_test)}
    m = json.loads((entry.dir / "metrics.json").read_text())
    metric = m["metric"]
    for split, (x, y) in parts.items():
        check = check_metric(task, feature_cache.outputs(net, x), y, m["selected"][split][metric])
        assert check.ok, f"{entry.id} {split} {metric}: {check}"
    seeds = m["seeds_at_selected"]["test"]
    assert seeds["mean"] == pytest.approx(np.mean(seeds["values"]))
    assert seeds["std"] == pytest.approx(np.std(seeds["values"]))
    # The card is exactly what the generator makes from these metrics, so its figures are these.
    text = (entry.dir / "README.md").read_text()
    if entry.family == "backbone":
        assert text == card.render_backbone(entry, m)
        test = m["selected"]["test"][metric]
        assert f"| test | {100 - test:.2f} | {test:.2f} |" in text
        return
    assert text == card.render(entry, net.config, m)
    f = lambda x: card.fmt(metric, x)  # noqa: E731
    assert f"| test | {f(m['selected']['test'][metric])} | {f(seeds['mean'])} +- {f(seeds['std'])}" in text


def test_reevaluation_rule_catches_a_changed_model():
    """The tolerance is no blanket: one Han-layer's bias nudged by 1e-3 moves a figure past it."""
    import torch

    for model_id in ("checkerboard-hannet-20x30", "calhousing-hannet-20x200"):
        net = load(model_id)
        task = get_task(net.meta["task"])
        x, y = task.test_data()
        recorded = net.metrics["selected"]["test"][task.metric]
        assert check_metric(task, predict(net, x).numpy(), y, recorded).ok
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name.endswith(".bias"):
                    p += 1e-3 * torch.sign(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
        assert not check_metric(task, predict(net, x).numpy(), y, recorded).ok, model_id


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.id)
def test_selection_did_not_use_test(entry):
    """Re-run both selection stages on the recorded runs with the test figures scrambled."""
    from hanzoo.training.selection import RunResult, select, select_refit

    m = json.loads((entry.dir / "metrics.json").read_text())
    if entry.family == "backbone":  # a fixed recipe: nothing was selected, and the card says so
        assert m["selection_rule"].startswith("none") and len(m["log"]) == m["recipe"]["epochs"]
        return
    sweep = [RunResult(**r) for r in m["sweep"]]
    refit = [RunResult(**r) for r in m["refit"]]
    stage2 = [RunResult(**r) for r in m.get("stage2", [])]
    for runs in (sweep, refit, stage2):
        for r in runs:
            r.test = {k: -v for k, v in r.test.items()}
            if r.curve:
                r.curve["test"] = [0.0] * len(r.curve["test"])
    chosen = sweep[select(sweep, get_task(entry.task))]
    task = get_task(entry.task)
    if m.get("distillation"):  # the student closest to the teachers; agreement is measured on uniform points
        agreement = m["distillation"]["agreement_mse"]
        ok = [i for i, r in enumerate(stage2) if r.status == "ok"]
        shipped = stage2[min(ok, key=lambda i: agreement[i])]
    else:
        shipped = refit[select_refit(refit)] if refit else stage2[select(stage2, task)] if stage2 else chosen
    sel = m["selected"]
    assert (chosen.init, chosen.lr) == (sel["init"], sel["lr"]) == (m["stage1"]["init"], m["stage1"]["lr"])
    assert shipped.seed == sel["seed"]
    assert all((r.init, r.lr) == (chosen.init, chosen.lr) for r in refit + stage2)


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.id)
def test_shipped_config_is_the_registry_architecture(entry):
    net = load(entry.id)
    assert net.config.layers() == entry.config.layers()
    assert sum(p.numel() for p in net.parameters()) == entry.config.num_params


@pytest.mark.golden
def test_simulated_cpu_is_in_force():
    """`make test`'s second pass really runs torch on its scalar kernels (else it would test nothing new)."""
    import os

    import torch

    if os.environ.get("ATEN_CPU_CAPABILITY") == "default":
        assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
    from pathlib import Path

    make = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41" in make
    assert "$(OLD_CPU) $(BIN)/python -m pytest $(XDIST) -m golden --golden-subset" in make
