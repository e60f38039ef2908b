"""The CIFAR-10 (JPEG) backbone's architecture, as it ships: BatchNorm already folded
(hanzoo.training.backbone trains it and folds it).

    uint8 images [N, 32, 32, 3] -> (x - mean) / std -> conv(3 -> w0) + GELU
        -> for each next width w: conv -> maxpool 2 -> scale and shift -> GELU -> conv -> GELU
        -> global max pool -> features [N, w_last]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SHAPE = (32, 32, 3)


def act(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x)  # exact (erf) GELU: ONNX writes it with Erf, TFLite has a GELU builtin


class Backbone(nn.Module):
    """The inference backbone: uint8 [N, 32, 32, 3] (HWC, as images are stored) -> features
    [N, widths[-1]]."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        self.conv1 = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1, bias=False) for a, b in zip(widths, widths[1:])
        )
        self.scale = nn.ParameterList(nn.Parameter(torch.ones(b)) for b in widths[1:])
        self.shift = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in widths[1:])
        self.conv2 = nn.ModuleList(nn.Conv2d(b, b, 3, padding=1) for b in widths[1:])
        self.register_buffer("mean", torch.zeros(3), persistent=False)
        self.register_buffer("std", torch.ones(3), persistent=False)

    def set_stats(self, mean: list[float], std: list[float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = ((images.float() - self.mean) / self.std).permute(0, 3, 1, 2)
        x = act(self.stem(x))
        for conv1, scale, shift, conv2 in zip(self.conv1, self.scale, self.shift, self.conv2):
            x = F.max_pool2d(conv1(x), 2)
            x = act(x * scale[:, None, None] + shift[:, None, None])
            x = act(conv2(x))
        return torch.amax(x, dim=(2, 3))

    @staticmethod
    def flops(widths: tuple[int, ...]) -> int:
        """Multiply-adds x 2 of the convs for one 32x32 image (the pools, GELUs and affines are minor)."""
        side, total = 32, 2 * 9 * 3 * widths[0] * 32 * 32
        for a, b in zip(widths, widths[1:]):
            total += 2 * 9 * a * b * side * side  # conv1 runs before its pool
            side //= 2
            total += 2 * 9 * b * b * side * side
        return total

    @staticmethod
    def num_params(widths: tuple[int, ...]) -> int:
        total = 27 * widths[0] + widths[0]
        for a, b in zip(widths, widths[1:]):
            total += 9 * a * b + 2 * b + 9 * b * b + b
        return total
