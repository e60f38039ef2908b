"""hanzoo: a model zoo of HanNets (Householder-absolute neural layers) for edge deployment."""

from .errors import HanzooError  # noqa: E402
from .nn.layers import HanLayer  # noqa: E402
from .nn.models import ModelConfig, Net, build  # noqa: E402
from .publishing.hub import load, load_onnx, load_pte, load_tflite  # noqa: E402
from .version import __version__  # noqa: F401
from .zoo.registry import MODELS, get  # noqa: E402


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
