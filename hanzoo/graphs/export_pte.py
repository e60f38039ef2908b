"""Write a Net as an ExecuTorch program (.pte) for phones, lowered to XNNPACK, from the same plan as ONNX.

The module exported here is rebuilt from `lower(net)` (and `lower_backbone` for image models), not
taken from the training module: each Han-layer is `x + (x @ P) @ Q` then |.|, with the plan's
(n+1) x 2 and 2 x (n+1) matrices. Two small matrix products keep the whole net inside one XNNPACK
partition; a 1-D `x @ u` would lower to `sum` ops that XNNPACK does not take, splitting the graph
at every layer. The task's decision (Checkerboard's mean > 0.5, CIFAR-10's argmax) follows the
partition, as in the ONNX graph. The batch is dynamic up to `MAX_BATCH` rows; an image model takes
one image per call. The runtime splits larger inputs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np
import torch
from torch import nn

from ..errors import HanzooError
from ..nn.models import Net
from ..zoo.tasks import Checkerboard, get_task
from .lower import DenseStep, HanStep, lower, lower_backbone

MAX_BATCH = 8192
DELEGATE = "executorch_call_delegate"


def quiet_executorch_logs() -> None:
    """ExecuTorch's import logs through Python: torchao names the CUDA kernels it cannot load on a CPU
    machine, and torch's pytree deprecates the Enum executorch registers. Neither is about the model."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def executorch():
    """The pieces of ExecuTorch the exporter needs, or one line saying what to install."""
    quiet_executorch_logs()
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (  # noqa: PLC0415 - optional
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower  # noqa: PLC0415 - optional extra
    except ImportError:
        raise HanzooError("ExecuTorch export needs executorch: pip install 'hanzoo[executorch]'") from None
    return to_edge_transform_and_lower, XnnpackPartitioner


class PlanModule(nn.Module):
    """The lowered plan as a torch module: what torch.export traces for the .pte."""

    # an image model's input normalization, registered as buffers in __init__
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: Net) -> None:
        super().__init__()
        t = lambda a: torch.tensor(a.copy())  # noqa: E731
        self.image = net.config.takes_images
        self.decision = get_task(net.meta["task"]).decision_output
        self.steps = lower(net)
        self.weights = nn.ParameterList()  # frozen: a ParameterList keeps them ordered and named
        for s in self.steps:
            pair: tuple[np.ndarray, np.ndarray | None]
            pair = (s.weight.T, s.bias) if isinstance(s, DenseStep) else (s.p, s.q)  # x @ pair[0]
            if self.image:  # as 1x1 conv weights [out, in, 1, 1], built here: XNNPACK needs constant weights
                pair = (
                    pair[0].T[:, :, None, None],
                    s.bias if isinstance(s, DenseStep) else s.q.T[:, :, None, None],
                )
            self.weights.extend(nn.Parameter(t(a), requires_grad=False) for a in pair if a is not None)
        if self.image:
            mean, std, self.convs = lower_backbone(net)
            self.register_buffer("mean", t(mean).reshape(1, -1, 1, 1))
            self.register_buffer("std", t(std).reshape(1, -1, 1, 1))
            self.conv = nn.ParameterList()
            for c in self.convs:
                self.conv.extend(
                    nn.Parameter(t(a), requires_grad=False)
                    for a in (c.weight, c.bias, c.scale, c.shift)
                    if a is not None
                )

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        # contiguous: on a strided (permuted) input, to_edge bounds the dynamic batch at 15 images
        x = (images.to(torch.float32).permute(0, 3, 1, 2).contiguous() - self.mean) / self.std
        w = iter(self.conv)
        for c in self.convs:
            x = torch.nn.functional.conv2d(x, next(w), next(w) if c.bias is not None else None, padding=1)
            if c.pool:
                x = torch.nn.functional.max_pool2d(x, 2, 2)  # an explicit stride: XNNPACK reads it
            if c.scale is not None:
                x = x * next(w).reshape(1, -1, 1, 1) + next(w).reshape(1, -1, 1, 1)
            x = torch.nn.functional.gelu(x)
        # the global max as one pool over the whole map (XNNPACK takes max_pool2d, not amax); the
        # features stay [N, C, 1, 1], because XNNPACK takes no reshape of a dynamic batch
        return torch.nn.functional.max_pool2d(x, x.shape[2], x.shape[2])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.image:
            x = self._features(x)
        w = iter(self.weights)
        mm = _conv1x1 if self.image else _matmul
        for s in self.steps:
            if isinstance(s, HanStep):
                p, q = next(w), next(w)
                x = x + mm(mm(x, p), q)
            else:
                x = mm(x, next(w), None if s.bias is None else next(w))
            if s.act == "abs":
                x = torch.abs(x)
            elif s.act == "relu":
                x = torch.relu(x)
        if self.image:
            x = x.flatten(1)  # after the partition, where a dynamic reshape is allowed
        if self.decision == "decision":
            return x, (x.mean(dim=1) > Checkerboard.THRESHOLD).to(torch.int64)
        if self.decision == "class":
            return x, torch.argmax(x, dim=1)
        return (x,)


def _matmul(x: torch.Tensor, a: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return x @ a if bias is None else torch.addmm(bias, x, a)


def _conv1x1(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A matrix product on [N, C, 1, 1] features, as a 1x1 convolution with weight w [out, in, 1, 1]."""
    return torch.nn.functional.conv2d(x, w, bias)


def lowered(net: Net):
    """The edge program of `net` with its XNNPACK partitions (for counting them, and for the .pte)."""
    to_edge_transform_and_lower, XnnpackPartitioner = executorch()
    module = PlanModule(net).eval()
    if net.config.takes_images:
        # one image per call: with a dynamic batch, ExecuTorch 1.4.1 sized the input for 15 images at most
        example, dynamic = torch.zeros(1, *net.config.input_shape, dtype=torch.uint8), None
    else:
        example = torch.zeros(2, net.config.in_features)
        dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=dynamic, strict=True)
    # the partitioner prints a line per partition, and torch's pytree warns about executorch's specs
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])


def partitions(edge) -> int:
    """How many XNNPACK partitions (delegate calls) an edge program holds."""
    graph = edge.exported_program().graph_module.graph
    return sum(1 for n in graph.nodes if n.op == "call_function" and DELEGATE in str(n.target))


def build_pte(net: Net) -> bytes:
    """The .pte bytes of `net`; refuses a plan that XNNPACK does not take as one partition."""
    edge = lowered(net)
    n = partitions(edge)
    if n != 1:
        raise HanzooError(f"the ExecuTorch program has {n} XNNPACK partitions, expected 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return bytes(edge.to_executorch().buffer)


def pte_ops(data: bytes) -> dict[str, int]:
    """What a .pte runs, read from the file: each XNNPACK partition (one delegate call each) and each
    operator call outside them, counted."""
    executorch()
    from executorch.exir._serialize._program import deserialize_pte_binary  # noqa: PLC0415 - the file's reader

    program = deserialize_pte_binary(data)
    plan = getattr(program, "program", program).execution_plan[0]
    counts: dict[str, int] = {}
    for chain in plan.chains:
        for instr in chain.instructions:
            args = instr.instr_args
            if hasattr(args, "delegate_index"):
                name = plan.delegates[args.delegate_index].id
            elif hasattr(args, "op_index"):
                name = plan.operators[args.op_index].name
            else:
                continue
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))
