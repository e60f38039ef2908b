"""A flipped bit in any shipped or saved file is refused at load, with one line naming the file and both
hashes.

The flips here are chosen to be harmless-looking: the lowest mantissa bit of one weight, or one digit of a
scaling constant. Every file still parses and every tensor is finite, so only the sha256 checks can see
them (the tests of shipped files also show the same bytes loading silently where no hash applies).
"""

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import hanzoo
import hanzoo.publishing.export
from hanzoo.cli import main
from hanzoo.errors import HanzooError
from hanzoo.files import file_sha256
from hanzoo.publishing import hub
from hanzoo.runtimes.sessions import RUNTIMES
from hanzoo.storage import integrity, store
from hanzoo.training.official import import_official
from hanzoo.zoo import pins, registry
from hanzoo.zoo.formats import FORMATS

MODEL = "checkerboard-hannet-20x30"
SCALED = "calhousing-fcnet-5x50"  # a model whose config.json carries its input and target scaling
DATA = Path(__file__).parents[1] / "data"


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    """The bundle moved to tmp_path (two models, their exports, and a manifest pinning just them, as
    `hub.write_manifest` pins them), so a test may damage or rewrite bundled files."""
    pretrained, exported = tmp_path / "pretrained", tmp_path / "export"
    for mid in (MODEL, SCALED):
        shutil.copytree(registry.get(mid).dir, pretrained / mid)
        shutil.copytree(registry.EXPORT_DIR / mid, exported / mid)
    monkeypatch.setattr(registry, "PRETRAINED_DIR", pretrained)
    monkeypatch.setattr(registry, "EXPORT_DIR", exported)
    monkeypatch.setattr(pins, "MANIFEST", tmp_path / "hub_manifest.json")
    hub.write_manifest([MODEL, SCALED])
    return tmp_path


def flip_weight(path: Path) -> None:
    """XOR the lowest bit of the first byte of the tensor data: one float's last mantissa bit."""
    data = bytearray(path.read_bytes())
    (header,) = struct.unpack("<Q", data[:8])
    data[8 + header] ^= 1
    path.write_bytes(bytes(data))


def flip_at(path: Path, needle: bytes) -> None:
    """Flip the lowest bit of the first byte of `needle` (a weight's raw float32 bytes) inside `path`."""
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0, f"the weight's bytes are not in {path.name}"
    data[at] ^= 1
    path.write_bytes(bytes(data))


def onnx_bias(folder: Path) -> bytes:
    init = next(i for i in onnx.load(str(folder / "model.onnx")).graph.initializer if i.name == "l0.bias")
    return numpy_helper.to_array(init).astype(np.float32).tobytes()


def assert_refused(err: str, path: Path, expected: str, where: str) -> None:
    """One line naming the file, where its hash is recorded, both hashes, and what to do."""
    assert "\n" not in err.strip(), err
    assert str(path) in err and where in err and expected in err and file_sha256(path) in err, err
    assert expected != file_sha256(path)
    assert "re-train" in err or "re-export" in err, err


# --- bundled model folders -------------------------------------------------------------------


def test_untouched_bundle_loads_and_each_file_is_hashed_once(monkeypatch):
    calls = []
    monkeypatch.setattr(integrity, "file_sha256", lambda p: calls.append(Path(p).name) or file_sha256(p))
    assert len(registry.shipped()) == len(pins.manifest())
    for mid in registry.shipped():  # no false positives on anything shipped
        calls.clear()
        net = hanzoo.load(mid)
        assert net.folder == registry.get(mid).dir
        assert sorted(calls) == ["config.json", "model.safetensors"], mid  # the whole extra cost of a load
    for mid in registry.shipped():
        for fmt in hanzoo.publishing.export.FORMATS:
            if not FORMATS[fmt].covers(registry.get(mid).config.takes_images):
                continue  # the C export of an image model does not exist
            calls.clear()
            assert hub.export_path(mid, fmt).is_file()
            # one hash per file (the C export's model.c and model.h), compared with the pin and manifest.json
            assert calls == list(FORMATS[fmt].files)


def test_bit_flip_in_bundled_weights_is_refused(bundle, capsys):
    folder = registry.get(MODEL).dir
    weights = folder / "model.safetensors"
    flip_weight(weights)
    pin = pins.manifest()[MODEL]["files"]["model.safetensors"]
    by_path = (lambda m: store.load_model(folder), lambda m: hanzoo.load(str(folder)))
    loaders = (store.load_model, hanzoo.load, *by_path)
    for load in loaders:
        with pytest.raises(HanzooError) as e:
            load(MODEL)
        assert_refused(str(e.value), weights, pin, "hub_manifest.json")
    for target in (MODEL, str(folder)):
        assert main(["eval", target]) == 1
        err = capsys.readouterr().err
        assert err.startswith("hanzoo: error: ") and err.count("\n") == 1
        assert_refused(err, weights, pin, "hub_manifest.json")
    # outside the bundle, the weights hash recorded in metrics.json still applies ...
    copy = shutil.copytree(folder, bundle / "elsewhere")
    with pytest.raises(HanzooError, match="does not match weights_sha256"):
        store.load_model(copy)
    # ... and the control: the same bytes with no pin and no recorded hash load without a word
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics.pop("weights_sha256")
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert store.load_model(copy).meta["model_id"] == MODEL


def test_bit_flip_in_bundled_config_is_refused(bundle):
    """config.json decides the architecture and the scaling: one digit of x_mean changes every prediction."""
    config = registry.get(SCALED).dir / "config.json"
    text = config.read_text()
    at = text.index(".", text.index('"x_mean"')) + 1  # the first decimal of x_mean[0]
    config.write_text(text[:at] + chr(ord(text[at]) ^ 1) + text[at + 1 :])  # a digit stays a digit
    with pytest.raises(HanzooError) as e:
        hanzoo.load(SCALED)
    assert_refused(str(e.value), config, pins.manifest()[SCALED]["files"]["config.json"], "hub_manifest.json")
    moved = shutil.copytree(config.parent, bundle / "elsewhere")
    assert store.load_model(moved).meta["preprocessing"]["x_mean"]


# --- bundled and user exports ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, runtime", [("onnx", "onnxruntime"), ("ort", "ort-mobile"), ("tflite", "litert")]
)
def test_bit_flip_in_bundled_export_is_refused(bundle, fmt, runtime):
    folder = registry.EXPORT_DIR / MODEL
    path = folder / hanzoo.publishing.export.FORMATS[fmt]
    flip_at(path, onnx_bias(folder))
    pin = pins.manifest()[MODEL]["files"][f"{fmt}/{path.name}"]
    loaders = [
        lambda: RUNTIMES[runtime].load(registry.get(MODEL).dir, folder, 1),
        lambda: hub.export_path(MODEL, fmt),
    ]
    loaders += {
        "onnx": [lambda: hanzoo.load_onnx(MODEL), lambda: hanzoo.load_onnx(MODEL, session=True)],
        "tflite": [lambda: hanzoo.load_tflite(MODEL)],
    }.get(fmt, [])
    for load in loaders:
        with pytest.raises(HanzooError) as e:
            load()
        assert_refused(str(e.value), path, pin, "hub_manifest.json")
    # outside the bundle its manifest.json still applies; without one, the flipped graph runs
    copy = shutil.copytree(folder, bundle / "mine")
    with pytest.raises(HanzooError) as e:
        RUNTIMES[runtime].load(registry.get(MODEL).dir, copy, 1)
    recorded = json.loads((copy / "manifest.json").read_text())["files"][path.name]["sha256"]
    assert_refused(str(e.value), copy / path.name, recorded, "manifest.json")
    (copy / "manifest.json").unlink()
    out = RUNTIMES[runtime].load(registry.get(MODEL).dir, copy, 1)(np.zeros((3, 2), np.float32))
    assert out["output"].shape == (3, 2)


def test_cli_predict_refuses_a_flipped_bundled_export(bundle, tmp_path, capsys):
    folder = registry.EXPORT_DIR / MODEL
    flip_at(folder / "model.onnx", onnx_bias(folder))
    rows = tmp_path / "x.npy"
    np.save(rows, np.zeros((1, 2), np.float32))
    code = main(["predict", MODEL, "--input", str(rows), "--runtime", "onnxruntime"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert_refused(
        err, folder / "model.onnx", pins.manifest()[MODEL]["files"]["onnx/model.onnx"], "hub_manifest.json"
    )


# --- folders hanzoo writes ---------------------------------------------------------------------


def _tiny_train(dest):
    from hanzoo.training.protocols import TrainingProtocol
    from hanzoo.training.train import train_model

    protocol = TrainingProtocol(iterations=20, lrs=(0.05,), seeds=(0,), eval_every=10, refit=False)
    return train_model(MODEL, dest, inits=["han-normal"], protocol=protocol, progress=False, compile=False)


def _assert_records_and_checks(folder: Path, capsys) -> None:
    weights = folder / "model.safetensors"
    recorded = json.loads((folder / "metrics.json").read_text())["weights_sha256"]
    assert recorded == file_sha256(weights)
    assert store.load_model(folder).metrics["weights_sha256"] == recorded
    flip_weight(weights)
    with pytest.raises(HanzooError) as e:
        store.load_model(folder)
    assert_refused(str(e.value), weights, recorded, "weights_sha256 in")
    assert main(["eval", str(folder)]) == 1
    assert_refused(capsys.readouterr().err, weights, recorded, "weights_sha256 in")


def test_trained_folder_records_and_checks_its_weights(tmp_path, capsys):
    _assert_records_and_checks(_tiny_train(tmp_path / "m"), capsys)


def test_imported_folder_records_and_checks_its_weights(tmp_path, capsys):
    folder = import_official(DATA / "official-checkerboard-hannet.safetensors", tmp_path / "m", MODEL)
    _assert_records_and_checks(folder, capsys)


def test_malformed_recorded_hash_is_named(tmp_path):
    folder = import_official(DATA / "official-checkerboard-hannet.safetensors", tmp_path / "m", MODEL)
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps(metrics | {"weights_sha256": "abc"}))
    with pytest.raises(HanzooError, match=r"weights_sha256 must be 64 lowercase hex digits, got 'abc'"):
        store.load_model(folder)


def test_training_into_the_bundle_re_pins_it(bundle):
    """`hanzoo train ID` rewrites pretrained/<id>: its pins follow, other models' pins and revisions stay."""
    manifest = json.loads(pins.MANIFEST.read_text())
    manifest[MODEL]["revision"] = "0123456789abcdef0123456789abcdef01234567"
    pins.MANIFEST.write_text(json.dumps(manifest))
    folder = _tiny_train(None)
    assert folder == registry.get(MODEL).dir
    after = pins.manifest()
    assert after[MODEL]["files"]["model.safetensors"] == file_sha256(folder / "model.safetensors")
    assert after[MODEL]["files"]["model.safetensors"] != manifest[MODEL]["files"]["model.safetensors"]
    assert after[MODEL]["revision"] == manifest[MODEL]["revision"]
    assert after[SCALED] == manifest[SCALED]
    assert hanzoo.load(MODEL).metrics["weights_sha256"] == file_sha256(folder / "model.safetensors")


def test_re_pinning_never_blesses_another_models_damage(bundle, tmp_path):
    """Re-pinning one model re-hashes that model alone: a flipped bit in another stays refused."""
    before = pins.manifest()
    flip_weight(registry.get(SCALED).dir / "model.safetensors")
    import_official(DATA / "official-checkerboard-hannet.safetensors", registry.get(MODEL).dir, MODEL)
    after = pins.manifest()
    assert after[SCALED] == before[SCALED] and after[MODEL] != before[MODEL]
    hanzoo.load(MODEL)
    with pytest.raises(HanzooError, match="hub_manifest.json"):
        hanzoo.load(SCALED)


def test_scratch_folders_are_not_re_pinned(bundle, tmp_path):
    before = pins.MANIFEST.read_text()
    import_official(DATA / "official-checkerboard-hannet.safetensors", tmp_path / "scratch", MODEL)
    assert not hub.repin_if_bundled(tmp_path / "scratch")
    assert pins.MANIFEST.read_text() == before
