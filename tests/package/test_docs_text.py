"""The shipped text: docs, README and model cards speak of the project and its users only, and every count
or figure they give is the one the shipped files (metrics.json, manifests, docs/benchmarks.json) give."""

import json
import re
from pathlib import Path

import pytest

from hanzoo.reports import docs
from hanzoo.runtimes import bad_input
from hanzoo.storage import card
from hanzoo.zoo import registry

ROOT = Path(__file__).resolve().parents[2]
TEXTS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "pretrained").glob("*/README.md")]
)

# Phrases about how the work was organised, not about the release. ONNX Runtime's own "session" (an ORT
# session, InferenceSession, createSession) is a legitimate word, so only these forms are refused.
DENY = [
    r"\b(a|no|this|that|each|every|gpu|device|helper|later|next) sessions?\b",
    r"\bsessions? (that|was|were|which|who)\b",
    r"\b(was|were|is|be|been) lent\b",
    r"\blent (a|the|it|one) ",
    r"\b(the|this|that|in the|a later|later|next) issue\b",
    r"\bissue (set|asked|said|required|requires|wants)\b",
    r"\bCEO\b",
    r"\bthe brief\b",
    r"\bthe targets? (the|set|we)\b",
    r"\btarget set for\b",
    r"\bengineers?\b",
]


def test_the_texts_are_found():
    names = {p.name for p in TEXTS}
    assert {"README.md", "gpu.md", "reproduction.md", "mobile.md", "export.md"} <= names
    assert sum(p.parent.parent.name == "pretrained" for p in TEXTS) == len(
        [e for e in registry.MODELS.values() if e.shipped]
    )


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_words_about_how_the_work_was_organised(path):
    text = path.read_text()
    hits = [m.group(0) for pattern in DENY for m in re.finditer(pattern, text, flags=re.IGNORECASE)]
    assert not hits, f"{path.relative_to(ROOT)} speaks of the work, not the release: {hits}"


def test_the_deny_list_catches_what_it_should():
    bad = [
        "No session that built it was lent a device.",
        "The targets the issue set are",
        "in a GPU session",
        "(94% in the issue)",
        "The target set for the CPU backbone",
    ]
    ok = [
        "session=True for an ORT session",
        "val session = env.createSession(bytes)",
        "ort.InferenceSession(path)",
    ]
    caught = lambda t: any(re.search(p, t, flags=re.IGNORECASE) for p in DENY)  # noqa: E731
    assert all(caught(t) for t in bad) and not any(caught(t) for t in ok)


# --- seed counts on the cards -------------------------------------------------------------------------------

TRAINED = [e for e in registry.MODELS.values() if e.shipped and e.family != "backbone"]


def _runs(m: dict) -> list[dict]:
    """The runs the card's mean is over, as `hanzoo.training.train` records them (failed ones included)."""
    if m["refit"]:
        return m["refit"]
    if m.get("stage2"):
        return m["stage2"]
    return [r for r in m["sweep"] if (r["init"], r["lr"]) == (m["stage1"]["init"], m["stage1"]["lr"])]


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("entry", TRAINED, ids=lambda e: e.id)
def test_card_seed_counts_match_metrics(entry):
    m = json.loads((entry.dir / "metrics.json").read_text())
    text = (entry.dir / "README.md").read_text()
    runs = _runs(m)
    kept = [r["seed"] for r in runs if r["status"] == "ok"]
    failed = {}
    for r in runs:
        if r["status"] != "ok":
            failed.setdefault(r["status"], set()).add(r["seed"])
    # the recorded figures are one per kept run
    assert (
        len(m["seeds_at_selected"]["test"]["values"])
        == len(m["seeds_at_selected"]["train"]["values"])
        == len(kept)
    )

    measured = _section(text, "Measured")
    header = re.search(r"mean \+- std over (\d+)(?: of (\d+))? seeds?", measured)
    assert header, f"{entry.id}: the table gives no seed count"
    assert int(header.group(1)) == len(kept)
    assert int(header.group(2) or header.group(1)) == len(runs)
    trained = re.search(r"(?:trained|refit) (\d+) seeds|(\d+) seeds were trained", measured)
    assert trained and int(trained.group(1) or trained.group(2)) == len(runs)
    named: dict[str, set[int]] = {}
    for seeds, status in re.findall(r"\bseeds? (\d+(?:, \d+)*(?: and \d+)?) (diverged|collapsed)", measured):
        named.setdefault(status, set()).update(int(s) for s in re.findall(r"\d+", seeds))
    assert named == failed, f"{entry.id}: the card names {named} as excluded, metrics.json {failed}"
    assert ("excluded" in measured) == bool(failed)

    # the per-seed list names every kept seed with its test figure, and no other
    how = _section(text, "How it was trained and selected")
    line = next(ln for ln in how.splitlines() if f"Test {m['metric']} of every" in ln)
    listed = re.findall(r"\bseed (\d+) (-?\d+(?:\.\d+)?)", line.split(":", 1)[1])
    f = lambda x: card.fmt(m["metric"], x)  # noqa: E731
    assert [(int(s), v) for s, v in listed] == [
        (s, f(v)) for s, v in zip(kept, m["seeds_at_selected"]["test"]["values"])
    ]


def test_backbone_card_states_its_one_seed():
    e = registry.get("cifar10-backbone")
    m = e.metrics
    assert len(m["seeds_at_selected"]["test"]["values"]) == 1
    assert f"One seed ({m['selected']['seed']})" in (e.dir / "README.md").read_text()


def test_readme_describes_the_registered_backbone():
    """README's backbone bullet gives the registry's widths and conv parameter count (the head excluded)."""
    c = registry.get("cifar10-backbone").config
    head = c.backbone[-1] * c.out_features + c.out_features
    widths = "-".join(map(str, c.backbone))
    text = " ".join((ROOT / "README.md").read_text().split())
    assert f"(widths {widths}, {(c.num_params - head) / 1e6:.2f}M parameters)" in text


def test_readme_table_gives_seed_counts():
    text = docs.model_table()
    for e in TRAINED:
        runs = _runs(e.metrics)
        k = sum(r["status"] == "ok" for r in runs)
        n = f"{k} of {len(runs)} seeds" if k < len(runs) else f"{k} seeds"
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| `{e.id}` |"))
        assert f" over {n})" in row


# --- units, NaN behaviour and the speed summary ----------------------------------------------------------


def test_every_parity_row_has_the_unit_of_its_task():
    text = docs.export_md().split("## Parity", 1)[1]
    manifests = {m["model_id"]: m for m in docs._manifests()}
    rows = [ln for ln in text.splitlines() if ln.startswith("| `") and ln.count("|") == 9]
    assert rows and len(rows) == sum(len(m["parity"]["runtimes"]) for m in manifests.values())
    for ln in rows:
        model, unit = ln.split("|")[1].strip().strip("`"), ln.split("|")[4].strip()
        assert unit == docs.output_unit(manifests[model]["task"])[0]
    assert docs.output_unit("calhousing")[0] == "US dollars"
    assert "500001" in docs.output_unit("calhousing")[1]  # the dataset's largest house value


def test_bad_input_section_comes_from_a_measurement():
    measured = bad_input.bad_input_behaviour()
    assert set(measured) == set(bad_input.BAD_INPUT_MODELS)
    for res in measured.values():
        assert res["NaN"]["row"] == "NaN" and set(res["NaN"]["columns"]) == {"NaN"}
    assert measured["checkerboard-hannet-20x30"]["NaN"]["decisions"] == [0]
    text = (ROOT / "docs" / "mobile.md").read_text()
    assert "\n".join(docs.bad_input_md(measured)) in text
    assert "validate every input row" in text


APP_SNIPPETS = sorted(
    [*(ROOT / "examples" / "android").glob("*.kt"), *(ROOT / "examples" / "ios").glob("*.swift")]
)


def test_each_app_snippet_is_in_the_mobile_page_as_it_is():
    assert len(APP_SNIPPETS) == 5
    text = (ROOT / "docs" / "mobile.md").read_text()
    for path in APP_SNIPPETS:
        fence = {".kt": "kotlin", ".swift": "swift"}[path.suffix]
        assert f"```{fence}\n{path.read_text()}```\n" in text, (
            f"{path.relative_to(ROOT)} is not in docs/mobile.md"
        )


def test_the_litert_snippets_read_decision_with_the_tflite_files_type():
    """Checkerboard's decision is int32 in model.tflite (TFLite Micro has no int64): the Kotlin snippet reads
    it into an IntArray and the Swift one as Int32, as the manifests' specs say."""
    types = {
        v.get("tflite_dtype", v["dtype"])
        for e in registry.MODELS.values()
        if e.shipped and e.task == "checkerboard"
        for v in json.loads((registry.EXPORT_DIR / e.id / "manifest.json").read_text())["outputs"]
        if v["name"] == "decision"
    }
    assert types == {"int32"}
    kotlin = (ROOT / "examples" / "android" / "LiteRt.kt").read_text()
    swift = (ROOT / "examples" / "ios" / "LiteRt.swift").read_text()
    assert "val decision = IntArray(rows)" in kotlin and "LongArray" not in kotlin
    assert 'output(named: "decision")' in swift and "bindMemory(to: Int32.self)" in swift
    assert "Int64" not in swift


def _report(ratios: dict) -> dict:
    cells = []
    for (rt, b), r in ratios.items():
        cells.append({"model": "h", "runtime": rt, "batch": b, "ratio_vs": {"f": r}})
    return {
        "runtimes": sorted({rt for rt, _ in ratios}),
        "batches": sorted({b for _, b in ratios}),
        "cells": cells,
    }


def test_pair_speed_says_what_the_ratios_say():
    r = _report(
        {
            ("onnxruntime", 1): 1.8,
            ("litert", 1): 0.8,
            ("onnxruntime", 64): 0.7,
            ("litert", 64): 0.3,
            ("onnxruntime", 1024): 0.4,
            ("litert", 1024): 0.3,
        }
    )
    assert docs.pair_speed(r, "h", "f", ("onnxruntime", "litert")) == [
        "faster from batch 64 up (0.30x to 0.70x)",
        "at batch 1, slower on onnxruntime (1.80x) and faster on litert (0.80x)",
    ]
    r = _report({("onnxruntime", 1): 3.0, ("onnxruntime", 64): 8.0})
    assert docs.pair_speed(r, "h", "f", ("onnxruntime",)) == ["slower at every batch (3.00x to 8.00x)"]
    r = _report({("onnxruntime", 1): 1.01, ("onnxruntime", 64): 0.99})
    assert docs.pair_speed(r, "h", "f", ("onnxruntime",)) == ["on par at every batch (0.99x to 1.01x)"]


def test_speed_summary_is_the_benchmark_json():
    """README's speed block is generated from docs/benchmarks.json (test_cli checks README is current); here,
    its headline claims are checked against the JSON's ratios directly."""
    report = json.loads(docs.BENCH_JSON.read_text())
    text = docs.speed_summary(report)
    cell = {(c["model"], c["runtime"], c["batch"]): c for c in report["cells"]}
    for group in report["groups"]:
        han, bases = group[0], group[1:]
        for base in bases:
            ratios = [
                cell[(han, rt, b)]["ratio_vs"][base]
                for rt in docs.APP_RUNTIMES
                for b in report["batches"]
                if (han, rt, b) in cell
            ]
            clause = re.split(
                r"\.\s", text.split(f"`{base}` ({registry.get(base).config.num_params}), ", 1)[1]
            )[0]
            if all(r > 1 + docs.PAR for r in ratios):
                assert clause.startswith("slower at every batch")
            if all(r < 1 - docs.PAR for r in ratios):
                assert clause.startswith("faster at every batch")
            assert f"{min(ratios):.2f}x" in clause and f"{max(ratios):.2f}x" in clause
    assert docs.speed_summary(report) in (ROOT / "README.md").read_text()


def test_a_template_and_its_blocks_must_name_the_same_things(tmp_path, monkeypatch):
    from hanzoo import HanzooError

    (tmp_path / "t.md.tmpl").write_text("# $title\n\n${table}\n")
    monkeypatch.setattr(docs, "TEMPLATES", tmp_path)
    assert docs._fill("t.md.tmpl", title="A", table=["| a |", "| b |"]) == "# A\n\n| a |\n| b |\n"
    with pytest.raises(HanzooError, match=r"t.md.tmpl: its names \['table', 'title'\] are not"):
        docs._fill("t.md.tmpl", title="A")  # a name left unfilled
    with pytest.raises(HanzooError, match="are not the blocks given"):
        docs._fill("t.md.tmpl", title="A", table="x", parity="y")  # a block the template lost


def test_a_manifest_whose_parity_is_off_its_shape_is_named(tmp_path, monkeypatch):
    from hanzoo import HanzooError
    from hanzoo.runtimes.verify import ParityReport

    src = registry.EXPORT_DIR / "checkerboard-hannet-20x30" / "manifest.json"
    manifest = json.loads(src.read_text())
    report = ParityReport.from_json(manifest["parity"], str(src), "parity")
    assert report.to_json() == manifest["parity"]  # read and written again: the same fields, in order
    assert report.runtimes["onnxruntime"].ok and report.reference.rows > 0
    del manifest["parity"]["runtimes"]["litert"]["max_abs_err"]
    (tmp_path / "checkerboard-hannet-20x30").mkdir()
    (tmp_path / "checkerboard-hannet-20x30" / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(registry, "EXPORT_DIR", tmp_path)
    with pytest.raises(HanzooError, match=r"manifest.json: parity.runtimes.litert.max_abs_err is missing"):
        docs._manifests()
