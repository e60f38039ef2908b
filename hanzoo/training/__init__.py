"""Training: the hand-written stacked step, the paper"s protocol run as one stacked computation,
distillation, the CIFAR-10 backbone, `hanzoo train`, and the authors" checkpoints.

Each module is imported on use (`from hanzoo.training import backprop`), so importing this package
loads nothing heavy."""

__all__ = [
    "protocols",
    "optimizers",
    "selection",
    "backprop",
    "stacked",
    "distill",
    "train",
    "backbone",
    "official",
]
