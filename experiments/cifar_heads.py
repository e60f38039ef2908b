"""The paper's head experiment (Section 3.2.3, Table 6) on our own frozen backbone's features.

    python experiments/cifar_heads.py [--features runs/cifar-backbone] [--out docs/cifar10-heads.json]

Two heads on the backbone's penultimate features, trained with the paper's protocol through hanzoo's
stacked trainer (every LR and seed of a head at once): SGD with momentum 0.9, batch 1024, 20000
iterations, weight decay 1e-4, the 10 initial LRs of Section 3.1 annealed x0.2 at 1/2, 7/10 and
9/10 of training, 5 seeds, cross-entropy.
- FC head: features -> 10 (the backbone's own last layer, retrained);
- HanNet head: FC(features -> 30) + ABS, 3 Han-layers of width 30, FC(30 -> 10).
The LR (and each run's checkpoint) is chosen on the 5000 validation images, which the backbone never
trained on; the test split is only scored. Reports top-1 test error, mean +- std over the 5 seeds
at the chosen LR, and the relative change the paper claims (a drop of about 10%).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from hanzoo import registry
from hanzoo.tasks import FeatureClassification
from hanzoo.train import Protocol, select, sweep

HEADS = {"fc": "cifar10-head-fc", "hannet": "cifar10-head-hannet"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", default="runs/cifar-backbone")
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--out", default="docs/cifar10-heads.json")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    task = FeatureClassification("cifar10-features", Path(args.features))
    split = task.split()
    protocol = Protocol(iterations=args.iterations, batch_size=1024, weight_decay=1e-4, refit=False, eval_every=500)
    backbone = json.loads((Path(args.features) / "report.json").read_text())
    out = {"dataset": "CIFAR-10 (JPEG)", "backbone": {k: v for k, v in backbone.items() if k not in ("log", "mean", "std")},
           "feature_width": task.n_in, "protocol": protocol.to_dict(), "heads": {}}
    for name, model_id in HEADS.items():
        config = replace(registry.get(model_id).config, in_features=task.n_in)
        result = sweep(config, task, split, protocol)
        chosen = result.runs[select(result.runs, task)]
        peers = [r for r in result.runs if (r.init, r.lr) == (chosen.init, chosen.lr) and r.status == "ok"]
        test = [r.test["top1_error"] for r in peers]
        out["heads"][name] = {
            "registry_reference": model_id, "params": config.num_params, "init": chosen.init, "lr": chosen.lr,
            "val_error_mean": float(np.mean([r.val["top1_error"] for r in peers])),
            "test_error": {"values": test, "mean": float(np.mean(test)), "std": float(np.std(test))},
            "failed_runs": sum(r.status != "ok" for r in result.runs), "seconds": result.seconds,
            "runs": [{"lr": r.lr, "seed": r.seed, "status": r.status, "val": r.val["top1_error"],
                      "test": r.test["top1_error"]} for r in result.runs]}
        print(name, json.dumps({k: v for k, v in out["heads"][name].items() if k != "runs"}), flush=True)
    fc, han = out["heads"]["fc"]["test_error"]["mean"], out["heads"]["hannet"]["test_error"]["mean"]
    out["relative_change"] = (han - fc) / fc
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"FC head {fc:.2f}% vs HanNet head {han:.2f}%: relative change {100 * out['relative_change']:+.1f}%")


if __name__ == "__main__":
    main()
