"""Write a Net as a TFLite flatbuffer in rank-one form, from the same plan as the ONNX graph.

Per Han-layer: FULLY_CONNECTED (x' @ P), FULLY_CONNECTED ([s,1] @ Q), ADD (x' + that), ABS. Per Dense
layer: FULLY_CONNECTED with its bias (+ ABS or RELU). Builtin ops only, so the file runs in the stock
LiteRT runtime on a phone; the signature "serving_default" has a dynamic batch, [-1, n_in].
hanzoo's id, version, task and input names ride in the flatbuffer's metadata as "hanzoo" (JSON).
"""
from __future__ import annotations

import json
import os

from .errors import HanzooError
from .lower import DenseStep, HanStep, lower
from .models import Net


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError:
        raise HanzooError("TFLite export needs TensorFlow: pip install 'hanzoo[tflite]'") from None
    return tf


def build_tflite(net: Net, model_id: str, task: str, metadata: dict | None = None) -> bytes:
    tf = _tf()
    steps = lower(net)
    act = {"abs": tf.abs, "relu": tf.nn.relu, None: lambda z: z}
    consts = []
    for s in steps:
        if isinstance(s, DenseStep):
            consts.append((tf.constant(s.weight.T), None if s.bias is None else tf.constant(s.bias)))
        else:
            consts.append((tf.constant(s.p), tf.constant(s.q)))

    @tf.function(input_signature=[tf.TensorSpec([None, net.config.in_features], tf.float32, name="input")])
    def serve(x):
        for s, (a, b) in zip(steps, consts):
            if isinstance(s, HanStep):
                x = x + tf.matmul(tf.matmul(x, a), b)
            else:
                x = tf.matmul(x, a) if b is None else tf.matmul(x, a) + b
            x = act[s.act](x)
        out = {"output": x}
        if task == "checkerboard":
            out["decision"] = tf.cast(tf.reduce_mean(x, axis=1) > 0.5, tf.int64)
        return out

    module = tf.Module()
    module.serve = serve
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops: phones lack them
    flat = converter.convert()
    from . import __version__
    meta = {"hanzoo_id": model_id, "hanzoo_version": __version__, "task": task} | (metadata or {})
    return _with_metadata(flat, "hanzoo", json.dumps(meta, sort_keys=True).encode())


def _with_metadata(flat: bytes, name: str, data: bytes) -> bytes:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    buf = schema.BufferT()
    buf.data = list(data)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def op_types(flat: bytes) -> list[str]:
    """The builtin op names of a TFLite file, in graph order."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    names = [flatbuffer_utils.opcode_to_name(model, i) for i in range(len(model.operatorCodes))]
    return [names[op.opcodeIndex] for op in model.subgraphs[0].operators]


def read_metadata(flat: bytes, name: str = "hanzoo") -> dict:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    for m in model.metadata or []:
        if m.name in (name, name.encode()):
            return json.loads(bytes(model.buffers[m.buffer].data))
    raise HanzooError(f"the TFLite file has no {name!r} metadata")
