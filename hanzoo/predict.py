"""`hanzoo predict`: raw inputs from CSV or .npy -> predictions in task units, in any runtime.

Input is validated before a runtime sees it: an empty file, the wrong columns, a value that is not
a number, NaN or inf each get one line naming the row and column.
"""
from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np

from . import store
from .errors import HanzooError


def read_inputs(path: Path, features: tuple[str, ...]) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise HanzooError(f"input file {path} does not exist")
    n = len(features)
    if path.suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise HanzooError(f"{path} is not a readable .npy array ({e})") from None
        if x.ndim != 2 or x.shape[1] != n:
            raise HanzooError(f"{path} has shape {x.shape}; expected [rows, {n}] for columns {', '.join(features)}")
        if not np.issubdtype(x.dtype, np.number):
            raise HanzooError(f"{path} has dtype {x.dtype}; expected a numeric array")
        x = x.astype(np.float32)
    else:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise HanzooError(f"{path} is empty; expected a header row {','.join(features)} and data rows")
        header = [h.strip() for h in rows[0]]
        if header != list(features):
            raise HanzooError(f"{path} has columns {','.join(header)}; expected {','.join(features)}")
        values = []
        for r, row in enumerate(rows[1:], start=2):
            if len(row) != n:
                raise HanzooError(f"{path} row {r} has {len(row)} values; expected {n}")
            parsed = []
            for c, text in zip(features, row):
                try:
                    parsed.append(float(text))
                except ValueError:
                    raise HanzooError(f"{path} row {r}, column {c}: {text!r} is not a number") from None
            values.append(parsed)
        x = np.array(values, dtype=np.float32).reshape(-1, n)
    if len(x) == 0:
        raise HanzooError(f"{path} has no data rows")
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        r, c = bad[0]
        row = r + 2 if path.suffix != ".npy" else r
        raise HanzooError(f"{path} row {row}, column {features[c]}: {x[r, c]} (NaN and inf are not inputs)")
    return x


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_images(path: Path) -> np.ndarray:
    """uint8 images [N, 32, 32, 3] from a .npy array ([N, 32, 32, 3] or one [32, 32, 3]) or one image file."""
    path = Path(path)
    if not path.is_file():
        raise HanzooError(f"input file {path} does not exist")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            from PIL import Image
        except ImportError:
            raise HanzooError("reading image files needs Pillow: pip install 'hanzoo[cifar]'") from None
        try:
            with Image.open(path) as im:
                x = np.asarray(im.convert("RGB"), dtype=np.uint8)[None]
        except OSError as e:
            raise HanzooError(f"{path} is not a readable image ({e})") from None
    elif path.suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise HanzooError(f"{path} is not a readable .npy array ({e})") from None
        x = x[None] if x.ndim == 3 else x
    else:
        raise HanzooError(f"{path}: an image model reads a .npy of uint8 images or one of {', '.join(IMAGE_SUFFIXES)}")
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise HanzooError(f"{path} holds images of shape {x.shape[1:] if x.ndim == 4 else x.shape}; this model takes "
                          "32x32 RGB images (resize them first)")
    if x.dtype != np.uint8:
        raise HanzooError(f"{path} has dtype {x.dtype}; images must be uint8 pixels 0..255")
    if len(x) == 0:
        raise HanzooError(f"{path} has no images")
    return x


def predict(model: str | Path, x: np.ndarray, runtime: str = "onnxruntime", threads: int = 1) -> dict[str, np.ndarray]:
    """Run a shipped model (id or folder) in `runtime` on float inputs [rows, n_in] (or, for an image model,
    uint8 images [rows, 32, 32, 3])."""
    from .evaluate import check_input
    from .export import EXPORT_DIR
    from .models import ModelConfig
    from .runtimes import get_runtime

    rt = get_runtime(runtime)
    model_dir = store.resolve(model)
    meta = store.read_config(model_dir)
    x = check_input(x, ModelConfig.from_dict(meta["architecture"]).input_shape)
    return rt.load(model_dir, EXPORT_DIR / meta["model_id"], threads)(x)


def write_outputs(out: dict[str, np.ndarray], path: Path) -> None:
    """CSV (one column per output value) or .npy (the main output), written atomically."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
    except OSError as e:
        raise HanzooError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if path.suffix == ".npy":
                np.save(f, out["output"])
            else:
                f.write(to_csv(out).encode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_csv(out: dict[str, np.ndarray]) -> str:
    y = out["output"]
    cols = [f"output_{j}" for j in range(y.shape[1])] + [k for k in out if k != "output"]
    lines = [",".join(cols)]
    for i in range(len(y)):
        vals = [repr(float(v)) for v in y[i]] + [str(out[k][i]) for k in out if k != "output"]
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"


