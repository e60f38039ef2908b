r"""A variant of the CIFAR-10 backbone's CPU recipe, judged on validation accuracy against the shipped one.

    python experiments/cifar_recipe.py [--crop sample] [--ema 0.99] [--epochs 30] \
        [--out runs/cifar10-backbone-variant]

The shipped recipe (hanzoo.backbone.Recipe) crops with one offset per batch and ships the last
iterate. This trains the same net for the same epochs with one crop offset per image and an exponential
moving average of the weights, and writes a complete model folder under runs/ (never pretrained/).
Decision rule, fixed before the run: the variant replaces the shipped recipe only if its validation
accuracy (the 5000 held-out training images) is higher; the test figure is recorded, not used.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from hanzoo import backbone, registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crop", default="sample", choices=("batch", "sample"))
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/cifar10-backbone-variant")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = replace(backbone.Recipe(), crop=args.crop, ema_decay=args.ema, epochs=args.epochs)
    out = Path(args.out)
    folder = backbone.train_and_package(
        registry.get("cifar10-backbone"), out / "model", recipe, progress=False, workdir=out / "run"
    )
    m = json.loads((folder / "metrics.json").read_text())
    shipped = registry.get("cifar10-backbone").metrics["selected"]
    acc = lambda sel, s: round(100 - sel[s]["top1_error"], 2)  # noqa: E731
    print(
        json.dumps(
            {
                "recipe": m["recipe"],
                "minutes": round(m["wall_seconds"] / 60, 1),
                "variant": {s: acc(m["selected"], s) for s in ("val", "test")},
                "shipped": {s: acc(shipped, s) for s in ("val", "test")},
                "adopt (validation only)": acc(m["selected"], "val") > acc(shipped, "val"),
            }
        )
    )


if __name__ == "__main__":
    main()
