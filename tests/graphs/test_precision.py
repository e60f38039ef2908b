"""Reduced-precision variants: what `hanzoo export --precision` writes, and how verify holds them."""

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from hanzoo import HanzooError
from hanzoo.cli import main
from hanzoo.graphs.precision import CALIBRATION_ROWS, calibration_data, onnx_fp16
from hanzoo.publishing.export import export, export_variants
from hanzoo.reports.quantization import onnx_ops_as_run
from hanzoo.runtimes.verify import failures, verify, verify_folder
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task

MODEL = "checkerboard-hannet-20x30"


@pytest.fixture
def folder(tmp_path):
    """A scratch copy of the model's fp32 export, without any variant."""
    dest = tmp_path / "export"
    shutil.copytree(registry.EXPORT_DIR / MODEL, dest)
    for name in registry.VARIANT_FILES.values():
        (dest / name).unlink(missing_ok=True)
    return dest


def test_fp16_onnx_stores_half_weights_and_keeps_the_rank_one_form(folder):
    graph = onnx_fp16(onnx.load(str(folder / "model.onnx"))).graph
    halves = [i for i in graph.initializer if i.data_type == TensorProto.FLOAT16]
    floats = [i for i in graph.initializer if i.data_type == TensorProto.FLOAT]
    assert halves and all(numpy_helper.to_array(i).ndim == 0 for i in floats)  # only scalars stay float32
    width = registry.get(MODEL).config.width
    assert not [i.name for i in halves if tuple(i.dims) == (width, width)], "a dense n x n matrix appeared"
    assert [n.op_type for n in graph.node[: len(halves)]] == ["Cast"] * len(halves)
    assert graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # the app feeds float32


def test_export_precision_writes_variants_checked_by_verify(folder):
    export_variants(MODEL, "fp16", out=folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("model.fp16.onnx", "model.fp16.tflite"):
        assert manifest["files"][name]["bytes"] == (folder / name).stat().st_size
    assert {"onnx-fp16", "tflite-fp16"} <= set(manifest["ops"])
    rep = verify(MODEL, export_dir=folder)
    for name in ("onnxruntime-fp16", "litert-fp16"):
        r = rep["runtimes"][name]
        assert r["ok"] and r["precision"] == "fp16" and r["tolerance_abs"] is None
        assert 0 < r["max_abs_err"] < 0.1  # half-precision weights: not fp32 parity, yet close
    assert not failures(rep)


def test_a_variant_outside_its_tolerance_fails_verify(folder):
    """The Checkerboard HanNet does not survive int8 (docs/quantization.md): verify must say so."""
    export_variants(MODEL, "int8", ["onnx"], out=folder)
    rep = verify_folder(registry.get(MODEL).dir, folder, ["onnxruntime-int8"])
    bad = failures(rep | {"model_id": MODEL})
    assert len(bad) == 1 and "allowed difference 0.1" in bad[0]


def test_int8_onnx_runs_integer_kernels(folder):
    export_variants(MODEL, "int8", ["onnx"], out=folder)
    ops = onnx_ops_as_run(folder / "model.int8.onnx")
    han_layers = registry.get(MODEL).config.depth - 3
    assert ops.get("QLinearMatMul", 0) >= han_layers  # every Han-layer's dot product runs in integers


def test_calibration_uses_training_rows_only():
    split = get_task("checkerboard").split()
    calib = calibration_data("checkerboard")
    train = {tuple(r) for r in split.x_train}
    test = {tuple(r) for r in split.x_test}
    assert len({tuple(r) for r in calib}) == len(calib) == min(CALIBRATION_ROWS, len(train))
    assert all(tuple(r) in train and tuple(r) not in test for r in calib)
    assert np.array_equal(calib, calibration_data("checkerboard"))  # a fixed sample


def test_fp32_reexport_rebuilds_the_variants_it_held(folder):
    export_variants(MODEL, "fp16", ["onnx"], out=folder)
    before = (folder / "model.fp16.onnx").read_bytes()
    export(MODEL, out=folder, parity=False)
    assert (folder / "model.fp16.onnx").read_bytes() == before  # computed from the weights alone


def test_bad_precision_requests_are_named(folder, capsys):
    assert main(["export", MODEL, "--precision", "int4"]) != 0
    assert "invalid choice: 'int4'" in capsys.readouterr().err
    with pytest.raises(HanzooError, match="format ort-typo has no fp16 variant"):
        export_variants(MODEL, "fp16", ["onnx", "ort-typo"], out=folder)
    empty = folder.parent / "empty"
    empty.mkdir()
    with pytest.raises(HanzooError, match="manifest.json is missing"):
        export_variants(MODEL, "fp16", out=empty)
    assert not list(empty.iterdir())  # nothing half-written


def test_the_bundled_cifar_calibration_is_the_training_sample():
    """The bundled images are what training_sample draws from the training split (where it is here)."""
    from hanzoo.graphs.precision import training_sample
    from hanzoo.zoo import cifar

    images = calibration_data("cifar10")
    assert images.shape == (CALIBRATION_ROWS, 32, 32, 3) and images.dtype == np.uint8
    try:
        cifar.full_tarball()
    except HanzooError:
        pytest.skip("the CIFAR-10 training tarball is not here ($HANZOO_CIFAR10)")
    assert np.array_equal(images, training_sample("cifar10"))
