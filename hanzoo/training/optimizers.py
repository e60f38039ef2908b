"""The optimizers of the stacked sweep: SGD with momentum and Adam, each with a learning rate per run,
updating every run's parameters in a few foreach ops."""

from __future__ import annotations

import math

import torch

__all__ = ["StackedSGD", "StackedAdam"]


class StackedSGD:
    """SGD with momentum and a learning rate per run.

    Scaling run r's loss by lr_r makes its gradient lr_r * g, so the momentum buffer holds lr_r * buf
    and the update is p -= buf. When the LR is annealed the buffers are scaled by the same factor,
    which keeps this exactly equal to torch.optim.SGD with a per-run MultiStepLR. The buffers start at
    zero, so the first step is buf = g, as torch's.
    """

    def __init__(self, params: list[torch.Tensor], lrs: torch.Tensor, momentum: float) -> None:
        self.params, self.lrs, self.momentum = params, lrs.clone(), momentum
        self.bufs = [torch.zeros_like(p, requires_grad=False) for p in params]

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        torch._foreach_mul_(self.bufs, self.momentum)
        torch._foreach_add_(self.bufs, grads)
        torch._foreach_sub_(self.params, self.bufs)

    def loss_weights(self) -> torch.Tensor:
        return self.lrs

    def park(self, bad: torch.Tensor) -> None:
        self.lrs[bad] = 0
        for b in self.bufs:
            b[bad] = 0

    @torch.no_grad()
    def scale_lr(self, factor: float) -> None:
        self.lrs *= factor
        torch._foreach_mul_(self.bufs, factor)


class StackedAdam:
    """Adam (PyTorch's defaults: betas 0.9/0.999, eps 1e-8, bias correction) with an LR per run.
    Adam is elementwise, so a leading run dimension changes nothing in the update."""

    def __init__(
        self,
        params: list[torch.Tensor],
        lrs: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params, self.lrs, self.betas, self.eps = params, lrs.clone(), betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0
        self.alive = torch.ones(len(lrs), dtype=lrs.dtype)

    def loss_weights(self) -> torch.Tensor:
        return self.alive

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        b1, b2 = self.betas
        self.t += 1
        torch._foreach_lerp_(self.m, grads, 1 - b1)
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, math.sqrt(1 - b2**self.t))
        torch._foreach_add_(denom, self.eps)
        step = (self.lrs / (1 - b1**self.t)).to(self.params[0].dtype)
        for p, m, d in zip(self.params, self.m, denom):
            p.addcdiv_(m * step.view(-1, *[1] * (p.dim() - 1)), d, value=-1)

    def scale_lr(self, factor: float) -> None:
        self.lrs *= factor

    def park(self, bad: torch.Tensor) -> None:
        self.lrs[bad] = 0
        self.alive[bad] = 0
        for m, v in zip(self.m, self.v):
            m[bad] = 0
            v[bad] = 0
