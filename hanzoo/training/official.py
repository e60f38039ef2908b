"""Import the paper authors' released Checkerboard checkpoints (github.com/yyy32/HanNet).

Their keys: `feature.{2k}` is hidden layer k (odd indices are the activations), a Householder layer
holds `vector` of shape (n, 1) and `bias`, and the head is `classifer` (sic). Their reflection
normalises the vector, v = vector / (||vector|| + 1e-14), which is H(u) with u = vector.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import HanzooError
from ..files import file_sha256
from ..nn.layers import Dense
from ..nn.models import Net
from ..publishing import hub
from ..storage import store
from ..storage.card import render_imported
from ..storage.evaluate import evaluate
from ..zoo import registry
from ..zoo.record import Record
from ..zoo.tasks import get_task


def convert(src: dict[str, torch.Tensor], net: Net) -> dict[str, torch.Tensor]:
    """Map the authors' state dict onto hanzoo's key layout for `net`'s architecture."""
    out: dict[str, torch.Tensor] = {}
    try:
        for k, layer in enumerate(net.layers):
            pre = f"feature.{2 * k}"
            if isinstance(layer, Dense):
                out[f"layers.{k}.linear.weight"] = src[f"{pre}.weight"]
                out[f"layers.{k}.linear.bias"] = src[f"{pre}.bias"]
            else:
                out[f"layers.{k}.u"] = src[f"{pre}.vector"].reshape(-1)
                out[f"layers.{k}.bias"] = src[f"{pre}.bias"]
        out["head.weight"], out["head.bias"] = src["classifer.weight"], src["classifer.bias"]
    except KeyError as e:
        raise HanzooError(
            f"the checkpoint has no tensor {e.args[0]!r} for this architecture; is --model the right one?"
        ) from None
    used = 2 * len(net.layers) + 2
    if len(src) != used:
        raise HanzooError(
            f"the checkpoint has {len(src)} tensors but this architecture uses {used}; "
            "is --model the right one?"
        )
    return out


def import_official(src: Path, dest: Path, model_id: str) -> Path:
    entry = registry.get(model_id)
    src = Path(src)
    net = Net(entry.config)
    state = convert(store.load_state(src), net)
    store.check_state(net, state, str(src))
    net.load_state_dict(state)
    net.eval()
    task = get_task(entry.task)
    scores = evaluate(net, task, task.split())
    metrics = Record(
        {
            "model_id": entry.id,
            "task": task.name,
            "metric": task.metric,
            "evaluation": scores,
            "source": {
                "file": src.name,
                "sha256": file_sha256(src),
                "origin": "github.com/yyy32/HanNet, checkerboard_experiments/model (release 7507e20)",
            },
        }
    )
    folder = store.write_folder(
        dest, entry.id, task.name, entry.config, state, metrics, render_imported(entry, metrics)
    )
    hub.repin_if_bundled(folder)  # importing over a shipped model changes the files its pins describe
    return folder
