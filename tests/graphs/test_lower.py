"""The rank-one plan that every exporter builds its graph from, run in numpy, is the torch module."""

import numpy as np
import pytest
import torch

from hanzoo import load
from hanzoo.graphs.lower import lower, run_plan
from hanzoo.reports.bench import random_input
from hanzoo.zoo import registry

MLPS = [e for e in registry.MODELS.values() if e.shipped and not e.config.backbone]


@pytest.mark.parametrize("entry", MLPS, ids=lambda e: e.id)
def test_plan_in_numpy_is_the_module(entry):
    net = load(entry.id)
    x = random_input(np.random.default_rng(0), 64, entry.config.input_shape)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = run_plan(lower(net), x.astype(np.float64))
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= 1e-4 * scale


def test_a_net_that_starts_with_a_han_layer_is_refused_saying_why():
    from hanzoo.errors import HanzooError
    from hanzoo.nn.models import Block, ModelConfig, build

    net = build(ModelConfig(4, 2, (Block("han", 4), Block("fc", 3))))
    with pytest.raises(HanzooError, match="first hidden layer is a Dense layer"):
        lower(net)
