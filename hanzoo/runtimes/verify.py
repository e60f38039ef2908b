"""Numerical parity of every exported artifact against the torch fp32 reference, on the task's
whole test split, and the one rule for comparing a recomputed figure with a recorded one.

Tolerances (stated here once; tests, `hanzoo verify` and the golden checks all use these):
- outputs: |runtime - torch| <= ABS_TOL x max(1, largest |torch output|), so 1e-4 absolute on
  Checkerboard's 0..1 scores and relative to the scale of a regression target in its own units.
  Why 1e-4: the shipped HanNet-20x30 is itself 1.5e-5 away from its own float64 evaluation in torch
  fp32, and every fp32 runtime sits at that distance (different summation orders through 20
  layers); 1e-4 leaves a margin of about 6x, while any real export error (a wrong sign, a missing
  bias, a transposed vector) is of order 1e-1 or more.
- a regression metric (NRMSE): within METRIC_RTOL = 1e-5 relative. float32's unit roundoff is
  2^-24 = 6e-8; a 20-layer net of width 200 rounds each output through about 20 x 8 dependent steps
  (blocked sums of 200 terms), so two correct fp32 evaluations can disagree by about 160 x 6e-8 = 1e-5
  of an output, and an average of such outputs by no more. Seen in practice: 4e-8 relative between
  AVX-512 and SSE kernels for the same weights.
- a classification metric (accuracy, top-1 error): a decision may differ only on a row whose output
  lies within the output tolerance of the decision boundary (Checkerboard: the mean of the two
  outputs within ABS_TOL of 0.5; a classifier: the top two logits within 2 x ABS_TOL x scale). The
  metric may then move by at most those rows' share, and by nothing where there are none.
- a reduced-precision variant (model.fp16.onnx, model.int8.tflite, ...: hanzoo.graphs.precision) rounds by
  design, so it is not held to the above. Its outputs must be finite and its task metric within
  VARIANT_TOLERANCE of the fp32 reference: 0.1 accuracy points on Checkerboard (4 of its 4921 test
  points), 0.2 top-1 points on CIFAR-10 (20 of 10000 images), 1% relative NRMSE. Its largest output error and
  its changed decisions are reported beside.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import HanzooError
from ..files import file_sha256
from ..nn.models import ModelConfig
from ..storage import store
from ..storage.evaluate import BROKEN_MODEL, check_output, non_finite_rows
from ..typed import absent, from_json, to_json
from ..zoo import registry
from ..zoo.registry import MODELS
from ..zoo.tasks import Task, get_task
from .sessions import RUNTIMES

__all__ = [
    "ABS_TOL",
    "METRIC_RTOL",
    "VARIANT_TOLERANCE",
    "SOURCE_FILES",
    "output_tolerance",
    "near_boundary",
    "MetricCheck",
    "ParityReference",
    "RuntimeParity",
    "ParityReport",
    "metric_value",
    "check_metric",
    "allowance",
    "variant_check",
    "source_hashes",
    "check_source",
    "verify_folder",
    "present_runtimes",
    "verify",
    "failures",
]

ABS_TOL = 1e-4
METRIC_RTOL = 1e-5
VARIANT_TOLERANCE = {"accuracy": 0.1, "top1_error": 0.2, "nrmse": 0.01}  # points, points, relative
# What an export records of the folder it was made from: the weights and the config (which sets the
# architecture and the input scaling baked into the graph).
SOURCE_FILES = ("model.safetensors", "config.json")


@dataclass
class ParityReference:
    """The torch fp32 reference a parity check compares against."""

    runtime: str
    metric: str
    value: float
    rows: int
    rows_near_boundary: int


@dataclass
class RuntimeParity:
    """One runtime against the reference. A reduced-precision variant is held to its own rule: it has
    `precision` and `metric_allowed`, and no output tolerance."""

    path: str | None  # the path the runtime took, where it reports one (torch-cuda)
    max_abs_err: float
    max_rel_err: float
    worst_row: int
    worst_input: list[float] | str  # an image is named by its index in the test split
    metric: float
    tolerance_abs: float | None
    decisions_differ: int
    decisions_differ_off_boundary: int
    non_finite_rows: list[int]
    ok: bool
    precision: str | None = absent()
    metric_allowed: float | None = absent()


@dataclass
class ParityReport:
    """What `verify_folder` measures, as an export's manifest.json keeps it under "parity"; `verify` adds
    the model, the folder and the runtimes it could not run."""

    reference: ParityReference
    tolerance_abs: float
    metric_rtol: float
    runtimes: dict[str, RuntimeParity]
    model_id: str | None = absent()
    export_dir: str | None = absent()
    not_run: dict[str, str] | None = absent()

    @classmethod
    def from_json(cls, data: dict, where: str = "the parity report", path: str = "") -> ParityReport:
        return from_json(cls, data, where, path)

    def to_json(self) -> dict:
        return to_json(self)


def output_tolerance(out: np.ndarray) -> float:
    return ABS_TOL * max(1.0, float(np.abs(out).max()))


def near_boundary(task: Task, out: np.ndarray) -> np.ndarray:
    """Rows whose decision a float32 rounding difference could flip (see the module's docstring)."""
    return task.near_boundary(out, output_tolerance(out))


@dataclass(frozen=True)
class MetricCheck:
    value: float
    expected: float
    allowed: float  # the largest |value - expected| the rule accepts
    why: str

    @property
    def ok(self) -> bool:
        return abs(self.value - self.expected) <= self.allowed

    def __str__(self) -> str:
        return f"{self.value!r} vs {self.expected!r} (allowed difference {self.allowed:.3g}: {self.why})"


def metric_value(task: Task, out: np.ndarray, y: np.ndarray) -> float:
    return float(task.metrics(torch.from_numpy(np.asarray(out)), torch.as_tensor(y))[task.metric])


def check_metric(
    task: Task, out: np.ndarray, y: np.ndarray, expected: float, metric: str | None = None
) -> MetricCheck:
    """Compare the metric of `out` with a recorded figure under the module's rule. `metric` picks another
    key of task.metrics (a card's train figures use the task metric; rmse/r2 are regression-only)."""
    out = np.asarray(out)
    name = metric or task.metric
    value = float(task.metrics(torch.from_numpy(out), torch.as_tensor(y))[name])
    return allowance(name, value, float(expected), int(near_boundary(task, out).sum()), len(out))


def allowance(metric: str, value: float, expected: float, rows_near: int, rows: int) -> MetricCheck:
    """The module's rule, from counts alone (for comparing two recorded reports)."""
    if metric in ("accuracy", "top1_error"):
        return MetricCheck(
            value,
            expected,
            100.0 * rows_near / rows,
            f"{rows_near} of {rows} rows lie within the output tolerance of the decision boundary",
        )
    return MetricCheck(value, expected, METRIC_RTOL * abs(expected), f"relative tolerance {METRIC_RTOL:g}")


def variant_check(metric: str, value: float, expected: float) -> MetricCheck:
    """A reduced-precision variant's metric against the fp32 figure (see the module's docstring)."""
    tol = VARIANT_TOLERANCE[metric]
    if metric == "nrmse":
        return MetricCheck(value, expected, tol * abs(expected), f"{100 * tol:g}% relative, a variant's rule")
    return MetricCheck(value, expected, tol, f"{tol:g} points, a variant's rule")


def source_hashes(model_dir: Path) -> dict[str, str]:
    return {name: file_sha256(Path(model_dir) / name) for name in SOURCE_FILES}


def check_source(model_dir: Path, export_dir: Path, model: str | Path | None = None) -> None:
    """Refuse to compare a model folder with an export made from other weights: that would be two models."""

    model = model or model_dir
    fix = f"export it with `hanzoo export {model} --out DIR`, then run `hanzoo verify {model} --export DIR`"
    manifest = Path(export_dir) / "manifest.json"
    if not manifest.is_file():
        raise HanzooError(f"{manifest} is missing; {fix}")
    try:
        recorded = json.loads(manifest.read_text()).get("source")
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        raise HanzooError(f"{manifest} is not a valid export manifest ({e}); {fix}") from None
    if not isinstance(recorded, dict):
        raise HanzooError(
            f"{manifest} does not record which weights it was made from (an older hanzoo wrote it); {fix}"
        )
    actual = source_hashes(model_dir)
    for name in SOURCE_FILES:
        if recorded.get(name) != actual[name]:
            raise HanzooError(
                f"{export_dir} was exported from another {name} (sha256 {recorded.get(name)}) than "
                f"{Path(model_dir) / name} ({actual[name]}); {fix}"
            )


def verify_folder(
    model_dir: Path,
    export_dir: Path,
    runtimes: list[str],
    threads: int | None = None,
    rows: int | None = None,
) -> dict:
    """Parity figures per runtime; raises nothing about parity itself, each entry says whether it passed.

    Every runtime and the reference run on `threads` (default: torch's thread count, every physical core
    unless OMP_NUM_THREADS or torch.set_num_threads says fewer): parity holds at any thread count, and a
    CIFAR-10 test split is a TFLOP of convolutions per runtime. `rows` limits the check to the first rows
    of the test split (default: all of it). Latency is `hanzoo bench`'s.
    """
    threads = threads or torch.get_num_threads()
    if rows is not None and rows < 1:
        raise HanzooError(f"rows must be at least 1, got {rows}")
    meta = store.read_config(model_dir)
    task = get_task(meta["task"])
    x_test, y_test = task.test_data()
    x_test, y_test = x_test[:rows], y_test[:rows]
    ref = RUNTIMES["torch"].load(model_dir, export_dir, threads)(x_test)
    check_output(
        ref["output"], f"the torch reference of {model_dir} on the {task.name} test split", hint=BROKEN_MODEL
    )
    ref_metric = metric_value(task, ref["output"], y_test)
    near = near_boundary(task, ref["output"])
    tol = output_tolerance(ref["output"])
    scale = max(float(np.abs(ref["output"]).max()), 1e-6)  # relative to the outputs' scale, not per entry
    report: dict[str, Any] = {
        "reference": {
            "runtime": "torch",
            "metric": task.metric,
            "value": ref_metric,
            "rows": int(len(x_test)),
            "rows_near_boundary": int(near.sum()),
        },
        "tolerance_abs": ABS_TOL,
        "metric_rtol": METRIC_RTOL,
        "runtimes": {},
    }
    for name in runtimes:
        fn = RUNTIMES[name].load(model_dir, export_dir, threads)
        out = fn(x_test)
        err = np.abs(out["output"].astype(np.float64) - ref["output"])
        non_finite = non_finite_rows(out["output"])
        err = np.where(np.isfinite(err), err, np.inf)
        worst = int(np.unravel_index(np.argmax(err), err.shape)[0])
        variant = RUNTIMES[name].precision != "fp32"
        if variant:
            check = variant_check(task.metric, metric_value(task, out["output"], y_test), ref_metric)
        else:
            check = check_metric(task, out["output"], y_test, ref_metric)
        # decisions (Checkerboard's, a classifier's class) may differ only where a rounding could flip them
        differ = np.zeros(len(x_test), dtype=bool)
        for k in ref:
            if k != "output":
                differ |= out[k] != ref[k]
        report["runtimes"][name] = {
            "path": getattr(fn, "path", None),
            "max_abs_err": float(err.max()),
            "max_rel_err": float(err.max() / scale),
            "worst_row": worst,
            # an image is 3072 numbers: its index in the test split says more than its pixels
            "worst_input": [float(v) for v in x_test[worst]] if x_test.ndim == 2 else f"test image {worst}",
            "metric": check.value,
            "tolerance_abs": tol,
            "decisions_differ": int(differ.sum()),
            "decisions_differ_off_boundary": int((differ & ~near).sum()),
            "non_finite_rows": [int(r) for r in non_finite[:10]],
            "ok": bool(err.max() <= tol and check.ok and not (differ & ~near).any() and not len(non_finite)),
        }
        if variant:  # its own rule: the metric, and finite outputs
            report["runtimes"][name] |= {
                "precision": RUNTIMES[name].precision,
                "tolerance_abs": None,
                "metric_allowed": check.allowed,
                "ok": bool(check.ok and not len(non_finite)),
            }
    return ParityReport.from_json(report).to_json()  # held to the shape every reader relies on


def present_runtimes(model_dir: Path, export_dir: Path) -> list[str]:
    """The runtimes of every artifact present in an export folder that cover the model's kind: the MLP-only
    runtimes (c, tflite-micro) are not run on an image model, whose model.tflite TFLite Micro would take
    hours over."""
    images = ModelConfig.from_dict(store.read_config(model_dir)["architecture"]).takes_images
    return [
        r
        for r, rt in RUNTIMES.items()
        if rt.artifact and rt.covers(images) and (Path(export_dir) / rt.artifact).is_file()
    ]


def verify(
    model: str | Path,
    runtimes: list[str] | None = None,
    threads: int | None = None,
    export_dir: Path | None = None,
    rows: int | None = None,
) -> dict:
    """Verify a shipped model (id) or a model folder against its export (default: the bundled export of
    its id)."""

    model_dir = store.resolve(model)
    export_dir = (
        Path(export_dir) if export_dir else registry.EXPORT_DIR / store.read_config(model_dir)["model_id"]
    )
    if not export_dir.is_dir():
        raise HanzooError(
            f"{export_dir} does not exist; run `hanzoo export {model}"
            f"{'' if str(model) in MODELS else ' --out DIR'}` first"
        )
    check_source(model_dir, export_dir, model)
    skipped = {}
    if runtimes is None:  # every artifact present, in every runtime installed here (the rest are named)
        present = present_runtimes(model_dir, export_dir)
        skipped = {r: why for r in present if (why := RUNTIMES[r].missing())}
        runtimes = [r for r in present if r not in skipped]
        if torch.cuda.is_available():
            runtimes.append("torch-cuda")
    return verify_folder(model_dir, export_dir, runtimes, threads, rows) | {
        "model_id": str(model),
        "export_dir": str(export_dir),
        "not_run": skipped,
    }


def failures(report: dict) -> list[str]:
    out = []
    for name, r in report["runtimes"].items():
        if r["ok"]:
            continue
        why = [
            f"max abs error {r['max_abs_err']:.3g} (tolerance {r['tolerance_abs']:g})"
            if r["tolerance_abs"] is not None
            else f"max abs error {r['max_abs_err']:.3g}",
            f"{report['reference']['metric']} {r['metric']:.6g} vs {report['reference']['value']:.6g}"
            + (f" (allowed difference {r['metric_allowed']:.3g})" if "metric_allowed" in r else ""),
        ]
        if r.get("decisions_differ_off_boundary"):
            why.append(f"{r['decisions_differ_off_boundary']} decisions differ away from the boundary")
        if r.get("non_finite_rows"):
            why.append(f"non-finite outputs on rows {r['non_finite_rows']}")
        out.append(
            f"{name} on {report.get('model_id', '?')}: {', '.join(why)}; worst input row {r['worst_row']} = "
            f"{r['worst_input']}"
        )
    return out
