"""The one list of models. Everything else (trainer, CLI, cards, tests) reads it from here.

An entry is the model's identity: id, task, config and the paper's figures for it. What was measured
(metrics) and what is shipped (files) live in the model folder `pretrained/<id>/` and are read from
there, so a figure is never typed twice.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import HanzooError
from ..files import PACKAGE
from ..nn.models import Block, ModelConfig
from .formats import FORMATS, PRECISIONS
from .record import Record
from .record import read as read_record
from .tasks import get_task

__all__ = [
    "bundle_dir",
    "PRETRAINED_DIR",
    "EXPORT_DIR",
    "ARTIFACTS",
    "VARIANT_FORMATS",
    "artifact_name",
    "VARIANT_FILES",
    "ModelEntry",
    "MODELS",
    "get",
    "baselines",
    "shipped",
    "trainable",
    "train_advice",
]


def bundle_dir(env: str, checkout_name: str, package_name: str) -> Path:
    """Where shipped files live: $env if set; in a source checkout, the repo's folder; in an
    installed wheel, the copy packaged inside hanzoo/ (pyproject maps one onto the other), which holds
    the models the wheel carries (ModelEntry.in_wheel)."""
    if os.environ.get(env):
        return Path(os.environ[env])
    here = PACKAGE
    checkout = here.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / checkout_name).is_dir():
        return checkout / checkout_name
    return here / package_name


PRETRAINED_DIR = bundle_dir("HANZOO_PRETRAINED", "pretrained", "pretrained")
EXPORT_DIR = bundle_dir("HANZOO_EXPORT", "export", "exported")
# The exported artifacts: format name -> file name in an export folder, from the format table
ARTIFACTS = {name: f.file for name, f in FORMATS.items()}
# Reduced-precision variants (hanzoo.graphs.precision), written beside the fp32 files: model.fp16.onnx, ...
VARIANT_FORMATS = tuple(name for name, f in FORMATS.items() if f.variants)


def artifact_name(fmt: str, precision: str = "fp32") -> str:
    """An export folder's file name for a format at a precision: model.onnx, model.int8.onnx, ..."""
    return FORMATS[fmt].variant_file(precision)


VARIANT_FILES = {
    (fmt, p): f.variant_file(p) for p in PRECISIONS for fmt, f in FORMATS.items() if p in f.variants
}


@dataclass(frozen=True)
class ModelEntry:
    id: str
    task: str
    family: str  # "hannet" or "fcnet": a HanNet's baselines are the FCNets of its task
    config: ModelConfig
    description: str
    paper: dict = field(default_factory=dict)  # the paper's own figures, for side-by-side reports
    frozen: str | None = (
        None  # the model whose trained backbone this one reuses, frozen (only its head trains)
    )

    @property
    def ablation(self) -> bool:
        """Table 4's controls: trained for the report, never anyone's baseline or benchmark subject."""
        return self.paper.get("table", "").startswith("Table 4") and self.id != "checkerboard-hannet-20x30"

    @property
    def variant_of(self) -> str | None:
        """The model this one retrains on less data (same architecture, so the same speed), if any."""
        return self.id.removesuffix("-20pct") if self.id.endswith("-20pct") else None

    @property
    def dir(self) -> Path:
        return PRETRAINED_DIR / self.id

    @property
    def shipped(self) -> bool:
        """Whether its weights are here, in pretrained/ (or the installed wheel's copy)."""
        return (self.dir / "model.safetensors").is_file()

    @property
    def in_wheel(self) -> bool:
        """Whether the wheel carries this model's files (pretrained/ and export/): every model but the image
        models, whose conv weights and exports would be half the wheel. An installed hanzoo downloads those
        from the Hub on first use, each file checked against its pin in hub_manifest.json, which the
        wheel carries for every model. pyproject.toml names the folders it leaves out, and a test checks
        that list against this rule."""
        return not self.config.takes_images

    @property
    def files(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir() if p.is_file()) if self.dir.is_dir() else []

    @property
    def metrics(self) -> Record:
        return read_record(self.dir / "metrics.json")

    @property
    def arch(self) -> str:
        c = self.config
        head = f"{c.depth}x{c.width}" if c.depth else f"linear {c.in_features}->{c.out_features}"
        return f"cnn {'-'.join(map(str, c.backbone))} + {head}" if c.takes_images else head


def _hannet(
    n_in: int,
    n_out: int,
    width: int,
    han: int,
    fc_before: int = 1,
    fc_after: int = 0,
    act: str = "abs",
    init: str = "han-normal",
) -> ModelConfig:
    blocks = [Block("fc", width, act, fc_before), Block("han", width, act, han)]
    if fc_after:
        blocks.append(Block("fc", width, act, fc_after))
    return ModelConfig(n_in, n_out, tuple(blocks), init)


def _fcnet(n_in: int, n_out: int, depth: int, width: int, act: str = "relu") -> ModelConfig:
    return ModelConfig(n_in, n_out, (Block("fc", width, act, depth),), "kaiming")


_T3 = "Table 3"
_T4 = "Table 4 (20x30 ablation)"
_T5 = "Table 5 / Figure 6"

_ENTRIES = [
    # Checkerboard (paper 3.2.1): 2 outputs trained toward the 0/1 label with MSE.
    ModelEntry(
        "checkerboard-hannet-20x30",
        "checkerboard",
        "hannet",
        _hannet(2, 2, 30, 17, fc_before=2, fc_after=1),
        "HanNet: 2 FC, 17 Han-layers, 1 FC, width 30, ABS.",
        {
            "table": _T3,
            "params": 3032,
            "ar": 19.78,
            "train_accuracy": "99.98 +- 0.02",
            "test_accuracy": "99.52 +- 0.27",
        },
    ),
    ModelEntry(
        "checkerboard-fcnet-6x100",
        "checkerboard",
        "fcnet",
        _fcnet(2, 2, 6, 100),
        "FCNet1: 6 hidden FC layers of width 100, ReLU.",
        {
            "table": _T3,
            "params": 51002,
            "ar": 1.17,
            "train_accuracy": "99.97 +- 0.03",
            "test_accuracy": "85.27 +- 0.35",
        },
    ),
    ModelEntry(
        "checkerboard-fcnet-10x100",
        "checkerboard",
        "fcnet",
        _fcnet(2, 2, 10, 100),
        "FCNet2: 10 hidden FC layers of width 100, ReLU.",
        {
            "table": _T3,
            "params": 91402,
            "ar": 1.96,
            "train_accuracy": "99.98 +- 0.02",
            "test_accuracy": "85.34 +- 0.38",
        },
    ),
    ModelEntry(
        "checkerboard-fcnet-6x300",
        "checkerboard",
        "fcnet",
        _fcnet(2, 2, 6, 300),
        "FCNet3: 6 hidden FC layers of width 300, ReLU.",
        {
            "table": _T3,
            "params": 453002,
            "ar": 0.39,
            "train_accuracy": "100.0 +- 0.00",
            "test_accuracy": "85.61 +- 0.17",
        },
    ),
    ModelEntry(
        "checkerboard-hannet-relu-20x30",
        "checkerboard",
        "hannet",
        _hannet(2, 2, 30, 17, fc_before=2, fc_after=1, act="relu"),
        "Ablation (b): the HanNet-20x30 frame with ReLU instead of ABS.",
        {"table": _T4, "params": 3032, "test_accuracy": "76.8"},
    ),
    ModelEntry(
        "checkerboard-fcnet-abs-20x30",
        "checkerboard",
        "fcnet",
        _fcnet(2, 2, 20, 30, act="abs"),
        "Ablation (c): 20 FC layers of width 30 with ABS.",
        {"table": _T4, "params": 17822, "test_accuracy": "82.6"},
    ),
    ModelEntry(
        "checkerboard-fcnet-relu-20x30",
        "checkerboard",
        "fcnet",
        _fcnet(2, 2, 20, 30),
        "Ablation (d): 20 FC layers of width 30 with ReLU.",
        {"table": _T4, "params": 17822, "test_accuracy": "82.3"},
    ),
]

_REGRESSION_80 = [
    # Regression (paper 3.2.2): 1 output, MSE, Adam.
    ModelEntry(
        "elevators-hannet-20x200",
        "elevators",
        "hannet",
        _hannet(18, 1, 200, 19),
        "HanNet: FC(18->200), 19 Han-layers of width 200, ABS.",
        {"table": _T5, "params": 11601, "ar": 34.47},
    ),
    ModelEntry(
        "elevators-fcnet-5x50",
        "elevators",
        "fcnet",
        _fcnet(18, 1, 5, 50),
        "FCNet1: 5 hidden FC layers of width 50, ReLU.",
        {"table": _T5, "params": 11201, "ar": 2.23},
    ),
    ModelEntry(
        "elevators-fcnet-5x200",
        "elevators",
        "fcnet",
        _fcnet(18, 1, 5, 200),
        "FCNet2: 5 hidden FC layers of width 200, ReLU.",
        {"table": _T5, "params": 164801, "ar": 0.60},
    ),
    ModelEntry(
        "calhousing-hannet-20x200",
        "calhousing",
        "hannet",
        _hannet(8, 1, 200, 19),
        "HanNet: FC(8->200), 19 Han-layers of width 200, ABS.",
        {"table": _T5, "params": 9601, "ar": 41.66},
    ),
    ModelEntry(
        "calhousing-fcnet-5x50",
        "calhousing",
        "fcnet",
        _fcnet(8, 1, 5, 50),
        "FCNet1: 5 hidden FC layers of width 50, ReLU.",
        {"table": _T5, "params": 10701, "ar": 2.33},
    ),
    ModelEntry(
        "calhousing-fcnet-5x200",
        "calhousing",
        "fcnet",
        _fcnet(8, 1, 5, 200),
        "FCNet2: 5 hidden FC layers of width 200, ReLU.",
        {"table": _T5, "params": 162801, "ar": 0.61},
    ),
]

_ENTRIES += _REGRESSION_80 + [
    # The same three architectures trained on 20% of each regression set (Figure 6, columns 2 and 4).
    *[
        ModelEntry(
            f"{e.id}-20pct",
            f"{e.task}-20pct",
            e.family,
            e.config,
            e.description + " Trained on 20% of the rows.",
            {**e.paper, "table": _T5 + " (20% training)"},
        )
        for e in _REGRESSION_80
    ],
    # CIFAR-10 classifier heads on 2048-d backbone features (paper 3.2.3).
    ModelEntry(
        "cifar10-head-hannet",
        "cifar10-features",
        "hannet",
        _hannet(2048, 10, 30, 3),
        "HanNet head: FC(2048->30)+ABS, 3 Han-layers of width 30, FC(30->10).",
        {"table": "Table 6", "params": 61960, "top1_error": "0.89 +- 0.02"},
    ),
    ModelEntry(
        "cifar10-head-fc",
        "cifar10-features",
        "fcnet",
        ModelConfig(2048, 10, (), "kaiming"),
        "The backbone's own last layer: FC(2048->10).",
        {"table": "Table 6", "params": 20490, "top1_error": "0.99 +- 0.02"},
    ),
]

# CIFAR-10 (JPEG) whole classifiers on hanzoo's own backbone (the paper's LaNet cannot be had here): they
# take uint8 images [batch, 32, 32, 3]. The backbone trains end to end with its own linear head; the
# two classifiers keep its conv layers frozen and train the paper's heads on its features.
_CNN = (24, 48, 96, 192)
_D = _CNN[-1]
_ENTRIES += [
    ModelEntry(
        "cifar10-backbone",
        "cifar10",
        "backbone",
        ModelConfig(_D, 10, (), "kaiming", _CNN),
        f"hanzoo's CIFAR-10 backbone: a 7-conv CNN (widths {'-'.join(map(str, _CNN))}) with its own linear "
        "head, trained end to end by the CPU recipe of hanzoo.backbone.",
        {"table": "Table 6 (backbone)"},
    ),
    ModelEntry(
        "cifar10-fc",
        "cifar10",
        "fcnet",
        ModelConfig(_D, 10, (), "kaiming", _CNN),
        f"The frozen cifar10-backbone with a retrained FC head ({_D}->10): the paper's control.",
        {"table": "Table 6", "top1_error": "0.99 +- 0.02 (on LaNet's 2048-d features)"},
        frozen="cifar10-backbone",
    ),
    ModelEntry(
        "cifar10-hannet",
        "cifar10",
        "hannet",
        replace(_hannet(_D, 10, 30, 3), backbone=_CNN),
        f"The frozen cifar10-backbone with the paper's HanNet head: FC({_D}->30)+ABS, 3 Han-layers of "
        "width 30, FC(30->10).",
        {"table": "Table 6", "top1_error": "0.89 +- 0.02 (on LaNet's 2048-d features)"},
        frozen="cifar10-backbone",
    ),
]

MODELS: dict[str, ModelEntry] = {e.id: e for e in _ENTRIES}


def get(model_id: str) -> ModelEntry:
    """The registry entry for `model_id`; an unknown id names the closest known ones."""
    try:
        return MODELS[model_id]
    except KeyError:
        close = difflib.get_close_matches(model_id, MODELS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `hanzoo list` to see them"
        raise HanzooError(f"unknown model id {model_id!r}{hint}") from None


def baselines(model_id: str) -> list[ModelEntry]:
    """A HanNet's FCNet baselines: the FCNets of the same task (the ablation controls excepted)."""
    entry = get(model_id)
    return [
        e
        for e in MODELS.values()
        if e.task == entry.task and e.family == "fcnet" and e.id != model_id and not e.ablation
    ]


def shipped() -> list[str]:
    """Ids of every model with weights in pretrained/."""
    return [e.id for e in MODELS.values() if e.shipped]


# Why a task's models cannot be trained here, for the reference configs whose data hanzoo cannot have
_NO_DATA = {"cifar10-features": "LaNet's 2048-d CIFAR-10 features, which hanzoo does not have"}


def trainable(model_id: str) -> bool:
    """Whether `hanzoo train ID` can train this model: every model but the reference configs."""
    return get_task(get(model_id).task).has_data


def train_advice(model_id: str) -> str:
    """What to tell a user who asked for weights that do not exist: the train command, or, for a reference
    config that cannot be trained here, why not and which models of the same data can be."""
    entry = get(model_id)
    if trainable(entry.id):
        return f"train it with `hanzoo train {entry.id}`"
    dataset = entry.task.split("-")[0]
    # the same family first: a HanNet head points to the trainable HanNet
    instead = sorted(
        (
            e
            for e in MODELS.values()
            if e.task.split("-")[0] == dataset and e.family != "backbone" and trainable(e.id)
        ),
        key=lambda e: e.family != entry.family,
    )
    why = _NO_DATA.get(
        entry.task, f"{get_task(entry.task).n_in}-d {entry.task} inputs, which hanzoo does not have"
    )
    advice = f"it is a reference config of the paper that needs {why}, so it cannot be trained here"
    if instead:
        advice += "; train a model of the same dataset instead: " + " or ".join(
            f"`hanzoo train {e.id}`" for e in instead
        )
    return advice
