"""The Han-layer: a Householder reflection plus bias, then an activation (paper, Algorithm 1)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import HanzooError

ACTIVATIONS = {"abs": torch.abs, "relu": torch.relu}


def activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise HanzooError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


class HanLayer(nn.Module):
    """y = act(x - 2 (x.u / ||u||^2) u + b), computed in rank-one form.

    The n x n matrix H(u) = I - 2uu^T/||u||^2 is never built: one dot product per row, then a
    scaled update, so the layer costs O(n) memory and O(n) work per sample.
    """

    def __init__(self, width: int, act: str = "abs") -> None:
        super().__init__()
        self.width = width
        self.act_name = act
        self.act = activation(act)
        self.u = nn.Parameter(torch.empty(width))
        self.bias = nn.Parameter(torch.zeros(width))
        nn.init.normal_(self.u)
        self._v: torch.Tensor | None = None
        self._v_of: tuple | None = None  # the version of u that _v was computed from

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(torch.addcmul(x + self.bias, (x @ self.u).unsqueeze(-1), self.v(), value=-1.0))

    def v(self) -> torch.Tensor:
        """2u/||u||^2. Where a gradient can flow to u it is recomputed on every call. Otherwise (inference)
        the one computed for this version of u is reused, with the same bits: an optimizer step and
        load_state_dict change u in place, which bumps its version, and .to() gives it new storage. That
        saves three of a layer's seven kernels, which is most of the time at batch 1."""
        u = self.u
        if (torch.is_grad_enabled() and u.requires_grad) or torch.compiler.is_compiling():
            return u * (2.0 / u.dot(u))
        key = (u._version, u.data_ptr(), u.device, u.dtype)
        if self._v is None or self._v_of != key:
            self._v, self._v_of = u * (2.0 / u.dot(u)), key
        return self._v

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        u = state_dict.get(prefix + "u")
        if u is not None:
            check_reflection_vector(u, prefix + "u")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"width={self.width}, act={self.act_name}"


def check_reflection_vector(u: torch.Tensor, name: str = "u") -> None:
    """H(u) is undefined for u = 0, and a non-finite u poisons every output: refuse both at load time."""
    if not torch.isfinite(u).all():
        raise HanzooError(f"Han-layer vector {name} has non-finite values")
    if float(u.double().norm()) < 1e-12:
        raise HanzooError(f"Han-layer vector {name} has zero norm, so the reflection is undefined")


class Dense(nn.Module):
    """A fully connected layer followed by its activation."""

    def __init__(self, n_in: int, n_out: int, act: str = "relu") -> None:
        super().__init__()
        self.act_name = act
        self.act = activation(act)
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))

    def extra_repr(self) -> str:
        return f"act={self.act_name}"
