"""Write a Net as an ONNX graph in rank-one form, from the plan in `lower.py`.

Per Han-layer: MatMul (x' @ P: the dot product, with the constant 1 passed on), Gemm (x' + [s,1] @ Q:
the scaled update and the bias), Abs. Per Dense layer: Gemm (+ Abs or Relu). The batch dimension is
dynamic ("batch"). The graph is built node by node with onnx.helper, so it is byte-for-byte
deterministic and holds nothing but these constants.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..nn.models import Net
from ..version import __version__
from ..zoo.tasks import Checkerboard, get_task
from .lower import DenseStep, lower, lower_backbone

OPSET = 17
ACT_OPS = {"abs": "Abs", "relu": "Relu"}


def build_onnx(net: Net, model_id: str, task: str, metadata: dict | None = None) -> onnx.ModelProto:
    """The ONNX graph of `net`: input "input" [batch, n_in] float32; output "output" [batch, n_out]
    in task units, plus the task's decision: "decision" [batch] int64 (mean of the outputs > the
    threshold) for Checkerboard, "class" [batch] int64 (argmax) for CIFAR-10."""
    steps = lower(net)
    decision = get_task(task).decision_output
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = "input"
    if net.config.takes_images:
        x = _backbone_nodes(net, nodes, inits)
    for i, s in enumerate(steps):
        pre = f"l{i}"
        if isinstance(s, DenseStep):
            inits.append(numpy_helper.from_array(s.weight, f"{pre}.weight"))
            inputs = [x, f"{pre}.weight"] + ([f"{pre}.bias"] if s.bias is not None else [])
            if s.bias is not None:
                inits.append(numpy_helper.from_array(s.bias, f"{pre}.bias"))
            out = "output" if i == len(steps) - 1 else f"{pre}.z"
            nodes.append(helper.make_node("Gemm", inputs, [out], name=f"{pre}.gemm", transB=1))
        else:
            inits += [numpy_helper.from_array(s.p, f"{pre}.p"), numpy_helper.from_array(s.q, f"{pre}.q")]
            nodes.append(helper.make_node("MatMul", [x, f"{pre}.p"], [f"{pre}.s"], name=f"{pre}.dot"))
            nodes.append(
                helper.make_node("Gemm", [f"{pre}.s", f"{pre}.q", x], [f"{pre}.z"], name=f"{pre}.update")
            )
            out = f"{pre}.z"
        if s.act is not None:
            nodes.append(helper.make_node(ACT_OPS[s.act], [out], [f"{pre}.y"], name=f"{pre}.{s.act}"))
            out = f"{pre}.y"
        x = out
    head = steps[-1]
    assert isinstance(head, DenseStep)  # lower() ends every plan with the linear head
    n_out = head.weight.shape[0]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_out])]
    if decision == "decision":
        inits.append(numpy_helper.from_array(np.array(Checkerboard.THRESHOLD, dtype=np.float32), "half"))
        nodes += [
            helper.make_node("ReduceMean", ["output"], ["mean"], name="decision.mean", axes=[1], keepdims=0),
            helper.make_node("Greater", ["mean", "half"], ["above"], name="decision.greater"),
            helper.make_node("Cast", ["above"], ["decision"], name="decision.cast", to=TensorProto.INT64),
        ]
        outputs.append(helper.make_tensor_value_info("decision", TensorProto.INT64, ["batch"]))
    if decision == "class":
        nodes.append(
            helper.make_node("ArgMax", ["output"], ["class"], name="class.argmax", axis=1, keepdims=0)
        )
        outputs.append(helper.make_tensor_value_info("class", TensorProto.INT64, ["batch"]))
    if net.config.takes_images:
        inp = helper.make_tensor_value_info("input", TensorProto.UINT8, ["batch", *net.config.input_shape])
    else:
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", net.config.in_features])
    graph = helper.make_graph(nodes, model_id, [inp], outputs, inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="hanzoo",
        producer_version=__version__,
    )
    model.ir_version = 8  # readable by every ONNX Runtime since 1.10, mobile builds included
    meta = {"hanzoo_id": model_id, "hanzoo_version": __version__, "task": task} | (metadata or {})
    helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


def _backbone_nodes(net: Net, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> str:
    """Cast, normalize and transpose uint8 HWC images, then the conv steps and the global max pool;
    returns the name of the features tensor [batch, C]. GELU is written with Erf (opset 17 has no Gelu)."""
    mean, std, steps = lower_backbone(net)
    inits += [
        numpy_helper.from_array(mean, "pixel.mean"),
        numpy_helper.from_array(std, "pixel.std"),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "gelu.half"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "gelu.one"),
        numpy_helper.from_array(np.array(1 / np.sqrt(2), dtype=np.float32), "gelu.rsqrt2"),
    ]
    nodes += [
        helper.make_node("Cast", ["input"], ["pixel.f"], name="pixel.cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", ["pixel.f", "pixel.mean"], ["pixel.c"], name="pixel.sub"),
        helper.make_node("Div", ["pixel.c", "pixel.std"], ["pixel.n"], name="pixel.div"),
        helper.make_node("Transpose", ["pixel.n"], ["conv.in"], name="pixel.nchw", perm=[0, 3, 1, 2]),
    ]
    x = "conv.in"
    for i, s in enumerate(steps):
        pre = f"c{i}"
        inits.append(numpy_helper.from_array(s.weight, f"{pre}.weight"))
        inputs = [x, f"{pre}.weight"]
        if s.bias is not None:
            inits.append(numpy_helper.from_array(s.bias, f"{pre}.bias"))
            inputs.append(f"{pre}.bias")
        nodes.append(
            helper.make_node(
                "Conv", inputs, [f"{pre}.conv"], name=f"{pre}.conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
            )
        )
        x = f"{pre}.conv"
        if s.pool:
            nodes.append(
                helper.make_node(
                    "MaxPool", [x], [f"{pre}.pool"], name=f"{pre}.pool", kernel_shape=[2, 2], strides=[2, 2]
                )
            )
            x = f"{pre}.pool"
        if s.scale is not None:
            assert s.shift is not None  # lower_backbone gives a scale and a shift together
            inits += [
                numpy_helper.from_array(s.scale[:, None, None], f"{pre}.scale"),
                numpy_helper.from_array(s.shift[:, None, None], f"{pre}.shift"),
            ]
            nodes += [
                helper.make_node("Mul", [x, f"{pre}.scale"], [f"{pre}.scaled"], name=f"{pre}.scale"),
                helper.make_node(
                    "Add", [f"{pre}.scaled", f"{pre}.shift"], [f"{pre}.affine"], name=f"{pre}.shift"
                ),
            ]
            x = f"{pre}.affine"
        nodes += [
            helper.make_node("Mul", [x, "gelu.rsqrt2"], [f"{pre}.g0"], name=f"{pre}.gelu.scale"),
            helper.make_node("Erf", [f"{pre}.g0"], [f"{pre}.g1"], name=f"{pre}.gelu.erf"),
            helper.make_node("Add", [f"{pre}.g1", "gelu.one"], [f"{pre}.g2"], name=f"{pre}.gelu.add"),
            helper.make_node("Mul", [x, f"{pre}.g2"], [f"{pre}.g3"], name=f"{pre}.gelu.mul"),
            helper.make_node("Mul", [f"{pre}.g3", "gelu.half"], [f"{pre}.y"], name=f"{pre}.gelu.half"),
        ]
        x = f"{pre}.y"
    nodes.append(
        helper.make_node("ReduceMax", [x], ["features"], name="features.max", axes=[2, 3], keepdims=0)
    )
    return "features"
