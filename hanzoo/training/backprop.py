"""A stacked sweep's training step written out by hand: forward, backward and the SGD update, no autograd.

On nets this small a generic backward costs more than the arithmetic: the autograd engine, a
gradient tensor per parameter, then three optimizer passes over every parameter. Here the step is
one function that inductor compiles into a few fused loops, and the momentum buffers take the
gradients as they are made.

Activations are laid out [runs, features, batch], the transpose of the module's [batch, features].
A Han-layer's dot products then reduce across rows while the loops run along the contiguous batch,
which the compiler vectorizes; in the module's layout they reduce along rows of 30, which it does
not. This alone halves a HanNet-20x30 step (benchmarks/train_speed.py).

The Han-layer's backward has a closed form. With c = 2/||u||^2, s = u.x, z = x - c s u + b,
y = act(z) and gz = dL/dz:

    t  = u.gz
    dx = gz - c t u
    db = sum over the batch of gz
    du = -c (sum s gz + sum t x) + c^2 (sum s t) u      (the last term is c's own derivative)

A fully connected layer z = W x + b has dW = gz x^T, db = sum gz and dx = W^T gz.

SGD keeps torch.optim.SGD's arithmetic: buf = m buf + g, then p -= buf, where g already carries the
run's learning rate (optimizers.StackedSGD). Buffers start at zero, so the first step is buf = g, as
in torch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..nn.layers import ACTIVATIONS
from ..zoo.tasks import Task

# Each activation's derivative, as a function of its input z (which the forward keeps).
DERIVATIVE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "abs": torch.sign,
    "relu": lambda z: (z > 0).to(z.dtype),
}

Saved = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]


def forward(
    kinds: list[str], acts: list[str], params: list[torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, list[Saved]]:
    """x [R, in, B] -> out [R, out, B], and what each layer's backward needs. `kinds` and `acts` are
    the hidden layers'; the last pair of `params` is the linear output layer."""
    saved: list[Saved] = []
    for i, kind in enumerate([*kinds, "fc"]):
        w, b = params[2 * i], params[2 * i + 1]
        if kind == "fc":
            z = torch.baddbmm(b.unsqueeze(2), w, x)
            saved.append((x, z, None, None))
        else:
            c = 2.0 / (w * w).sum(-1, keepdim=True)  # [R, 1]
            s = (x * w.unsqueeze(2)).sum(1, keepdim=True)  # [R, 1, B]: one dot product per sample
            z = x + b.unsqueeze(2) - (c.unsqueeze(2) * s) * w.unsqueeze(2)
            saved.append((x, z, s, c))
        x = ACTIVATIONS[acts[i]](z) if i < len(kinds) else z
    return x, saved


def backward(
    kinds: list[str], acts: list[str], params: list[torch.Tensor], saved: list[Saved], gout: torch.Tensor
) -> list[torch.Tensor]:
    """Every parameter's gradient, in `params` order, from dL/d(out) [R, out, B]."""
    grads: list[torch.Tensor] = list(params)  # placeholders, each overwritten below
    gz = gout
    for i in reversed(range(len(kinds) + 1)):
        w = params[2 * i]
        x, z, s, c = saved[i]
        if i < len(kinds):
            gz = gz * DERIVATIVE[acts[i]](z)
        grads[2 * i + 1] = gz.sum(2)
        if s is not None and c is not None:  # a Han-layer
            t = (gz * w.unsqueeze(2)).sum(1, keepdim=True)  # [R, 1, B]
            grads[2 * i] = -c * ((s * gz).sum(2) + (t * x).sum(2)) + (c * c) * (s * t).sum(2) * w
            gz = gz - (c.unsqueeze(2) * t) * w.unsqueeze(2)
        else:
            grads[2 * i] = torch.bmm(gz, x.transpose(1, 2))
            if i > 0:
                gz = torch.bmm(w.transpose(1, 2), gz)
    return grads


def loss_and_grads(
    kinds: list[str],
    acts: list[str],
    task: Task,
    params: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    weight_decay: float,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Each run's loss [R] and the gradients of scale_r x (loss_r + weight_decay/2 ||p_r||^2).

    x [R, in, B], y [R, B, out] (the task's own layout)."""
    out, saved = forward(kinds, acts, params, x)
    loss, gout = task.loss_grad(out.transpose(1, 2), y)
    grads = backward(kinds, acts, params, saved, gout.transpose(1, 2) * scale.view(-1, 1, 1))
    if weight_decay:
        grads = [g + (weight_decay * scale.view(-1, *[1] * (p.dim() - 1))) * p for g, p in zip(grads, params)]
    return loss, grads


def sgd_step(
    kinds: list[str],
    acts: list[str],
    task: Task,
    params: list[torch.Tensor],
    bufs: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    lrs: torch.Tensor,
    momentum: float,
    weight_decay: float,
) -> torch.Tensor:
    """One SGD step of every run on its minibatch rows idx [R, B] of (x, y), in place.

    Returns which runs' loss was finite before the step. The minibatch gather and that check are part
    of the compiled step: as separate eager ops they cost a quarter of a HanNet-20x30 step."""
    loss, grads = loss_and_grads(kinds, acts, task, params, x[idx].transpose(1, 2), y[idx], lrs, weight_decay)
    for p, buf, g in zip(params, bufs, grads):
        buf.mul_(momentum).add_(g)
        p.sub_(buf)
    return torch.isfinite(loss)
