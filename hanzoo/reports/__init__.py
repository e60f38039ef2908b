"""Reports generated from the registry and the shipped files: README"s tables, the microcontroller page,
the reproduction, the retraining, latency, quantization and the static site.

Each module is imported on use (`from hanzoo.reports import docs`), so importing this package
loads nothing heavy."""

__all__ = [
    "docs",
    "microcontroller",
    "reproduce",
    "retrain",
    "bench",
    "c_loop",
    "quantization",
    "site",
    "timings",
]
