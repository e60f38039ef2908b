"""Score a plain torch module on its task: the one code path behind `hanzoo eval`, cards and tests."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from ..errors import HanzooError
from ..nn.models import Net
from ..zoo.tasks import Split, Task

# Why a non-finite output usually happens: every input was finite (check_input saw to that), but a value
# far outside the training range is multiplied up through the layers until float32 overflows (3e38 in
# Checkerboard's x1 does; so do some Elevators columns). The runtimes and torch all return NaN then, and
# Checkerboard's graph still returns a decision (0), so nothing downstream would notice.
OUT_OF_RANGE = (
    "their inputs are finite but too far outside the range the model was trained on, so float32 "
    "overflows inside it; check those rows' values and units"
)
MAX_ROWS_NAMED = 5

# an array or a tensor, returned as it came
ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


def non_finite_rows(out: np.ndarray | torch.Tensor) -> np.ndarray:
    """Indices of the rows of `out` [rows, ...] holding a NaN or an infinity (integer outputs have none)."""
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    arr = np.asarray(out)
    if not np.issubdtype(arr.dtype, np.inexact):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(arr).all(axis=tuple(range(1, arr.ndim))))


def check_output(
    out: ArrayOrTensor, where: str, *, first_row: int = 0, hint: str = OUT_OF_RANGE
) -> ArrayOrTensor:
    """Return `out` [rows, ...] if every value is finite; else raise a HanzooError naming the rows.

    `where` starts the message (e.g. "checkerboard-hannet-20x30 (onnxruntime) on in.csv"); `first_row` is
    the number of out[0] in the user's terms (a CSV's first data row is its row 2); `hint` says what to do.
    """
    bad = non_finite_rows(out)
    if len(bad):
        named = ", ".join(str(int(r) + first_row) for r in bad[:MAX_ROWS_NAMED])
        more = f" and {len(bad) - MAX_ROWS_NAMED} more" if len(bad) > MAX_ROWS_NAMED else ""
        raise HanzooError(
            f"{where}: the output is NaN or infinite for {len(bad)} of {len(out)} rows "
            f"(row{'s' if len(bad) > 1 else ''} {named}{more}); {hint}"
        )
    return out


def check_input(x, shape: tuple[int, ...]) -> np.ndarray:
    """A batch for a model whose samples have `shape`: float32 features, or uint8 images
    [batch, 32, 32, 3]."""
    x = np.asarray(x)
    want = "[batch, " + ", ".join(map(str, shape)) + "]"
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise HanzooError(f"input has shape {tuple(x.shape)}; this model takes {want}")
    if len(shape) == 3:  # images: pixels as stored, 0..255
        if x.dtype != np.uint8:
            raise HanzooError(f"images must be uint8 pixels (0..255) {want}, got dtype {x.dtype}")
        return np.ascontiguousarray(x)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise HanzooError(f"input must be real numbers, got dtype {x.dtype}")
    with np.errstate(
        over="ignore"
    ):  # a float64 beyond float32's range becomes inf here, and is refused below
        x = np.ascontiguousarray(x, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=tuple(range(1, x.ndim))))
    if len(bad):
        rows = ", ".join(map(str, bad[:MAX_ROWS_NAMED])) + (" ..." if len(bad) > MAX_ROWS_NAMED else "")
        raise HanzooError(
            f"input has NaN or infinite values (or values beyond float32's +-3.4e38) in {len(bad)} "
            f"of {len(x)} rows (row{'s' if len(bad) > 1 else ''} {rows}); give finite numbers"
        )
    return x


# On a task's own data the inputs are in range, so a non-finite output means the weights are at fault.
BROKEN_MODEL = (
    "the inputs are the task's own data, so the model's weights are at fault: retrain or re-download it"
)


def _name(net: Net) -> str:
    return (getattr(net, "meta", None) or {}).get("model_id", "the model")


@torch.no_grad()
def outputs(
    net: Net, x, batch: int = 1000, *, where: str | None = None, hint: str = OUT_OF_RANGE
) -> torch.Tensor:
    """The module's outputs on `x`, refused (HanzooError) if any is NaN or infinite; `where` and `hint`
    word that error (see check_output)."""
    out = forward_in_chunks(net, torch.from_numpy(check_input(x, net.config.input_shape)), batch)
    return check_output(out, where or f"{_name(net)} (torch)", hint=hint)


def forward_in_chunks(net: Net, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """net(x), images in chunks of `batch`: conv activations of a whole split at once would take GBs."""
    if not net.config.takes_images or len(x) <= batch:
        return net(x)
    return torch.cat([net(c) for c in x.split(batch)])


def evaluate_parts(net: Net, task: Task, parts: dict[str, tuple]) -> dict[str, dict[str, float]]:
    out = {}
    for name, (x, y) in parts.items():
        pred = outputs(net, x, where=f"{_name(net)} on the {task.name} {name} split", hint=BROKEN_MODEL)
        m = task.metrics(pred, torch.as_tensor(y))
        out[name] = {k: float(v) for k, v in m.items()}
    return out


def evaluate_model(net: Net, task: Task) -> dict[str, dict[str, float]]:
    """`hanzoo eval`: a model on its task's train and test parts; an image model on the test split alone,
    the one its package vendors (its training images are not in the package)."""
    if getattr(getattr(net, "config", None), "takes_images", False):
        return evaluate_parts(net, task, {"test": task.test_data()})
    return evaluate(net, task, task.split())


def evaluate(net: Net, task: Task, split: Split) -> dict[str, dict[str, float]]:
    """Metrics on the full train and test parts of `split`."""
    return evaluate_parts(
        net, task, {"train": (split.x_train, split.y_train), "test": (split.x_test, split.y_test)}
    )
