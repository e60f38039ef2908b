import os

import pytest
import torch

# Without a GPU, the fused Triton kernel runs in Triton's interpreter. The switch is read when the kernel
# is defined (hanzoo.graphs.fused's import), so it is set here, before anything imports hanzoo.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from . import golden  # noqa: E402  (imports hanzoo, so after the switch above)

# Triton and TensorFlow both register LLVM's command-line options, and loading Triton after TensorFlow
# aborts the process (hanzoo.graphs.export_tflite._tf has the same guard). Tests mix both, so Triton loads
# first.
try:
    import triton  # noqa: F401
except ImportError:
    pass

# `make test` runs two pytest-xdist workers on 2 cores: each keeps to one thread, and so do the processes
# its tests start, so that the workers do not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption(
        golden.SUBSET_OPTION,
        action="store_true",
        help="run the golden tests on the subset stated in tests/golden.py (make test's simulated-CPU pass)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if golden.subset(config):
        dropped = [i for i in items if golden.left_out(i)]
        items[:] = [i for i in items if not golden.left_out(i)]
        config.hook.pytest_deselected(items=dropped)
    for item in items:
        if golden.shares_training_features(item):
            item.add_marker(pytest.mark.xdist_group("cifar10-training-features"))
    items.sort(key=lambda i: not golden.costly(i))  # stable: the rest keep their order


def pytest_collection_finish(session):
    """A worker of `--dist loadgroup` must see its groups; on some pytest versions xdist loses them without a
    word (pytest-dev/pytest-xdist#1386), and every grouped fixture would then run on both workers."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [
        i.nodeid
        for i in session.items
        if i.get_closest_marker("xdist_group") and i.nodeid.rfind("@") <= i.nodeid.rfind("]")
    ]
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist's loadgroup lost the xdist_group of {len(lost)} tests ({lost[0]}, ...) on pytest "
            f"{pytest.__version__}: install the pytest that pyproject.toml's test extra names"
        )


@pytest.fixture(autouse=True)
def _one_thread():
    # 2-core CI machines: keep each test on one core, as the trainer does.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> golden.FeatureCache:
    """One per test run: under xdist, in the folder the workers' temporary folders share."""
    root = tmp_path_factory.getbasetemp()
    return golden.FeatureCache((root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "features")


@pytest.fixture
def cached_reference(feature_cache, monkeypatch) -> golden.FeatureCache:
    """verify's torch reference through the feature cache."""
    from hanzoo.runtimes.sessions import RUNTIMES

    monkeypatch.setitem(RUNTIMES, "torch", feature_cache.torch_runtime())
    return feature_cache
