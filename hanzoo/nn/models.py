"""Model configs and the torch modules built from them.

A config is plain data (it round-trips through config.json); `build` turns it into a module.
Every net is: hidden blocks (Dense or Han, each with its activation), then a linear head.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import HanzooError
from .convnet import IMAGE_SHAPE, Backbone
from .layers import ACTIVATIONS, Dense, HanLayer

__all__ = ["INITS", "Block", "ModelConfig", "Net", "build", "initialize"]

INITS = ("han-normal", "han-authors", "kaiming")


@dataclass(frozen=True)
class Block:
    """`repeat` consecutive hidden layers of one kind ("fc" or "han"), width and activation."""

    kind: str
    width: int
    act: str = "abs"
    repeat: int = 1


@dataclass(frozen=True)
class ModelConfig:
    in_features: int
    out_features: int
    blocks: tuple[Block, ...]
    init: str = "kaiming"
    # Conv widths of an image backbone (hanzoo.training.backbone) in front of the blocks; () for a plain MLP.
    # With one, the model takes uint8 images [batch, 32, 32, 3] and in_features is its feature width.
    backbone: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "blocks", tuple(b if isinstance(b, Block) else Block(**b) for b in self.blocks)
        )
        object.__setattr__(self, "backbone", tuple(self.backbone))
        if self.backbone and (self.backbone[-1] != self.in_features or min(self.backbone) < 1):
            raise HanzooError(
                f"backbone widths {list(self.backbone)} must be positive and end at in_features "
                f"({self.in_features})"
            )
        if self.init not in INITS:
            raise HanzooError(f"unknown init {self.init!r}; expected one of {INITS}")
        n = self.in_features
        for b in self.blocks:
            if b.kind not in ("fc", "han"):
                raise HanzooError(f"unknown block kind {b.kind!r}; expected 'fc' or 'han'")
            if b.act not in ACTIVATIONS:
                raise HanzooError(f"unknown activation {b.act!r}; expected one of {sorted(ACTIVATIONS)}")
            if b.kind == "han" and b.width != n:
                raise HanzooError(f"a Han block keeps its width: got width {b.width} after width {n}")
            if b.width < 1 or b.repeat < 1:
                raise HanzooError(f"block {b} needs a positive width and repeat")
            n = b.width

    # Derived figures; nothing here is stored, so it can never disagree with the blocks.
    def layers(self) -> list[tuple[str, int, int, str]]:
        """Hidden layers unrolled as (kind, n_in, n_out, act)."""
        out, n = [], self.in_features
        for b in self.blocks:
            for _ in range(b.repeat):
                out.append((b.kind, n, b.width, b.act))
                n = b.width
        return out

    @property
    def depth(self) -> int:
        return len(self.layers())

    @property
    def width(self) -> int:
        return max((b.width for b in self.blocks), default=0)

    @property
    def takes_images(self) -> bool:
        """Whether the model reads uint8 images (through its backbone) rather than float features."""
        return bool(self.backbone)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape: (in_features,) floats, or (32, 32, 3) uint8 pixels with a backbone."""
        return IMAGE_SHAPE if self.takes_images else (self.in_features,)

    @property
    def head_params(self) -> int:
        """Parameters after the backbone (all of them for a plain MLP)."""
        hidden = sum(2 * o if k == "han" else i * o + o for k, i, o, _ in self.layers())
        last = self.layers()[-1][2] if self.blocks else self.in_features
        return hidden + last * self.out_features + self.out_features

    @property
    def num_params(self) -> int:
        return self.head_params + (Backbone.num_params(self.backbone) if self.backbone else 0)

    @property
    def num_activations(self) -> int:
        return sum(o for _, _, o, _ in self.layers())

    @property
    def activation_ratio(self) -> float:
        """AR = hidden activations / parameters (paper, Section 1.4), of the part after any backbone."""
        return self.num_activations / self.head_params

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = [asdict(b) for b in self.blocks]
        if self.backbone:
            d["backbone"] = list(self.backbone)
        else:
            del d["backbone"]  # MLP configs read exactly as before
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "architecture") -> "ModelConfig":
        """Strictly: every key known, every value of its type, named in the error when it is not."""
        _check_fields(
            d,
            where,
            {"in_features": int, "out_features": int, "blocks": list, "init": str, "backbone": list},
            required=("in_features", "out_features", "blocks"),
        )
        for name in ("in_features", "out_features"):
            if d[name] < 1 or d[name] > 1 << 20:
                raise HanzooError(f"{where}.{name} must be between 1 and {1 << 20}, got {d[name]}")
        blocks = []
        for i, b in enumerate(d["blocks"]):
            _check_fields(
                b,
                f"{where}.blocks[{i}]",
                {"kind": str, "width": int, "act": str, "repeat": int},
                required=("kind", "width"),
            )
            if not 1 <= b["width"] <= 1 << 16 or not 1 <= b.get("repeat", 1) <= 1024:
                raise HanzooError(f"{where}.blocks[{i}]: width must be 1..65536 and repeat 1..1024")
            blocks.append(Block(**b))
        backbone = d.get("backbone", [])
        if len(backbone) > 8 or not all(
            isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 4096 for w in backbone
        ):
            raise HanzooError(
                f"{where}.backbone must be at most 8 widths, each an int in 1..4096; got {backbone!r:.60}"
            )
        return cls(
            d["in_features"], d["out_features"], tuple(blocks), d.get("init", "kaiming"), tuple(backbone)
        )


def _check_fields(d: object, where: str, types: dict[str, type], required: tuple[str, ...]) -> None:
    if not isinstance(d, dict):
        raise HanzooError(f"{where} must be an object, got {type(d).__name__}")
    for key in d:
        if key not in types:
            raise HanzooError(f"{where}.{key} is not a known field (known: {', '.join(types)})")
    for key in required:
        if key not in d:
            raise HanzooError(f"{where}.{key} is missing")
    for key, value in d.items():
        # bool is an int in Python; a config that says `"width": true` is still wrong
        if not isinstance(value, types[key]) or (types[key] is int and isinstance(value, bool)):
            raise HanzooError(
                f"{where}.{key} must be {types[key].__name__}, got {type(value).__name__} {value!r:.40}"
            )


class Net(nn.Module):
    """Hidden layers, then a linear head. Input [batch, in_features] -> output [batch, out_features].

    With `config.backbone`, a conv backbone (hanzoo.training.backbone) comes first: uint8 images
    [batch, 32, 32, 3] -> features [batch, in_features] -> the layers and head as above (the logits)."""

    backbone: Backbone  # only when config.takes_images
    # Buffers registered by set_scaling: tensors when `scaling` is set, None (and never read) otherwise.
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor
    # What hanzoo.storage.store.load_model attaches to a loaded model (a freshly built one has none).
    meta: dict
    metrics: Any  # a hanzoo.zoo.record.Record (zoo is a layer above nn, so not imported here)
    folder: Path
    card: str  # and hanzoo.load (hanzoo.publishing.hub.load), the model card's text

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.takes_images:
            self.backbone = Backbone(config.backbone)
        self.layers = nn.ModuleList(
            HanLayer(o, act) if kind == "han" else Dense(i, o, act) for kind, i, o, act in config.layers()
        )
        last = config.layers()[-1][2] if config.blocks else config.in_features
        self.head = nn.Linear(last, config.out_features)

        self.scaling: dict[str, list[float]] | None = None

    def set_scaling(self, scaling: dict[str, list[float]] | None) -> None:
        """Raw-unit inputs and outputs: x -> (x - x_mean) / x_std before the layers, y * y_std + y_mean
        after the head. The statistics come from the training split and live in config.json."""
        self.scaling = scaling
        for k in ("x_mean", "x_std", "y_mean", "y_std"):
            value = torch.tensor(scaling[k], dtype=torch.float32) if scaling else None
            self.register_buffer(k, value, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the layers read: the backbone's features of images, or the input itself."""
        return self.backbone(x) if self.config.takes_images else x

    def from_features(self, x: torch.Tensor) -> torch.Tensor:
        """The rest of forward: scaling, the layers and the head. Heads that share a frozen backbone
        differ only here, so their features can be computed once."""
        if self.scaling:
            x = (x - self.x_mean) / self.x_std
        for layer in self.layers:
            x = layer(x)
        x = self.head(x)
        return x * self.y_std + self.y_mean if self.scaling else x


def build(config: ModelConfig, seed: int | None = None) -> Net:
    """Build a module and initialise it with `config.init` (seeded when `seed` is given)."""
    gen_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        net = Net(config)
        initialize(net, config.init)
    finally:
        if seed is not None:
            torch.random.set_rng_state(gen_state)
    return net


@torch.no_grad()
def initialize(net: Net, init: str) -> None:
    """The three inits measured for this zoo.

    - kaiming: FCNets, as in the paper (kaiming_normal_ weights, PyTorch's default biases), with
      the gain of the layer's activation: the authors' ReLU gain on an ABS net doubles the
      activations' second moment at every layer, so a 20-layer FC-ABS net would overflow.
    - han-authors: the authors' code: every Linear orthogonal, u a random unit vector,
      Han bias U(+-1/sqrt(n)).
    - han-normal: every Linear orthogonal, u ~ N(0, I) so ||u|| ~ sqrt(n), Han bias 0. The gradient
      on u scales as 1/||u||, so the larger norm makes high learning rates stable.
    """
    # Each Linear with the activation after it (the head has none, and keeps the authors' ReLU gain).
    linears = [(m.linear, m.act_name) for m in net.layers if isinstance(m, Dense)] + [(net.head, "relu")]
    for lin, act in linears:
        # PyTorch's default bias init, re-drawn here so the draw order depends on the config alone.
        bound = 1 / math.sqrt(lin.in_features)
        nn.init.uniform_(lin.bias, -bound, bound)
        if init == "kaiming":
            # He init keeps E[x^2] through the layer: gain sqrt(2) for ReLU, 1 for ABS (|z|^2 = z^2).
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu" if act == "relu" else "linear")
        else:
            nn.init.orthogonal_(lin.weight)
    for han in (m for m in net.modules() if isinstance(m, HanLayer)):
        if init == "han-authors":
            nn.init.orthogonal_(han.u.view(-1, 1))
            bound = 1 / math.sqrt(han.width)
            nn.init.uniform_(han.bias, -bound, bound)
        else:
            nn.init.normal_(han.u)
            nn.init.zeros_(han.bias)
