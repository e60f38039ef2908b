"""`hanzoo predict`: raw inputs from CSV or .npy -> predictions in task units, in any runtime.

Input is validated before a runtime sees it: a file that is not the kind expected, an empty file, the
wrong columns, a value that is not a number, NaN or inf each get one line naming the file, row and
column and saying what the model takes. Outputs are checked after it (evaluate.check_output): a finite
input far outside the training range can still overflow float32 inside the model.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from ..errors import HanzooError
from ..files import written_atomically
from ..nn.models import ModelConfig
from ..storage import store
from ..storage.evaluate import OUT_OF_RANGE, check_input, check_output
from ..zoo import registry
from ..zoo.cifar import CLASSES, pillow
from ..zoo.tasks import get_task
from .sessions import get_runtime
from .verify import check_source

RAW = "raw, as in the dataset"  # a column whose unit the data's provenance does not state
NPY_MAGIC = b"\x93NUMPY"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
FLOAT32_MAX = float(np.finfo(np.float32).max)
# pixels 0..255 are always in range, so a non-finite output of an image model is the model's own fault
BROKEN_IMAGE_MODEL = (
    "pixels 0..255 are always in range, so the model or its export is at fault: re-export or re-download it"
)


def table_input_hint(features: tuple[str, ...], model: str | None = None) -> str:
    """What a tabular model reads, for error messages."""
    return (
        f"{model or 'this model'} takes a CSV with header {','.join(features)} "
        f"or an .npy [rows, {len(features)}]"
    )


def image_input_hint(model: str | None = None) -> str:
    """What an image model reads, for error messages."""
    return (
        f"{model or 'this model'} takes one {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} image of 32x32 pixels "
        "or an .npy of uint8 images [N, 32, 32, 3]"
    )


def _input_file(path: Path) -> Path:
    path = Path(path)
    # os.path's tests, unlike Path's, answer False rather than raise on an unreadable parent folder;
    # opening the file then names the real problem
    if os.path.isdir(path):
        raise HanzooError(f"input {path} is a folder; give a file")
    if not os.path.lexists(path):
        raise HanzooError(f"input file {path} does not exist")
    return path


def _load_npy(path: Path, takes_what: str) -> np.ndarray:
    """An .npy array, never unpickled; every way a file can fail to be one gets its own message."""
    try:
        with path.open("rb") as f:
            magic = f.read(len(NPY_MAGIC))
            if not magic:
                raise HanzooError(f"{path} is empty; {takes_what}")
            if magic != NPY_MAGIC:  # np.load would call any such file "pickled data"
                raise HanzooError(f"{path} is not an .npy file (numpy.save writes one); {takes_what}")
            f.seek(0)
            x = np.load(f, allow_pickle=False)
    except (ValueError, EOFError) as e:
        if "pickle" in str(e) or "Object arrays" in str(e):
            raise HanzooError(
                f"{path} holds Python objects (dtype object), which hanzoo never unpickles; "
                "save a numeric array instead"
            ) from None
        raise HanzooError(f"{path} is truncated or damaged ({e}); write it again with numpy.save") from None
    except OSError as e:
        raise HanzooError(f"cannot read {path}: {e.strerror or e}") from None
    if not isinstance(x, np.ndarray):
        raise HanzooError(f"{path} is not a plain .npy array; {takes_what}")
    return x


def read_inputs(path: Path, features: tuple[str, ...], model: str | None = None) -> np.ndarray:
    """Float32 inputs [rows, len(features)] from a CSV with a header row of `features`, or an .npy.

    `model` names the model in error messages. Rows are numbered as the user sees them: a CSV's first
    data row is its row 2 (the header is row 1), an .npy's first row is row 0.
    """
    path = _input_file(path)
    n = len(features)
    want = table_input_hint(features, model)
    if path.suffix.lower() == ".npy":
        x = _load_npy(path, want)
        if x.ndim != 2 or x.shape[1] != n:
            raise HanzooError(
                f"{path} has shape {x.shape}; expected [rows, {n}] for columns {', '.join(features)}"
            )
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise HanzooError(f"{path} has dtype {x.dtype}; expected a numeric (integer or float) array")
        values = x
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        raise HanzooError(f"{path} is an image; {want}")
    else:
        values = _read_csv(path, features, want)
    first = first_row(path)
    if len(values) == 0:
        raise HanzooError(f"{path} has no data rows")
    # checked before the cast to float32, so that 1e39 is named as itself rather than as inf
    finite = np.isfinite(values)
    too_big = finite & (np.abs(np.where(finite, values, 0)) > FLOAT32_MAX)
    bad = np.argwhere(~finite | too_big)
    if len(bad):
        r, c = bad[0]
        why = "NaN and inf are not inputs" if not finite[r, c] else "beyond float32's range of +-3.4e38"
        raise HanzooError(f"{path} row {r + first}, column {features[c]}: {values[r, c]} ({why})")
    return values.astype(np.float32)


def _read_csv(path: Path, features: tuple[str, ...], want: str) -> np.ndarray:
    n = len(features)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: a byte-order mark (Excel's UTF-8 CSV) is dropped
    except UnicodeDecodeError:
        raise HanzooError(f"{path} is not a UTF-8 CSV text file; {want}") from None
    except OSError as e:
        raise HanzooError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise HanzooError(f"{path} is not a CSV text file ({e}); {want}") from None
    while rows and not rows[-1]:  # blank lines at the end of a file
        rows.pop()
    if not rows:
        raise HanzooError(f"{path} is empty; expected a header row {','.join(features)} and data rows")
    header = [h.strip() for h in rows[0]]
    if header != list(features):
        if all(_is_number(h) for h in header):
            raise HanzooError(
                f"{path} starts with numbers, not a header; expected a header row "
                f"{','.join(features)} before the data rows"
            )
        if sorted(header) == sorted(features):
            raise HanzooError(
                f"{path} has columns {','.join(header)} in another order; expected {','.join(features)}"
            )
        raise HanzooError(f"{path} has columns {','.join(header)}; expected {','.join(features)}")
    values = np.empty((len(rows) - 1, n), dtype=np.float64)
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != n:
            raise HanzooError(f"{path} row {r} has {len(row)} values; expected {n} ({','.join(features)})")
        for c, (name, cell) in enumerate(zip(features, row)):
            try:
                values[r - 2, c] = float(cell)
            except ValueError:
                raise HanzooError(f"{path} row {r}, column {name}: {cell!r} is not a number") from None
    return values


def first_row(path: Path) -> int:
    """How read_inputs numbers the first data row of `path` in its messages (CSV: 2, after the header)."""
    return 0 if Path(path).suffix.lower() in (".npy", *IMAGE_SUFFIXES) else 2


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_images(path: Path, model: str | None = None) -> np.ndarray:
    """uint8 images [N, 32, 32, 3] from a .npy array ([N, 32, 32, 3] or one [32, 32, 3]) or one image file."""
    path = _input_file(path)
    want = image_input_hint(model)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        Image = pillow()  # noqa: N806 - the module, under its usual name
        try:
            with Image.open(path) as im:
                if im.size != (32, 32):  # checked on the header, before decoding a possibly huge image
                    raise HanzooError(
                        f"{path} is {im.size[0]}x{im.size[1]} pixels; this model takes 32x32 RGB "
                        "images (resize it first)"
                    )
                x = np.asarray(im.convert("RGB"), dtype=np.uint8)[None]
        # Pillow reports a damaged file as OSError, SyntaxError or ValueError depending on the codec
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise HanzooError(f"{path} is not a readable image ({e}); {want}") from None
    elif path.suffix.lower() == ".npy":
        x = _load_npy(path, want)
        x = x[None] if x.ndim == 3 else x
    else:
        raise HanzooError(f"{path} is neither an image nor an .npy; {want}")
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise HanzooError(
            f"{path} holds images of shape {x.shape[1:] if x.ndim == 4 else x.shape}; this model takes "
            "32x32 RGB images (resize them first)"
        )
    if x.dtype != np.uint8:
        raise HanzooError(f"{path} has dtype {x.dtype}; images must be uint8 pixels 0..255")
    if len(x) == 0:
        raise HanzooError(f"{path} has no images")
    return x


def predict(
    model: str | Path,
    x: np.ndarray,
    runtime: str = "onnxruntime",
    threads: int = 1,
    *,
    source: str | None = None,
    first_row: int = 0,
    export_dir: Path | None = None,
) -> dict[str, np.ndarray]:
    """Run a shipped model (id or folder) in `runtime` on float inputs [rows, n_in] (or, for an image model,
    uint8 images [rows, 32, 32, 3]). An exported runtime runs `export_dir` (default: the bundled export of
    the model's id), and only if that export was made from this folder's weights.

    Raises HanzooError if any output is NaN or infinite; `source` (e.g. the input file) and `first_row`
    (the number of x[0] there) word that error.
    """

    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise HanzooError(f"threads must be a whole number of at least 1, got {threads!r}")
    rt = get_runtime(runtime)
    model_dir = store.resolve(model)
    meta = store.read_config(model_dir)
    model_id = meta.get("model_id")
    if rt.artifact and not model_id:
        raise HanzooError(
            f"{model_dir / 'config.json'} has no model_id, so its export cannot be found; use --runtime torch"
        )
    config = ModelConfig.from_dict(meta["architecture"])
    x = check_input(x, config.input_shape)
    export_dir = Path(export_dir) if export_dir else registry.EXPORT_DIR / (model_id or "")
    if rt.artifact:
        check_source(model_dir, export_dir, model)
    out = rt.load(model_dir, export_dir, int(threads))(x)
    where = f"{model_id or model_dir} ({rt.name})" + (f" on {source}" if source else "")
    check_output(
        out["output"],
        where,
        first_row=first_row,
        hint=BROKEN_IMAGE_MODEL if config.takes_images else OUT_OF_RANGE,
    )
    return out


def check_output_path(path: Path) -> Path:
    """Refuse an output path that cannot be written, before any work is done."""
    path = Path(path)
    if os.path.isdir(path):
        raise HanzooError(f"cannot write {path}: it is a folder; give a file name ending in .csv or .npy")
    parent = path.parent
    while not os.path.exists(parent) and parent != parent.parent:
        parent = parent.parent
    if not os.path.isdir(parent):
        raise HanzooError(f"cannot write {path}: {parent} is a file, not a folder")
    if parent != path.parent:
        raise HanzooError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


def write_outputs(out: dict[str, np.ndarray], path: Path) -> None:
    """CSV (one column per output value) or .npy (the main output), written atomically."""
    path = check_output_path(path)
    with written_atomically(path) as tmp:
        if path.suffix.lower() == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, out["output"])
        else:
            tmp.write_text(to_csv(out))


def to_csv(out: dict[str, np.ndarray]) -> str:
    y = out["output"]
    cols = [f"output_{j}" for j in range(y.shape[1])] + [k for k in out if k != "output"]
    lines = [",".join(cols)]
    for i in range(len(y)):
        vals = [repr(float(v)) for v in y[i]] + [str(out[k][i]) for k in out if k != "output"]
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"


def model_io(model_id: str, task_name: str, config) -> dict:
    """What a model takes and returns (names, dtypes, shapes, units, meaning), as its exports do:
    `hanzoo info` shows it, and it matches export/<id>/manifest.json's inputs and outputs."""

    task = get_task(task_name)
    if config.takes_images:
        inputs = [
            {
                "name": "input",
                "dtype": "uint8",
                "shape": ["batch", *config.input_shape],
                "meaning": "RGB pixels 0..255, height x width x channel, as decoded from a PNG or JPEG "
                "(no normalization)",
            }
        ]
    else:
        columns = [{"name": f, "unit": task.units.get(f, RAW)} for f in task.features]
        inputs = [
            {
                "name": "input",
                "dtype": "float32",
                "shape": ["batch", config.in_features],
                "columns": columns,
                "meaning": f"one row per sample, columns {', '.join(task.features)}"
                if task.features
                else f"{config.in_features} numbers per sample",
            }
        ]
    if task_name == "checkerboard":
        meaning = "2 scores, each trained toward the 0/1 label of the point's square"
    elif hasattr(task, "target"):
        meaning = f"{task.target}: {task.units.get(task.target, RAW)}"
    else:
        meaning = f"{config.out_features} logits, one per class"
    outputs = [
        {"name": "output", "dtype": "float32", "shape": ["batch", config.out_features], "meaning": meaning}
    ]
    if task_name == "checkerboard":
        outputs.append(
            {
                "name": "decision",
                "dtype": "int64",
                "shape": ["batch"],
                "tflite_dtype": "int32",  # TFLite Micro has no int64 (hanzoo.graphs.export_tflite)
                "meaning": "1 if the mean of the 2 scores is > 0.5, else 0",
            }
        )
    if config.takes_images:
        outputs.append(
            {
                "name": "class",
                "dtype": "int64",
                "shape": ["batch"],
                "meaning": "the argmax of the logits, an index into " + ", ".join(CLASSES),
            }
        )
    return {"inputs": inputs, "outputs": outputs}
