"""`hanzoo list`, `info`, `eval`, `download` and `push`: the catalogue and the Hub."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from ..publishing import hub
from ..publishing.hub import load
from ..runtimes.predict import (
    model_io,
)
from ..storage.card import fmt
from ..storage.evaluate import evaluate_model
from ..zoo import pins, registry
from ..zoo.formats import FORMATS
from ..zoo.tasks import get_task
from .common import console


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
    images = registry.get(model_id).config.takes_images
    names = [n for f in FORMATS.values() if f.covers(images) for n in f.files]
    files = {
        name: {"path": str(folder / name), "exists": (folder / name).is_file()}
        for name in (*names, "manifest.json")
    }
    return {"folder": str(folder), "files": files}


def _spec(v: dict) -> str:
    tflite = f" ({v['tflite_dtype']} in model.tflite)" if "tflite_dtype" in v else ""
    return f"{v['name']} {v['dtype']} [{', '.join(map(str, v['shape']))}]{tflite}"


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
    scores = evaluate_model(net, task)
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


def add_info(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id")


def add_eval(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id or folder")


def add_download(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id")
    s.add_argument("--format", default="torch", choices=["torch", *registry.ARTIFACTS])
    s.add_argument("--revision", help="Hub revision (default: the pinned one)")


def add_push(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id")
    s.add_argument("--repo", required=True, help="ORG/NAME")
    s.add_argument("--token", help="Hub token (default: the one huggingface_hub has stored)")
    s.add_argument("--private", action="store_true")
