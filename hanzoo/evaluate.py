"""Score a plain torch module on its task: the one code path behind `hanzoo eval`, cards and tests."""
from __future__ import annotations

import torch
from torch import nn

from .errors import HanzooError
from .tasks import Split, Task


@torch.no_grad()
def predict(net: nn.Module, x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    n_in = net.config.in_features
    if x.dim() != 2 or x.shape[1] != n_in:
        raise HanzooError(f"input has shape {tuple(x.shape)}; this model takes [batch, {n_in}]")
    if not torch.isfinite(x).all():
        raise HanzooError("input has NaN or infinite values")
    return net(x)


def evaluate(net: nn.Module, task: Task, split: Split) -> dict[str, dict[str, float]]:
    """Metrics on the full train and test parts of `split`."""
    out = {}
    for name, x, y in (("train", split.x_train, split.y_train), ("test", split.x_test, split.y_test)):
        m = task.metrics(predict(net, x), torch.as_tensor(y))
        out[name] = {k: float(v) for k, v in m.items()}
    return out
