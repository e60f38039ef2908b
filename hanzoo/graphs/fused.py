"""One Triton kernel for a whole HanNet's inference forward: every layer in one launch.

A HanNet is deep and narrow, so on a GPU the eager forward is launch-bound (20 layers, ~3 kernels
each). Here each program keeps a tile of BLOCK_M rows in registers from the input layer to the
head: it reads its 8-byte (Checkerboard) input rows once, runs every layer, and writes the outputs
once. The weights are a few KB and are read through the cache by every program.

Layout of a supported net (every HanNet in the registry has it, and so does every FCNet):

    Dense(n_in -> W) [+ Dense(W -> W)] * n_pre   Han(W) * n_han   Dense(W -> W) * n_post   head(W -> n_out)

with one activation throughout. Widths are padded to a power of two with masks; padded columns
hold exact zeros through every layer (zero weights, zero u and bias, |0| = 0). Each Han-layer uses
v = 2u/||u||^2, computed once in `prepare`, so a layer is one row dot product and one scaled
update: h = act(h - (h . v) u + b). A regression net's standardization is folded into the first
and last layer, as in the exported graphs.

On a machine without a GPU the same kernel runs in Triton's interpreter (TRITON_INTERPRET=1, set
before triton is imported) on CPU tensors; that is how CI checks it.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import cast

import torch

from ..errors import HanzooError
from ..nn.layers import Dense, HanLayer
from ..nn.models import Net
from .lower import fold_scaling

__all__ = ["available", "FusedHanNet", "LAUNCH", "launch_for", "MAX_LOOP_COLUMNS", "for_runtime", "prepare"]

try:
    import triton
    import triton.language as tl
except ImportError:  # the module still imports, so `available()` can say why the fast path is off
    triton = None


def available() -> str | None:
    """None when the fused kernel can run here, or the reason it cannot."""
    if triton is None:
        return "triton is not installed"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return None
    if not torch.cuda.is_available():
        return "no CUDA device (set TRITON_INTERPRET=1 to run the kernel in Triton's interpreter)"
    return None


if triton is not None:

    @triton.jit
    def _act(h, RELU: tl.constexpr):
        if RELU:
            return tl.maximum(h, 0.0)
        return tl.abs(h)

    @triton.jit
    def _square(h, w_ptr, b_ptr, cols, cmask, WIDTH: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr):
        """h @ W^T + b for a W x W layer: `tl.dot` on tensor cores, or one output column at a time."""
        bias = tl.load(b_ptr + cols, mask=cmask, other=0.0)
        if DOT:
            # wt[k, j] = W[j, k]; IEEE fp32, because TF32 would break parity with the reference
            wt = tl.load(
                w_ptr + cols[None, :] * WIDTH + cols[:, None], mask=cmask[None, :] & cmask[:, None], other=0.0
            )
            return tl.dot(h, wt, input_precision="ieee") + bias[None, :]
        out = tl.zeros_like(h) + bias[None, :]
        for j in tl.static_range(WIDTH):
            wj = tl.load(w_ptr + j * WIDTH + cols, mask=cmask, other=0.0)
            out = tl.where(cols[None, :] == j, out + tl.sum(h * wj[None, :], axis=1)[:, None], out)
        return out

    @triton.jit
    def _hannet_kernel(
        x_ptr,
        out_ptr,
        M,
        w_in,
        b_in,
        w_pre,
        b_pre,
        u_ptr,
        v_ptr,
        hb_ptr,
        w_post,
        b_post,
        w_head,
        b_head,
        N_IN: tl.constexpr,
        N_OUT: tl.constexpr,
        WIDTH: tl.constexpr,
        BLOCK_N: tl.constexpr,
        N_PRE: tl.constexpr,
        N_HAN: tl.constexpr,
        N_POST: tl.constexpr,
        RELU: tl.constexpr,
        DOT: tl.constexpr,
        IN_BLOCK: tl.constexpr,
        BLOCK_M: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        rmask = rows < M
        cols = tl.arange(0, BLOCK_N)
        cmask = cols < WIDTH

        h = tl.zeros((BLOCK_M, BLOCK_N), tl.float32) + tl.load(b_in + cols, mask=cmask, other=0.0)[None, :]
        if (
            IN_BLOCK > 0
        ):  # a wide input (the CIFAR-10 head's features): tiles of IN_BLOCK columns through tl.dot
            ks = tl.arange(0, IN_BLOCK)
            for k0 in range(0, N_IN, IN_BLOCK):
                kk = k0 + ks
                xt = tl.load(
                    x_ptr + rows[:, None] * N_IN + kk[None, :],
                    mask=rmask[:, None] & (kk[None, :] < N_IN),
                    other=0.0,
                )
                wt = tl.load(
                    w_in + cols[None, :] * N_IN + kk[:, None],
                    mask=(kk[:, None] < N_IN) & cmask[None, :],
                    other=0.0,
                )
                h += tl.dot(xt, wt, input_precision="ieee")
        else:  # 2 to 18 inputs: too narrow for a matmul, so N_IN rank-one updates
            for k in range(N_IN):
                xk = tl.load(x_ptr + rows * N_IN + k, mask=rmask, other=0.0)
                wk = tl.load(w_in + cols * N_IN + k, mask=cmask, other=0.0)
                h += xk[:, None] * wk[None, :]
        h = _act(h, RELU)
        for i in tl.static_range(N_PRE):
            h = _act(
                _square(h, w_pre + i * WIDTH * WIDTH, b_pre + i * WIDTH, cols, cmask, WIDTH, BLOCK_N, DOT),
                RELU,
            )
        for layer in range(N_HAN):
            u = tl.load(u_ptr + layer * WIDTH + cols, mask=cmask, other=0.0)
            v = tl.load(v_ptr + layer * WIDTH + cols, mask=cmask, other=0.0)
            b = tl.load(hb_ptr + layer * WIDTH + cols, mask=cmask, other=0.0)
            s = tl.sum(h * v[None, :], axis=1)
            h = _act(h - s[:, None] * u[None, :] + b[None, :], RELU)
        for i in tl.static_range(N_POST):
            h = _act(
                _square(h, w_post + i * WIDTH * WIDTH, b_post + i * WIDTH, cols, cmask, WIDTH, BLOCK_N, DOT),
                RELU,
            )
        for j in tl.static_range(N_OUT):
            wj = tl.load(w_head + j * WIDTH + cols, mask=cmask, other=0.0)
            oj = tl.sum(h * wj[None, :], axis=1) + tl.load(b_head + j)
            tl.store(out_ptr + rows * N_OUT + j, oj, mask=rmask)


@dataclass
class FusedHanNet:
    """A net prepared for the kernel: packed fp32 weights on one device, and the launch constants."""

    n_in: int
    n_out: int
    width: int
    act: str
    weights: dict[str, torch.Tensor]
    n_pre: int
    n_han: int
    n_post: int
    dot: bool = True  # the W x W layers through tl.dot (needs BLOCK_M >= 16) or a column loop
    block_m: int = 0  # 0: from LAUNCH for the batch
    num_warps: int = 0  # 0: from LAUNCH for the batch

    @property
    def block_n(self) -> int:
        return max(16, triton.next_power_of_2(self.width))

    def launch(self, batch: int) -> tuple[int, int]:
        """(BLOCK_M, num_warps) for a batch: the fields where set, else the measured table, else a rule."""
        block_m, num_warps = launch_for(self.block_n, batch)
        return self.block_m or block_m, self.num_warps or num_warps

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise HanzooError(f"expected input of shape [batch, {self.n_in}], got {list(x.shape)}")
        if x.device != self.weights["u"].device:
            raise HanzooError(
                f"the input is on {x.device}, the kernel's weights on {self.weights['u'].device}: "
                f"move the input there, or prepare the net with device={str(x.device)!r}"
            )
        x = x.to(dtype=torch.float32).contiguous()
        out = (
            torch.empty((x.shape[0], self.n_out), dtype=torch.float32, device=x.device)
            if out is None
            else out
        )
        block_m, num_warps = self.launch(x.shape[0])
        w = self.weights
        grid = (triton.cdiv(x.shape[0], block_m),)
        _hannet_kernel[grid](
            x,
            out,
            x.shape[0],
            w["w_in"],
            w["b_in"],
            w["w_pre"],
            w["b_pre"],
            w["u"],
            w["v"],
            w["hb"],
            w["w_post"],
            w["b_post"],
            w["w_head"],
            w["b_head"],
            N_IN=self.n_in,
            N_OUT=self.n_out,
            WIDTH=self.width,
            BLOCK_N=self.block_n,
            N_PRE=self.n_pre,
            N_HAN=self.n_han,
            N_POST=self.n_post,
            RELU=self.act == "relu",
            DOT=self.dot,
            IN_BLOCK=32 if self.n_in >= 64 else 0,
            BLOCK_M=block_m,
            num_warps=num_warps,
        )
        return out


# (BLOCK_N, batch) -> (BLOCK_M, num_warps), chosen by `benchmarks/gpu.py --tune` on an NVIDIA H200 and
# copied from docs/gpu.json's "launch" (tests/graphs/test_fused.py checks that the two agree). A batch
# takes the entry of the measured batch nearest to it on a log scale.
LAUNCH: dict[tuple[int, int], tuple[int, int]] = {
    (32, 1024): (32, 2),
    (32, 65536): (256, 4),
    (256, 1024): (16, 4),
    (256, 65536): (16, 1),
}


def launch_for(block_n: int, batch: int) -> tuple[int, int]:
    """(BLOCK_M, num_warps) for a tile width and a batch: LAUNCH's entry, or a tile of about 4K floats."""
    measured = [b for n, b in LAUNCH if n == block_n]
    if measured:
        nearest = min(measured, key=lambda b: abs(math.log(b) - math.log(max(batch, 1))))
        return LAUNCH[(block_n, nearest)]
    # Registers hold BLOCK_M x BLOCK_N floats per program: keep that tile near 4K elements.
    return max(16, min(128, 4096 // block_n)), 4


MAX_LOOP_COLUMNS = 256


def for_runtime(net: Net, device: str | torch.device = "cuda") -> tuple[FusedHanNet | None, str | None]:
    """What the torch-cuda runtime runs for `net`: the fused kernel for a HanNet, or None and the reason.

    An FCNet is a chain of dense GEMMs that cuBLAS already runs well, so it stays a CUDA graph."""
    why_not = available()
    if why_not is not None:
        return None, why_not
    if not any(isinstance(layer, HanLayer) for layer in getattr(net, "layers", [])):
        return None, "the fused kernel is for HanNets; this net has no Han-layer"
    try:
        return prepare(net, device=device), None
    except HanzooError as e:
        return None, str(e)


def prepare(net: Net, device: str | torch.device = "cpu", dot: bool = True) -> FusedHanNet:
    """Pack `net` for the kernel; a net outside the supported layout gets an error that says why.

    `dot` runs the W x W Dense layers through tl.dot (IEEE fp32), the default because it measured
    faster than the column loop at every batch in docs/gpu.json; dot=False keeps the loop."""
    if triton is None:
        raise HanzooError("the fused kernel needs triton: pip install triton")
    if net.config.takes_images:
        raise HanzooError("the fused kernel covers MLPs; an image model's conv backbone runs as a CUDA graph")
    layers = cast(list[Dense | HanLayer], list(net.layers))  # what Net builds; ModuleList types them Module
    if not layers or not isinstance(layers[0], Dense):
        raise HanzooError("the fused kernel needs a net that starts with a Dense layer")
    acts = {layer.act_name for layer in layers}
    if len(acts) != 1:
        raise HanzooError(f"the fused kernel needs one activation throughout, got {sorted(acts)}")
    kinds = "".join("h" if isinstance(layer, HanLayer) else "d" for layer in layers)
    layout = re.fullmatch(r"d(d*)(h*)(d*)", kinds)
    if layout is None:
        raise HanzooError(
            f"the fused kernel supports Dense+, Han*, Dense* stacks; this net is {kinds!r} (d: Dense, h: Han)"
        )
    n_pre, n_han, n_post = (len(g) for g in layout.groups())
    width = net.config.width
    if not dot and (n_pre + n_post) * width > MAX_LOOP_COLUMNS:
        # the loop is unrolled at compile time: FCNet-6x100's 500 columns took Triton minutes to compile
        raise HanzooError(
            f"the column loop would unroll {(n_pre + n_post) * width} columns (at most {MAX_LOOP_COLUMNS}); "
            "use dot=True"
        )
    w_in, b_in, w_head, b_head = fold_scaling(net)
    f32 = lambda t: torch.as_tensor(t, dtype=torch.float32, device=device).contiguous()  # noqa: E731
    dense = [layer.linear for layer in layers if isinstance(layer, Dense)]
    han = [layer for layer in layers if isinstance(layer, HanLayer)]

    def square(lins: list) -> tuple[torch.Tensor, torch.Tensor]:
        if not lins:  # the kernel still takes a pointer; it never reads it
            return f32(torch.zeros(1)), f32(torch.zeros(1))
        return f32(torch.stack([lin.weight.detach() for lin in lins])), f32(
            torch.stack([lin.bias.detach() for lin in lins])
        )

    with torch.no_grad():
        w_pre, b_pre = square(dense[1 : 1 + n_pre])
        w_post, b_post = square(dense[1 + n_pre :])
        if han:
            u = torch.stack([h.u.detach().double() for h in han])
            v = 2.0 * u / (u * u).sum(dim=1, keepdim=True)
            hb = torch.stack([h.bias.detach() for h in han])
        else:
            u = v = hb = torch.zeros(1)
    weights = {
        "w_in": f32(w_in),
        "b_in": f32(b_in),
        "w_pre": w_pre,
        "b_pre": b_pre,
        "u": f32(u),
        "v": f32(v),
        "hb": f32(hb),
        "w_post": w_post,
        "b_post": b_post,
        "w_head": f32(w_head),
        "b_head": f32(b_head),
    }
    return FusedHanNet(
        net.config.in_features,
        net.config.out_features,
        width,
        acts.pop(),
        weights,
        n_pre,
        n_han,
        n_post,
        dot=dot,
    )
