r"""A variant of the CIFAR-10 backbone's CPU recipe, judged on validation accuracy against the shipped one.

    python experiments/cifar_recipe.py [--crop sample] [--ema 0.99] [--epochs 30] \
        [--widths 16,32,64,128] [--precision fp32] [--out runs/cifar10-backbone-variant]

Trains the same recipe with the variant's changes and writes a complete model folder under runs/ (never
pretrained/). Decision rule, fixed before each run: the variant replaces the shipped recipe only if its
validation accuracy (the 5000 held-out training images, last epoch) is higher and its training took at
most 30 minutes on 2 otherwise idle cores; the test figure is recorded, not used.

Variants run so far:
- one crop offset per image and an EMA of the weights (0.99), 30 epochs: not adopted;
- widths 24-48-96-192 in bfloat16 autocast, 52 epochs (sized to fit 30 minutes at the 30.7 s an epoch
  measured on the 2-core development machine):
  `--crop batch --ema 0 --widths 24,48,96,192 --precision bf16 --epochs 52`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from hanzoo.training import backbone
from hanzoo.training.protocols import BackboneRecipe
from hanzoo.zoo import registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crop", default="sample", choices=("batch", "sample"))
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--widths", default="16,32,64,128", help="conv widths, comma-separated")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/cifar10-backbone-variant")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = replace(
        BackboneRecipe(),
        crop=args.crop,
        ema_decay=args.ema,
        epochs=args.epochs,
        widths=tuple(int(w) for w in args.widths.split(",")),
        precision=args.precision,
    )
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
