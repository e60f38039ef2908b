"""`hanzoo train` and `hanzoo import-official`: model folders from training or the authors' checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..storage import store
from ..storage.card import fmt
from ..training.official import import_official
from ..training.train import train
from ..zoo import registry
from .common import check_out_folder, console, csv_of, positive


def cmd_train(args) -> dict:

    entry = registry.get(args.model)
    check_out_folder(args.out, "--out", replaces="config.json")
    folder = train(
        entry.id,
        args.out,
        threads=args.threads,
        iterations=args.iterations,
        epochs=args.epochs,
        seeds=args.seeds,
        lrs=args.lrs,
        inits=args.init,
        progress=not args.json,
        compile=not args.no_compile,
        reuse_sweep=args.reuse_sweep,
    )
    record = store.read_metrics(folder)
    sel = record["selected"]
    if not args.json:
        if entry.family == "backbone":
            console.print(f"wrote {folder}: test top-1 error {sel['test']['top1_error']:.2f}%")
        else:
            console.print(
                f"wrote {folder}: selected init {sel['init']}, LR {sel['lr']}, seed {sel['seed']}; "
                f"test {record.metric} {fmt(record.metric, record.value('test'))}"
            )
    return {"model": entry.id, "folder": str(folder), "selected": sel}


def cmd_import_official(args) -> dict:

    registry.get(args.model)  # an unknown id is named first
    check_out_folder(args.dest, "dest", replaces="config.json")
    folder = import_official(Path(args.src), Path(args.dest), args.model)
    if not args.json:
        console.print(f"wrote {folder}; run `hanzoo eval {folder}` to score it")
    return {"folder": str(folder), "evaluation": store.read_metrics(folder)["evaluation"]}


def add_train(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", help="model id")
    s.add_argument("--out", help="model folder to write (default: pretrained/<id>)")
    s.add_argument(
        "--init", type=csv_of(str), help="inits to sweep, e.g. han-normal,han-authors (default: the config's)"
    )
    s.add_argument("--iterations", type=positive, help="override the protocol's iteration count")
    s.add_argument(
        "--epochs",
        type=positive,
        help="override the epoch count (regression protocol, or the CIFAR-10 backbone recipe)",
    )
    s.add_argument("--seeds", type=csv_of(int), help="override the seeds, e.g. 0,1,2")
    s.add_argument("--lrs", type=csv_of(float), help="override the learning-rate grid")
    s.add_argument(
        "--threads",
        type=positive,
        default=None,
        help="torch threads (default: 1 for the stacked sweeps, every core for a backbone)",
    )
    s.add_argument("--no-compile", action="store_true", help="train eagerly instead of with torch.compile")
    s.add_argument(
        "--reuse-sweep",
        action="store_true",
        help="skip stage 1: reselect from the sweep recorded in the model folder, then refit",
    )


def add_import_official(s: argparse.ArgumentParser) -> None:
    s.add_argument("src", help="the authors' .safetensors file")
    s.add_argument("dest", help="model folder to write")
    s.add_argument("--model", required=True, help="the registry id whose architecture it has")
