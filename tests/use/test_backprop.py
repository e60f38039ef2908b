"""The hand-written training step (hanzoo.training.backprop) against torch's autograd and torch.optim, in
float64."""

import numpy as np
import pytest
import torch

from hanzoo import HanzooError, build
from hanzoo.nn.models import ModelConfig
from hanzoo.training import backprop
from hanzoo.training.protocols import TrainingProtocol
from hanzoo.training.stacked import StackedNet, train_stacked
from hanzoo.zoo import registry
from hanzoo.zoo.tasks import FeatureClassification, get_task

TASK = get_task("checkerboard")


def _batch(n_in: int, n_out: int, runs: int, classes: bool = False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(runs, 50, n_in, generator=g, dtype=torch.float64)
    if classes:
        y = torch.randint(0, n_out, (runs, 50, 1), generator=g).to(torch.float64)
    else:
        y = torch.randn(runs, 50, n_out, generator=g, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize(
    "model_id",
    [
        "checkerboard-hannet-20x30",  # Han-layers with |.|, fc layers around them
        "checkerboard-hannet-relu-20x30",  # Han-layers with ReLU
        "checkerboard-fcnet-6x100",  # fc with ReLU
        "checkerboard-fcnet-abs-20x30",  # fc with |.|
    ],
)
def test_closed_form_gradients_equal_autograd(model_id):
    config = registry.get(model_id).config
    net = StackedNet(config, [build(config, seed=s).double() for s in range(3)])
    x, y = _batch(config.in_features, config.out_features, 3)
    scale = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    wd = 1e-2
    loss = TASK.loss(net.forward(x), y)
    penalty = 0.5 * wd * sum(p.pow(2).flatten(1).sum(1) for p in net.params)
    ((loss + penalty) * scale).sum().backward()

    params = [p.detach() for p in net.params]
    got_loss, grads = backprop.loss_and_grads(
        net.kinds, net.act_names, TASK, params, x.transpose(1, 2), y, scale, wd
    )
    assert torch.allclose(got_loss, loss.detach(), rtol=1e-12)
    for name, g, p in zip(net.names, grads, net.params):
        assert g.shape == p.shape, name
        assert torch.allclose(g, p.grad, rtol=1e-9, atol=1e-12), (name, (g - p.grad).abs().max())


def test_cross_entropy_gradient_equals_autograd(tmp_path):
    rng = np.random.default_rng(0)
    for part in ("train", "val", "test"):
        np.save(tmp_path / f"features-{part}.npy", rng.normal(size=(20, 6)).astype(np.float32))
        np.save(tmp_path / f"labels-{part}.npy", rng.integers(0, 10, 20).astype(np.int64))
    task = FeatureClassification("toy", tmp_path)
    out = torch.randn(3, 50, 10, dtype=torch.float64, requires_grad=True)
    _, y = _batch(6, 10, 3, classes=True)
    task.loss(out, y).sum().backward()
    loss, grad = task.loss_grad(out.detach(), y)
    assert torch.allclose(loss, task.loss(out, y).detach())
    assert torch.allclose(grad, out.grad, rtol=1e-10, atol=1e-14)


def _train_both_steps(config, iterations: int) -> tuple[StackedNet, torch.Tensor]:
    """The same float64 sweep (2 runs, a milestone) through the closed-form and the autograd step; asserts
    equal trajectories and returns the closed-form net with its training inputs."""
    s = TASK.split()
    x = torch.as_tensor(s.x_train, dtype=torch.float64)
    y = torch.as_tensor(s.y_train, dtype=torch.float64)
    protocol = TrainingProtocol(iterations=iterations, milestones=(0.5,), eval_every=10**9)
    out = {}
    for backward in ("closed-form", "autograd"):
        net = StackedNet(config, [build(config, seed=s).double() for s in (0, 1)])
        lrs = torch.tensor([0.01, 0.05], dtype=torch.float64)
        train_stacked(net, TASK, x, y, lrs, protocol, [0, 1], backward=backward)
        out[backward] = net
    for a, b in zip(out["closed-form"].params, out["autograd"].params):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)
    return out["closed-form"], x


def test_closed_form_and_autograd_steps_train_alike():
    """Both steps of the same sweep, float64, 200 iterations with a milestone: the same trajectories."""
    _train_both_steps(registry.get("checkerboard-hannet-20x30").config, 200)


def test_unknown_backward_is_refused():
    config = registry.get("checkerboard-hannet-20x30").config
    net = StackedNet(config, [build(config, seed=0)])
    x, y = torch.zeros(10, 2), torch.zeros(10, 2)
    with pytest.raises(HanzooError, match="unknown backward 'numeric'"):
        train_stacked(
            net, TASK, x, y, torch.tensor([0.1]), TrainingProtocol(iterations=1), [0], backward="numeric"
        )


def test_chunked_predict_is_the_whole_forward_bit_for_bit():
    config = registry.get("calhousing-hannet-20x200").config
    net = StackedNet(config, [build(config, seed=s) for s in range(3)])
    x = torch.randn(2000, config.in_features, generator=torch.Generator().manual_seed(0))
    whole = net.forward(x.expand(3, *x.shape)).detach()
    assert torch.equal(net.predict(x), whole)


def test_a_net_without_hidden_layers_trains_and_predicts():
    """A linear head (the shape of cifar10-fc: no hidden layer), through the closed-form step and predict."""
    net, x = _train_both_steps(ModelConfig(2, 2, (), "kaiming"), 50)
    assert torch.equal(net.predict(x), net.forward(x.expand(2, *x.shape)).detach())
