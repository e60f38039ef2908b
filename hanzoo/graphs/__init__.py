"""Exported graphs: the rank-one lowering, the ONNX, TFLite, ExecuTorch and plain-C writers, fp16/int8
variants, and the fused Triton kernel.

Each module is imported on use (`from hanzoo.graphs import lower`), so importing this package
loads nothing heavy."""

__all__ = ["lower", "export_onnx", "export_tflite", "export_pte", "export_c", "precision", "fused"]
