"""Reports generated from the registry and the shipped files: README"s tables, the reproduction, the
retraining, latency, quantization and the static site.

Each module is imported on use (`from hanzoo.reports import docs`), so importing this package
loads nothing heavy."""

__all__ = ["docs", "reproduce", "retrain", "bench", "quantization", "site", "timings"]
