import shutil

import numpy as np
import pytest

from hanzoo import HanzooError
from hanzoo.zoo.tasks import (
    Checkerboard,
    checkerboard_grid,
    checkerboard_label,
    get_task,
    random_checkerboard_split,
)


def test_official_split_shapes_and_balance():
    s = get_task("checkerboard").split()
    assert s.x_train.shape == (1640, 2) and s.x_test.shape == (4921, 2)
    assert s.y_train.shape == (1640, 2) and (s.y_train[:, 0] == s.y_train[:, 1]).all()
    assert set(np.unique(s.y_train)) == {0.0, 1.0}
    # Train and test are disjoint and together the whole 81x81 grid.
    pts = {tuple(p) for p in np.round(np.concatenate([s.x_train, s.x_test]) * 40).astype(int)}
    assert len(pts) == 6561


def test_generator_reproduces_every_vendored_label():
    s = get_task("checkerboard").split()
    for x, y in ((s.x_train, s.y_train), (s.x_test, s.y_test)):
        assert (checkerboard_label(x) == y[:, 0]).all()
    x, label = checkerboard_grid()
    assert x.shape == (6561, 2) and (checkerboard_label(x) == label).all()
    # 12x12 blocks alternate: the inside is half ones, the 4-point border is all zeros.
    assert label.sum() == 72 * 72 / 2


def test_random_splits_are_seeded_and_disjoint():
    a, b, c = random_checkerboard_split(1), random_checkerboard_split(1), random_checkerboard_split(2)
    assert len(a.x_train) == 1640 and len(a.x_test) == 4921
    assert (a.x_train == b.x_train).all() and not (a.x_train == c.x_train).all()
    train = {tuple(p) for p in a.x_train}
    assert not any(tuple(p) in train for p in a.x_test)
    assert (checkerboard_label(a.x_train) == a.y_train[:, 0]).all()


def test_corrupted_or_missing_data_file_is_refused(tmp_path, monkeypatch):
    from hanzoo.zoo import tasks

    bad = tmp_path / "split.csv.gz"
    shutil.copy(Checkerboard.file, bad)
    data = bytearray(bad.read_bytes())
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(HanzooError, match="corrupted: sha256"):
        tasks.verified_bytes(bad, Checkerboard.sha256)
    with pytest.raises(HanzooError, match="missing"):
        tasks.verified_bytes(tmp_path / "nope.csv.gz", Checkerboard.sha256)


def test_pending_tasks_say_so():
    with pytest.raises(HanzooError, match="no data loader"):
        get_task("cifar10-features").split()
    with pytest.raises(HanzooError, match="unknown task"):
        get_task("mnist")


@pytest.mark.parametrize(
    "name, rows, n_in, target_range",
    [("elevators", 16599, 18, (0.012, 0.078)), ("calhousing", 20640, 8, (14999.0, 500001.0))],
)
def test_regression_data(name, rows, n_in, target_range):
    task = get_task(name)
    s = task.split()
    assert len(s.x_train) + len(s.x_test) == rows and len(s.x_train) == round(0.8 * rows)
    assert s.x_train.shape[1] == n_in == task.n_in == len(task.features) and s.y_train.shape[1] == 1
    y = np.concatenate([s.y_train, s.y_test])
    assert (float(y.min()), float(y.max())) == pytest.approx(target_range)
    assert task.y_range == pytest.approx(target_range[1] - target_range[0])
    assert (task.split().x_train == s.x_train).all()  # the split is seeded


def test_standardization_round_trip():
    import torch

    from hanzoo import create_model
    from hanzoo.training.stacked import fit_scaling

    s = get_task("calhousing").split()
    sc = fit_scaling(s)
    z = (s.x_train - np.array(sc["x_mean"])) / np.array(sc["x_std"])
    assert np.allclose(z.mean(axis=0), 0, atol=1e-6) and np.allclose(z.std(axis=0), 1, atol=1e-6)
    # A net with identity layers maps raw -> standardized -> raw units again.
    net = create_model("calhousing-fcnet-5x50", seed=0)
    net.set_scaling(sc)
    with torch.no_grad():
        raw = net(torch.as_tensor(s.x_test[:4]))
    assert raw.shape == (4, 1) and abs(float(raw.mean()) - sc["y_mean"][0]) < 5 * sc["y_std"][0]


def test_provenance_states_the_pinned_hash_of_every_bundled_file():
    """The data's provenance note names each bundled file with the sha256 the loaders check."""
    import re
    from pathlib import Path

    import hanzoo
    from hanzoo.files import file_sha256
    from hanzoo.zoo import cifar

    data = Path(hanzoo.__file__).parent / "data"
    text = (data / "PROVENANCE.md").read_text()
    stated = dict(re.findall(r"^\| `([^`]+)` \| [^|]+ \| `([0-9a-f]{64})` \|$", text, re.M))
    bundled = {p.name for p in data.iterdir() if p.suffix in (".gz", ".xz")}
    assert set(stated) == bundled
    for name, digest in stated.items():
        assert file_sha256(data / name) == digest, name
    pinned = {t.file.name: t.sha256 for t in (Checkerboard(), get_task("elevators"), get_task("calhousing"))}
    pinned[cifar.TEST_TARBALL[0].name] = cifar.TEST_TARBALL[1]
    pinned[cifar.CALIBRATION[0].name] = cifar.CALIBRATION[1]
    assert pinned == stated
    assert cifar.FULL_SHA256 in text
