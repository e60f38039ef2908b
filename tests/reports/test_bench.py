"""Benchmarks are not timed tests: these check that they run and that their reports are well formed."""

import json
from pathlib import Path

import pytest

from hanzoo.cli import main
from hanzoo.reports import bench

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUNTIMES = ["torch", "onnxruntime", "ort-mobile", "litert"]


def test_quick_bench_covers_every_runtime_and_ratio(capsys):
    assert (
        main(["bench", "checkerboard-hannet-20x30", "--quick", "--rounds", "2", "--batch", "1,7", "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    runtimes = bench.available_runtimes()  # onnxruntime-web too, where a browser is installed
    assert report["runtimes"] == runtimes and set(RUNTIMES) <= set(runtimes)
    assert report["groups"][0][0] == "checkerboard-hannet-20x30"
    cells = {(c["model"], c["runtime"], c["batch"]): c for c in report["cells"]}
    for model in report["groups"][0]:
        for rt in runtimes:
            for b in (1, 7):
                c = cells[(model, rt, b)]
                assert c["median_us"] > 0 and c["p90_us"] >= c["median_us"] and c["samples_per_s"] > 0
    for rt in runtimes:
        ratio = cells[("checkerboard-hannet-20x30", rt, 1)]["ratio_vs"]["checkerboard-fcnet-6x100"]
        base = cells[("checkerboard-fcnet-6x100", rt, 1)]["median_us"]
        assert abs(ratio * base - cells[("checkerboard-hannet-20x30", rt, 1)]["median_us"]) < 1e-6


def test_report_is_deterministic_given_its_json():
    report = json.loads((DOCS / "benchmarks.json").read_text())
    first = bench.report_md(report, report["lower_bounds"])
    assert first == bench.report_md(report, report["lower_bounds"])
    assert (DOCS / "benchmarks.md").read_text() == first, "docs/benchmarks.md is stale: run `make bench`"
    assert bench.markdown(report) in first


def test_verify_prints_parity_and_latency_in_one_table(capsys):
    assert main(["verify", "checkerboard-hannet-20x30", "--latency"]) == 0
    out = capsys.readouterr().out
    assert "parity" in out and "batch 1 us" in out and "FCNet" in out and "litert" in out
    assert main(["verify", "checkerboard-hannet-20x30", "--runtime", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "parity" in out and "batch 1 us" not in out  # timing only when asked


def test_latency_check_times_the_fp32_files_at_the_models_batches(monkeypatch):
    calls = []
    monkeypatch.setattr(
        bench,
        "bench",
        lambda ids, rt, batches, threads, rounds: (
            calls.append((ids, rt, batches, threads, rounds)) or {"cells": []}
        ),
    )
    assert bench.latency_check("checkerboard-hannet-20x30", ["onnxruntime", "onnxruntime-fp16"]) == (
        [],
        [1, 1024],
    )
    assert bench.latency_check("cifar10-hannet", ["litert"])[1] == [1, 64]
    assert calls[0] == (["checkerboard-hannet-20x30"], ["onnxruntime", "torch"], (1, 1024), 1, 7)


def test_image_classifiers_bench_with_the_head_share(capsys):
    assert (
        main(
            [
                "bench",
                "cifar10-hannet",
                "--runtime",
                "onnxruntime,litert",
                "--rounds",
                "2",
                "--batch",
                "1,1024",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["groups"] == [["cifar10-hannet", "cifar10-fc"]]
    assert {c["batch"] for c in report["cells"]} == {1}  # images are timed up to batch 64
    shares = {(h["model"], h["runtime"]): h for h in report["head_share"]}
    assert set(shares) == {
        (m, rt) for m in ("cifar10-hannet", "cifar10-fc") for rt in ("onnxruntime", "litert")
    }
    for h in shares.values():
        assert 0 < h["share"] < 1 and h["head_us"] < h["whole_us"]
    assert "head share" in bench.image_analysis(report, report["groups"][0])


def test_the_default_models_are_the_shipped_hannets_outside_the_ablations_and_variants():
    from hanzoo.zoo import registry

    ids = bench.default_models()
    assert "checkerboard-hannet-20x30" in ids and "cifar10-hannet" in ids
    for m in registry.shipped():
        e = registry.get(m)
        assert (m in ids) == (e.family == "hannet" and not e.ablation and not e.variant_of), m
    assert not {"checkerboard-hannet-relu-20x30", "elevators-hannet-20x200-20pct"} & set(ids)


def test_the_stored_report_reads_through_its_schema_and_names_a_bad_field(tmp_path):
    from hanzoo import HanzooError
    from hanzoo.reports.timings import BenchReport

    stored = DOCS / "benchmarks.json"
    report = BenchReport.read(stored)
    assert json.dumps(report.to_json(), indent=2) + "\n" == stored.read_text()  # read, written: same bytes
    assert report.cells and all(c.median_us > 0 for c in report.cells)
    bad = json.loads(stored.read_text())
    del bad["cells"][2]["median_us"]
    (tmp_path / "b.json").write_text(json.dumps(bad))
    with pytest.raises(HanzooError, match=r"b.json: cells\[2\].median_us is missing"):
        BenchReport.read(tmp_path / "b.json")


def test_a_runtime_whose_format_leaves_out_image_models_is_not_timed_on_them():
    """The C export covers the MLPs: an image group gets no c cells and no c head share."""
    report = bench.bench(["cifar10-hannet"], ["c"], (1,), 1, rounds=1)
    assert report["cells"] == [] and report["head_share"] == []


def test_the_goals_table_reads_its_figures_from_the_cells():
    han, base = bench.FLAGSHIP, bench.FLAGSHIP_BASE

    def cell(model, runtime, batch, us, ratio=None):
        return {"model": model, "runtime": runtime, "batch": batch, "median_us": us} | (
            {"ratio_vs": {base: ratio}} if ratio is not None else {}
        )

    report = {
        "cells": [
            cell(han, "c-loop", 1, 0.5, 0.01),
            cell(han, "onnxruntime", 1, 30.0, 2.0),
            cell(han, "c-loop", 1024, 100.0, 0.02),
            cell(han, "onnxruntime", 1024, 400.0, 0.5),
            cell(han, "litert", 1024, 150.0, 0.4),
            cell(han, "c", 1, 4.0, 1.3),  # slower than its baseline through ctypes: missed
            cell(han, "torch-compile", 1, 120.0),
            cell(base, "torch", 1, 100.0),
        ]
    }
    flops = bench.flops_per_sample(han) * 1024
    rows = {g: (m, ok) for g, _, m, ok in bench.goals(report, {"matmul_gflops": flops / 1e3 / 50.0})}
    got = list(rows.values())
    assert got[0] == ("0.50 us", True)
    assert got[1] == ("60x faster", True)
    assert got[2] == ("1.50x faster", False)  # litert's 150 us is the fastest other runtime
    assert got[3] == ("2.0x the floor", True)  # a floor of 50 us
    assert got[4] == ("worst ratio 1.30x", False) and got[5] == ("worst ratio 0.02x", True)
    assert got[6] == ("1.20x its time", False)
    empty = bench.goals({"cells": []}, {"matmul_gflops": 1.0})
    assert all(m == "not measured" and ok is None for _, _, m, ok in empty)


def test_render_rewrites_the_page_from_the_stored_report_alone(tmp_path, capsys):
    (tmp_path / "benchmarks.json").write_text((DOCS / "benchmarks.json").read_text())
    assert main(["bench", "--render", "--report", str(tmp_path)]) == 0
    assert (tmp_path / "benchmarks.md").read_text() == (DOCS / "benchmarks.md").read_text()
    (tmp_path / "benchmarks.json").write_text("{}")
    assert main(["bench", "--render", "--report", str(tmp_path)]) == 1  # one line naming the field
    assert "benchmarks.json: machine is missing" in capsys.readouterr().err
