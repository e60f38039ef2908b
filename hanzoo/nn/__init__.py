"""The architecture: the Han-layer and the dense layer, the CIFAR-10 backbone, and the Net a
ModelConfig builds.

Each module is imported on use (`from hanzoo.nn import layers`), so importing this package
loads nothing heavy."""

__all__ = ["layers", "convnet", "models"]
