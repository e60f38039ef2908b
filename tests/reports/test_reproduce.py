import pytest

from hanzoo.reports import reproduce

# reproduce caches the CIFAR-10 logits it scores (half a minute): one worker computes them once
pytestmark = pytest.mark.xdist_group("reproduce")


def test_report_builds_from_shipped_metrics_and_is_current():
    text = reproduce.report()
    assert "## Table 3: Checkerboard" in text and "## Table 4" in text and "## Table 5" in text
    assert (reproduce.DOCS / "reproduction.md").read_text() == text, (
        "docs/reproduction.md is stale: run `hanzoo reproduce`"
    )
    for fig in ("reproduction-figure1.png", "reproduction-figure6.png"):
        assert (reproduce.DOCS / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_covered_model_has_a_row():
    text = reproduce.report()
    for model in reproduce.COVERED:
        assert f"`{model}`" in text


def test_selection_study_summary_comes_from_its_records():
    """The report's selection table is read from docs/checkerboard-selection.json; its summary must be
    what the experiment's own summarize() makes of the per-run records stored beside it."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "experiments" / "checkerboard_selection.py"
    spec = importlib.util.spec_from_file_location("checkerboard_selection", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    d = json.loads(reproduce.SELECTION_JSON.read_text())
    assert study.summarize(d["records"]) == d["summary"]
    assert (
        f"| best validation | {d['summary']['shipped_test_mean']['best validation']:.2f} |"
        in reproduce.report()
    )


def test_shipping_rule_text_is_each_models_metrics():
    """The report says which rule each Checkerboard model was shipped by, read from its metrics.json: a model
    with a refit list is never said to ship without one, and every one is named under exactly one rule."""
    from hanzoo.zoo import registry

    text = reproduce.shipped_rules_text()
    assert text in reproduce.report()
    clauses = text.split(": ", 1)[1].split("; ")
    for mid in reproduce.COVERED:
        m = registry.get(mid).metrics
        if registry.get(mid).task != "checkerboard" or not m.get("selected"):
            continue
        (clause,) = [c for c in clauses if f"`{mid}`" in c]
        assert ("refit rule" in clause) == bool(m["refit"]) == m["protocol"]["refit"]
        assert ("distillation recipe" in clause) == bool(m.get("distillation"))
        assert ("stage 2 of" in clause) == (bool(m.get("stage2")) and not m.get("distillation"))
        if m.get("stage2") and not m.get("distillation"):
            assert f"stage 2 of {len(m['stage2'])} seeds" in clause or f" {len(m['stage2'])} seeds" in clause
    assert "every Checkerboard model" not in reproduce.report()


def test_recorded_minutes_sums_the_shipped_records():
    from hanzoo.reports import retrain
    from hanzoo.zoo import registry

    ids = ["checkerboard-hannet-20x30", "elevators-hannet-20x200"]
    seconds = [registry.get(m).metrics.get("wall_seconds") for m in ids]
    assert retrain.recorded_minutes(ids) == (sum(s for s in seconds if s) / 60, sum(1 for s in seconds if s))
