"""Model folders: config.json, model.safetensors, metrics.json and a README.md card.

The layout follows huggingface_hub's PyTorchModelHubMixin. Writes are atomic (a temporary sibling
folder renamed into place), so an interrupted save never leaves a half-written model behind.
Weights are safetensors only: nothing a user downloads is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import HanzooError
from ..files import file_sha256, staged_folder
from ..nn.layers import check_reflection_vector
from ..nn.models import ModelConfig, Net, build
from ..version import __version__
from ..zoo import pins, registry
from ..zoo.record import Record
from ..zoo.record import read as read_record
from ..zoo.registry import MODELS, get
from ..zoo.tasks import TASKS
from . import integrity

FORMAT_VERSION = 1


def write_folder(
    dest: Path,
    model_id: str,
    task: str,
    config: ModelConfig,
    state: dict[str, torch.Tensor],
    metrics: Mapping[str, Any],
    card: str,
    extra_files: dict[str, bytes] | None = None,
    scaling: dict[str, list[float]] | None = None,
    preprocessing: dict | None = None,
) -> Path:
    """Write a complete model folder at `dest`, replacing any folder there only once all is written.
    metrics.json gets the sha256 of the weights as `weights_sha256`, which `load` checks."""
    dest = Path(dest)
    with staged_folder(dest, marker="config.json") as tmp:
        meta = {
            "format_version": FORMAT_VERSION,
            "hanzoo_version": __version__,
            "model_id": model_id,
            "task": task,
            "architecture": config.to_dict(),
        }
        if scaling or preprocessing:
            meta["preprocessing"] = scaling or preprocessing
        (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        save_file(
            {k: v.detach().float().contiguous() for k, v in state.items()},
            str(tmp / "model.safetensors"),
            metadata={"format": "pt", "hanzoo_id": model_id},
        )
        # hashed from the written file, so loading can tell these weights from any later change to them
        metrics = {**metrics, integrity.WEIGHTS_KEY: file_sha256(tmp / "model.safetensors")}
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / "README.md").write_text(card)
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
    return dest


def local_folder(source: str | Path) -> Path | None:
    """The model folder on disk for `source`: the folder itself, or a registry id's bundled folder.
    None for a registry id with no bundled weights (the Hub may still have it); anything else is refused
    with a message naming what is wrong. The one place an id or a path becomes a folder."""
    path = Path(source)
    if path.is_dir():
        return path
    if str(source) in MODELS:
        entry = get(str(source))
        return entry.dir if entry.shipped else None
    if path.is_file():
        raise HanzooError(
            f"model folder {source} does not exist: it is a file; give the model folder that holds it "
            "(config.json, model.safetensors)"
        )
    if os.sep in str(source) or path.suffix:
        raise HanzooError(f"model folder {source} does not exist")
    get(str(source))  # raises the unknown-id error with suggestions
    raise AssertionError("unreachable")


def resolve(source: str | Path) -> Path:
    """A registry id or a model folder -> the folder that holds its files, on this machine."""
    folder = local_folder(source)
    if folder is None:
        entry = get(str(source))
        if not entry.in_wheel and pins.files(entry.id):
            raise HanzooError(
                f"model {entry.id!r} is not installed here: the hanzoo wheel leaves out the image models, "
                f"and hanzoo.load({entry.id!r}) (or load_onnx, load_tflite, load_pte, `hanzoo download`) "
                "fetches them from the Hugging Face Hub, sha256-pinned; `hanzoo predict`, `hanzoo verify` "
                "and store.load_model read installed files only: run them from a source checkout of hanzoo, "
                "or give them a model folder"
            )
        raise HanzooError(f"model {source!r} has no shipped weights; {registry.train_advice(str(source))}")
    return folder


def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.exists():
        raise HanzooError(f"{path} is missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HanzooError(f"{path} is not valid JSON: {e}") from None
    except OSError as e:
        raise HanzooError(f"cannot read {path}: {e.strerror}") from None
    if not isinstance(meta, dict) or "architecture" not in meta or "task" not in meta:
        raise HanzooError(f"{path} is not a hanzoo config (needs 'architecture' and 'task')")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise HanzooError(
            f"{path} has format_version {version!r}; this hanzoo {__version__} reads "
            f"format_version {FORMAT_VERSION}. Upgrade hanzoo or re-export the model."
        )
    known = {
        "format_version": int,
        "hanzoo_version": str,
        "model_id": str,
        "task": str,
        "architecture": dict,
        "preprocessing": dict,
    }
    for key, value in meta.items():
        if key not in known:
            raise HanzooError(f"{path}: {key!r} is not a known field (known: {', '.join(known)})")
        if not isinstance(value, known[key]):
            raise HanzooError(f"{path}: {key} must be {known[key].__name__}, got {type(value).__name__}")
    if "model_id" in meta and not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,127}", meta["model_id"]):
        raise HanzooError(f"{path}: model_id {meta['model_id']!r} is not a valid model id")
    if meta["task"] not in TASKS:
        raise HanzooError(f"{path}: task {meta['task']!r} is unknown; expected one of {sorted(TASKS)}")
    meta["architecture"] = ModelConfig.from_dict(
        meta["architecture"], where=f"{path}: architecture"
    ).to_dict()
    return meta


def read_metrics(folder: Path) -> Record:
    """A folder's metrics.json (an empty record if it has none)."""
    return read_record(Path(folder) / "metrics.json")


def load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise HanzooError(f"{path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise HanzooError(f"{path} is not a readable safetensors file ({e})") from None


def check_state(net: Net, state: dict[str, torch.Tensor], where: str) -> None:
    """Keys, shapes and values must all fit the architecture; say exactly what does not."""
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise HanzooError(
            f"{where} does not match the architecture: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    for k, v in state.items():
        if v.dtype != torch.float32:
            raise HanzooError(
                f"{where}: tensor {k} has dtype {str(v.dtype).removeprefix('torch.')}, expected float32"
            )
        if tuple(v.shape) != tuple(expected[k].shape):
            raise HanzooError(
                f"{where}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
            )
        if not torch.isfinite(v).all():
            raise HanzooError(f"{where}: tensor {k} has non-finite values")
        if k.endswith(".u"):
            check_reflection_vector(v, k)


def load_model(source: str | Path, compile: bool = False) -> Net:
    """Load a model from a registry id or a model folder, in eval mode, with `.meta` and `.metrics`;
    `compile=True` compiles its forward in place with torch.compile (see hanzoo.load)."""
    folder = resolve(source)
    metrics = read_metrics(folder)
    # before anything is parsed: config.json decides the architecture and the scaling, so it is checked too
    integrity.check_model_folder(folder, metrics)
    meta = read_config(folder)
    net = build(ModelConfig.from_dict(meta["architecture"]))
    weights = folder / "model.safetensors"
    state = load_state(weights)
    check_state(net, state, str(weights))
    net.load_state_dict(state)
    if net.config.takes_images:
        net.backbone.set_stats(*_image_stats(meta, folder))
    else:
        net.set_scaling(_scaling(meta, folder))
    net.eval().requires_grad_(False)  # an inference module: outputs carry no autograd graph
    net.meta = meta
    net.metrics = metrics
    net.folder = folder
    if compile:
        net.compile(dynamic=True)  # one graph for all batch sizes (torch still gives batch 1 its own)
    return net


def _image_stats(meta: dict, folder: Path) -> tuple[list[float], list[float]]:
    """An image model's per-channel mean and std (pixel units, from its training images)."""
    pre = meta.get("preprocessing") or {}
    for k in ("image_mean", "image_std"):
        v = pre.get(k)
        if (
            not isinstance(v, list)
            or len(v) != 3
            or not all(isinstance(a, (int, float)) and 0 < a < 256 for a in v)
        ):
            raise HanzooError(f"{folder / 'config.json'}: preprocessing.{k} must be 3 numbers in (0, 256)")
    extra = sorted(set(pre) - {"image_mean", "image_std"})
    if extra:
        raise HanzooError(
            f"{folder / 'config.json'}: preprocessing.{extra[0]} is not a field of an image model"
        )
    return [float(a) for a in pre["image_mean"]], [float(a) for a in pre["image_std"]]


def _scaling(meta: dict, folder: Path) -> dict[str, list[float]] | None:
    scaling = meta.get("preprocessing")
    if scaling is None:
        return None
    n_in, n_out = meta["architecture"]["in_features"], meta["architecture"]["out_features"]
    want = {"x_mean": n_in, "x_std": n_in, "y_mean": n_out, "y_std": n_out}
    for k, n in want.items():
        v = scaling.get(k)
        if not isinstance(v, list) or len(v) != n or not all(isinstance(a, (int, float)) for a in v):
            raise HanzooError(f"{folder / 'config.json'}: preprocessing.{k} must be {n} numbers")
        if k.endswith("std") and not all(a > 0 for a in v):
            raise HanzooError(f"{folder / 'config.json'}: preprocessing.{k} must be positive")
    return {k: [float(a) for a in scaling[k]] for k in want}
