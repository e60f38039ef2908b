import os

import pytest
import torch

# Without a GPU, the fused Triton kernel runs in Triton's interpreter. The switch is read when
# triton is first imported, so it is set here, before any test module imports it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Triton and TensorFlow both register LLVM's command-line options, and loading Triton after TensorFlow
# aborts the process (hanzoo.export_tflite._tf has the same guard). Tests mix both, so Triton loads first.
try:
    import triton  # noqa: F401
except ImportError:
    pass


@pytest.fixture(autouse=True)
def _one_thread():
    # 2-core CI machines: keep each test on one core, as the trainer does.
    torch.set_num_threads(1)
