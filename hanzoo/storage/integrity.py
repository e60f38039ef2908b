"""sha256 checks between a file on disk and the model it becomes.

A flipped bit in a weight can leave every tensor finite and every shape right, so nothing else in
`store.load_model` or a runtime notices: the model just scores worse. Each file is compared, before it is
used, with every hash that applies to it:
- a bundled model folder (`pretrained/<id>/`) and bundled export (`export/<id>/`): the pins in
  hub_manifest.json, the same ones a Hub download is checked against;
- a folder written by `hanzoo train` or `hanzoo import-official`: `weights_sha256` in its metrics.json;
- an export folder: the sha256 of each artifact in its manifest.json.
A file with no hash that applies (an old user folder, a scratch export) loads as before.

"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import HanzooError
from ..files import file_sha256
from ..zoo import pins, registry

WEIGHTS_KEY = "weights_sha256"  # top-level key of metrics.json
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_file(path: Path, expected: str, what: str, fix: str, actual: str | None = None) -> str:
    """Refuse `path` unless its sha256 is `expected` (`what` says where that hash is recorded); returns
    the actual hash so a second check of the same file need not read it again."""
    actual = actual or file_sha256(path)
    if actual != expected:
        raise HanzooError(f"{path} does not match {what}: sha256 expected {expected}, actual {actual}; {fix}")
    return actual


def bundled_id(folder: Path, root: Path) -> str | None:
    """The registry id when `folder` is `root/<id>` (through any symlinks or relative paths), else None."""
    try:
        folder, root = Path(folder).resolve(), Path(root).resolve()
    except OSError:
        return None
    return folder.name if folder.parent == root and folder.name in registry.MODELS else None


def _pin_text() -> str:
    return f"its pin in {pins.MANIFEST.name}"


def check_model_folder(folder: Path, metrics: object) -> None:
    """Check config.json and model.safetensors of a model folder before they are read (`metrics` is its
    parsed metrics.json, for the `weights_sha256` recorded when the folder was written)."""
    folder = Path(folder)
    weights, config = folder / "model.safetensors", folder / "config.json"
    actual = None
    model_id = bundled_id(folder, registry.PRETRAINED_DIR)
    if model_id:
        pinned = pins.files(model_id)
        fix = (
            f"the bundled file is damaged or was edited: reinstall hanzoo (or restore it from git), or "
            f"re-train it with `hanzoo train {model_id}`, which re-pins it"
        )
        if pinned.get("config.json") and config.is_file():
            check_file(config, pinned["config.json"], _pin_text(), fix)
        if pinned.get("model.safetensors") and weights.is_file():
            actual = check_file(weights, pinned["model.safetensors"], _pin_text(), fix)
    recorded = metrics.get(WEIGHTS_KEY) if isinstance(metrics, Mapping) else None
    if recorded is not None and weights.is_file():
        if not isinstance(recorded, str) or not _SHA256.match(recorded):
            raise HanzooError(
                f"{folder / 'metrics.json'}: {WEIGHTS_KEY} must be 64 lowercase hex digits, "
                f"got {recorded!r}; restore the file or re-train the model"
            )
        check_file(
            weights,
            recorded,
            f"{WEIGHTS_KEY} in {folder / 'metrics.json'}",
            "the weights changed after they were written: restore the folder from a good copy or "
            "re-train the model (`hanzoo train`, or `hanzoo import-official`)",
            actual,
        )


def check_artifact(path: Path) -> None:
    """Check an exported artifact (model.onnx, model.ort, model.tflite) before a runtime reads it."""
    path = Path(path)
    if not path.is_file():
        return  # the caller names the missing file
    folder, actual = path.parent, None
    model_id = bundled_id(folder, registry.EXPORT_DIR)
    repo_path = {name: rp for rp, name in pins.EXPORT_FILES.items()}.get(path.name)
    if model_id and repo_path:
        pinned = pins.files(model_id).get(repo_path)
        if pinned:
            actual = check_file(
                path,
                pinned,
                _pin_text(),
                f"the bundled file is damaged or was edited: reinstall hanzoo (or restore it from "
                f"git), or re-export it with `hanzoo export {model_id}`",
            )
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            entry = json.loads(manifest.read_text()).get("files", {}).get(path.name)
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise HanzooError(
                f"{manifest} is not a valid export manifest ({e}); re-export the model with `hanzoo export`"
            ) from None
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if expected:
            check_file(
                path,
                expected,
                f"its sha256 in {manifest}",
                "re-export the model with `hanzoo export` (or restore the folder from a good copy)",
                actual,
            )
