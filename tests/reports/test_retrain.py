"""`hanzoo reproduce --retrain`: each model in a training process of its own, timed, and reported."""

import hashlib
import json

import pytest

from hanzoo import HanzooError
from hanzoo.reports import reproduce, retrain
from hanzoo.zoo import registry

TINY = ["--iterations", "30", "--seeds", "0", "--no-compile"]  # the protocol's shape, seconds not hours


def _digest(model_id: str) -> str:
    return hashlib.sha256((registry.get(model_id).dir / "metrics.json").read_bytes()).hexdigest()


def test_two_jobs_train_time_and_report_without_touching_the_shipped_models(tmp_path):
    ids = ["elevators-fcnet-5x50", "checkerboard-hannet-20x30"]
    before = {m: _digest(m) for m in ids}
    r = retrain.run(ids, out=tmp_path, jobs=2, extra=TINY, say=lambda *_: None)
    assert {m["model"] for m in r["models"]} == set(ids)
    for m in r["models"]:
        got = json.loads((tmp_path / m["model"] / "metrics.json").read_text())
        assert got["selected"]["test"][m["metric"]] == m["test"]
        assert m["shipped_test"] == registry.get(m["model"]).metrics["selected"]["test"][m["metric"]]
        assert got["protocol"]["iterations"] == 30 and m["wall_seconds"] > 0
        assert m["family"] == reproduce.family_of(m["model"])
    assert sum(r["families"].values()) == pytest.approx(sum(m["wall_seconds"] for m in r["models"]))
    assert {m: _digest(m) for m in ids} == before
    assert (tmp_path / "logs" / "elevators-fcnet-5x50.log").exists()


def test_a_failed_training_names_the_model_and_its_log(tmp_path):
    with pytest.raises(
        HanzooError, match=r"retraining elevators-fcnet-5x50 failed .*elevators-fcnet-5x50\.log"
    ):
        retrain.run(
            ["elevators-fcnet-5x50"], out=tmp_path, jobs=1, extra=["--seeds", "x"], say=lambda *_: None
        )


def test_unknown_ids_fail_before_any_training(tmp_path):
    with pytest.raises(HanzooError, match="unknown model id 'nope'"):
        retrain.run(["elevators-fcnet-5x50", "nope"], out=tmp_path)
    assert not (tmp_path / "elevators-fcnet-5x50").exists()


def test_the_backbone_trains_first_and_alone_with_every_core():
    order = retrain.stages(reproduce.COVERED)
    assert order[0] == ["cifar10-backbone"] and len(order) == 2
    rest = order[1]
    assert set(rest) == set(reproduce.COVERED) - {"cifar10-backbone"}
    assert "--threads" not in retrain.command("cifar10-backbone", None, [])
    cmd = retrain.command("elevators-hannet-20x200", None, [])
    assert cmd[cmd.index("--threads") + 1] == "1"
    assert cmd[cmd.index("--lrs") + 1] == ",".join(
        map(str, registry.get("elevators-hannet-20x200").metrics["protocol"]["lrs"])
    )


def test_the_section_is_the_reports_own(tmp_path):
    def report(ids: list[str], seconds: list[float]) -> dict:
        return {
            "command": "hanzoo reproduce --retrain --jobs 2 --models " + " ".join(ids),
            "machine": "a CPU, 2 cores",
            "torch": "2.13.0",
            "git_commit": "0123456789",
            "jobs": 2,
            "wall_seconds": max(seconds),
            "models": [
                {
                    "model": m,
                    "family": reproduce.family_of(m),
                    "wall_seconds": t,
                    "metric": "nrmse",
                    "test": 0.03125,
                    "shipped_test": 0.0322,
                }
                for m, t in zip(ids, seconds)
            ],
        }

    assert reproduce.retrain_section(tmp_path) == []
    retrain.write_report(
        report(["elevators-fcnet-5x200", "elevators-fcnet-5x50"], [540.0, 60.0]), tmp_path / "retrain.json"
    )
    text = "\n".join(reproduce.retrain_section(tmp_path))
    assert "`hanzoo reproduce --retrain --jobs 2 --models ...` (2 of the 22 covered models: " in text
    assert (
        "**9.0 min** end to end, 2 trainings at a time. The longest training, `elevators-fcnet-5x200`" in text
    )
    assert "add up to 10.0 min" in text and "One run after the other" not in text
    row = "| elevators fcnet | 2 | 10.0 | `elevators-fcnet-5x50` nrmse 0.0312 (0.0322); `elevators-fcnet-5x2"
    assert row in text  # the registry's order, whatever order they finished in
    retrain.write_report(report(["cifar10-fc"], [120.0]), tmp_path / "retrain-cifar10.json")
    assert "One run after the other: 3 models in 11.0 min." in "\n".join(reproduce.retrain_section(tmp_path))
