"""Tasks: the data, the loss and the metrics of each problem in the paper.

A task turns a model's raw output into its metrics, so the trainer, `hanzoo eval` and the tests all
score a model the same way.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from ..errors import HanzooError
from ..files import PACKAGE
from . import cifar

__all__ = [
    "DATA_DIR",
    "Split",
    "verified_bytes",
    "Task",
    "Checkerboard",
    "checkerboard_grid",
    "checkerboard_label",
    "random_checkerboard_split",
    "Regression",
    "FeatureClassification",
    "CifarImages",
    "CALHOUSING_UNITS",
    "TASKS",
    "get_task",
]

DATA_DIR = PACKAGE / "data"


@dataclass(frozen=True)
class Split:
    """Float32 inputs [N, d] and targets [N, k], for the train and test parts of a dataset."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    # A task may hold out its own validation part (else the trainer carves one from the training part)
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


def verified_bytes(path: Path, sha256: str) -> bytes:
    """Read a vendored file and refuse it if it is missing or its checksum is off."""
    if not path.is_file():
        raise HanzooError(f"data file {path} is missing")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise HanzooError(f"data file {path} is corrupted: sha256 {actual}, expected {sha256}")
    return data


class Task:
    name: str
    features: tuple[str, ...] = ()  # input column names, as a user's CSV carries them
    # Units of input columns and targets, only where hanzoo/data/PROVENANCE.md states them; a column
    # without one is raw, as in the dataset (the docs say so rather than guess).
    units: Mapping[str, str] = MappingProxyType({})
    n_in: int
    n_out: int
    metric: str  # the headline metric
    higher_is_better: bool
    standardize: bool = False  # train on standardized inputs and targets (stats from the training split)
    loss_name: str = "mse"  # the key of `metrics` that holds the training loss (it breaks metric ties)

    has_data = True  # False for a reference config of the paper whose data hanzoo cannot have

    def split(self) -> Split:
        raise HanzooError(f"task {self.name!r} has no data loader in this version of hanzoo")

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The test part alone (what evaluation and verification need)."""
        s = self.split()
        return s.x_test, s.y_test

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over the sample and output dims; leading dims (stacked runs) are kept."""
        return ((out - y) ** 2).mean(dim=(-2, -1))

    def loss_grad(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`loss` and its gradient with respect to `out`, in closed form (for hanzoo.training.backprop)."""
        d = out - y
        return (d * d).mean(dim=(-2, -1)), d * (2.0 / (d.shape[-2] * d.shape[-1]))

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # A task's decision, from its outputs, is stated here once: the exported graphs compute the same
    # rule (export_onnx, export_tflite), and verification allows for rows that lie on its boundary.
    decision_output: str | None = None  # the graph output that carries it ("decision", "class"), if any

    def decide(self, out: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's decision output beside the raw one (none for a regression)."""
        return {}

    def near_boundary(self, out: np.ndarray, tol: float) -> np.ndarray:
        """Rows whose decision a change of `tol` in any output could flip."""
        return np.zeros(len(out), dtype=bool)


class Checkerboard(Task):
    """12x12 blocks on an 81x81 grid over [-1, 1]^2 (paper 3.1), with the authors' own split.

    The authors train 2 outputs toward the 0/1 label with MSE and predict (mean of outputs > 0.5).
    """

    name, n_in, n_out, metric, higher_is_better = "checkerboard", 2, 2, "accuracy", True
    features = ("x1", "x2")
    units = MappingProxyType(
        {"x1": "coordinate on the 81x81 grid over [-1, 1]", "x2": "coordinate on the 81x81 grid over [-1, 1]"}
    )
    file = DATA_DIR / "checkerboard-official-split.csv.gz"
    sha256 = "e085d48ab24d808482ebb6a38c54e31b0b3a5637a6b7b253119770aea331c3b1"

    THRESHOLD = 0.5  # class 1 where the mean of the 2 outputs is above it
    decision_output = "decision"

    def split(self) -> Split:
        return _official_checkerboard()

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        label = (out.mean(dim=-1) > self.THRESHOLD).to(torch.int64)
        acc = (label == y[..., 0].to(torch.int64)).to(torch.float64).mean(dim=-1) * 100
        return {"accuracy": acc, "mse": self.loss(out, y)}

    def decide(self, out: np.ndarray) -> dict[str, np.ndarray]:
        return {"decision": (out.mean(axis=1) > self.THRESHOLD).astype(np.int64)}

    def near_boundary(self, out: np.ndarray, tol: float) -> np.ndarray:
        return np.abs(out.astype(np.float64).mean(axis=1) - self.THRESHOLD) <= tol


@lru_cache(maxsize=1)
def _official_checkerboard() -> Split:
    text = gzip.decompress(verified_bytes(Checkerboard.file, Checkerboard.sha256)).decode()
    rows = [line.split(",") for line in text.splitlines()[1:]]
    x = np.array([[float(r[0]), float(r[1])] for r in rows], dtype=np.float32)
    label = np.array([int(r[2]) for r in rows], dtype=np.float32)
    y = np.repeat(label[:, None], 2, axis=1)
    train = np.array([r[3] == "train" for r in rows])
    return Split(x[train], y[train], x[~train], y[~train])


def checkerboard_grid() -> tuple[np.ndarray, np.ndarray]:
    """All 6561 grid points and their labels, from the rule in hanzoo/data/PROVENANCE.md.

    Grid index i = round((x1 + 1) * 40); a border of 4 points is label 0; inside, 6x6-point blocks
    alternate: label = ((i - 4) // 6 + (j - 4) // 6) % 2.
    """
    idx = np.arange(81)
    i, j = np.meshgrid(idx, idx, indexing="ij")
    inside = (i >= 4) & (i <= 75) & (j >= 4) & (j <= 75)
    label = np.where(inside, ((i - 4) // 6 + (j - 4) // 6) % 2, 0)
    x = np.stack([i.ravel() / 40 - 1, j.ravel() / 40 - 1], axis=1).astype(np.float32)
    return x, label.ravel().astype(np.float32)


def checkerboard_label(x: np.ndarray) -> np.ndarray:
    """The label of grid points given by coordinates (the inverse of `checkerboard_grid`)."""
    i = np.rint((x[:, 0] + 1) * 40).astype(int)
    j = np.rint((x[:, 1] + 1) * 40).astype(int)
    inside = (i >= 4) & (i <= 75) & (j >= 4) & (j <= 75)
    return np.where(inside, ((i - 4) // 6 + (j - 4) // 6) % 2, 0).astype(np.float32)


def random_checkerboard_split(seed: int, train_fraction: float = 0.25) -> Split:
    """A fresh random split of the grid, as in the paper's 'other random 25%-75% splittings'."""
    x, label = checkerboard_grid()
    perm = np.random.default_rng(seed).permutation(len(x))
    n = int(round(train_fraction * len(x)))
    y = np.repeat(label[:, None], 2, axis=1)
    return Split(x[perm[:n]], y[perm[:n]], x[perm[n:]], y[perm[n:]])


class Regression(Task):
    """A tabular regression task (paper 3.2.2): one output, MSE on standardized data, scored in target units.

    The train/test split is a seeded permutation at `train_fraction`. NRMSE = RMSE / (y_max - y_min),
    with the range taken over the whole dataset, so that figures on different splits compare.
    """

    metric, higher_is_better, standardize = "nrmse", False, True

    def __init__(
        self,
        name: str,
        file: str,
        sha256: str,
        target: str,
        train_fraction: float = 0.8,
        split_seed: int = 0,
        units: Mapping[str, str] | None = None,
    ) -> None:
        self.name, self.file, self.sha256, self.target = name, DATA_DIR / file, sha256, target
        self.units = MappingProxyType(dict(units or {}))
        self.train_fraction, self.split_seed = train_fraction, split_seed
        header = (
            gzip.decompress(verified_bytes(self.file, sha256)).split(b"\n", 1)[0].decode().strip().split(",")
        )
        self.features = tuple(h for h in header if h != target)
        self.n_in, self.n_out = len(self.features), 1

    def split(self) -> Split:
        x, y = _table(self.file, self.sha256, self.target)
        perm = np.random.default_rng(self.split_seed).permutation(len(x))
        n = int(round(self.train_fraction * len(x)))
        tr, te = perm[:n], perm[n:]
        return Split(x[tr], y[tr], x[te], y[te])

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row of the dataset: features [N, n_in] and target [N, 1], before any split."""
        return _table(self.file, self.sha256, self.target)

    @property
    def y_range(self) -> float:
        _, y = _table(self.file, self.sha256, self.target)
        return float(y.max() - y.min())

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        err = (out.double() - y.double())[..., 0]
        mse = (err**2).mean(dim=-1)
        rmse = mse.sqrt()
        yd = y.double()[..., 0]
        sst = ((yd - yd.mean(dim=-1, keepdim=True)) ** 2).sum(dim=-1)
        return {"nrmse": rmse / self.y_range, "rmse": rmse, "r2": 1 - (err**2).sum(dim=-1) / sst, "mse": mse}


@lru_cache(maxsize=4)
def _table(file: Path, sha256: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    lines = gzip.decompress(verified_bytes(file, sha256)).decode().splitlines()
    header = lines[0].split(",")
    data = np.array([[float(v) for v in line.split(",")] for line in lines[1:]], dtype=np.float64)
    t = header.index(target)
    x = np.delete(data, t, axis=1).astype(np.float32)
    return x, data[:, t : t + 1].astype(np.float32)


class FeatureClassification(Task):
    """Classification of precomputed feature vectors (paper 3.2.3: heads on a frozen CNN's features).

    The folder holds features-{train,val,test}.npy [N, d] and labels-{train,val,test}.npy [N]; the
    validation part is images the backbone never trained on, so it chooses the head's LR fairly.
    Loss: cross-entropy; metric: top-1 error in %.
    """

    metric, higher_is_better, loss_name = "top1_error", False, "cross_entropy"

    def __init__(self, name: str, folder: Path, n_out: int = 10) -> None:
        self.name, self.folder, self.n_out = name, Path(folder), n_out
        self.n_in = int(np.load(self.folder / "features-test.npy", mmap_mode="r").shape[1])

    def split(self) -> Split:
        def part(name: str) -> tuple[np.ndarray, np.ndarray]:
            x = np.load(self.folder / f"features-{name}.npy", allow_pickle=False).astype(np.float32)
            y = np.load(self.folder / f"labels-{name}.npy", allow_pickle=False).astype(np.float32)[:, None]
            return x, y

        (xt, yt), (xv, yv), (xs, ys) = part("train"), part("val"), part("test")
        return Split(xt, yt, xs, ys, xv, yv)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(out, dim=-1)
        target = y[..., 0].to(torch.int64).expand(out.shape[:-1])
        return -logp.gather(-1, target.unsqueeze(-1))[..., 0].mean(dim=-1)

    def loss_grad(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.log_softmax(out, dim=-1)
        target = y[..., 0].to(torch.int64).expand(out.shape[:-1]).unsqueeze(-1)
        loss = -logp.gather(-1, target)[..., 0].mean(dim=-1)
        onehot = torch.zeros_like(out).scatter_(-1, target, 1.0)
        return loss, (logp.exp() - onehot) / out.shape[-2]

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        wrong = out.argmax(dim=-1) != y[..., 0].to(torch.int64)
        return {"top1_error": wrong.to(torch.float64).mean(dim=-1) * 100, "cross_entropy": self.loss(out, y)}

    def near_boundary(self, out: np.ndarray, tol: float) -> np.ndarray:
        top2 = np.sort(out.astype(np.float64), axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0] <= 2 * tol  # both logits may move by tol


class CifarImages(Task):
    """CIFAR-10 (JPEG) classification from raw uint8 images [N, 32, 32, 3] (hanzoo.zoo.cifar).

    The training part is the 45000 images the backbone trained on; the other 5000 of the official
    training set are the validation part (hanzoo.zoo.cifar.split_indices). Metric: top-1 error in %.
    """

    name, n_in, n_out, metric, higher_is_better, loss_name = (
        "cifar10",
        3072,
        10,
        "top1_error",
        False,
        "cross_entropy",
    )

    def split(self, val_images: int = cifar.VAL_IMAGES, split_seed: int = 0) -> Split:
        """Train, validation and test parts (a backbone recipe's `val_images` and `split_seed` set the
        latter)."""
        x, y = cifar.load_split("train")
        tr, va = cifar.split_indices(len(x), val_images, split_seed)
        xs, ys = self.test_data()
        return Split(x[tr], y[tr, None].astype(np.float32), xs, ys, x[va], y[va, None].astype(np.float32))

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = cifar.load_split("test")  # vendored: needs nothing outside the package
        return x, y[:, None].astype(np.float32)

    decision_output = "class"
    loss = FeatureClassification.loss
    metrics = FeatureClassification.metrics
    near_boundary = FeatureClassification.near_boundary

    def decide(self, out: np.ndarray) -> dict[str, np.ndarray]:
        return {"class": out.argmax(axis=1).astype(np.int64)}


class _Pending(Task):
    has_data = False

    """A task of the paper that hanzoo cannot load (its data cannot be had); its models are in the
    registry as reference configs."""

    def __init__(self, name: str, n_in: int, n_out: int, metric: str, higher_is_better: bool) -> None:
        self.name, self.n_in, self.n_out, self.metric, self.higher_is_better = (
            name,
            n_in,
            n_out,
            metric,
            higher_is_better,
        )


# From hanzoo/data/PROVENANCE.md (StatLib's cal_housing): the only columns whose units it states.
CALHOUSING_UNITS = {
    "medianIncome": "tens of thousands of dollars ($10k)",
    "medianHouseValue": "dollars (the data cap it at 500001)",
}

TASKS: dict[str, Task] = {
    "checkerboard": Checkerboard(),
    "elevators": Regression(
        "elevators",
        "elevators.csv.gz",
        "3a8b134ca7986a0bf0b3cfef5166d650d30bb0cc1d2d996f52543cca3680fd61",
        "Goal",
    ),
    "calhousing": Regression(
        "calhousing",
        "cal_housing.csv.gz",
        "eeaa3e55285cd372e1637ab58897fe7fb58a300e0bbd5b56fcbe123a26584302",
        "medianHouseValue",
        units=CALHOUSING_UNITS,
    ),
    # The paper's second training percentage (Figure 6, columns 2 and 4): same data, same seed, 20% to train.
    "elevators-20pct": Regression(
        "elevators-20pct",
        "elevators.csv.gz",
        "3a8b134ca7986a0bf0b3cfef5166d650d30bb0cc1d2d996f52543cca3680fd61",
        "Goal",
        train_fraction=0.2,
    ),
    "calhousing-20pct": Regression(
        "calhousing-20pct",
        "cal_housing.csv.gz",
        "eeaa3e55285cd372e1637ab58897fe7fb58a300e0bbd5b56fcbe123a26584302",
        "medianHouseValue",
        train_fraction=0.2,
        units=CALHOUSING_UNITS,
    ),
    "cifar10-features": _Pending("cifar10-features", 2048, 10, "top1_error", False),
    "cifar10": CifarImages(),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise HanzooError(f"unknown task {name!r}; expected one of {sorted(TASKS)}") from None
