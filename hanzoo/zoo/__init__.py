"""What exists: the tasks and their data, CIFAR-10, the metrics record, the table of export formats,
the registry of every model, and the sha256 pins of every published file.

Each module is imported on use (`from hanzoo.zoo import cifar`), so importing this package
loads nothing heavy."""

__all__ = ["cifar", "tasks", "record", "formats", "registry", "pins"]
