"""The sha256 pins of every published file (hanzoo/hub_manifest.json): what a Hub download and a
bundled file are both checked against. `hub.write_manifest` writes them; this module only reads."""

from __future__ import annotations

import json

from ..files import PACKAGE
from .formats import FORMATS
from .registry import VARIANT_FILES

MANIFEST = PACKAGE / "hub_manifest.json"
# Hub repo path of each exported file -> its file name in an export folder (onnx/model.onnx -> model.onnx,
# c/model.h -> model.h)
EXPORT_FILES = {f"{fmt}/{name}": name for fmt, f in FORMATS.items() for name in f.files} | {
    f"{fmt}/{name}": name for (fmt, _), name in VARIANT_FILES.items()
}


def manifest() -> dict:
    """Every pinned model: {id: {"repo_name", "revision", "files": {repo path: sha256}}}."""
    if not MANIFEST.is_file():
        return {}
    return json.loads(MANIFEST.read_text())


def files(model_id: str) -> dict[str, str]:
    """The pinned sha256 of each of a model's files (empty if it is not pinned)."""
    return manifest().get(model_id, {}).get("files", {})
