"""Running a model: one session per format behind one interface (the C export's compiled library and
TensorFlow Lite for Microcontrollers' interpreter among them), parity against torch, emulated aarch64,
the C export bare metal on emulated Cortex-M cores,
prediction on users" data, and what the exports do with NaN, inf and huge inputs.

Each module is imported on use (`from hanzoo.runtimes import sessions`), so importing this package
loads nothing heavy."""

__all__ = ["native", "micro", "sessions", "verify", "predict", "arm", "mcu", "bad_input"]
