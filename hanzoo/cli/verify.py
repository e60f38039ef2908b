"""`hanzoo verify` (parity, optionally latency; or emulated aarch64 or Cortex-M) and `hanzoo predict`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.table import Table

from ..errors import HanzooError
from ..reports import bench
from ..runtimes import arm, mcu
from ..runtimes.predict import (
    check_output_path,
    first_row,
    predict,
    read_images,
    read_inputs,
    to_csv,
    write_outputs,
)
from ..runtimes.sessions import get_runtime
from ..runtimes.verify import failures, verify
from ..storage.card import fmt
from ..storage.store import read_config, resolve
from ..zoo import registry
from ..zoo.tasks import get_task
from .common import EXPORT_HELP, console, positive


def cmd_verify(args) -> dict:

    if args.arch == "cortex-m":
        return _verify_mcu(args)
    if args.arch:
        return _verify_arm(args)
    runtimes = [get_runtime(r).name for r in args.runtime.split(",")] if args.runtime else None
    ids = registry.shipped() if args.all else [args.model]
    if not ids or ids == [None]:
        raise HanzooError("name a model id or folder, or pass --all")
    if args.export and len(ids) > 1:
        raise HanzooError("--export takes one model; drop --all or --export")
    reports = [verify(m, runtimes, export_dir=Path(args.export) if args.export else None) for m in ids]
    bad = [line for rep in reports for line in failures(rep)]
    # latency is timed for the shipped models (against their shipped baselines); a user's folder gets parity
    timed = [rep for rep in reports if rep["model_id"] in registry.MODELS and not args.export]
    if args.latency and not bad:
        for rep in timed:
            rep["latency"], rep["latency_batches"] = bench.latency_check(rep["model_id"], rep["runtimes"])
    if not args.json:
        for rep in reports:
            _verify_table(rep)
    if bad:
        raise HanzooError("parity failed: " + "; ".join(bad))
    return {"reports": reports}


def _verify_arm(args) -> dict:
    ids = registry.shipped() if args.all else [args.model]
    if not ids or ids == [None] or not all(i in registry.MODELS for i in ids):
        raise HanzooError("--arch takes shipped model ids (or --all)")
    report = arm.verify_arm(ids, progress=not args.json)
    if args.report:
        arm.write_report(report, Path(args.report))
    bad = [f"{m} {rt}" for m, rep in report.models.items() for rt, r in rep.runtimes.items() if not r.ok]
    if not args.json:
        t = Table(title=f"parity on emulated aarch64 ({report.cpu}) against torch fp32 on this machine")
        for col in (
            "model",
            "runtime",
            "rows",
            "max abs err",
            "metric",
            "reference",
            "decisions differ",
            "parity",
        ):
            t.add_column(col, justify="right")
        for m, rep in report.models.items():
            for rt, r in rep.runtimes.items():
                metric, ref = fmt(rep.metric, r.metric), fmt(rep.metric, rep.reference)
                ok = "ok" if r.ok else "FAIL"
                t.add_row(
                    m, rt, str(rep.rows), f"{r.max_abs_err:.2e}", metric, ref, str(r.decisions_differ), ok
                )
        console.print(t)
    if bad:
        raise HanzooError("aarch64 parity failed: " + ", ".join(bad))
    return report.to_json()


def _verify_mcu(args) -> dict:
    mlps = [m for m in registry.shipped() if not registry.get(m).config.takes_images]
    ids = mlps if args.all else [args.model]
    if not ids or ids == [None] or not all(i in mlps for i in ids):
        raise HanzooError(
            "--arch cortex-m takes shipped MLP ids (or --all): the C export covers no image model"
        )
    report = mcu.verify_mcu(ids, progress=not args.json)
    if args.report:
        mcu.write_report(report, Path(args.report))
    bad = [f"{m} {t}" for m, rep in report.models.items() for t, b in rep.targets.items() if not b.parity.ok]
    if not args.json:
        t = Table(title="the C export on emulated Cortex-M cores against torch fp32 on this machine")
        for col in ("model", "core", "flash B", "RAM B", "instructions a row", "rows", "max abs err",
                    "decisions differ", "parity"):  # fmt: skip
            t.add_column(col, justify="right")
        for m, rep in report.models.items():
            for core, b in rep.targets.items():
                p = b.parity
                t.add_row(m, core, str(b.flash_bytes), str(b.ram_bytes), str(b.instructions_per_row),
                          str(p.rows), f"{p.max_abs_err:.2e}", str(p.decisions_differ),
                          "ok" if p.ok else "FAIL")  # fmt: skip
        console.print(t)
    if bad:
        raise HanzooError("Cortex-M parity failed: " + ", ".join(bad))
    return report.to_json()


def _verify_table(rep: dict) -> None:
    ref = rep["reference"]
    lat = {(c["model"], c["runtime"], c["batch"]): c for c in rep.get("latency", [])}
    base = next((c["model"] for c in rep.get("latency", []) if c["model"] != rep["model_id"]), None)
    t = Table(
        title=f"{rep['model_id']}: parity on the whole test split ({ref['rows']} rows) against torch fp32"
        + (f", and latency against {base} (1 thread)" if base else ""),
        caption=f"parity: max abs error <= {rep['tolerance_abs']:g} x max(1, output scale), "
        f"and the same {ref['metric']} "
        "(fp16/int8 variants: the metric within their own tolerance) "
        "(decisions may differ only on rows within that tolerance of the boundary: "
        f"{ref.get('rows_near_boundary', 0)} here); "
        "latency: median per call, ratio = HanNet / FCNet (below 1: HanNet faster)",
    )
    cols = ["runtime", "max abs err", ref["metric"], "parity"]
    batches = rep.get("latency_batches", [1, 1024])
    if base:
        for i, b in enumerate(batches):
            cols += [f"batch {b} us", "FCNet us" + " " * i, "ratio" + " " * i]
    for col in cols:
        t.add_column(col, justify="right")

    def timing(runtime: str) -> list[str]:
        if not base:
            return []
        if (rep["model_id"], runtime, batches[0]) not in lat:  # a variant: timed in docs/quantization.md
            return ["-"] * (3 * len(batches))
        row = []
        for b in batches:
            h, f = lat[(rep["model_id"], runtime, b)], lat[(base, runtime, b)]
            row += [
                f"{h['median_us']:.1f}",
                f"{f['median_us']:.1f}",
                f"{h['median_us'] / f['median_us']:.2f}x",
            ]
        return row

    t.add_row("torch (reference)", "-", fmt(ref["metric"], ref["value"]), "-", *timing("torch"))
    for name, r in rep["runtimes"].items():
        t.add_row(
            name + (f" ({r['path']})" if r.get("path") else ""),
            f"{r['max_abs_err']:.2e}",
            fmt(ref["metric"], r["metric"]),
            "[green]ok[/]" if r["ok"] else "[red]FAIL[/]",
            *timing(name),
        )
    console.print(t)
    for name, why in rep.get("not_run", {}).items():
        console.print(f"{name}: not run ({why})", markup=False)


def add_verify(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", nargs="?", help="model id, or a model folder (from `hanzoo train --out`)")
    s.add_argument("--all", action="store_true", help="every shipped model")
    s.add_argument("--export", help=EXPORT_HELP.format(verb="check"))
    s.add_argument("--runtime", help="comma-separated runtimes (default: every artifact present)")
    s.add_argument(
        "--latency",
        action="store_true",
        help="also time a shipped model against its FCNet baseline (1 thread; batch 1 and 1024, or 64 for "
        "images)",
    )
    s.add_argument("--no-latency", action="store_true", help=argparse.SUPPRESS)  # parity only: the default
    s.add_argument(
        "--arch",
        choices=["aarch64", "cortex-m"],
        help="run the shipped exports on emulated arm64 (qemu-user, a Cortex-A76) instead; the environment "
        "is fetched once into the cache (needs mmdebstrap and dpkg-deb). cortex-m: the MLPs' C export bare "
        "metal on a Cortex-M4F and a Cortex-M0+ (qemu-system-arm; needs gcc-arm-none-eabi, "
        "libnewlib-arm-none-eabi and qemu-system-arm), with flash, RAM and instructions per inference",
    )
    s.add_argument("--report", metavar="JSON", help="with --arch: also write the figures to this file")


def cmd_predict(args) -> dict:

    # everything that needs no model run is checked first, so a typo costs nothing
    get_runtime(args.runtime)
    if args.output:
        check_output_path(Path(args.output))
    meta = read_config(resolve(args.model))
    name, src = meta.get("model_id") or args.model, Path(args.input)
    if meta["architecture"].get("backbone"):
        x = read_images(src, name)
    else:
        x = read_inputs(src, get_task(meta["task"]).features, name)
    out = predict(
        args.model,
        x,
        args.runtime,
        args.threads,
        source=str(src),
        first_row=first_row(src),
        export_dir=Path(args.export) if args.export else None,
    )
    if args.output:
        write_outputs(out, Path(args.output))
        if not args.json:
            console.print(f"wrote {len(x)} predictions to {args.output} ({args.runtime})")
    elif not args.json:
        sys.stdout.write(to_csv(out))
    return {
        "runtime": args.runtime,
        "rows": len(x),
        "output": args.output,
        "predictions": {k: v.tolist() for k, v in out.items()} if not args.output else None,
    }


def add_predict(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id or folder")
    s.add_argument(
        "--input", required=True, help="CSV with the model's input columns, or an .npy [rows, n_in]"
    )
    s.add_argument(
        "--runtime",
        default="onnxruntime",
        help="onnxruntime (default), ort-mobile, litert, executorch, c (the C export, MLPs) or torch",
    )
    s.add_argument("--output", help="CSV or .npy to write (default: CSV on stdout)")
    s.add_argument("--export", help=EXPORT_HELP.format(verb="run"))
    s.add_argument("--threads", type=positive, default=1, help="runtime threads (default 1)")
