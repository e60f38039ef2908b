"""CIFAR-10 (JPEG): the vendored test split decodes to the known images, checked and cached safely."""

import io
import tarfile

import numpy as np
import pytest

pytest.importorskip("PIL")

from hanzoo.errors import HanzooError  # noqa: E402
from hanzoo.zoo import cifar  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HANZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_test_split_shape_balance_and_cache(cache):
    x, y = cifar.load_split("test")
    assert x.shape == (10000, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * 10
    assert 100 < x.mean() < 140  # natural images, not zeros or noise
    (cached,) = cache.glob("cifar10-jpeg-test-*.npz")
    x2, y2 = cifar.load_split("test")  # from the cache now
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    cached.write_bytes(b"damaged")  # a damaged cache is rebuilt, not trusted
    assert np.array_equal(cifar.load_split("test")[0], x)


def test_checksum_is_enforced(cache, tmp_path, monkeypatch):
    bad = tmp_path / "test.tar.xz"
    bad.write_bytes(cifar.TEST_TARBALL[0].read_bytes()[:-100])
    monkeypatch.setattr(cifar, "TEST_TARBALL", (bad, cifar.TEST_TARBALL[1]))
    with pytest.raises(HanzooError, match="sha256"):
        cifar.load_split("test")


def test_decode_refuses_unknown_classes_and_wrong_counts(tmp_path):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="JPEG")
    path = tmp_path / "tiny.tar.xz"
    with tarfile.open(path, "w:xz") as tar:
        for name in ["test/cat/0000.jpg", "test/unicorn/0000.jpg"]:
            info = tarfile.TarInfo(name)
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    with pytest.raises(HanzooError, match="unknown class folder 'unicorn'"):
        cifar.decode(path, "test")


def test_unknown_split_and_missing_training_tarball(monkeypatch, tmp_path):
    with pytest.raises(HanzooError, match="unknown CIFAR-10 split"):
        cifar.load_split("val")
    monkeypatch.setenv("HANZOO_CIFAR10", str(tmp_path / "nope.tar.xz"))
    monkeypatch.setattr(cifar, "__file__", str(tmp_path / "a" / "b" / "c" / "cifar.py"))
    with pytest.raises(HanzooError, match="set HANZOO_CIFAR10"):
        cifar.full_tarball()
