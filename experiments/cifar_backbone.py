"""CIFAR-10 (JPEG) backbone, CPU recipe: how far a small CNN gets on this 2-core machine, and how fast.

    python experiments/cifar_backbone.py [--epochs 20] [--widths 16,32,64,128] [--threads 2] [--out runs/cifar-backbone]

A step toward `hanzoo train cifar10-backbone` (issue 8): it trains the backbone, reports validation
and test accuracy and wall time, and writes the weights (safetensors) and the penultimate features
of the train, validation and test images (.npy) for the head experiment. Nothing here is shipped.

Recipe (fixed before looking at any test figure; airbench-like, scaled down for a CPU):
- 45000 training / 5000 validation images (seeded split of the training set); test reported once;
- per-channel normalization from the training images; random 4-pixel reflect-crop and flip;
- conv(3->w0), then three blocks of conv -> maxpool -> BN -> GELU -> conv -> BN -> GELU, global max
  pool, linear head;
- SGD, Nesterov momentum 0.9, batch 256, weight decay 5e-4, label smoothing 0.2, LR 0.2 peak with
  a linear warm-up over 2 epochs and linear decay to 0; test-time flip averaging.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from hanzoo import cifar


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.bn2(self.conv2(x)))


class Backbone(nn.Module):
    def __init__(self, widths: tuple[int, ...], classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.GELU())
        self.blocks = nn.Sequential(*[Block(a, b) for a, b in zip(widths, widths[1:])])
        self.head = nn.Linear(widths[-1], classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.blocks(self.stem(x)), dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = len(x)
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dx, dy = torch.randint(0, 9, (2,), generator=g).tolist()  # one crop offset per batch: cheap on a CPU
    return padded[:, :, dy:dy + 32, dx:dx + 32]


@torch.no_grad()
def predict(net: Backbone, x: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits with flip averaging, and the (unflipped) features."""
    net.eval()
    logits, feats = [], []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].contiguous(memory_format=torch.channels_last)
        f = net.features(xb)
        logits.append((net.head(f) + net(xb.flip(3))) / 2)
        feats.append(f)
    return torch.cat(logits), torch.cat(feats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--widths", default="16,32,64,128")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--out", default="runs/cifar-backbone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    x_all, y_all = cifar.load("train")
    x_test, y_test = cifar.load("test")
    perm = np.random.default_rng(0).permutation(len(x_all))
    tr, va = perm[5000:], perm[:5000]
    mean = x_all[tr].reshape(-1, 3).mean(0) / 255
    std = x_all[tr].reshape(-1, 3).std(0) / 255
    to_t = lambda a: ((torch.from_numpy(a).float() / 255 - torch.tensor(mean).float()) / torch.tensor(std).float()
                      ).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    x_tr, y_tr = to_t(x_all[tr]), torch.from_numpy(y_all[tr]).long()
    x_va, y_va = to_t(x_all[va]), torch.from_numpy(y_all[va]).long()
    x_te, y_te = to_t(x_test), torch.from_numpy(y_test).long()

    widths = tuple(int(w) for w in args.widths.split(","))
    net = Backbone(widths).to(memory_format=torch.channels_last)
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                          lr=args.lr, momentum=0.9, nesterov=True)
    batch, steps = 256, len(x_tr) // 256
    total, warm = args.epochs * steps, 2 * steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / (total - warm)))
    g = torch.Generator().manual_seed(0)
    log, start = [], time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(x_tr), generator=g)
        seen, loss_sum = 0, 0.0
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch]
            xb = augment(x_tr[idx], g).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net(xb), y_tr[idx], label_smoothing=0.2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen, loss_sum = seen + len(idx), loss_sum + float(loss) * len(idx)
        val_logits, _ = predict(net, x_va)
        val_acc = float((val_logits.argmax(1) == y_va).float().mean()) * 100
        elapsed = time.perf_counter() - start
        log.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "val_acc": val_acc, "seconds": elapsed})
        print(json.dumps(log[-1]), flush=True)
    train_seconds = time.perf_counter() - start
    test_logits, f_te = predict(net, x_te)
    _, f_tr = predict(net, x_tr)
    _, f_va = predict(net, x_va)
    test_acc = float((test_logits.argmax(1) == y_te).float().mean()) * 100
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "backbone.safetensors"))
    for name, arr in {"train": (f_tr, y_tr), "val": (f_va, y_va), "test": (f_te, y_te)}.items():
        np.save(out / f"features-{name}.npy", arr[0].numpy())
        np.save(out / f"labels-{name}.npy", arr[1].numpy())
    report = {"widths": widths, "params": sum(p.numel() for p in net.parameters()), "epochs": args.epochs,
              "threads": args.threads, "train_seconds": train_seconds, "val_acc": log[-1]["val_acc"],
              "test_acc": test_acc, "mean": mean.tolist(), "std": std.tolist(), "log": log,
              "images_per_second": args.epochs * steps * batch / train_seconds}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "log"}))


if __name__ == "__main__":
    main()
