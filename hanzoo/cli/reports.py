"""`hanzoo bench`, `hanzoo reproduce` and `hanzoo site`: the generated reports."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.table import Table

from ..errors import HanzooError
from ..files import DOCS, written_atomically
from ..reports import bench, reproduce, retrain, site
from ..reports.timings import BenchReport
from .common import check_out_folder, console, csv_of, positive


def cmd_bench(args) -> dict:
    if args.render:  # the page again from its stored report: a change to the page measures nothing
        folder = Path(args.report or DOCS)
        stored = BenchReport.read(folder / "benchmarks.json").to_json()
        with written_atomically(folder / "benchmarks.md") as tmp:
            tmp.write_text(bench.report_md(stored, stored.get("lower_bounds") or {}))
        console.print(f"wrote {folder / 'benchmarks.md'} from {folder / 'benchmarks.json'}")
        return stored
    ids = bench.default_models() if args.all or not args.models else args.models
    runtimes = args.runtime.split(",") if args.runtime else None
    batches = tuple(args.batch) if args.batch else ((1, 1024) if args.quick else bench.BATCHES)
    rounds = 5 if args.quick else args.rounds
    check_out_folder(args.report, "--report")  # before the timing, which takes minutes
    with console.status("timing") as status:
        report = bench.bench(
            ids, runtimes, batches, args.threads, rounds, progress=lambda m: status.update(m)
        )
    if args.report:
        out = Path(args.report)
        bounds = bench.lower_bounds(args.threads)
        report["lower_bounds"] = bounds
        _write_report(
            out,
            {
                "benchmarks.json": lambda p: p.write_text(
                    json.dumps(BenchReport.from_json(report).to_json(), indent=2) + "\n"
                ),
                "benchmarks.png": lambda p: bench.plot(report, p),
                "benchmarks.md": lambda p: p.write_text(bench.report_md(report, bounds)),
            },
        )
        if not args.json:
            console.print(f"wrote {out / 'benchmarks.md'}, benchmarks.json and benchmarks.png")
    if args.markdown:
        sys.stdout.write(bench.markdown(report))
    elif not args.json:
        t = Table(
            title=f"latency, {args.threads} thread(s); ratio = HanNet / baseline (below 1: HanNet faster)"
        )
        for col in (
            "model",
            "runtime",
            "batch",
            "median us",
            "p90 us",
            "samples/s",
            "ratio",
            "metric",
            "artifact B",
        ):
            t.add_column(col, justify="left" if col in ("model", "runtime", "ratio") else "right")
        for c in report["cells"]:
            ratio = ", ".join(f"{v:.2f}x {k}" for k, v in c.get("ratio_vs", {}).items()) or ""
            metric = f"{c['metric']['name']} {c['metric']['test']:.2f}" if c["metric"] else "-"
            t.add_row(
                c["model"],
                c["runtime"],
                str(c["batch"]),
                f"{c['median_us']:.1f}",
                f"{c['p90_us']:.1f}",
                f"{c['samples_per_s']:.0f}",
                ratio,
                metric,
                str(c["artifact_bytes"] or "-"),
            )
        console.print(t)
    return report


def _write_report(folder: Path, writers: dict) -> None:
    """Each file written under a temporary name (same suffix: matplotlib picks the format by it) and
    renamed into place, so a failed write never leaves a truncated file beside the good ones."""

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HanzooError(f"cannot write --report {folder}: {e.strerror or e}") from None
    for name, write in writers.items():
        with written_atomically(folder / name) as tmp:
            write(tmp)


def cmd_reproduce(args) -> dict:

    result: dict = {}
    if args.retrain:
        ids = args.models or reproduce.COVERED
        minutes, recorded = retrain.recorded_minutes(ids)
        console.print(
            f"retraining {len(ids)} models, {args.jobs} at a time; the shipped ones took "
            f"{minutes:.0f} min of training here ({recorded} of {len(ids)} have a recorded time)"
        )
        out = Path(args.out) if args.out else None
        report = retrain.run(ids, out, args.jobs, say=(lambda *_: None) if args.json else console.print)
        report["command"] = "hanzoo " + " ".join(sys.argv[1:])
        where = Path(args.report) if args.report else (out or retrain.WORK_DIR) / "retrain.json"
        result["retrain"] = str(retrain.write_report(report, where))
        console.print(f"retrained in {report['wall_seconds'] / 60:.1f} min; wrote {where}")
    elif args.out or args.models or args.report:
        raise HanzooError("--out, --models and --report go with --retrain")
    paths = reproduce.write()
    if not args.json:
        console.print("wrote " + ", ".join(str(p) for p in paths))
    return result | {"files": [str(p) for p in paths]}


def add_bench(s: argparse.ArgumentParser) -> None:
    s.add_argument("models", nargs="*", help="model ids (default: every shipped HanNet)")
    s.add_argument("--all", action="store_true", help="every shipped model")
    s.add_argument(
        "--runtime",
        help=f"comma-separated: {', '.join(bench.ALL_RUNTIMES)} (default: those available here)",
    )
    s.add_argument("--batch", type=csv_of(positive), help="batch sizes (default 1,64,1024)")
    s.add_argument(
        "--threads", type=positive, default=1, help="threads per runtime (default 1, as on a phone)"
    )
    s.add_argument("--rounds", type=positive, default=21, help="interleaved rounds per cell (default 21)")
    s.add_argument("--quick", action="store_true", help="batches 1 and 1024, 5 rounds")
    s.add_argument("--markdown", action="store_true", help="print the markdown table")
    s.add_argument(
        "--report", help="write benchmarks.md, .json and .png (with lower bounds) into this folder"
    )
    s.add_argument(
        "--render",
        action="store_true",
        help="rewrite benchmarks.md from the benchmarks.json in --report's folder (default docs/), "
        "timing nothing",
    )


def add_reproduce(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--retrain", action="store_true", help="first retrain every model the report covers (hours)"
    )
    s.add_argument(
        "--models", nargs="+", help="with --retrain: only these ids (default: every covered model)"
    )
    s.add_argument(
        "--out",
        help="with --retrain: write the model folders here, leaving the shipped ones (default: in place)",
    )
    s.add_argument("--jobs", type=positive, default=2, help="with --retrain: trainings at a time (default 2)")
    s.add_argument(
        "--report",
        help="with --retrain: the timing report's path (default: OUT/retrain.json or runs/retrain/)",
    )


def cmd_site(args) -> dict:
    check_out_folder(args.out, "--out", replaces="index.html")
    folder = site.build(Path(args.out))
    shots = site.screenshots(folder, Path(args.screenshots)) if args.screenshots else []
    if not args.json:
        console.print(f"wrote {folder}; serve it with `python -m http.server -d {folder}`")
        for shot in shots:
            console.print(f"wrote {shot}")
    return {"folder": str(folder), "screenshots": [str(p) for p in shots]}


def add_site(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out", default="site", help="the site's folder (default: site/), replaced whole")
    s.add_argument(
        "--screenshots",
        metavar="DIR",
        help="then run each demo in headless Chromium and save site-<demo>.png into DIR",
    )
