import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from hanzoo import HanzooError, build
from hanzoo.training.protocols import TrainingProtocol
from hanzoo.training.selection import RunResult, select
from hanzoo.training.stacked import BatchStream, StackedNet, train_stacked
from hanzoo.training.train import train_model
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import get_task

TASK = get_task("checkerboard")


def _data(dtype=torch.float64):
    s = TASK.split()
    return torch.as_tensor(s.x_train, dtype=dtype), torch.as_tensor(s.y_train, dtype=dtype)


@pytest.mark.parametrize(
    "model_id, init, compile",
    [
        ("checkerboard-hannet-20x30", "han-normal", False),
        ("checkerboard-hannet-20x30", "han-authors", False),
        ("checkerboard-fcnet-abs-20x30", "kaiming", False),
        ("checkerboard-hannet-20x30", "han-normal", True),
    ],
)
def test_stacked_trainer_matches_plain_loop(model_id, init, compile):
    """Every run of a stack must follow the trajectory of torch.optim.SGD + MultiStepLR on an
    ordinary module: float64, 300 steps, crossing LR milestones; eager and inductor-compiled."""
    config = registry.get(model_id).config

    config = replace(config, init=init)
    x, y = _data()
    protocol = TrainingProtocol(iterations=300, milestones=(0.5, 0.7, 0.9), eval_every=10**9)
    lrs, seeds = [0.01, 0.05, 0.1], [0, 1, 0]  # the authors' init diverges at 0.1
    nets = [build(config, seed=s).double() for s in seeds]
    stacked = StackedNet(config, nets)
    diverged = train_stacked(
        stacked, TASK, x, y, torch.tensor(lrs, dtype=torch.float64), protocol, seeds, compile=compile
    )

    assert not diverged.all()
    stream = BatchStream(len(x), protocol.batch_size, seeds, protocol.iterations)
    batches = [stream.next() for _ in range(protocol.iterations)]
    for r, (net, lr) in enumerate(zip(nets, lrs)):
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [150, 210, 270], gamma=0.2)
        finite = True
        for idx in batches:
            opt.zero_grad()
            loss = ((net(x[idx[r]]) - y[idx[r]]) ** 2).mean()
            finite &= bool(torch.isfinite(loss))
            loss.backward()
            opt.step()
            sched.step()
        assert diverged[r] == (not finite), r  # divergence is detected exactly where the plain loop blows up
        if diverged[r]:
            continue
        ref = net.state_dict()
        got = stacked.state_dict(r)
        assert ref.keys() == got.keys()
        for k in ref:
            assert torch.allclose(got[k], ref[k], rtol=1e-8, atol=1e-9), (r, k, (got[k] - ref[k]).abs().max())


def test_weight_decay_matches_torch_sgd_with_cross_entropy(tmp_path):
    """The heads' protocol: cross-entropy, momentum, weight decay and milestones, against torch.optim.SGD."""
    from hanzoo.zoo.tasks import FeatureClassification

    rng = np.random.default_rng(0)
    for part, n in {"train": 300, "val": 50, "test": 50}.items():
        np.save(tmp_path / f"features-{part}.npy", rng.normal(size=(n, 6)).astype(np.float32))
        np.save(tmp_path / f"labels-{part}.npy", rng.integers(0, 10, n).astype(np.int64))
    task = FeatureClassification("toy", tmp_path)
    config = registry.get("cifar10-head-hannet").config

    config = replace(config, in_features=6)
    x = torch.as_tensor(task.split().x_train, dtype=torch.float64)
    y = torch.as_tensor(task.split().y_train, dtype=torch.float64)
    protocol = TrainingProtocol(
        iterations=120, batch_size=32, milestones=(0.5,), weight_decay=1e-2, eval_every=10**9
    )
    lrs = [0.05, 0.2]
    _stacked_equals_plain(
        config,
        task,
        x,
        y,
        protocol,
        lrs,
        lambda net, r: torch.optim.SGD(net.parameters(), lr=lrs[r], momentum=0.9, weight_decay=1e-2),
        lambda out, yb: torch.nn.functional.cross_entropy(out, yb[:, 0].long()),
        rtol=1e-8,
    )


def _stacked_equals_plain(config, task, x, y, protocol, lrs, make_opt, loss_fn, rtol):
    """Train a stack (seeds 0, 1, ...; float64), then each plain module on the stack's own minibatches
    with run r's optimizer make_opt(net, r) and MultiStepLR; stacked run r must hold the same parameters."""
    seeds = list(range(len(lrs)))
    nets = [build(config, seed=s).double() for s in seeds]
    stacked = StackedNet(config, nets)
    train_stacked(stacked, task, x, y, torch.tensor(lrs, dtype=torch.float64), protocol, seeds)
    stream = BatchStream(len(x), protocol.batch_size, seeds, protocol.iterations)
    batches = [stream.next() for _ in range(protocol.iterations)]
    milestones = [int(f * protocol.iterations) for f in protocol.milestones]
    for r, net in enumerate(nets):
        opt = make_opt(net, r)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=protocol.gamma)
        for idx in batches:
            opt.zero_grad()
            loss_fn(net(x[idx[r]]), y[idx[r]]).backward()
            opt.step()
            sched.step()
        for k, v in net.state_dict().items():
            assert torch.allclose(stacked.state_dict(r)[k], v, rtol=rtol, atol=1e-9), (r, k)


def test_adam_matches_torch_adam():
    """The regression protocol's optimizer: stacked Adam (closed-form gradients) against torch.optim.Adam."""
    config = replace(registry.get("checkerboard-hannet-20x30").config, init="han-normal")
    x, y = _data()
    protocol = TrainingProtocol(iterations=150, optimizer="adam", milestones=(0.5,), eval_every=10**9)
    lrs = [1e-3, 3e-3]
    _stacked_equals_plain(
        config,
        TASK,
        x,
        y,
        protocol,
        lrs,
        lambda net, r: torch.optim.Adam(net.parameters(), lr=lrs[r]),
        lambda out, yb: ((out - yb) ** 2).mean(),
        rtol=1e-7,
    )


def test_diverged_run_is_parked_and_does_not_harm_others():
    config = registry.get("checkerboard-hannet-20x30").config
    x, y = _data(torch.float32)
    nets = [build(config, seed=0), build(config, seed=0)]
    stacked = StackedNet(config, nets)
    protocol = TrainingProtocol(iterations=60, eval_every=10**9)
    diverged = train_stacked(stacked, TASK, x, y, torch.tensor([1e6, 0.01]), protocol, [0, 0])
    assert diverged.tolist() == [True, False]
    assert all(torch.isfinite(p).all() for p in stacked.params)

    solo = StackedNet(config, [build(config, seed=0)])
    train_stacked(solo, TASK, x, y, torch.tensor([0.01]), protocol, [0])
    for k, v in solo.state_dict(0).items():
        assert torch.allclose(stacked.state_dict(1)[k], v, atol=1e-6)


def _run(init, lr, seed, val, test, status="ok", val_loss=0.1):
    return RunResult(
        init, lr, seed, status, 0, val={"accuracy": val, "mse": val_loss}, test={"accuracy": test}
    )


def test_selection_never_reads_the_test_split():
    runs = [
        _run("a", 0.1, 0, val=99.0, test=90.0),
        _run("a", 0.1, 1, val=98.0, test=99.9),
        _run("a", 1.0, 0, val=97.0, test=100.0),
        _run("a", 1.0, 1, val=90.0, test=100.0),
    ]
    assert select(runs, TASK) == 0
    # Perturbing test figures changes nothing.
    for r in runs:
        r.test["accuracy"] = -r.test["accuracy"]
    assert select(runs, TASK) == 0


def test_selection_prefers_healthy_lrs_and_breaks_ties_on_loss():
    runs = [
        _run("a", 0.1, 0, 100.0, 0, status="diverged"),
        _run("a", 0.1, 1, 100.0, 0),
        _run("a", 0.01, 0, 99.0, 0),
        _run("a", 0.01, 1, 99.0, 0, val_loss=0.05),
    ]
    assert select(runs, TASK) == 3
    with pytest.raises(HanzooError, match="every run"):
        select([_run("a", 0.1, 0, 1, 1, status="collapsed")], TASK)


def test_train_model_writes_a_complete_folder(tmp_path):
    protocol = TrainingProtocol(iterations=40, lrs=(0.01, 0.05), seeds=(0, 1), eval_every=20)
    folder = train_model(
        "checkerboard-hannet-20x30",
        tmp_path / "m",
        inits=["han-normal", "han-authors"],
        protocol=protocol,
        progress=False,
        compile=False,
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "metrics.json",
        "model.safetensors",
    ]
    import json

    m = json.loads((folder / "metrics.json").read_text())
    assert len(m["sweep"]) == 8 and m["selected"]["init"] in ("han-normal", "han-authors")
    assert math.isclose(
        m["seeds_at_selected"]["test"]["mean"], float(np.mean(m["seeds_at_selected"]["test"]["values"]))
    )
    assert list(tmp_path.iterdir()) == [folder]


def test_interrupted_training_leaves_nothing(tmp_path, monkeypatch):
    from hanzoo.storage import store

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "save_file", boom)
    protocol = TrainingProtocol(iterations=5, lrs=(0.01,), seeds=(0,), eval_every=5)
    with pytest.raises(KeyboardInterrupt):
        train_model(
            "checkerboard-fcnet-6x100", tmp_path / "m", protocol=protocol, progress=False, compile=False
        )
    assert list(tmp_path.iterdir()) == []


def test_protocol_for_applies_the_callers_overrides():
    from hanzoo.training.protocols import PROTOCOLS
    from hanzoo.training.train import protocol_for

    base = PROTOCOLS["checkerboard"]
    assert protocol_for("checkerboard-hannet-20x30") == base
    p = protocol_for("checkerboard-hannet-20x30", iterations=40, seeds=(0,), lrs=(0.05,))
    assert (p.iterations, p.epochs, p.seeds, p.lrs) == (40, 0, (0,), (0.05,))  # iterations replace epochs
    assert PROTOCOLS["elevators"].epochs == 300  # a task whose length is set in epochs
    assert protocol_for("elevators-hannet-20x200", iterations=40).epochs == 0
    both = protocol_for("elevators-hannet-20x200", iterations=40, epochs=3)
    assert (both.iterations, both.epochs) == (40, 3)
    unknown = next(e.id for e in registry.MODELS.values() if e.task not in PROTOCOLS)
    with pytest.raises(HanzooError, match=f"cannot train {unknown}"):
        protocol_for(unknown)


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_train_dispatches_the_backbone_to_its_own_recipe(monkeypatch, tmp_path, keep_threads):
    """`train` is what `hanzoo train` calls: the backbone gets its CPU recipe on every core, not the sweep."""
    import os

    from hanzoo.training import train as train_module

    calls = []
    monkeypatch.setattr(
        train_module.backbone,
        "train_and_package",
        lambda entry, out, recipe, progress: (
            calls.append((entry.id, out, recipe, torch.get_num_threads())) or tmp_path
        ),
    )
    assert train_module.train("cifar10-backbone", tmp_path, epochs=2, progress=False) == tmp_path
    ((model, out, recipe, threads),) = calls
    assert (model, out, recipe.epochs, threads) == ("cifar10-backbone", tmp_path, 2, os.cpu_count())
    with pytest.raises(HanzooError, match="takes epochs only; drop seeds, lrs"):
        train_module.train("cifar10-backbone", tmp_path, seeds=(0, 1), lrs=(0.1,))
    with pytest.raises(HanzooError, match="own recipe: use train"):
        train_module.train_model("cifar10-backbone", tmp_path)


def test_train_runs_a_sweep_model_by_its_protocol_on_one_thread(monkeypatch, tmp_path, keep_threads):
    from hanzoo.training import train as train_module

    calls = []
    monkeypatch.setattr(
        train_module,
        "train_model",
        lambda model_id, out, **kw: calls.append((model_id, kw, torch.get_num_threads())) or tmp_path,
    )
    train_module.train("checkerboard-hannet-20x30", tmp_path, iterations=7, seeds=(3,), progress=False)
    ((model, kw, threads),) = calls
    assert model == "checkerboard-hannet-20x30" and threads == 1
    assert kw["protocol"] == train_module.protocol_for("checkerboard-hannet-20x30", iterations=7, seeds=(3,))
    assert kw["protocol"].iterations == 7 and kw["protocol"].epochs == 0 and kw["protocol"].seeds == (3,)
