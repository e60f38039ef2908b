"""What the golden tests cover in each of `make test`'s two passes, and the torch work they share.

The first pass (`pytest`) runs every golden test on every shipped model, on its whole test split, in every
runtime.

The second pass (`pytest -m golden --golden-subset`, under the Makefile's simulated SSE4 CPU) runs the
subset below, and this is why it is enough. Only torch reads the CPU-capability variables
(ATEN_CPU_CAPABILITY, MKL's and oneDNN's caps); ONNX Runtime, LiteRT and ExecuTorch pick their kernels
themselves and give the same bits in both passes. The second pass exists to recompute torch's side (the
reference outputs, the re-exported test_data_set_0 outputs, the recorded figures) on other kernels, so:
- every MLP keeps its whole test split (and train split): they cost seconds;
- an image model runs on the first IMAGE_ROWS test images, each fp32 runtime against the torch reference
  under verify's rule, and its re-export's test_data_set_0 against the shipped one. The same kernels
  (convolutions, GELU, pooling, the head) run on every image, so one whose results differ shows on 1000
  images as on 10000. Its recorded whole-split figures (SUBSET_LEAVES_OUT_TESTS: its re-evaluation, and its
  fp16/int8 variants, held to a rule in points of the whole split) are checked in the first pass; the
  second ties torch on the scalar kernels to the fp32 runtimes whose figures the first pass checked;
- the .pte is left out: ExecuTorch's XNNPACK kernels ignore those variables, so it gives the first
  pass's outputs;
- so is the tflite-micro runtime: TFLite Micro's reference kernels are plain C++ that read none of them
  either, and each MLP's whole test split through them runs one row per invoke.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock

from hanzoo.runtimes.sessions import IMAGE_CHUNK, RUNTIMES, Runtime
from hanzoo.storage.store import load_model
from hanzoo.training.backbone import features as backbone_features
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task

IMAGE_ROWS = 1000
SUBSET_LEAVES_OUT_RUNTIMES = ("executorch", "tflite-micro")
SUBSET_LEAVES_OUT_FORMATS = ("pte",)
# for image models: checks of whole-split figures, which a subset of the images cannot give
SUBSET_LEAVES_OUT_TESTS = (
    "test_reevaluation_matches_metrics_and_card",
    "test_shipped_variants_pass_verify_and_give_their_figures",
)

SUBSET_OPTION = "--golden-subset"


def subset(config: pytest.Config) -> bool:
    return bool(config.getoption(SUBSET_OPTION))


def rows(config: pytest.Config, model_id: str) -> int | None:
    """The test rows a golden test checks: all of them (None), or the subset's images."""
    takes_images = registry.get(model_id).config.takes_images
    return IMAGE_ROWS if subset(config) and takes_images else None


def runtimes(config: pytest.Config, names: list[str]) -> list[str]:
    return [n for n in names if not (subset(config) and n in SUBSET_LEAVES_OUT_RUNTIMES)]


def formats(config: pytest.Config, names: list[str]) -> list[str]:
    return [f for f in names if not (subset(config) and f in SUBSET_LEAVES_OUT_FORMATS)]


def _model(item: pytest.Item) -> registry.ModelEntry | None:
    """The shipped model a parametrized test runs on (its `entry`, or its `model` id), if any."""
    p = item.callspec.params if hasattr(item, "callspec") else {}
    model = p["entry"].id if "entry" in p else p.get("model")
    return registry.get(model) if isinstance(model, str) and model in registry.MODELS else None


def _image_model(item: pytest.Item) -> bool:
    return (e := _model(item)) is not None and e.config.takes_images


def left_out(item: pytest.Item) -> bool:
    """A golden test the subset pass deselects: the whole-split figures of an image model."""
    return item.originalname in SUBSET_LEAVES_OUT_TESTS and _image_model(item)


def costly(item: pytest.Item) -> bool:
    """A golden test of an image model: a minute of convolutions. Run first, so that two workers do not
    end on one of them while the other idles."""
    return item.get_closest_marker("golden") is not None and _image_model(item)


def shares_training_features(item: pytest.Item) -> bool:
    """The CIFAR-10 heads' re-evaluations read the same backbone features of the 45,000 training images:
    one worker runs them, one after the other, so the second reads what the first computed."""
    return (
        item.originalname == "test_reevaluation_matches_metrics_and_card"
        and _image_model(item)
        and _model(item).family != "backbone"
    )


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:32]


class FeatureCache:
    """An image model's backbone features, computed once per test run and shared by the xdist workers.

    The key is the backbone's weights as loaded from the model's file and the input's bytes, so heads
    that share a frozen backbone compute its features once, and a changed file is recomputed, never
    served stale. Each test still loads its model's file and runs its own layers and head."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def features(self, net, x: np.ndarray) -> torch.Tensor:
        if not net.config.takes_images:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        weights = [t.detach().numpy().tobytes() for t in net.backbone.state_dict().values()]
        path = self.folder / f"features-{_digest(*weights, str(x.shape).encode(), x.tobytes())}.npy"
        with FileLock(f"{path}.lock"):
            if not path.is_file():
                tmp = path.with_suffix(f".tmp-{os.getpid()}.npy")
                np.save(tmp, backbone_features(net, x, batch=IMAGE_CHUNK))
                tmp.replace(path)
            return torch.from_numpy(np.load(path, allow_pickle=False))

    @torch.no_grad()
    def outputs(self, net, x: np.ndarray) -> np.ndarray:
        """net(x), with the backbone's part from the cache."""
        return net.from_features(self.features(net, x)).numpy()

    def torch_runtime(self) -> Runtime:
        """The torch reference runtime, through this cache (what verify runs first)."""

        def load(model_dir: Path, export_dir: Path, threads: int):
            net = load_model(model_dir)
            task = get_task(net.meta["task"])

            def run(x: np.ndarray) -> dict[str, np.ndarray]:
                out = self.outputs(net, x)
                return {"output": out, **task.decide(out)}

            return run

        return Runtime("torch", "", RUNTIMES["torch"].description, load)
