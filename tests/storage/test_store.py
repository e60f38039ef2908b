"""Bad files and bad input get one clear error naming the problem."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hanzoo import HanzooError, load
from hanzoo.storage.evaluate import outputs as predict
from hanzoo.training.official import import_official
from hanzoo.zoo import registry

DATA = Path(__file__).parents[1] / "data"
pytestmark = pytest.mark.xdist_group("official-import")  # one worker imports the checkpoint once


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return import_official(
        DATA / "official-checkerboard-hannet.safetensors",
        tmp_path_factory.mktemp("m") / "hannet",
        "checkerboard-hannet-20x30",
    )


@pytest.fixture
def copy(folder, tmp_path) -> Path:
    """A copy without the recorded weights hash, as a hand-made or older folder has: the checks below
    are what stands between such a folder and a wrong model (test_integrity.py covers the hash)."""
    dest = tmp_path / "copy"
    shutil.copytree(folder, dest)
    metrics = json.loads((dest / "metrics.json").read_text())
    del metrics["weights_sha256"]
    (dest / "metrics.json").write_text(json.dumps(metrics))
    return dest


def test_loads_in_eval_mode_with_metadata(folder):
    net = load(folder)
    assert not net.training and net.meta["model_id"] == "checkerboard-hannet-20x30"
    assert predict(net, torch.zeros(7, 2)).shape == (7, 2)


def test_truncated_weights(copy):
    w = copy / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(HanzooError, match="not a readable safetensors file"):
        load(copy)


def test_missing_files(copy):
    (copy / "model.safetensors").unlink()
    with pytest.raises(HanzooError, match="model.safetensors is missing"):
        load(copy)
    (copy / "config.json").unlink()
    with pytest.raises(HanzooError, match="config.json is missing"):
        load(copy)


def test_format_version_mismatch(copy):
    meta = json.loads((copy / "config.json").read_text())
    meta["format_version"] = 99
    (copy / "config.json").write_text(json.dumps(meta))
    with pytest.raises(HanzooError, match="format_version 99"):
        load(copy)


def test_broken_config(copy):
    (copy / "config.json").write_text("{not json")
    with pytest.raises(HanzooError, match="not valid JSON"):
        load(copy)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.update({"layers.5.u": torch.zeros(30)}), "zero norm"),
        (lambda s: s["layers.0.linear.weight"].fill_(float("nan")), "non-finite"),
        (lambda s: s.update({"head.weight": torch.zeros(3, 30)}), r"shape \(3, 30\)"),
        (lambda s: s.pop("head.bias"), "missing \\['head.bias'\\]"),
    ],
)
def test_bad_tensors(copy, edit, message):
    w = copy / "model.safetensors"
    state = load_file(str(w))
    edit(state)
    save_file(state, str(w))
    with pytest.raises(HanzooError, match=message):
        load(copy)


def test_bad_input(folder):
    net = load(folder)
    with pytest.raises(HanzooError, match=r"shape \(4, 3\); this model takes \[batch, 2\]"):
        predict(net, torch.zeros(4, 3))
    with pytest.raises(HanzooError, match="NaN"):
        predict(net, torch.tensor([[0.0, float("nan")]]))


def test_unknown_id_and_unshipped_model():
    with pytest.raises(HanzooError, match="unknown model id"):
        load("no-such-model")
    with pytest.raises(HanzooError, match="has no shipped weights"):
        load(next(e.id for e in registry.MODELS.values() if not e.shipped))
    with pytest.raises(HanzooError, match="does not exist"):
        load("/no/such/folder")
