"""Reduced-precision variants of a model's exports, written beside the fp32 files.

- fp16 (`model.fp16.onnx`, `model.fp16.tflite`): weights stored in half precision, input, output and
  arithmetic in float32. ONNX: every non-scalar float initializer within float16's range becomes
  float16, with a Cast back to float32 that ONNX Runtime folds when it loads the graph. TFLite: the
  converter's float16 weight option, which adds a Dequantize per weight (XNNPACK turns them back into
  fp32 on the CPU).
- int8 (`model.int8.onnx`, `model.int8.tflite`): static quantization, calibrated on the training split
  only (CALIBRATION_ROWS rows, a fixed sample). ONNX: onnxruntime.quantization's QDQ format, uint8
  activations and per-channel int8 weights. TFLite: the converter's full-integer kernels from a
  representative dataset, the input and output left float32 (the graph quantizes and dequantizes at
  its ends), so an app feeds the same tensors as to the fp32 file.

Each Han-layer is rank-one ops in every variant, as in fp32: no dense n x n matrix appears.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import HanzooError
from ..zoo.cifar import calibration_images
from ..zoo.registry import PRECISIONS
from ..zoo.tasks import get_task
from .export_tflite import tensorflow

FP16_MAX = float(np.finfo(np.float16).max)
CALIBRATION_ROWS = 1000
CALIBRATION_SEED = 0


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise HanzooError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    return precision


def training_sample(task_name: str, rows: int = CALIBRATION_ROWS) -> np.ndarray:
    """A fixed sample of the training split's inputs (never validation or test rows)."""
    x = get_task(task_name).split().x_train
    pick = np.random.default_rng(CALIBRATION_SEED).permutation(len(x))[: min(rows, len(x))]
    return np.ascontiguousarray(x[np.sort(pick)])


def calibration_data(task_name: str) -> np.ndarray:
    """The int8 calibration rows: the training sample, which for CIFAR-10 is bundled (its training
    images are not: hanzoo.zoo.cifar.calibration_images)."""
    if task_name == "cifar10":
        return calibration_images()
    return training_sample(task_name)


def onnx_fp16(model):
    """The same graph with its non-scalar float initializers stored as float16, each cast back (one
    beyond float16's range stays float32)."""
    import onnx  # noqa: PLC0415 - an optional extra; the caller (hanzoo.publishing.export) has loaded it
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415 - as above

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits, casts = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        # a tensor beyond float16's range (65504) stays float32: a regression model's first layer holds
        # its input scaling folded in, and a feature with a tiny spread makes those weights huge
        if init.data_type == TensorProto.FLOAT and arr.ndim > 0 and np.abs(arr).max() <= FP16_MAX:
            half = arr.astype(np.float16)
            inits.append(numpy_helper.from_array(half, f"{init.name}.fp16"))
            casts.append(
                helper.make_node(
                    "Cast", [f"{init.name}.fp16"], [init.name], name=f"{init.name}.cast", to=TensorProto.FLOAT
                )
            )
        else:
            inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(out, full_check=True)
    return out


def onnx_int8(fp32_path: Path, dest: Path, calibration: np.ndarray) -> None:
    """Static QDQ quantization of an fp32 ONNX file (uint8 activations, per-channel int8 weights)."""
    try:
        from onnxruntime import quantization as q  # noqa: PLC0415 - optional runtime, loaded on use
    except ImportError:
        raise HanzooError("int8 ONNX export needs onnxruntime: pip install onnxruntime") from None

    class Reader(q.CalibrationDataReader):
        def __init__(self, x: np.ndarray, batch: int = 100) -> None:
            self.batches = iter([x[i : i + batch] for i in range(0, len(x), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.batches, None)
            return None if x is None else {"input": x}

    root = logging.getLogger()  # the quantizer advises "pre-processing" on the root logger, every call
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        q.quantize_static(
            str(fp32_path),
            str(dest),
            Reader(calibration),
            quant_format=q.QuantFormat.QDQ,
            # uint8 activations with int8 weights: on x86-64 ONNX Runtime fuses those QDQ pairs into
            # integer kernels (QLinearMatMul, QGemm); with int8 activations it fuses almost none
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            per_channel=True,
            calibrate_method=q.CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        root.setLevel(level)


def tflite_options(precision: str, calibration: np.ndarray | None):
    """The converter settings of a TFLite variant, as a `configure` callback for build_tflite."""

    def configure(converter) -> None:
        tf = tensorflow()
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if precision == "fp16":
            converter.target_spec.supported_types = [tf.float16]
            return
        assert calibration is not None  # int8 is calibrated: export.write_variant passes the rows
        rows = [calibration[i : i + 1] for i in range(len(calibration))]
        converter.representative_dataset = lambda: ([r] for r in rows)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32 if calibration.dtype != np.uint8 else tf.uint8
        converter.inference_output_type = tf.float32

    return configure
