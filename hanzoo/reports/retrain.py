"""`hanzoo reproduce --retrain`: the models a reproduction covers, trained again from nothing, and timed.

Each model trains in a `hanzoo train` process of its own, `jobs` at a time. A sweep runs on one torch
thread (the trainer's default), so two jobs keep a 2-core machine's two cores busy. The CIFAR-10
backbone trains first and alone, on every core, because its heads read its features; it gets a cache
folder of its own, so a finished checkpoint from an earlier run is never reused. Every model keeps the
LR grid its shipped record states.

With `out`, the folders go to out/<id> and the shipped models stay as they are (the CIFAR-10 heads then
read the shipped backbone's features). The report gives each model's wall time, each family's, the
whole run's, and each selected test figure beside the shipped one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import torch

from .. import provenance
from ..errors import HanzooError
from ..files import written_atomically
from ..zoo import registry
from .reproduce import COVERED, family_of

WORK_DIR = Path("runs") / "retrain"  # logs, caches and the report when there is no --out


def stages(ids: list[str]) -> list[list[str]]:
    """The order to train in: backbones alone first, then everything else, the longest shipped
    training first (a long one started last would leave the other core idle at the end)."""
    backbones = [m for m in ids if registry.get(m).family == "backbone"]
    rest = [m for m in ids if m not in backbones]
    rest.sort(key=lambda m: -(registry.get(m).metrics.get("wall_seconds") or 0))
    return [[b] for b in backbones] + ([rest] if rest else [])


def command(model_id: str, out: Path | None, extra: list[str]) -> list[str]:
    entry = registry.get(model_id)
    cmd = [sys.executable, "-m", "hanzoo", "train", model_id, "--json"]
    if entry.family != "backbone":
        cmd += ["--threads", "1"]
        lrs = entry.metrics.get("protocol", {}).get("lrs")
        if lrs:
            cmd += ["--lrs", ",".join(map(str, lrs))]
    if out is not None:
        cmd += ["--out", str(out / model_id)]
    return cmd + extra


def _train_one(model_id: str, out: Path | None, logs: Path, extra: list[str], cache: Path) -> dict:
    log = logs / f"{model_id}.log"
    env = os.environ | {"HANZOO_CACHE": str(cache)}
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(command(model_id, out, extra), stdout=f, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise HanzooError(f"retraining {model_id} failed (exit {done.returncode}); its output is in {log}")
    return {"model": model_id, "family": family_of(model_id), "wall_seconds": seconds}


def _test_figure(folder: Path, model_id: str) -> dict:
    """The selected run's test figure of a trained folder, and of the shipped model."""
    entry = registry.get(model_id)
    metric = entry.metrics["metric"]
    got = json.loads((folder / "metrics.json").read_text())
    return {
        "metric": metric,
        "test": got["selected"]["test"][metric],
        "shipped_test": entry.metrics["selected"]["test"][metric],
    }


def run(
    ids: list[str] | None = None,
    out: Path | None = None,
    jobs: int = 2,
    extra: list[str] | None = None,
    say=print,
) -> dict:
    """Retrain `ids` (default: every model the reproduction covers); returns the report."""
    ids = list(ids or COVERED)
    for m in ids:
        registry.get(m)  # an unknown id fails here, before hours of training
    logs = (out or WORK_DIR) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cache = logs.parent / "cache"  # features and checkpoints of this retrain only
    started = time.perf_counter()
    done: list[dict] = []
    for stage in stages(ids):
        with ThreadPoolExecutor(min(jobs, len(stage))) as pool:  # a backbone's stage is itself alone
            futures = [pool.submit(_train_one, m, out, logs, extra or [], cache) for m in stage]
            for f in as_completed(futures):  # say each as it finishes
                if f.exception():  # the queued ones are dropped; those already training finish
                    for g in futures:
                        g.cancel()
                r = f.result()
                r |= _test_figure(out / r["model"] if out else registry.get(r["model"]).dir, r["model"])
                say(
                    f"[{len(done) + 1}/{len(ids)}] {r['model']}: {r['wall_seconds'] / 60:.1f} min, "
                    f"test {r['metric']} {r['test']:.4g} (shipped {r['shipped_test']:.4g})"
                )
                done.append(r)
    families: dict[str, float] = {}
    for r in done:
        families[r["family"]] = families.get(r["family"], 0.0) + r["wall_seconds"]
    return {
        "machine": f"{provenance.cpu_name()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "git_commit": provenance.git_commit(),
        "jobs": jobs,
        "wall_seconds": time.perf_counter() - started,
        "families": families,
        "models": done,
    }


def recorded_minutes(ids: list[str]) -> tuple[float, int]:
    """What the shipped models' own training took here, from their records: (minutes, how many of `ids`
    have a recorded time)."""
    known = [registry.get(m).metrics.get("wall_seconds") for m in ids]
    return sum(k for k in known if k) / 60, sum(1 for k in known if k)


def write_report(report: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return path
