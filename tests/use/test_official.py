"""The authors' checkpoints through hanzoo's layer: the proof that the layer means what they meant."""

import json
from pathlib import Path

import pytest

from hanzoo.cli import main
from hanzoo.training.official import import_official

DATA = Path(__file__).parents[1] / "data"

CASES = [
    ("official-checkerboard-hannet.safetensors", "checkerboard-hannet-20x30", 99.59),
    ("official-checkerboard-fcnet1.safetensors", "checkerboard-fcnet-6x100", 84.70),
]


@pytest.mark.parametrize("file, model_id, test_acc", CASES)
def test_authors_checkpoints_score_as_published(tmp_path, file, model_id, test_acc):
    folder = import_official(DATA / file, tmp_path / "m", model_id)
    ev = json.loads((folder / "metrics.json").read_text())["evaluation"]
    assert round(ev["test"]["accuracy"], 2) == test_acc
    assert ev["train"]["accuracy"] == 100.0


def test_cli_import_then_eval(tmp_path, capsys):
    dest = tmp_path / "hannet"
    assert (
        main(["import-official", str(DATA / CASES[0][0]), str(dest), "--model", CASES[0][1], "--json"]) == 0
    )
    capsys.readouterr()
    assert main(["eval", str(dest), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert round(out["scores"]["test"]["accuracy"], 2) == 99.59


def test_wrong_architecture_is_named(tmp_path, capsys):
    assert (
        main(
            [
                "import-official",
                str(DATA / CASES[1][0]),
                str(tmp_path / "x"),
                "--model",
                "checkerboard-hannet-20x30",
            ]
        )
        == 1
    )
    assert "is --model the right one?" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
