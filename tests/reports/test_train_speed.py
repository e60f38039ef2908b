"""benchmarks/train_speed.py: its page comes from its JSON, its flop count is a hand count, and it runs."""

import importlib.util
import json
from pathlib import Path

import pytest

from hanzoo.zoo import registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_speed", ROOT / "benchmarks" / "train_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_page_is_rendered_from_its_json(script):
    report = json.loads((ROOT / "docs" / "train-speed.json").read_text())
    assert (ROOT / "docs" / "train-speed.md").read_text() == script.render(report)
    measured = {r["model"]: r for r in report["models"]}
    assert {"checkerboard-hannet-20x30", "checkerboard-fcnet-6x300"} <= set(measured)
    for r in measured.values():
        assert r["runs"] == 50
        assert r["floor_seconds_per_run_per_1000"] < r["seconds_per_run_per_1000"]["closed-form"]


def test_readme_states_the_target_the_page_checks(script):
    assert f"against the {script.TARGET:g}x speed-up it was built for" in (ROOT / "README.md").read_text()


def test_render_without_a_report_names_the_missing_file(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), "--render", "--report", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "train-speed.json is missing" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_flop_count_matches_a_hand_count(script):
    # FCNet-6x300 (2 -> 300, 5 x 300 -> 300, 300 -> 2), batch 100: forward, weight and input gradients
    gemm = 100 * (2 * 2 * 300 * 2 + 5 * 3 * 2 * 300 * 300 + 3 * 2 * 300 * 2)
    flops = script.step_flops(registry.get("checkerboard-fcnet-6x300").config, 100)
    assert gemm < flops < 1.01 * gemm
    # a Han-layer costs 18 n per sample, so HanNet-20x30's 17 of them are 17 x 18 x 30 x 100 of its flops
    han = script.step_flops(registry.get("checkerboard-hannet-20x30").config, 100)
    fc_only = script.step_flops(registry.get("checkerboard-fcnet-abs-20x30").config, 100)
    assert han < fc_only  # the same depth and width, with 17 of 20 layers rank-one


def test_smoke_run(script):
    before = script.EarlierTrainer("HEAD", compile=False)  # the worker's mechanics, on this commit's package
    try:
        r = script.measure(
            "checkerboard-hannet-20x30",
            runs=2,
            iterations=3,
            repeats=1,
            gflops=100.0,
            gbs=20.0,
            before=before,
        )
    finally:
        before.close()
    assert set(r["seconds_per_run_per_1000"]) == set(script.MODES)
    assert all(t > 0 for t in r["seconds_per_run_per_1000"].values())
    assert r["speedup_over_autograd"]["autograd"] == 1.0 and r["speedup_over_before"]["before"] == 1.0


def test_a_missing_commit_is_named(script):
    with pytest.raises(RuntimeError, match="cannot read commit 0000000000"):
        script.EarlierTrainer("0" * 40)
