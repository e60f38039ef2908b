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


def test_evaluate_model_scores_an_image_model_on_its_vendored_test_split_alone():
    """`hanzoo eval`'s rule, in the library: train and test for an MLP; the test split alone for an image
    model, whose training images the package does not carry."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from hanzoo.storage.evaluate import evaluate_model

    class Task:
        name = "fake"

        def split(self):
            raise AssertionError("an image model's training split must not be read")

        def test_data(self):
            return np.zeros((4, 3), np.float32), np.zeros((4, 1), np.float32)

        def metrics(self, out, y):
            return {"mse": ((out - y) ** 2).mean()}

    class Images(torch.nn.Module):
        config = SimpleNamespace(takes_images=True, input_shape=(3,))

        def forward(self, x):
            return x[:, :1] * 0

    assert list(evaluate_model(Images(), Task())) == ["test"]
    from hanzoo.zoo.tasks import get_task

    net = load("checkerboard-hannet-20x30")
    assert list(evaluate_model(net, get_task("checkerboard"))) == ["train", "test"]
