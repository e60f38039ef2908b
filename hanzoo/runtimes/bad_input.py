"""What the shipped ONNX exports return for NaN, inf and huge inputs, measured in ONNX Runtime (the exported
graphs do not check their input; docs/mobile.md reports what this measures)."""

from __future__ import annotations

import numpy as np

from ..zoo import registry
from ..zoo.formats import FORMATS
from ..zoo.tasks import get_task

BAD_INPUT_MODELS = ("checkerboard-hannet-20x30", "elevators-hannet-20x200")
HUGE = 3e38  # near float32's largest finite value (3.4e38)
PROBES = (("NaN", float("nan")), ("inf", float("inf")), (f"{HUGE:.0e}".replace("e+", "e"), HUGE))


def _kind(y: np.ndarray) -> str:
    return "NaN" if np.isnan(y).any() else "inf" if np.isinf(y).any() else "finite"


def bad_input_behaviour(model_ids: tuple[str, ...] = BAD_INPUT_MODELS) -> dict:
    """What the shipped ONNX exports return for NaN, inf and huge inputs, measured in ONNX Runtime.

    For each model, the first test row is probed with the value in every column at once ("row") and in one
    column at a time, each probe run in a batch beside the unchanged row. Returns, per model and probe value:
    the output's kind for the whole-row probe ("NaN", "inf" or "finite"), the count of one-column probes per
    output kind, the Checkerboard decisions seen, the largest finite |output| of any probe, and whether the
    unchanged row's outputs stayed bit-identical to running it alone."""
    import onnxruntime as ort  # noqa: PLC0415 (an optional extra, needed only to measure)

    out = {}
    for mid in model_ids:
        task = get_task(registry.get(mid).task)
        sess = ort.InferenceSession(
            str(registry.EXPORT_DIR / mid / FORMATS["onnx"].file), providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in sess.get_outputs()]
        row = task.split().x_test[:1]
        alone = sess.run(None, {"input": row})
        res = {}
        for label, value in PROBES:
            probes = [np.full_like(row, value)]
            for j in range(row.shape[1]):
                x = row.copy()
                x[0, j] = value
                probes.append(x)
            row_kind: str | None = None
            columns: dict[str, int] = {}
            decisions: set[int] = set()
            largest_finite = 0.0
            others_unchanged = True
            for i, x in enumerate(probes):
                got = dict(zip(names, sess.run(None, {"input": np.concatenate([x, row])})))
                y, kind = got["output"][0], _kind(got["output"][0])
                if i == 0:
                    row_kind = kind
                else:
                    columns[kind] = columns.get(kind, 0) + 1
                if kind == "finite":
                    largest_finite = max(largest_finite, float(np.abs(y).max()))
                if "decision" in got:
                    decisions.add(int(got["decision"][0]))
                others_unchanged &= all(np.array_equal(got[n][1:], a) for n, a in zip(names, alone))
            res[label] = {
                "row": row_kind,
                "columns": columns,
                "decisions": sorted(decisions),
                "largest_finite": largest_finite,
                "others_unchanged": others_unchanged,
            }
        out[mid] = res
    return out
