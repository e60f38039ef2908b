"""The `hanzoo` command line. Every command takes --json; every failure is one line and exit 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import HanzooError
from .files import written_atomically
from .publishing import hub
from .publishing.export import export, export_variants, parse_formats
from .publishing.hub import load
from .reports import bench, reproduce, retrain, site
from .runtimes import arm
from .runtimes.predict import (
    check_output_path,
    first_row,
    model_io,
    predict,
    read_images,
    read_inputs,
    to_csv,
    write_outputs,
)
from .runtimes.sessions import get_runtime
from .runtimes.verify import failures, verify
from .storage import store
from .storage.card import fmt
from .storage.evaluate import evaluate, evaluate_parts
from .storage.store import read_config, resolve
from .training import backbone
from .training.official import import_official
from .training.train import protocol_for, train_model
from .version import __version__
from .zoo import pins, registry
from .zoo.tasks import get_task

# Off a terminal (pipes, CI logs) rich assumes 80 columns, too narrow for the model table.
console = Console() if sys.stdout.isatty() else Console(width=200)


def _headline(entry: registry.ModelEntry) -> dict | None:
    """The shipped test metric of a model: selected run and mean +- std over seeds."""
    m = entry.metrics
    if not m.trained:
        return None
    seeds = m.spread("test")
    return {"metric": m.metric, "test": m.value("test"), "mean": seeds["mean"], "std": seeds["std"]}


def _entry_dict(e: registry.ModelEntry) -> dict:
    c = e.config
    return {
        "id": e.id,
        "task": e.task,
        "family": e.family,
        "arch": e.arch,
        "params": c.num_params,
        "activation_ratio": round(c.activation_ratio, 6),
        "shipped": e.shipped,
        # published: hanzoo.load fetches it from the Hub where it is not here (the wheel's image models)
        "on_hub": bool(pins.files(e.id)),
        "test_metric": _headline(e),
    }


def check_out_folder(path: str | None, flag: str, replaces: str | None = None) -> None:
    """Refuse a folder that cannot be written before any work is done (training takes hours, and its
    writer would only fail at the end). With `replaces`, the command swaps the folder in whole, so an
    existing folder must be empty or one it wrote before (holding `replaces`): never a user's other files."""
    if not path:
        return
    p = Path(path)
    # os.path's tests answer False rather than raise on an unreadable parent; the write then names it
    if os.path.lexists(p) and not os.path.isdir(p):
        raise HanzooError(f"cannot write {flag} {p}: it is a file, not a folder")
    if replaces and os.path.isdir(p) and not (p / replaces).exists():
        try:
            others = any(p.iterdir())
        except OSError as e:
            raise HanzooError(f"cannot read {flag} {p}: {e.strerror}") from None
        if others:
            raise HanzooError(
                f"{flag} {p} already holds other files, and hanzoo replaces this folder whole; "
                "give a new or empty folder"
            )
    base = p if os.path.isdir(p) and not replaces else p.parent
    while not os.path.exists(base) and base != base.parent:
        base = base.parent
    if not os.path.isdir(base):
        raise HanzooError(f"cannot write {flag} {p}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise HanzooError(f"cannot write {flag} {p}: no permission to write in {base}")


def cmd_list(args) -> dict:
    rows = [_entry_dict(e) for e in registry.MODELS.values()]
    if not args.json:
        t = Table(title="hanzoo models")
        for col in (
            "id",
            "task",
            "depth x width",
            "params",
            "AR %",
            "test metric (selected; mean +- std)",
            "weights",
        ):
            t.add_column(col, justify="right" if col in ("params", "AR %") else "left")
        for r in rows:
            h = r["test_metric"]
            metric = "-"
            if h:
                test, mean, std = (fmt(h["metric"], h[k]) for k in ("test", "mean", "std"))
                metric = f"{h['metric']} {test} ({mean} +- {std})"
            t.add_row(
                r["id"],
                r["task"],
                r["arch"],
                str(r["params"]),
                f"{100 * r['activation_ratio']:.2f}",
                metric,
                "shipped" if r["shipped"] else "on the Hub" if r["on_hub"] else "-",
            )
        console.print(t)
    return {"models": rows}


def _exports(model_id: str) -> dict:

    folder = registry.EXPORT_DIR / model_id
    files = {
        name: {"path": str(folder / name), "exists": (folder / name).is_file()}
        for name in (*registry.ARTIFACTS.values(), "manifest.json")
    }
    return {"folder": str(folder), "files": files}


def _spec(v: dict) -> str:
    return f"{v['name']} {v['dtype']} [{', '.join(map(str, v['shape']))}]"


def cmd_info(args) -> dict:

    e = registry.get(args.model)
    info = (
        _entry_dict(e)
        | {
            "description": e.description,
            "config": e.config.to_dict(),
            "paper": e.paper,
            "files": e.files,
            "folder": str(e.dir),
        }
        | model_io(e.id, e.task, e.config)
        | {"exports": _exports(e.id)}
    )
    if not args.json:
        for k in (
            "id",
            "description",
            "task",
            "arch",
            "params",
            "activation_ratio",
            "shipped",
            "folder",
            "files",
        ):
            console.print(f"[bold]{k}[/]: {info[k]}")
        console.print(
            "[bold]blocks[/]: "
            + ", ".join(
                f"{b['repeat']}x {b['kind']}({b['width']}, {b['act']})" for b in info["config"]["blocks"]
            )
            + f", head -> {e.config.out_features}; init {e.config.init}"
        )
        for v in info["inputs"]:
            console.print(f"[bold]input[/]: {escape(_spec(v))}: {escape(v['meaning'])}", highlight=False)
            for c in v.get("columns", []):
                console.print(f"  {escape(c['name'])}: {escape(c['unit'])}", highlight=False)
        for v in info["outputs"]:
            console.print(f"[bold]output[/]: {escape(_spec(v))}: {escape(v['meaning'])}", highlight=False)
        for f in info["exports"]["files"].values():
            state = "exists" if f["exists"] else "missing: run `hanzoo export`"
            console.print(f"[bold]export[/]: {escape(f['path'])} ({state})", highlight=False)
        console.print(f"[bold]paper[/]: {e.paper}")
        if info["test_metric"]:
            console.print(f"[bold]measured[/]: {info['test_metric']}")
    return info


def cmd_download(args) -> dict:
    paths = hub.download(args.model, args.format, args.revision)
    if not args.json:
        for name, path in paths.items():
            console.print(f"{name}: {path}")
    return {"model": args.model, "format": args.format, "files": {k: str(v) for k, v in paths.items()}}


def cmd_push(args) -> dict:
    commit = hub.push(args.model, args.repo, token=args.token, private=args.private)
    if not args.json:
        console.print(f"pushed {args.model} to {args.repo} at commit {commit}")
    return {"model": args.model, "repo": args.repo, "commit": commit}


def cmd_eval(args) -> dict:

    net = load(args.model)
    task = get_task(net.meta["task"])
    # image models score the vendored test split alone: their training images are not in the package
    scores = (
        evaluate_parts(net, task, {"test": task.test_data()})
        if net.config.takes_images
        else evaluate(net, task, task.split())
    )
    card = net.metrics.scores
    out = {
        "model": net.meta["model_id"],
        "folder": str(net.folder),
        "task": task.name,
        "metric": task.metric,
        "scores": scores,
        "card": {s: card[s][task.metric] for s in ("train", "test") if s in card},
    }
    if not args.json:
        t = Table(title=f"{out['model']} on {task.name}", caption=str(net.folder))
        for col in ("split", task.metric, "on the card"):
            t.add_column(col, justify="right")
        for s in scores:
            c = out["card"].get(s)
            t.add_row(
                s, fmt(task.metric, scores[s][task.metric]), fmt(task.metric, c) if c is not None else "-"
            )
        console.print(t)
    return out


def cmd_train(args) -> dict:

    entry = registry.get(args.model)
    check_out_folder(args.out, "--out", replaces="config.json")
    if entry.family == "backbone":
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
        recipe = replace(backbone.Recipe(), **({"epochs": args.epochs} if args.epochs else {}))
        folder = backbone.train_and_package(entry, args.out, recipe, progress=not args.json)
        sel = store.read_metrics(folder)["selected"]
        if not args.json:
            console.print(f"wrote {folder}: test top-1 error {sel['test']['top1_error']:.2f}%")
        return {"model": entry.id, "folder": str(folder), "selected": sel}
    protocol = protocol_for(entry.id, args.iterations, args.epochs, args.seeds, args.lrs)
    torch.set_num_threads(args.threads or 1)
    folder = train_model(
        entry.id,
        args.out,
        inits=args.init,
        protocol=protocol,
        progress=not args.json,
        compile=not args.no_compile,
        reuse_sweep=args.reuse_sweep,
    )
    record = store.read_metrics(folder)
    sel, metric = record["selected"], record.metric
    if not args.json:
        console.print(
            f"wrote {folder}: selected init {sel['init']}, LR {sel['lr']}, seed {sel['seed']}; "
            f"test {metric} {fmt(metric, record.value('test'))}"
        )
    return {"model": entry.id, "folder": str(folder), "selected": sel}


def cmd_import_official(args) -> dict:

    registry.get(args.model)  # an unknown id is named first
    check_out_folder(args.dest, "dest", replaces="config.json")
    folder = import_official(Path(args.src), Path(args.dest), args.model)
    if not args.json:
        console.print(f"wrote {folder}; run `hanzoo eval {folder}` to score it")
    return {"folder": str(folder), "evaluation": store.read_metrics(folder)["evaluation"]}


def cmd_export(args) -> dict:

    ids = _export_ids(args)
    if args.precision:
        return _export_variants(args, ids)
    formats = parse_formats(args.format or list(registry.ARTIFACTS))
    check_out_folder(args.out, "--out", replaces="manifest.json")
    done = []
    for model in ids:
        folder = export(model, formats, Path(args.out) if args.out else None)
        manifest = json.loads((folder / "manifest.json").read_text())
        done.append(
            {"model": model, "folder": str(folder), "files": manifest["files"], "parity": manifest["parity"]}
        )
        if not args.json:
            sizes = ", ".join(
                f"{k} {v['bytes']} B" for k, v in manifest["files"].items() if k.startswith("model.")
            )
            console.print(f"wrote {folder}: {sizes} ({manifest['params']} params)")
    return {"exports": done}


def _export_ids(args) -> list:
    """The models `hanzoo export` was asked for: one id or folder, or --all."""
    ids = registry.shipped() if args.all else [args.model]
    if not ids or ids == [None]:
        raise HanzooError("name a model id or folder, or pass --all")
    if args.out and len(ids) > 1:
        raise HanzooError("--out takes one model; drop --all or --out")
    return ids


def _export_variants(args, ids: list) -> dict:
    formats = [f.strip() for f in args.format.split(",") if f.strip()] if args.format else None
    done = []
    for model in ids:
        folder = export_variants(model, args.precision, formats, Path(args.out) if args.out else None)
        manifest = json.loads((folder / "manifest.json").read_text())
        parity = manifest["parity"]["runtimes"]
        runs = {k: v for k, v in parity.items() if v.get("precision") == args.precision}
        done.append({"model": model, "folder": str(folder), "parity": runs})
        if not args.json:
            for name, r in runs.items():
                state = "ok" if r["ok"] else "outside its tolerance"
                console.print(
                    f"{folder}: {name} {manifest['parity']['reference']['metric']} {r['metric']:.6g} "
                    f"(fp32 {manifest['parity']['reference']['value']:.6g}; {state}), "
                    f"max abs error {r['max_abs_err']:.3g}"
                )
    return {"exports": done}


def cmd_site(args) -> dict:
    check_out_folder(args.out, "--out", replaces="index.html")
    folder = site.build(Path(args.out))
    shots = site.screenshots(folder, Path(args.screenshots)) if args.screenshots else []
    if not args.json:
        console.print(f"wrote {folder}; serve it with `python -m http.server -d {folder}`")
        for shot in shots:
            console.print(f"wrote {shot}")
    return {"folder": str(folder), "screenshots": [str(p) for p in shots]}


def cmd_verify(args) -> dict:

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
    if not args.no_latency and not bad:
        for rep in timed:
            # the fp32 files, against the baselines' (variants are timed in docs/quantization.md)
            rt = [r for r in rep["runtimes"] if get_runtime(r).precision == "fp32"] + ["torch"]
            batches = (1, 64) if registry.get(rep["model_id"]).config.takes_images else (1, 1024)
            timing = bench.bench([rep["model_id"]], rt, batches, 1, rounds=7)
            rep["latency"] = [c for c in timing["cells"]]
            rep["latency_batches"] = list(batches)
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
    bad = [
        f"{m} {rt}" for m, rep in report["models"].items() for rt, r in rep["runtimes"].items() if not r["ok"]
    ]
    if not args.json:
        t = Table(title=f"parity on emulated aarch64 ({report['cpu']}) against torch fp32 on this machine")
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
        for m, rep in report["models"].items():
            for rt, r in rep["runtimes"].items():
                metric, ref = fmt(rep["metric"], r["metric"]), fmt(rep["metric"], rep["reference"])
                ok = "ok" if r["ok"] else "FAIL"
                t.add_row(
                    m,
                    rt,
                    str(rep["rows"]),
                    f"{r['max_abs_err']:.2e}",
                    metric,
                    ref,
                    str(r["decisions_differ"]),
                    ok,
                )
        console.print(t)
    if bad:
        raise HanzooError("aarch64 parity failed: " + ", ".join(bad))
    return report


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


def cmd_bench(args) -> dict:

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
                "benchmarks.json": lambda p: p.write_text(json.dumps(report, indent=2) + "\n"),
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
        known = [registry.get(m).metrics.get("wall_seconds") for m in ids]
        estimate = sum(k for k in known if k)
        console.print(
            f"retraining {len(ids)} models, {args.jobs} at a time; the shipped ones took "
            f"{estimate / 60:.0f} min of training here ({sum(1 for k in known if k)} of {len(ids)} "
            "have a recorded time)"
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


def _positive(text: str) -> int:
    """A whole number of at least 1: a thread count, round count, batch size or iteration count."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _csv(kind):
    def parse(text: str):
        try:
            return tuple(kind(v) for v in text.split(",") if v)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}, got {text!r}"
            ) from None

    return parse


class UsageError(HanzooError):
    """A command line argparse cannot parse."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits 2; hanzoo's contract is one line and exit 1 for every failure
    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# --- the command line: one `_add_<command>` per command that takes arguments, then the table of commands ---

_EXPORT_HELP = (
    "the export folder to {verb} (default: the bundled export of the model's id); "
    "for a folder of your own, the one `hanzoo export FOLDER --out EXP` wrote"
)


def _add_info(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id")


def _add_eval(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id or folder")


def _add_train(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id")
    s.add_argument("--out", help="model folder to write (default: pretrained/<id>)")
    s.add_argument(
        "--init", type=_csv(str), help="inits to sweep, e.g. han-normal,han-authors (default: the config's)"
    )
    s.add_argument("--iterations", type=_positive, help="override the protocol's iteration count")
    s.add_argument(
        "--epochs",
        type=_positive,
        help="override the epoch count (regression protocol, or the CIFAR-10 backbone recipe)",
    )
    s.add_argument("--seeds", type=_csv(int), help="override the seeds, e.g. 0,1,2")
    s.add_argument("--lrs", type=_csv(float), help="override the learning-rate grid")
    s.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="torch threads (default: 1 for the stacked sweeps, every core for a backbone)",
    )
    s.add_argument("--no-compile", action="store_true", help="train eagerly instead of with torch.compile")
    s.add_argument(
        "--reuse-sweep",
        action="store_true",
        help="skip stage 1: reselect from the sweep recorded in the model folder, then refit",
    )


def _add_export(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", nargs="?", help="model id or folder")
    s.add_argument("--all", action="store_true", help="every shipped model")
    s.add_argument(
        "--format",
        default=None,
        help="comma-separated: onnx, ort, tflite, pte (default: all; with --precision: onnx, tflite)",
    )
    s.add_argument("--out", help="export folder (default: export/<id>)")
    s.add_argument(
        "--precision",
        choices=registry.PRECISIONS,
        help="add reduced-precision variants (model.fp16.onnx, model.int8.tflite, ...) to an existing "
        "export folder, calibrated on the training split (see docs/quantization.md)",
    )


def _add_verify(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", nargs="?", help="model id, or a model folder (from `hanzoo train --out`)")
    s.add_argument("--all", action="store_true", help="every shipped model")
    s.add_argument("--export", help=_EXPORT_HELP.format(verb="check"))
    s.add_argument("--runtime", help="comma-separated runtimes (default: every artifact present)")
    s.add_argument(
        "--no-latency", action="store_true", help="parity only, without timing against the FCNet baseline"
    )
    s.add_argument(
        "--arch",
        choices=["aarch64"],
        help="run the shipped exports on emulated arm64 (qemu-user, a Cortex-A76) instead; the environment "
        "is fetched once into the cache (needs mmdebstrap and dpkg-deb)",
    )
    s.add_argument("--report", metavar="JSON", help="with --arch: also write the figures to this file")


def _add_site(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out", default="site", help="the site's folder (default: site/), replaced whole")
    s.add_argument(
        "--screenshots",
        metavar="DIR",
        help="then run each demo in headless Chromium and save site-<demo>.png into DIR",
    )


def _add_bench(s: argparse.ArgumentParser) -> None:
    s.add_argument("models", nargs="*", help="model ids (default: every shipped HanNet)")
    s.add_argument("--all", action="store_true", help="every shipped model")
    s.add_argument(
        "--runtime",
        help="comma-separated: torch, onnxruntime, ort-mobile, litert, executorch, torch-cuda, "
        "onnxruntime-web",
    )
    s.add_argument("--batch", type=_csv(_positive), help="batch sizes (default 1,64,1024)")
    s.add_argument(
        "--threads", type=_positive, default=1, help="threads per runtime (default 1, as on a phone)"
    )
    s.add_argument("--rounds", type=_positive, default=21, help="interleaved rounds per cell (default 21)")
    s.add_argument("--quick", action="store_true", help="batches 1 and 1024, 5 rounds")
    s.add_argument("--markdown", action="store_true", help="print the markdown table")
    s.add_argument(
        "--report", help="write benchmarks.md, .json and .png (with lower bounds) into this folder"
    )


def _add_reproduce(s: argparse.ArgumentParser) -> None:
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
    s.add_argument(
        "--jobs", type=_positive, default=2, help="with --retrain: trainings at a time (default 2)"
    )
    s.add_argument(
        "--report",
        help="with --retrain: the timing report's path (default: OUT/retrain.json or runs/retrain/)",
    )


def _add_predict(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id or folder")
    s.add_argument(
        "--input", required=True, help="CSV with the model's input columns, or an .npy [rows, n_in]"
    )
    s.add_argument(
        "--runtime",
        default="onnxruntime",
        help="onnxruntime (default), ort-mobile, litert, executorch or torch",
    )
    s.add_argument("--output", help="CSV or .npy to write (default: CSV on stdout)")
    s.add_argument("--export", help=_EXPORT_HELP.format(verb="run"))
    s.add_argument("--threads", type=_positive, default=1, help="runtime threads (default 1)")


def _add_download(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id")
    s.add_argument("--format", default="torch", choices=["torch", *registry.ARTIFACTS])
    s.add_argument("--revision", help="Hub revision (default: the pinned one)")


def _add_push(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id")
    s.add_argument("--repo", required=True, help="ORG/NAME")
    s.add_argument("--token", help="Hub token (default: the one huggingface_hub has stored)")
    s.add_argument("--private", action="store_true")


def _add_import_official(s: argparse.ArgumentParser) -> None:
    s.add_argument("src", help="the authors' .safetensors file")
    s.add_argument("dest", help="model folder to write")
    s.add_argument("--model", required=True, help="the registry id whose architecture it has")


def _commands() -> list[tuple]:
    """(name, command, help, what adds its arguments), in the order `hanzoo --help` lists them; built at
    each call, so the commands are looked up when a parser is made."""
    return [
        ("list", cmd_list, "List every model in the registry.", None),
        ("info", cmd_info, "Show one registry entry.", _add_info),
        ("eval", cmd_eval, "Evaluate a shipped model (by id) or a model folder on its task.", _add_eval),
        (
            "train",
            cmd_train,
            "Train a registry model with the paper's protocol (all runs stacked).",
            _add_train,
        ),
        (
            "export",
            cmd_export,
            "Export a model to ONNX, ORT and TFLite in rank-one form, with test data and a manifest.",
            _add_export,
        ),
        (
            "verify",
            cmd_verify,
            "Check every exported artifact against the torch fp32 reference on the whole test split.",
            _add_verify,
        ),
        (
            "bench",
            cmd_bench,
            "Time models in every runtime beside their FCNet baselines (interleaved, medians).",
            _add_bench,
        ),
        (
            "site",
            cmd_site,
            "Build the static model gallery, with live demos in onnxruntime-web (serve it from any host).",
            _add_site,
        ),
        (
            "reproduce",
            cmd_reproduce,
            "Regenerate docs/reproduction.md (paper Tables 3-5, Figures 1 and 6) from the shipped models.",
            _add_reproduce,
        ),
        (
            "predict",
            cmd_predict,
            "Run a shipped model on raw inputs from CSV (with a header) or .npy.",
            _add_predict,
        ),
        (
            "download",
            cmd_download,
            "Fetch a model's files from the Hub into the HF cache, checked by sha256.",
            _add_download,
        ),
        ("push", cmd_push, "Upload a shipped model to a Hub repo in hanzoo's layout.", _add_push),
        (
            "import-official",
            cmd_import_official,
            "Convert the paper authors' checkpoint into a model folder.",
            _add_import_official,
        ),
    ]


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hanzoo", description="A model zoo of HanNets for edge deployment.")
    p.add_argument("--version", action="version", version=f"hanzoo {__version__}")
    p.add_argument("--offline", action="store_true", help="make no network call (as HF_HUB_OFFLINE=1)")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn, about, add_arguments in _commands():
        s = sub.add_parser(name, help=about, description=about)
        s.add_argument("--json", action="store_true", help="print machine-readable JSON")
        s.set_defaults(fn=fn)
        if add_arguments:
            add_arguments(s)
    return p


def _fail(message: str) -> int:
    # one line, whatever the message (a runtime's own error text can span several)
    print(
        "hanzoo: error: " + " ".join(line.strip() for line in message.splitlines() if line.strip()),
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except UsageError as e:
        return _fail(str(e))
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        result = args.fn(args)
    except HanzooError as e:
        return _fail(str(e))
    except OSError as e:
        # The commands turn the failures they expect into HanzooErrors that say what to do; this is the
        # last resort for one they did not foresee (a file vanishing mid-run), still one line naming it.
        return _fail(
            f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e) or type(e).__name__
        )
    except KeyboardInterrupt:
        print("hanzoo: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
