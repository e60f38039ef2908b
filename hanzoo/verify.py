"""Numerical parity of every exported artifact against the torch fp32 reference, on the task's
whole test split.

Tolerances (stated here once):
- outputs: |runtime - torch| <= ABS_TOL x max(1, largest |torch output|), so 1e-4 absolute on
  Checkerboard's 0..1 scores and relative to the scale of a regression target in its own units;
- the task metric: identical for classification (every Checkerboard decision equal), and within
  METRIC_RTOL relative for regression NRMSE.
Why 1e-4: the shipped HanNet-20x30 is itself 1.5e-5 away from its own float64 evaluation in torch
fp32, and every fp32 runtime sits at that distance (different summation orders through 20 layers);
1e-4 leaves a margin of about 6x, while any real export error (a wrong sign, a missing bias, a
transposed vector) is of order 1e-1 or more.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import HanzooError
from .tasks import get_task

ABS_TOL = 1e-4
METRIC_RTOL = 1e-6


def _metric(task, out: np.ndarray, y: np.ndarray) -> float:
    return float(task.metrics(torch.from_numpy(out), torch.from_numpy(y))[task.metric])


def verify_folder(model_dir: Path, export_dir: Path, runtimes: list[str], threads: int = 1) -> dict:
    """Parity figures per runtime; raises nothing, each entry says whether it passed."""
    from . import store
    from .runtimes import RUNTIMES

    meta = store.read_config(model_dir)
    task = get_task(meta["task"])
    x_test, y_test = task.test_data()
    ref = RUNTIMES["torch"].load(model_dir, export_dir, threads)(x_test)
    ref_metric = _metric(task, ref["output"], y_test)
    report = {"reference": {"runtime": "torch", "metric": task.metric, "value": ref_metric,
                            "rows": int(len(x_test))}, "tolerance_abs": ABS_TOL, "runtimes": {}}
    for name in runtimes:
        fn = RUNTIMES[name].load(model_dir, export_dir, threads)
        out = fn(x_test)
        err = np.abs(out["output"].astype(np.float64) - ref["output"])
        scale = max(float(np.abs(ref["output"]).max()), 1e-6)  # relative to the outputs' scale, not per entry
        worst = int(np.unravel_index(np.argmax(err), err.shape)[0])
        value = _metric(task, out["output"], y_test)
        same_decisions = all(np.array_equal(out[k], ref[k]) for k in ref if k != "output")
        same_metric = value == ref_metric if task.higher_is_better or "class" in ref else (
            abs(value - ref_metric) <= METRIC_RTOL * abs(ref_metric))
        report["runtimes"][name] = {
            "path": getattr(fn, "path", None), "max_abs_err": float(err.max()), "max_rel_err": float(err.max() / scale),
            "worst_row": worst,
            # an image is 3072 numbers: its index in the test split says more than its pixels
            "worst_input": [float(v) for v in x_test[worst]] if x_test.ndim == 2 else f"test image {worst}",
            "metric": value, "tolerance_abs": ABS_TOL * max(1.0, scale),
            "ok": bool(err.max() <= ABS_TOL * max(1.0, scale) and same_metric and same_decisions)}
    return report


def verify(model_id: str, runtimes: list[str] | None = None, threads: int = 1) -> dict:
    from . import store
    from .export import EXPORT_DIR
    from .runtimes import RUNTIMES

    model_dir = store.resolve(model_id)
    export_dir = EXPORT_DIR / store.read_config(model_dir)["model_id"]
    if not export_dir.is_dir():
        raise HanzooError(f"{export_dir} does not exist; run `hanzoo export {model_id}` first")
    if runtimes is None:
        runtimes = [r for r, rt in RUNTIMES.items() if rt.artifact and (export_dir / rt.artifact).is_file()]
        if torch.cuda.is_available():
            runtimes.append("torch-cuda")
    return verify_folder(model_dir, export_dir, runtimes, threads) | {"model_id": model_id}


def failures(report: dict) -> list[str]:
    out = []
    for name, r in report["runtimes"].items():
        if not r["ok"]:
            out.append(f"{name} on {report.get('model_id', '?')}: max abs error {r['max_abs_err']:.3g} "
                       f"(tolerance {r['tolerance_abs']:g}), {report['reference']['metric']} {r['metric']:.4f} vs "
                       f"{report['reference']['value']:.4f}; worst input row {r['worst_row']} = {r['worst_input']}")
    return out
