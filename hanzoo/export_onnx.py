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

from . import __version__
from .lower import DenseStep, lower
from .models import Net

OPSET = 17
ACT_OPS = {"abs": "Abs", "relu": "Relu"}


def build_onnx(net: Net, model_id: str, task: str, metadata: dict | None = None) -> onnx.ModelProto:
    """The ONNX graph of `net`: input "input" [batch, n_in] float32; output "output" [batch, n_out]
    in task units, plus "decision" [batch] int64 (mean of the outputs > 0.5) for Checkerboard."""
    steps = lower(net)
    nodes, inits = [], []
    x = "input"
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
            nodes.append(helper.make_node("Gemm", [f"{pre}.s", f"{pre}.q", x], [f"{pre}.z"], name=f"{pre}.update"))
            out = f"{pre}.z"
        if s.act is not None:
            nodes.append(helper.make_node(ACT_OPS[s.act], [out], [f"{pre}.y"], name=f"{pre}.{s.act}"))
            out = f"{pre}.y"
        x = out
    n_out = steps[-1].weight.shape[0]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_out])]
    if task == "checkerboard":
        inits.append(numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"))
        nodes += [helper.make_node("ReduceMean", ["output"], ["mean"], name="decision.mean", axes=[1], keepdims=0),
                  helper.make_node("Greater", ["mean", "half"], ["above"], name="decision.greater"),
                  helper.make_node("Cast", ["above"], ["decision"], name="decision.cast", to=TensorProto.INT64)]
        outputs.append(helper.make_tensor_value_info("decision", TensorProto.INT64, ["batch"]))
    graph = helper.make_graph(nodes, model_id, [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["batch", net.config.in_features])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="hanzoo", producer_version=__version__)
    model.ir_version = 8  # readable by every ONNX Runtime since 1.10, mobile builds included
    meta = {"hanzoo_id": model_id, "hanzoo_version": __version__, "task": task} | (metadata or {})
    helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
    onnx.checker.check_model(model, full_check=True)
    return model
