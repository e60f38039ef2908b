"""Write a Net as a TFLite flatbuffer in rank-one form, from the same plan as the ONNX graph.

Per Han-layer: FULLY_CONNECTED (x' @ P), FULLY_CONNECTED ([s,1] @ Q), ADD (x' + that), ABS. Per Dense
layer: FULLY_CONNECTED with its bias (+ ABS or RELU). Builtin ops only, so the file runs in the stock
LiteRT runtime on a phone; the signature "serving_default" has a dynamic batch, [-1, n_in]. No tensor is
int64, which TensorFlow Lite for Microcontrollers lacks: Checkerboard's `decision` is int32 here (int64 in
ONNX). CIFAR-10's `class` stays ArgMax's int64: TFLite Micro is for the MLPs.
hanzoo's id, version, task and input names ride in the flatbuffer's metadata as "hanzoo" (JSON).
"""

from __future__ import annotations

import json
import os

from ..errors import HanzooError
from ..nn.models import Net
from ..version import __version__
from ..zoo.tasks import Checkerboard, get_task
from .lower import DenseStep, HanStep, lower, lower_backbone


def tensorflow():
    """TensorFlow, loaded on first use (after Triton: see below), or one line saying what to install."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Triton (which torch's compiler loads) and TensorFlow both register LLVM's command-line options;
    # loading Triton after TensorFlow aborts the process ("inconsistency in registered CommandLine
    # options"), while the other order works. So Triton, where installed, is loaded first.
    try:
        import triton  # noqa: F401, PLC0415 - optional, and only to be loaded before TensorFlow
    except ImportError:
        pass
    try:
        import tensorflow as tf  # noqa: PLC0415 - optional runtime, loaded on use
    except ImportError:
        raise HanzooError("TFLite export needs TensorFlow: pip install 'hanzoo[tflite]'") from None
    return tf


def _tflite_tools():
    """TensorFlow's TFLite flatbuffer schema and its utilities, loaded through `tensorflow()` (which
    orders the imports and says what to install)."""
    tensorflow()
    from tensorflow.lite.python import schema_py_generated as schema  # noqa: PLC0415 - optional runtime
    from tensorflow.lite.tools import flatbuffer_utils  # noqa: PLC0415 - optional runtime

    return schema, flatbuffer_utils


def build_tflite(net: Net, model_id: str, task: str, metadata: dict | None = None, configure=None) -> bytes:
    """The TFLite flatbuffer of `net`; `configure(converter)`, if given, sets the converter's
    quantization options (hanzoo.graphs.precision) before it converts."""
    tf = tensorflow()
    steps = lower(net)
    act = {"abs": tf.abs, "relu": tf.nn.relu, None: lambda z: z}
    consts = []
    for s in steps:
        if isinstance(s, DenseStep):
            consts.append((tf.constant(s.weight.T), None if s.bias is None else tf.constant(s.bias)))
        else:
            consts.append((tf.constant(s.p), tf.constant(s.q)))

    image = net.config.takes_images
    decision = get_task(task).decision_output
    if image:
        mean, std, conv_steps = lower_backbone(net)
        convs = [
            (tf.constant(c.weight.transpose(2, 3, 1, 0)), None if c.bias is None else tf.constant(c.bias), c)
            for c in conv_steps
        ]  # OIHW -> HWIO: TFLite convolves NHWC images natively
    spec = (
        tf.TensorSpec([None, *net.config.input_shape], tf.uint8, name="input")
        if image
        else tf.TensorSpec([None, net.config.in_features], tf.float32, name="input")
    )

    @tf.function(input_signature=[spec])
    def serve(x):
        if image:
            x = (tf.cast(x, tf.float32) - mean) / std
            for w, b, c in convs:
                x = tf.nn.conv2d(x, w, 1, "SAME")
                x = x if b is None else x + b
                if c.pool:
                    x = tf.nn.max_pool2d(x, 2, 2, "VALID")
                if c.scale is not None:
                    x = x * c.scale + c.shift
                x = tf.nn.gelu(x, approximate=False)
            x = tf.reduce_max(x, axis=[1, 2])
        for s, (a, b) in zip(steps, consts):
            if isinstance(s, HanStep):
                x = x + tf.matmul(tf.matmul(x, a), b)
            else:
                x = tf.matmul(x, a) if b is None else tf.matmul(x, a) + b
            x = act[s.act](x)
        out = {"output": x}
        if decision == "decision":
            # int32, not ONNX's int64: TensorFlow Lite for Microcontrollers has no int64 tensors
            out["decision"] = tf.cast(tf.reduce_mean(x, axis=1) > Checkerboard.THRESHOLD, tf.int32)
        if decision == "class":
            out["class"] = tf.argmax(x, axis=1, output_type=tf.int64)
        return out

    names = ["output", *([decision] if decision else [])]  # the ONNX graph's order
    module = tf.Module()
    module.serve = serve
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops: phones lack them
    if configure is not None:
        configure(converter)
    flat = converter.convert()
    meta = {"hanzoo_id": model_id, "hanzoo_version": __version__, "task": task} | (metadata or {})
    return _finish(flat, "hanzoo", json.dumps(meta, sort_keys=True).encode(), names)


def _finish(flat: bytes, name: str, data: bytes, outputs: list[str]) -> bytes:
    """Name the graph's tensors after the signature ("input", "output", "decision"/"class"), in the ONNX
    graph's order, and attach the metadata. The converter names them `serving_default_input:0` and
    `PartitionedCall:N` in no fixed order, which an app reading `get_output_details()` would trip on."""
    schema, flatbuffer_utils = _tflite_tools()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    graph, (sig,) = model.subgraphs[0], model.signatureDefs
    index = {_text(t.name): t.tensorIndex for t in sig.inputs + sig.outputs}
    if sorted(index) != sorted(["input", *outputs]):
        raise HanzooError(f"TFLite signature has tensors {sorted(index)}; expected input and {outputs}")
    for key, i in index.items():
        graph.tensors[i].name = key.encode()
    graph.outputs = [index[k] for k in outputs]
    sig.outputs = sorted(sig.outputs, key=lambda t: outputs.index(_text(t.name)))
    buf = schema.BufferT()
    buf.data = list(data)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else name


def op_types(flat: bytes) -> list[str]:
    """The builtin op names of a TFLite file, in graph order."""
    _, flatbuffer_utils = _tflite_tools()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    names = [flatbuffer_utils.opcode_to_name(model, i) for i in range(len(model.operatorCodes))]
    return [names[op.opcodeIndex] for op in model.subgraphs[0].operators]


def tflite_tensor_ops(flat: bytes) -> list[tuple[str, bool]]:
    """Each op of a TFLite file, in graph order, with whether it computes in float (a float32 output)."""
    schema, flatbuffer_utils = _tflite_tools()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    names = [flatbuffer_utils.opcode_to_name(model, i) for i in range(len(model.operatorCodes))]
    graph = model.subgraphs[0]
    return [
        (names[op.opcodeIndex], any(graph.tensors[t].type == schema.TensorType.FLOAT32 for t in op.outputs))
        for op in graph.operators
    ]


def tensor_dtypes(flat: bytes) -> dict[str, str]:
    """The type of every tensor of a TFLite file, by name ("input", "output", "decision", ... and the
    converter's names for the rest): float32, int32, int64, uint8, bool, ..."""
    schema, flatbuffer_utils = _tflite_tools()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    kinds = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return {_text(t.name): kinds[t.type] for t in model.subgraphs[0].tensors}


def read_metadata(flat: bytes, name: str = "hanzoo") -> dict:
    _, flatbuffer_utils = _tflite_tools()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    for m in model.metadata or []:
        if m.name in (name, name.encode()):
            return json.loads(bytes(model.buffers[m.buffer].data))
    raise HanzooError(f"the TFLite file has no {name!r} metadata")
