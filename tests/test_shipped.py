"""Every shipped model must still give the figures on its card."""
import json

import numpy as np
import pytest

from hanzoo import card, load, registry
from hanzoo.evaluate import evaluate, evaluate_parts
from hanzoo.tasks import get_task

SHIPPED = [e for e in registry.MODELS.values() if e.shipped]
REQUIRED = {"checkerboard-hannet-20x30", "checkerboard-fcnet-6x100"}


def test_required_models_are_shipped():
    assert REQUIRED <= {e.id for e in SHIPPED}


def _training_images_here() -> bool:
    from hanzoo import cifar
    try:
        cifar.full_tarball()
        return True
    except Exception:  # noqa: BLE001 - CI clones have only the vendored test split
        return False


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.id)
def test_reevaluation_matches_metrics_and_card(entry):
    net = load(entry.id)
    task = get_task(entry.task)
    if entry.config.backbone:  # the test images are vendored; the training images only where the tarball is
        parts = {"test": task.test_data()}
        if _training_images_here() and entry.family != "backbone":
            s = task.split()
            parts["train"] = (s.x_train, s.y_train)
        scores = evaluate_parts(net, task, parts)
    else:
        scores = evaluate(net, task, task.split())
    m = json.loads((entry.dir / "metrics.json").read_text())
    metric = m["metric"]
    for split in scores:
        assert scores[split][metric] == pytest.approx(m["selected"][split][metric], abs=1e-9)
    seeds = m["seeds_at_selected"]["test"]
    assert seeds["mean"] == pytest.approx(np.mean(seeds["values"]))
    assert seeds["std"] == pytest.approx(np.std(seeds["values"]))
    # The card is exactly what the generator makes from these metrics, so its figures are these.
    text = (entry.dir / "README.md").read_text()
    if entry.family == "backbone":
        assert text == card.render_backbone(entry, m)
        assert f"| test | {100 - scores['test'][metric]:.2f} | {scores['test'][metric]:.2f} |" in text
        return
    assert text == card.render(entry, net.config, m)
    f = lambda x: card.fmt(metric, x)  # noqa: E731
    assert f"| test | {f(scores['test'][metric])} | {f(seeds['mean'])} +- {f(seeds['std'])} |" in text


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.id)
def test_selection_did_not_use_test(entry):
    """Re-run both selection stages on the recorded runs with the test figures scrambled."""
    from hanzoo.train import RunResult, select, select_refit

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
