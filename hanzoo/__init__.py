"""hanzoo: a model zoo of HanNets (Householder-absolute neural layers) for edge deployment."""

from .errors import HanzooError  # noqa: E402
from .hub import load, load_onnx, load_pte, load_tflite  # noqa: E402
from .layers import HanLayer  # noqa: E402
from .models import ModelConfig, Net, build  # noqa: E402
from .registry import MODELS, get  # noqa: E402
from .version import __version__  # noqa: F401


def create_model(model_id: str, seed: int | None = None) -> Net:
    """A freshly initialised module for a registry id (timm's create_model)."""
    return build(get(model_id).config, seed=seed)


__all__ = [
    "HanLayer",
    "HanzooError",
    "MODELS",
    "ModelConfig",
    "Net",
    "build",
    "create_model",
    "get",
    "load",
    "load_onnx",
    "load_tflite",
    "load_pte",
]
