"""The CIFAR-10 (JPEG) backbone: a small CNN that hanzoo trains itself (paper 3.2.3 used LaNet's features,
which cannot be had here).

    uint8 images [N, 32, 32, 3] -> (x - mean) / std -> conv(3 -> w0) + GELU
        -> for each next width w: conv -> maxpool 2 -> BN -> GELU -> conv -> BN -> GELU
        -> global max pool -> features [N, w_last]

Training uses BatchNorm; the shipped module (`Backbone`) has it folded: into the conv before it where the
two are adjacent, and as a per-channel scale and shift after each max pool (a negative BN scale does not
commute with the pool). The CPU recipe (fixed before its run, airbench-like, sized to 30 minutes on 2
cores; experiments/cifar_recipe.py judged it on validation): widths 24-48-96-192, 45000/5000
train/validation images (seeded), per-channel statistics of the 45000, random 4-pixel reflect-crop (one
offset per batch, which is cheap on a CPU) and flip, the forward in bfloat16 autocast (weights and
update in float32), SGD Nesterov momentum 0.9, batch 256, weight decay 5e-4 on weights, label smoothing
0.2, peak LR 0.2 with a linear warm-up over 2 epochs and linear decay to 0 over 52 epochs, the last
epoch shipped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..errors import HanzooError
from ..files import file_sha256, staged_folder, written_atomically
from ..nn.convnet import act
from ..nn.models import Net
from ..publishing import hub
from ..storage import card, store
from ..storage.evaluate import evaluate_parts
from ..zoo import cifar
from ..zoo.record import Record
from ..zoo.registry import ModelEntry
from ..zoo.tasks import CifarImages, FeatureClassification, get_task
from .protocols import BackboneRecipe

__all__ = [
    "BN_EPS",
    "channel_stats",
    "TrainNet",
    "fold",
    "train",
    "package",
    "train_and_package",
    "features",
    "features_task",
]

BN_EPS = 1e-5


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in pixel units (0-255)."""
    flat = images.reshape(-1, 3).astype(np.float64)
    return flat.mean(0).tolist(), flat.std(0).tolist()


class _TrainBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = (
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out, eps=BN_EPS),
        )
        self.conv2, self.bn2 = (
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out, eps=BN_EPS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = act(self.bn1(F.max_pool2d(self.conv1(x), 2)))
        return act(self.bn2(self.conv2(x)))


class TrainNet(nn.Module):
    """The backbone with BatchNorm and its own linear head, on normalized NCHW float input."""

    def __init__(self, widths: tuple[int, ...], classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0], eps=BN_EPS)
        )
        self.blocks = nn.Sequential(*[_TrainBlock(a, b) for a, b in zip(widths, widths[1:])])
        self.head = nn.Linear(widths[-1], classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.blocks(act(self.stem(x))), dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    # every BatchNorm here tracks running statistics (the default), which are what gets folded
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
    return scale, bn.bias.double() - bn.running_mean.double() * scale


@torch.no_grad()
def fold(net: TrainNet) -> dict[str, torch.Tensor]:
    """The state of `Backbone` (keys prefixed "backbone.") and of the head ("head."), BN folded."""
    out = {}
    conv, bn = net.stem
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)  # as TrainNet builds its stem
    s, t = _bn_affine(bn)
    out["backbone.stem.weight"] = conv.weight.double() * s[:, None, None, None]
    out["backbone.stem.bias"] = t
    for i, blk in enumerate(net.blocks):
        assert isinstance(blk, _TrainBlock)
        out[f"backbone.conv1.{i}.weight"] = blk.conv1.weight.double()
        out[f"backbone.scale.{i}"], out[f"backbone.shift.{i}"] = _bn_affine(blk.bn1)
        s, t = _bn_affine(blk.bn2)
        out[f"backbone.conv2.{i}.weight"] = blk.conv2.weight.double() * s[:, None, None, None]
        out[f"backbone.conv2.{i}.bias"] = t
    out["head.weight"], out["head.bias"] = net.head.weight, net.head.bias
    return {k: v.float().contiguous() for k, v in out.items()}


def _augment(x: torch.Tensor, g: torch.Generator, per_sample: bool = False) -> torch.Tensor:
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    if per_sample:  # one gather: rows and columns offset per image
        n, c = x.shape[:2]
        dy, dx = torch.randint(0, 9, (2, n), generator=g)
        rows, cols = dy[:, None] + torch.arange(32), dx[:, None] + torch.arange(32)
        return padded[
            torch.arange(n)[:, None, None, None],
            torch.arange(c)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
    dx, dy = torch.randint(0, 9, (2,), generator=g).tolist()
    return padded[:, :, dy : dy + 32, dx : dx + 32]


def _normalize(images: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    x = (torch.from_numpy(images).float() - torch.tensor(mean).float()) / torch.tensor(std).float()
    return x.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def _accuracy(net: TrainNet, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    net.eval()
    right = sum(
        int(
            (
                net(x[i : i + batch].contiguous(memory_format=torch.channels_last)).argmax(1)
                == y[i : i + batch]
            ).sum()
        )
        for i in range(0, len(x), batch)
    )
    return 100.0 * right / len(x)


def train(recipe: BackboneRecipe, workdir: Path, progress: bool = True) -> dict:
    """Train with `recipe`, checkpointing into `workdir`; returns the record (with the folded state).

    A finished checkpoint of the same recipe in `workdir` is reused rather than retrained.
    """
    workdir = Path(workdir)
    ckpt, record_path = workdir / "checkpoint.safetensors", workdir / "record.json"
    reused = _reuse_checkpoint(recipe, ckpt, record_path)
    if reused is not None:
        return reused
    data = _load_data(recipe)
    torch.manual_seed(recipe.seed)  # the initial weights
    # Module.to takes memory_format (documented), but torch's overloads of it leave the keyword out
    net = TrainNet(recipe.widths).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    net, log, seconds = _fit(net, recipe, data, progress)
    record = {
        "recipe": recipe.record(),
        "image_mean": data.mean,
        "image_std": data.std,
        "train_images": len(data.x_train),
        "val_images": len(data.x_val),
        "train_seconds": seconds,
        "images_per_second": recipe.epochs * data.steps * recipe.batch_size / seconds,
        "threads": torch.get_num_threads(),
        "log": log,
    }
    _save_checkpoint(net, record, ckpt, record_path)
    return record | {"state": fold(net.eval())}


def _reuse_checkpoint(recipe: BackboneRecipe, ckpt: Path, record_path: Path) -> dict | None:
    """The record of a finished checkpoint of the same recipe, with its folded state; None if none."""
    if not (ckpt.is_file() and record_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        return None  # a damaged record is never trusted: train again
    if record.get("recipe") != recipe.record():
        return None
    net = TrainNet(recipe.widths)
    net.load_state_dict(load_file(str(ckpt)))
    return record | {"state": fold(net.eval()), "reused_checkpoint": str(ckpt)}


@dataclass
class _Data:
    x_train: torch.Tensor  # normalized, NCHW
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    mean: list[float]  # per-channel statistics of the training images, which the model ships with
    std: list[float]
    steps: int  # batches per epoch


def _load_data(recipe: BackboneRecipe) -> _Data:
    x_all, y_all = cifar.load_split("train")
    tr, va = cifar.split_indices(len(x_all), recipe.val_images, recipe.split_seed)
    mean, std = channel_stats(x_all[tr])
    return _Data(
        _normalize(x_all[tr], mean, std),
        torch.from_numpy(y_all[tr]).long(),
        _normalize(x_all[va], mean, std),
        torch.from_numpy(y_all[va]).long(),
        mean,
        std,
        len(tr) // recipe.batch_size,
    )


def _optimizer(
    net: TrainNet, recipe: BackboneRecipe, steps: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with Nesterov momentum, weight decay on the weights only (not on BN or biases), and the LR
    warmed up linearly, then decayed linearly to 0 by the last step."""
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=True,
    )
    total, warm = recipe.epochs * steps, recipe.warmup_epochs * steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )
    return opt, sched


def _fit(
    net: TrainNet, recipe: BackboneRecipe, data: _Data, progress: bool
) -> tuple[TrainNet, list[dict], float]:
    """The training loop; returns the net to ship (the weight average, with `ema_decay`), the per-epoch
    log and the seconds taken."""
    opt, sched = _optimizer(net, recipe, data.steps)
    g = torch.Generator().manual_seed(recipe.seed)
    ema = None
    if recipe.ema_decay:
        ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True)
    shipped = cast(TrainNet, ema.module) if ema is not None else net  # AveragedModel holds a copy of net
    log: list[dict] = []
    bar = _progress_bar(progress)
    start = time.perf_counter()
    with bar:
        job = bar.add_task("", total=recipe.epochs * data.steps, status="")
        for epoch in range(recipe.epochs):
            net.train()
            order = torch.randperm(len(data.x_train), generator=g)
            loss_sum = 0.0
            for i in range(data.steps):
                idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
                xb = _augment(data.x_train[idx], g, recipe.crop == "sample")
                xb = xb.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cpu", torch.bfloat16, enabled=recipe.precision == "bf16"):
                    logits = net(xb)
                loss = F.cross_entropy(
                    logits.float(), data.y_train[idx], label_smoothing=recipe.label_smoothing
                )
                if not torch.isfinite(loss):
                    raise HanzooError(
                        f"backbone training diverged at epoch {epoch + 1}, step {i} (loss {float(loss)})"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if ema is not None:
                    ema.update_parameters(net)
                loss_sum += float(loss.detach())
                bar.advance(job)
            log.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": loss_sum / data.steps,
                    "val_accuracy": _accuracy(shipped, data.x_val, data.y_val),
                    "seconds": time.perf_counter() - start,
                }
            )
            bar.update(job, status=f"epoch {epoch + 1}: val {log[-1]['val_accuracy']:.2f}%")
            if not progress:
                print(json.dumps(log[-1]), flush=True)
    return shipped, log, time.perf_counter() - start


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]train[/] cifar10-backbone"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _save_checkpoint(net: nn.Module, record: dict, ckpt: Path, record_path: Path) -> None:
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    # the record goes last, each file written whole: a checkpoint without its record is never reused
    record_path.unlink(missing_ok=True)
    with written_atomically(ckpt) as tmp:
        save_file({k: v.float().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    with written_atomically(record_path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def package(entry: ModelEntry, record: dict, dest: Path) -> Path:
    """The trained backbone as a model folder (BN folded), scored through the same code as `hanzoo eval`."""

    task = get_task(entry.task)
    assert isinstance(task, CifarImages)  # a backbone is trained on the CIFAR-10 images
    net = Net(entry.config)
    net.load_state_dict(record["state"])
    net.backbone.set_stats(record["image_mean"], record["image_std"])
    net.eval()
    recipe = record["recipe"]
    split = task.split(recipe["val_images"], recipe["split_seed"])
    scores = evaluate_parts(
        net,
        task,
        {
            "train": (split.x_train, split.y_train),
            "val": (split.x_val, split.y_val),
            "test": (split.x_test, split.y_test),
        },
    )
    metrics = Record.build(
        model_id=entry.id,
        task=task.name,
        metric=task.metric,
        higher_is_better=task.higher_is_better,
        selected={"seed": recipe["seed"], "epochs": recipe["epochs"], **scores},
        seeds_at_selected={
            s: {"values": [scores[s][task.metric]], "mean": scores[s][task.metric], "std": 0.0}
            for s in ("train", "test")
        },
        selection_rule="none: a fixed recipe, one seed, the last epoch shipped (validation is only watched)",
        wall_seconds=record["train_seconds"],
        recipe=recipe,
        log=record["log"],
        train_images=record["train_images"],
        val_images=record["val_images"],
        images_per_second=record["images_per_second"],
        threads=record["threads"],
    )
    folder = store.write_folder(
        dest,
        entry.id,
        task.name,
        entry.config,
        record["state"],
        metrics,
        card.render_backbone(entry, metrics),
        preprocessing={"image_mean": record["image_mean"], "image_std": record["image_std"]},
    )
    hub.repin_if_bundled(folder)  # retraining a shipped model changes the files its pins describe
    return folder


def train_and_package(
    entry: ModelEntry,
    out_dir: Path | None = None,
    recipe: BackboneRecipe | None = None,
    progress: bool = True,
    workdir: Path | None = None,
) -> Path:
    """`hanzoo train cifar10-backbone`: train (or reuse a finished checkpoint of the same recipe), then
    package."""
    workdir = Path(workdir) if workdir else cifar.cache_dir() / f"{entry.id}-run"
    record = train(recipe or BackboneRecipe(), workdir, progress=progress)
    return package(entry, record, Path(out_dir) if out_dir else entry.dir)


@torch.no_grad()
def features(net: Net, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """The backbone's features of uint8 images, in batches (a whole split at once would need GBs)."""
    return np.concatenate(
        [net.backbone(torch.from_numpy(images[i : i + batch])).numpy() for i in range(0, len(images), batch)]
    )


def features_task(backbone_id: str) -> tuple[FeatureClassification, Net]:
    """A FeatureClassification task over the frozen backbone's features of the train, validation and test
    images, cached by the weights' sha256 (written atomically); also returns the loaded backbone model."""

    net = store.load_model(backbone_id)
    digest = file_sha256(net.folder / "model.safetensors")[:16]
    folder = cifar.cache_dir() / f"{backbone_id}-features-{digest}"
    if not (folder / "labels-test.npy").is_file():
        split = get_task("cifar10").split()
        assert split.x_val is not None and split.y_val is not None  # CIFAR-10 holds out 5000 images
        with staged_folder(folder, marker="labels-test.npy") as tmp:
            for name, x, y in (
                ("train", split.x_train, split.y_train),
                ("val", split.x_val, split.y_val),
                ("test", split.x_test, split.y_test),
            ):
                np.save(tmp / f"features-{name}.npy", features(net, x))
                np.save(tmp / f"labels-{name}.npy", y[:, 0].astype(np.int64))
    return FeatureClassification(f"{backbone_id}-features", folder), net
