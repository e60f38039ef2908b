"""Image classifiers (conv backbone + head): config, folding, the uint8 input contract, export parity,
and the backbone trainer, on tiny nets and synthetic images (the shipped ones are in
test_shipped/test_export)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from hanzoo import HanzooError
from hanzoo.nn.convnet import Backbone
from hanzoo.nn.models import ModelConfig, build
from hanzoo.storage import store
from hanzoo.storage.evaluate import check_input
from hanzoo.storage.evaluate import outputs as predict
from hanzoo.training.backbone import TrainNet, fold
from hanzoo.training.protocols import BackboneRecipe
from hanzoo.zoo import registry

TINY = (4, 8)
STATS = {"image_mean": [125.0, 122.0, 113.0], "image_std": [62.0, 61.0, 66.0]}


def tiny_config(hannet: bool = True) -> ModelConfig:
    base = registry.get("cifar10-hannet" if hannet else "cifar10-fc").config
    blocks = base.blocks
    return replace(base, in_features=TINY[-1], backbone=TINY, blocks=blocks)


def random_bn(net: TrainNet, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)  # negative scales too
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)


def test_folded_backbone_equals_the_trained_one():
    net = TrainNet((8, 16, 32)).eval()
    random_bn(net)
    state = fold(net)
    bb = Backbone((8, 16, 32))
    bb.load_state_dict(
        {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    )
    bb.set_stats(STATS["image_mean"], STATS["image_std"])
    img = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    x = ((img.float() - torch.tensor(STATS["image_mean"])) / torch.tensor(STATS["image_std"])).permute(
        0, 3, 1, 2
    )
    with torch.no_grad():
        assert torch.allclose(bb(img), net.features(x), atol=1e-5)
    assert sum(p.numel() for p in bb.parameters()) == Backbone.num_params((8, 16, 32))


def test_config_round_trip_and_validation():
    c = registry.get("cifar10-hannet").config
    assert ModelConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.input_shape == (32, 32, 3) and c.num_params == c.head_params + Backbone.num_params(c.backbone)
    assert (
        "backbone" not in registry.get("checkerboard-hannet-20x30").config.to_dict()
    )  # MLP configs unchanged
    bad = c.to_dict() | {"backbone": [16, 32, 64, 99]}
    with pytest.raises(HanzooError, match="end at in_features"):
        ModelConfig.from_dict(bad)
    for value in ([16, True], [0, 128], ["16", 128]):
        with pytest.raises(HanzooError, match="backbone"):
            ModelConfig.from_dict(c.to_dict() | {"backbone": value})


def test_image_input_contract():
    shape = (32, 32, 3)
    ok = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    assert check_input(ok, shape) is not None
    with pytest.raises(HanzooError, match="uint8"):
        check_input(ok.astype(np.float32), shape)
    with pytest.raises(HanzooError, match=r"takes \[batch, 32, 32, 3\]"):
        check_input(np.zeros((2, 3, 32, 32), dtype=np.uint8), shape)
    with pytest.raises(HanzooError, match="NaN"):
        check_input(np.array([[np.nan, 0.0]]), (2,))


@pytest.fixture
def tiny_folder(tmp_path):
    config = tiny_config()
    net = build(config, seed=0)
    state = net.state_dict()
    g = torch.Generator().manual_seed(1)
    # large enough weights that the logits differ by O(1) between images, so parity is a real check
    state = {
        k: (v + torch.randn(v.shape, generator=g) * 0.5 if "backbone" in k else v) for k, v in state.items()
    }
    return store.write_folder(
        tmp_path / "tiny", "cifar10-hannet", "cifar10", config, state, {}, "", preprocessing=STATS
    )


def test_stored_image_model_loads_and_refuses_bad_stats(tiny_folder):
    net = store.load_model(tiny_folder)
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert predict(net, x).shape == (3, 10)
    meta = json.loads((tiny_folder / "config.json").read_text())
    meta["preprocessing"]["image_std"] = [0.0, 1.0, 1.0]
    (tiny_folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(HanzooError, match="image_std"):
        store.load_model(tiny_folder)


def test_export_parity_on_all_test_images(tiny_folder, tmp_path):
    """The whole CIFAR-10 test split through ONNX, ORT and TFLite: same logits (1e-4) and same classes."""
    pytest.importorskip("tensorflow")
    import onnx
    from onnx import numpy_helper

    from hanzoo.graphs.export_tflite import op_types
    from hanzoo.publishing.export import export

    out = export(tiny_folder, out=tmp_path / "export")
    m = json.loads((out / "manifest.json").read_text())
    assert m["parity"]["reference"]["rows"] == 10000
    assert all(r["ok"] for r in m["parity"]["runtimes"].values()), m["parity"]
    assert m["inputs"] == [{"name": "input", "dtype": "uint8", "shape": ["batch", 32, 32, 3]}]
    assert [o["name"] for o in m["outputs"]] == ["output", "class"]
    model = onnx.load(str(out / "model.onnx"))
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for i in (1, 2, 3):  # the three Han-layers: rank-one constants only
        assert consts[f"l{i}.p"].shape == (31, 2) and consts[f"l{i}.q"].shape == (2, 31)
        assert [n.op_type for n in model.graph.node if n.name.startswith(f"l{i}.")] == [
            "MatMul",
            "Gemm",
            "Abs",
        ]
    assert not any(a.ndim == 2 and min(a.shape) >= 30 for a in consts.values())
    ops = set(op_types((out / "model.tflite").read_bytes()))
    assert {"CONV_2D", "GELU", "MAX_POOL_2D", "ARG_MAX"} <= ops and not any("FLEX" in o for o in ops)


def test_a_wrong_export_fails_parity(tiny_folder, tmp_path):
    """Parity is a real check: a flipped sign in one conv is caught by verify."""
    from hanzoo.publishing.export import export
    from hanzoo.runtimes.verify import verify_folder

    out = export(tiny_folder, formats=["onnx"], out=tmp_path / "export")
    state = store.load_state(tiny_folder / "model.safetensors")
    state["backbone.conv2.0.bias"] = -state["backbone.conv2.0.bias"]
    from safetensors.torch import save_file

    save_file(state, str(tiny_folder / "model.safetensors"))
    # the folder's record follows its weights: an export gone wrong, not a damaged file
    from hanzoo.files import file_sha256
    from hanzoo.storage.integrity import WEIGHTS_KEY

    m = json.loads((tiny_folder / "metrics.json").read_text())
    (tiny_folder / "metrics.json").write_text(
        json.dumps(m | {WEIGHTS_KEY: file_sha256(tiny_folder / "model.safetensors")})
    )
    rep = verify_folder(tiny_folder, out, ["onnxruntime"])
    assert not rep["runtimes"]["onnxruntime"]["ok"]


def test_predict_reads_images(tiny_folder, tmp_path):
    from PIL import Image

    from hanzoo.runtimes.predict import predict as run
    from hanzoo.runtimes.predict import read_images
    from hanzoo.runtimes.sessions import RUNTIMES

    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", np.stack([img, img]))
    assert np.array_equal(read_images(tmp_path / "a.png")[0], img)
    assert read_images(tmp_path / "b.npy").shape == (2, 32, 32, 3)
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(HanzooError, match="32x32"):
        read_images(tmp_path / "big.png")
    np.save(tmp_path / "f.npy", np.zeros((1, 32, 32, 3), dtype=np.float32))
    with pytest.raises(HanzooError, match="uint8"):
        read_images(tmp_path / "f.npy")
    out = run(tiny_folder, read_images(tmp_path / "b.npy"), runtime="torch")
    ref = RUNTIMES["torch"].load(tiny_folder, tmp_path, 1)(np.stack([img, img]))
    assert np.array_equal(out["class"], ref["output"].argmax(1))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_backbone_trainer_checkpoints_reuses_and_packages(tmp_path, monkeypatch, precision):
    """One epoch of the real trainer on synthetic images (the training JPEGs are not in CI)."""
    from hanzoo.training import backbone
    from hanzoo.zoo import cifar

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (700, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 700).astype(np.uint8)
    test = (rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 50).astype(np.uint8))
    monkeypatch.setattr(cifar, "load_split", lambda split: (images, labels) if split == "train" else test)
    recipe = BackboneRecipe(
        widths=TINY, epochs=1, batch_size=64, val_images=100, warmup_epochs=1, precision=precision
    )
    entry = replace(
        registry.get("cifar10-backbone"),
        config=replace(registry.get("cifar10-backbone").config, in_features=TINY[-1], backbone=TINY),
    )
    folder = backbone.train_and_package(
        entry, tmp_path / "model", recipe, progress=False, workdir=tmp_path / "run"
    )
    m = json.loads((folder / "metrics.json").read_text())
    assert m["train_images"] == 600 and m["val_images"] == 100 and len(m["log"]) == 1
    assert m["recipe"].get("precision", "fp32") == precision  # fp32, the default once, stays out of records
    assert all(
        torch.isfinite(v).all() and v.dtype == torch.float32
        for v in store.load_state(folder / "model.safetensors").values()
    )
    net = store.load_model(folder)
    x, y = test
    err = 100 * float(np.mean(predict(net, x).argmax(1).numpy() != y))
    assert m["selected"]["test"]["top1_error"] == pytest.approx(err)
    assert (folder / "README.md").read_text().startswith("---")
    record = backbone.train(recipe, tmp_path / "run", progress=False)  # the finished checkpoint is reused
    assert "reused_checkpoint" in record
    assert all(
        torch.equal(record["state"][k], v) for k, v in store.load_state(folder / "model.safetensors").items()
    )


def test_backbone_recipe_refuses_an_unknown_precision():
    with pytest.raises(HanzooError, match="precision must be 'fp32' or 'bf16'; got 'fp16'"):
        BackboneRecipe(precision="fp16")


def test_per_image_crops_are_windows_of_the_padded_images():
    import torch.nn.functional as F

    from hanzoo.training.backbone import _augment

    x = torch.randn(6, 3, 32, 32)
    out = _augment(x, torch.Generator().manual_seed(0), per_sample=True)
    offsets = set()
    for i in range(6):
        found = [
            (dy, dx)
            for img in (x[i], x[i].flip(2))
            for dy in range(9)
            for dx in range(9)
            if torch.equal(
                F.pad(img[None], (4, 4, 4, 4), mode="reflect")[0, :, dy : dy + 32, dx : dx + 32], out[i]
            )
        ]
        assert found, i
        offsets.add(found[0])
    assert len(offsets) > 1  # the offsets differ between images


def test_forward_is_the_head_on_the_backbones_features():
    """Heads that share a frozen backbone share its features (the golden tests compute them once)."""
    net = build(tiny_config(), seed=0).eval()
    x = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        f = net.features(x)
        assert f.shape == (5, TINY[-1])
        assert torch.equal(net.from_features(f), net(x))
    mlp = build(registry.get("checkerboard-hannet-20x30").config, seed=0)
    pts = torch.rand(4, 2)
    assert torch.equal(mlp.features(pts), pts)  # an MLP reads its input as it is
