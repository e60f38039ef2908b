"""docs/quantization.md: current with its measurements, complete, and in step with the files that ship."""

import itertools
import json
from pathlib import Path

import pytest

from hanzoo import load_onnx
from hanzoo.errors import HanzooError
from hanzoo.publishing.ship import decide
from hanzoo.reports.quantization import render
from hanzoo.runtimes.verify import variant_check, verify
from hanzoo.zoo import pins, registry
from hanzoo.zoo.registry import EXPORT_DIR, PRECISIONS, VARIANT_FILES, VARIANT_FORMATS

DOCS = Path(__file__).resolve().parents[2] / "docs"
REPORT = json.loads((DOCS / "quantization.json").read_text())
SHIPS = [r for r in REPORT["rows"] if r["ships"]]


def test_the_doc_is_rendered_from_its_measurements():
    assert (DOCS / "quantization.md").read_text() == render(REPORT), (
        "run `python -m hanzoo.reports.quantization --render`"
    )


def test_every_shipped_model_and_variant_has_a_row():
    want = set(itertools.product(registry.shipped(), PRECISIONS, VARIANT_FORMATS))
    assert {(r["model"], r["precision"], r["format"]) for r in REPORT["rows"]} == want


def test_each_row_is_decided_by_the_stated_rule():
    for r in REPORT["rows"]:
        assert decide(r) == (r["ships"], r["why"]), r["model"]
        if "error" not in r:
            assert variant_check(r["metric"], r["value"], r["fp32"]).ok == r["metric_ok"], r["model"]


def test_the_rule_itself():
    base = {
        "metric": "accuracy",
        "metric_ok": True,
        "delta": 0.0,
        "bytes": 50,
        "fp32_bytes": 100,
        "latency": {"1": {"ratio": 1.0}, "1024": {"ratio": 1.0}},
    }
    assert decide(base)[0]  # half the bytes, same speed
    assert not decide(base | {"metric_ok": False, "delta": -3.0})[0]
    assert not decide(base | {"latency": {"1": {"ratio": 1.0}, "1024": {"ratio": 1.3}}})[0]  # slower
    assert not decide(base | {"bytes": 95})[0]  # gains nothing
    assert decide(base | {"bytes": 95, "latency": {"1": {"ratio": 0.8}, "1024": {"ratio": 1.0}}})[0]
    assert not decide(base | {"error": "LiteRT cannot run it"})[0]


def test_exactly_the_winning_variants_ship():
    """A variant file is in export/<id>/ and pinned for the Hub exactly where the doc says it ships."""
    for r in REPORT["rows"]:
        name = VARIANT_FILES[(r["format"], r["precision"])]
        present = (EXPORT_DIR / r["model"] / name).is_file()
        assert present == r["ships"], f"{r['model']} {name}: shipped={present}, the doc says {r['ships']}"
        assert (f"{r['format']}/{name}" in pins.files(r["model"])) == r["ships"]


def test_a_variant_that_does_not_ship_is_refused_by_name():
    r = next((r for r in REPORT["rows"] if not r["ships"] and r["format"] == "onnx"), None)
    if r is None:
        pytest.skip("every ONNX variant ships")
    with pytest.raises(HanzooError, match=f"ships no {r['precision']} onnx variant"):
        load_onnx(r["model"], precision=r["precision"])


@pytest.mark.golden
@pytest.mark.parametrize("model", sorted({r["model"] for r in SHIPS}))
def test_shipped_variants_pass_verify_and_give_their_figures(model, cached_reference):
    rows = {
        f"{'onnxruntime' if r['format'] == 'onnx' else 'litert'}-{r['precision']}": r
        for r in SHIPS
        if r["model"] == model
    }
    rep = verify(model, runtimes=sorted(rows))
    for name, r in rows.items():
        got = rep["runtimes"][name]
        assert got["ok"], (model, name, got)
        # recorded on another CPU: the figure agrees within the variant's own rule
        assert variant_check(r["metric"], got["metric"], r["value"]).ok, (
            model,
            name,
            got["metric"],
            r["value"],
        )


def test_remeasuring_one_model_keeps_the_others_rows():
    from hanzoo.reports.quantization import merged

    old = {"rows": [{"model": "a", "v": 1}, {"model": "b", "v": 1}, {"model": "b", "v": 2}], "machine": "x"}
    new = {"rows": [{"model": "b", "v": 3}], "machine": "y"}
    out = merged(old, new)
    assert out["machine"] == "y"
    assert sorted((r["model"], r["v"]) for r in out["rows"]) == [("a", 1), ("b", 3)]


def test_the_stored_report_reads_through_its_schema_and_names_a_bad_field(tmp_path):
    from hanzoo import HanzooError
    from hanzoo.publishing.ship import QuantizationReport

    stored = DOCS / "quantization.json"
    report = QuantizationReport.read(stored)
    assert json.dumps(report.to_json(), indent=1) + "\n" == stored.read_text()  # read, written: same bytes
    assert any(r.error for r in report.rows) and all(r.latency for r in report.rows if not r.error)
    bad = json.loads(stored.read_text())
    bad["rows"][3]["bytes"] = "12 KB"
    (tmp_path / "q.json").write_text(json.dumps(bad))
    with pytest.raises(
        HanzooError, match=r"q.json: rows\[3\].bytes must be a whole number or null, got a string"
    ):
        QuantizationReport.read(tmp_path / "q.json")
