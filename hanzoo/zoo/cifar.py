"""CIFAR-10 (JPEG): the images as uint8 arrays, decoded once and cached.

The canonical CIFAR-10 binaries are not available here. The data are the whole of CIFAR-10
re-encoded as JPEG (about quality 75; see hanzoo/data/PROVENANCE.md), so every
figure hanzoo reports on it is a "CIFAR-10 (JPEG)" figure.

- The test split (10000 images, 3.1 MB) is vendored in the package, as the `test/` folder of that
  tarball repacked deterministically. Evaluating and verifying models needs nothing else.
- The training split (50000 images) is read from the full tarball, which is too big to vendor. It is
  found at $HANZOO_CIFAR10, or at ../shared/data/cifar10-jpeg.tar.xz next to a source checkout.

Both tarballs are checked by sha256 before decoding. The decoded arrays are cached as
`.npz` (read back with allow_pickle=False) under $HANZOO_CACHE, or ~/.cache/hanzoo, keyed by the
tarball's hash, and written atomically.
"""

from __future__ import annotations

import io
import lzma
import os
import tarfile
from pathlib import Path

import numpy as np

from ..errors import HanzooError
from ..files import PACKAGE, file_sha256

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DATA_DIR = PACKAGE / "data"
TEST_TARBALL = (
    DATA_DIR / "cifar10-jpeg-test.tar.xz",
    "d7efa35767c354f6aeb8b74ca777cd062a10873f43311a34dc999bba3498aa88",
)
FULL_SHA256 = "75cfd46979ffc6983c7f3d733f27154f634e7ba92082bbf9482c6703304929d1"
# The int8 calibration sample (hanzoo.graphs.precision): 1000 training images, bundled so that an int8 export
# needs no training tarball. write_calibration() makes it from the training split.
CALIBRATION = (
    DATA_DIR / "cifar10-calibration.npy.xz",
    "536bab90a855dc1537fade79261788158c70c20b5022ad4ce2897493c8b1fe20",
)
SIZES = {"train": 50000, "test": 10000}
VAL_IMAGES = 5000  # of the training images, held out for validation (the backbone never trains on them)


def split_indices(n: int, val_images: int = VAL_IMAGES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices into the n training images; the backbone and the heads use the same
    split."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[val_images:], perm[:val_images]


def cache_dir() -> Path:
    return Path(os.environ.get("HANZOO_CACHE", Path.home() / ".cache" / "hanzoo"))


def full_tarball() -> Path:
    candidates = [
        os.environ.get("HANZOO_CIFAR10"),
        Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.tar.xz",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise HanzooError(
        "the CIFAR-10 (JPEG) training images are not here: set HANZOO_CIFAR10 to the path of "
        f"cifar10-jpeg.tar.xz (sha256 {FULL_SHA256[:16]}...)"
    )


def pillow():
    """Pillow's Image module, loaded on use (the one place it is imported), or one line saying what to
    install."""
    try:
        from PIL import Image  # noqa: PLC0415 - optional runtime, loaded on use
    except ImportError:
        raise HanzooError("reading or writing images needs Pillow: pip install 'hanzoo[cifar]'") from None
    return Image


def decode(tarball: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Every `<split>/<class>/*.jpg` in the tarball, in name order: uint8 images [N, 32, 32, 3], labels
    [N]."""
    Image = pillow()  # noqa: N806 - the module, under its usual name
    images, labels, names = [], [], []
    try:
        with tarfile.open(tarball, "r:xz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if (
                    not member.isfile()
                    or len(parts) != 3
                    or parts[0] != split
                    or not parts[2].endswith(".jpg")
                ):
                    continue
                if parts[1] not in CLASSES:
                    raise HanzooError(f"{tarball}: unknown class folder {parts[1]!r} in {member.name}")
                data = tar.extractfile(member)
                assert data is not None  # a regular file (member.isfile() above) always has its bytes
                with Image.open(io.BytesIO(data.read())) as im:
                    images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
                labels.append(CLASSES.index(parts[1]))
                names.append(member.name)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise HanzooError(f"{tarball} is not a readable tar.xz of JPEGs: {e}") from None
    if len(images) != SIZES[split] or any(im.shape != (32, 32, 3) for im in images):
        raise HanzooError(
            f"{tarball}: expected {SIZES[split]} images of 32x32x3 under {split}/, got {len(images)}"
        )
    order = np.argsort(names)
    return np.stack(images)[order], np.asarray(labels, dtype=np.uint8)[order]


def calibration_images() -> np.ndarray:
    """The bundled calibration sample: uint8 training images [1000, 32, 32, 3], checked by sha256."""
    path, sha = CALIBRATION
    if not path.is_file():
        raise HanzooError(f"{path} is missing; reinstall hanzoo")
    actual = file_sha256(path)
    if actual != sha:
        raise HanzooError(f"{path} has sha256 {actual}, expected {sha}; it is damaged: reinstall hanzoo")
    return np.load(io.BytesIO(lzma.decompress(path.read_bytes())), allow_pickle=False)


def write_calibration(images: np.ndarray, path: Path = CALIBRATION[0]) -> Path:
    """Bundle a calibration sample (hanzoo.graphs.precision.training_sample of the training split)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(images, dtype=np.uint8))
    path.write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    return path


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 (JPEG) `split` ("train" or "test") as uint8 images [N, 32, 32, 3] and labels [N]."""
    if split not in SIZES:
        raise HanzooError(f"unknown CIFAR-10 split {split!r}; expected 'train' or 'test'")
    if split == "test":
        tarball, sha = TEST_TARBALL
    else:
        tarball, sha = full_tarball(), FULL_SHA256
    cache = cache_dir() / f"cifar10-jpeg-{split}-{sha[:16]}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return z["x"], z["y"]
        except (OSError, ValueError, KeyError):
            cache.unlink(missing_ok=True)  # a damaged cache is rebuilt, never trusted
    if not tarball.is_file():
        raise HanzooError(f"{tarball} is missing")
    actual = file_sha256(tarball)
    if actual != sha:
        raise HanzooError(
            f"{tarball} has sha256 {actual}, expected {sha}; the file is damaged or not the one hanzoo knows"
        )
    x, y = decode(tarball, split)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp-{os.getpid()}.npz")
    np.savez(tmp, x=x, y=y)
    tmp.replace(cache)
    return x, y
