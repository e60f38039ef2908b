"""Score a plain torch module on its task: the one code path behind `hanzoo eval`, cards and tests."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .errors import HanzooError
from .tasks import Split, Task


def check_input(x, shape: tuple[int, ...]) -> np.ndarray:
    """A batch for a model whose samples have `shape`: float32 features, or uint8 images [batch, 32, 32, 3]."""
    x = np.asarray(x)
    want = "[batch, " + ", ".join(map(str, shape)) + "]"
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise HanzooError(f"input has shape {tuple(x.shape)}; this model takes {want}")
    if len(shape) == 3:  # images: pixels as stored, 0..255
        if x.dtype != np.uint8:
            raise HanzooError(f"images must be uint8 pixels (0..255) {want}, got dtype {x.dtype}")
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.number):
        raise HanzooError(f"input must be numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise HanzooError("input has NaN or infinite values")
    return x


@torch.no_grad()
def predict(net: nn.Module, x, batch: int = 1000) -> torch.Tensor:
    x = check_input(x, net.config.input_shape)
    if not net.config.backbone:
        return net(torch.from_numpy(x))
    # conv activations of a whole split at once would take GBs
    return torch.cat([net(torch.from_numpy(x[i:i + batch])) for i in range(0, len(x), batch)])


def evaluate_parts(net: nn.Module, task: Task, parts: dict[str, tuple]) -> dict[str, dict[str, float]]:
    out = {}
    for name, (x, y) in parts.items():
        m = task.metrics(predict(net, x), torch.as_tensor(y))
        out[name] = {k: float(v) for k, v in m.items()}
    return out


def evaluate(net: nn.Module, task: Task, split: Split) -> dict[str, dict[str, float]]:
    """Metrics on the full train and test parts of `split`."""
    return evaluate_parts(net, task, {"train": (split.x_train, split.y_train), "test": (split.x_test, split.y_test)})
