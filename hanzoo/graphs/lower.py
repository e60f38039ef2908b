"""Lower a trained Net to the rank-one arrays every exporter builds its graph from.

Both the ONNX and the TFLite graph are written from this one plan, so the formats cannot drift
apart. A Han-layer is never a dense matrix here. With v = 2u/||u||^2 precomputed (no norm or
division at inference), a run of Han-layers carries a constant-1 column next to the features:

    x' = [x, 1]                                     width n + 1
    [s, 1] = x' @ P,   P = [[v, 0], [0, 1]]         (n+1) x 2: the dot product, and the 1 passed on
    z'     = x' + [s, 1] @ Q,  Q = [[-u, 0], [b, 0]]    2 x (n+1): the scaled update and the bias
    y'     = |z'|                                   |1| = 1 keeps the column

so each Han-layer is three ops (MatMul, Gemm with C = x', Abs) and 2(n+1) + 2(n+1) constants.
The Dense layer before the run emits the 1 (a zero weight row, bias 1: act(1) = 1 for ABS and
ReLU), and the Dense layer after it takes its bias from that column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import HanzooError
from ..nn.layers import Dense, HanLayer
from ..nn.models import Net


@dataclass
class DenseStep:
    weight: np.ndarray  # [out, in]
    bias: np.ndarray | None  # [out], or None when the bias rides in a constant-1 input column
    act: str | None  # "abs", "relu" or None (the head)


@dataclass
class HanStep:
    p: np.ndarray  # [n+1, 2]
    q: np.ndarray  # [2, n+1]
    act: str


@dataclass
class ConvStep:
    """A 3x3 conv (stride 1, padding 1), an optional 2x2 max pool and per-channel scale/shift, then GELU."""

    weight: np.ndarray  # [out, in, 3, 3]
    bias: np.ndarray | None  # [out]
    pool: bool
    scale: np.ndarray | None  # [out], after the pool
    shift: np.ndarray | None


def lower_backbone(net: Net) -> tuple[np.ndarray, np.ndarray, list[ConvStep]]:
    """An image model's input normalization (per-channel mean and std, pixel units) and conv steps; the
    features are the global max over the last step's output."""
    bb = net.backbone
    f32 = lambda t: t.detach().float().numpy().copy()  # noqa: E731
    steps = [ConvStep(f32(bb.stem.weight), f32(bb.stem.bias), False, None, None)]
    for conv1, scale, shift, conv2 in zip(bb.conv1, bb.scale, bb.shift, bb.conv2):
        steps.append(ConvStep(f32(conv1.weight), None, True, f32(scale), f32(shift)))
        steps.append(ConvStep(f32(conv2.weight), f32(conv2.bias), False, None, None))
    return f32(bb.mean), f32(bb.std), steps


def fold_scaling(net: Net) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first layer's and the head's (weight, bias) in float64 with a regression net's
    standardization folded in, so they take raw features and return the target in its units:

        W ((x - m) / s) + b = (W / s) x + (b - W (m / s))       (W h + b) * s + m
    """
    f64 = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    sc = {k: np.asarray(v, dtype=np.float64) for k, v in (net.scaling or {}).items()}
    first_layer = net.layers[0] if len(net.layers) else None
    if first_layer is not None and not isinstance(first_layer, Dense):
        # a Han run takes its bias from the constant-1 column, which only a Dense layer before it emits
        raise HanzooError("the exported graphs need a net whose first hidden layer is a Dense layer")
    first = first_layer.linear if first_layer is not None else net.head
    w_in, b_in = f64(first.weight), f64(first.bias)
    w_head, b_head = f64(net.head.weight), f64(net.head.bias)
    if sc:
        b_in = b_in - w_in @ (sc["x_mean"] / sc["x_std"])
        w_in = w_in / sc["x_std"]
        if not len(net.layers):  # a linear model: the head is also the first layer
            w_head, b_head = w_in, b_in
        w_head, b_head = w_head * sc["y_std"][:, None], b_head * sc["y_std"] + sc["y_mean"]
    return w_in, b_in, w_head, b_head


def lower(net: Net) -> list[DenseStep | HanStep]:
    """The plan of `net`, with a regression net's standardization folded into its ends (`fold_scaling`),
    so the graph takes raw features and returns the target in its units at no extra op."""
    f64 = lambda t: t.detach().cpu().double().numpy()  # noqa: E731 - precompute in float64, store float32
    layers = list(net.layers)
    w_in, b_in, w_head, b_head = fold_scaling(net)
    steps: list[DenseStep | HanStep] = []
    ones = False  # does the current activation carry a trailing constant-1 column?
    for i, layer in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, Dense):
            w, b = (w_in, b_in) if i == 0 else (f64(layer.linear.weight), f64(layer.linear.bias))
            if ones:  # the bias moves into the weight's column for the constant 1
                w, b = np.concatenate([w, b[:, None]], axis=1), None
            if isinstance(nxt, HanLayer):  # emit the constant-1 column for the Han run that follows
                w = np.concatenate([w, np.zeros((1, w.shape[1]))], axis=0)
                b = np.concatenate([b, [1.0]]) if b is not None else None
                if b is None:
                    w[-1, -1] = 1.0
                ones = True
            else:
                ones = False
            steps.append(
                DenseStep(w.astype(np.float32), None if b is None else b.astype(np.float32), layer.act_name)
            )
        else:
            assert isinstance(layer, HanLayer)  # Net's hidden layers are Dense or HanLayer
            u, b = f64(layer.u), f64(layer.bias)
            n = len(u)
            v = 2.0 * u / u.dot(u)
            p = np.zeros((n + 1, 2))
            p[:n, 0], p[n, 1] = v, 1.0
            q = np.zeros((2, n + 1))
            q[0, :n], q[1, :n] = -u, b
            steps.append(HanStep(p.astype(np.float32), q.astype(np.float32), layer.act_name))
    w, b = w_head, b_head
    if ones:
        w, b = np.concatenate([w, b[:, None]], axis=1), None
    steps.append(DenseStep(w.astype(np.float32), None if b is None else b.astype(np.float32), None))
    return steps


def run_plan(steps: list[DenseStep | HanStep], x: np.ndarray) -> np.ndarray:
    """The plan in numpy, as the reference that the graph builders are tested against."""
    act: dict[str | None, Callable[[np.ndarray], np.ndarray]] = {
        "abs": np.abs,
        "relu": lambda z: np.maximum(z, 0),
        None: lambda z: z,
    }
    for s in steps:
        if isinstance(s, DenseStep):
            x = x @ s.weight.T + (0 if s.bias is None else s.bias)
        else:
            x = x + (x @ s.p) @ s.q
        x = act[s.act](x)
    return x
