import pytest
import torch

from hanzoo import HanLayer, HanzooError
from hanzoo.nn.layers import check_reflection_vector


def eye(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float64)


def dense_householder(u: torch.Tensor) -> torch.Tensor:
    return eye(len(u)) - 2 * torch.outer(u, u) / u.dot(u)


def test_householder_is_orthogonal_involutive_and_norm_preserving():
    u = torch.randn(30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = dense_householder(u)
    assert torch.allclose(h @ h.T, eye(30), atol=1e-12)
    assert torch.allclose(h @ h, eye(30), atol=1e-12)
    x = torch.randn(100, 30, dtype=torch.float64)
    assert torch.allclose((x @ h).norm(dim=1), x.norm(dim=1), atol=1e-12)


@pytest.mark.parametrize("act", ["abs", "relu"])
def test_rank_one_form_matches_dense_formula(act):
    layer = HanLayer(30, act).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(64, 30, dtype=torch.float64)
    z = x @ dense_householder(layer.u.detach()) + layer.bias.detach()
    expected = z.abs() if act == "abs" else z.relu()
    assert torch.allclose(layer(x), expected, atol=1e-12)


def test_layer_holds_two_n_parameters_and_no_matrix():
    layer = HanLayer(200)
    shapes = sorted(tuple(p.shape) for p in layer.parameters())
    assert shapes == [(200,), (200,)]


def test_deep_stack_keeps_gradient_norm():
    """Paper, Proposition 1: the G-matrix of a pure Han stack with ABS is orthogonal, so the
    gradient w.r.t. the input has the norm of the gradient at the output, at any depth."""
    torch.manual_seed(0)
    stack = torch.nn.Sequential(*[HanLayer(30).double() for _ in range(200)])
    for layer in stack:
        torch.nn.init.normal_(layer.bias)
    x = torch.randn(30, dtype=torch.float64, requires_grad=True)
    g = torch.randn(30, dtype=torch.float64)
    stack(x).backward(g)
    assert x.grad.norm().item() == pytest.approx(g.norm().item(), rel=1e-10)
    # The Jacobian itself is orthogonal, not only norm-preserving along one direction.
    jac = torch.autograd.functional.jacobian(stack, x.detach())
    assert torch.allclose(jac @ jac.T, eye(30), atol=1e-9)


@pytest.mark.parametrize(
    "bad, message", [(torch.zeros(30), "zero norm"), (torch.full((30,), float("nan")), "non-finite")]
)
def test_degenerate_vectors_are_refused_on_load(bad, message):
    layer = HanLayer(30)
    with pytest.raises(HanzooError, match=message):
        layer.load_state_dict({"u": bad, "bias": torch.zeros(30)})
    with pytest.raises(HanzooError, match=message):
        check_reflection_vector(bad)


def test_unknown_activation_is_refused():
    with pytest.raises(HanzooError, match="unknown activation"):
        HanLayer(4, "tanh")


def test_inference_reuses_v_for_the_same_u_and_follows_every_change_of_u():
    from hanzoo.nn.layers import HanLayer

    torch.manual_seed(0)
    layer = HanLayer(5)
    x = torch.randn(7, 5)

    def fresh():
        u = layer.u
        return torch.abs(x + layer.bias - (x @ u).unsqueeze(-1) * u * (2 / u.dot(u)))

    with torch.no_grad():
        first = layer(x)
        assert layer.v() is layer.v()  # computed once for this u
        assert torch.allclose(first, fresh(), atol=1e-6)
        layer.u.mul_(-3.0)  # in place, as an optimizer step or load_state_dict changes it
        assert torch.allclose(layer(x), fresh(), atol=1e-6)
    layer.load_state_dict({"u": torch.randn(5), "bias": torch.randn(5)})
    with torch.no_grad():
        assert torch.allclose(layer(x), fresh(), atol=1e-6)
    # training: v is rebuilt from u on every call, so u gets its gradient through v as well
    out = layer(x).sum()
    out.backward()
    g = layer.u.grad.clone()
    u = layer.u.detach().clone().requires_grad_(True)
    ref = torch.abs(x + layer.bias.detach() - (x @ u).unsqueeze(-1) * u * (2 / u.dot(u))).sum()
    ref.backward()
    assert torch.allclose(g, u.grad, atol=1e-5)


def test_the_cached_v_gives_the_same_bits_as_computing_it_each_call():
    from hanzoo.storage.store import load_model

    net = load_model("checkerboard-hannet-20x30")
    x = torch.rand(64, 2) * 2 - 1
    with torch.no_grad():
        cached = net(x)
    with torch.enable_grad():
        net.requires_grad_(True)  # every call computes v again
        again = net(x).detach()
    assert torch.equal(cached, again)


def test_load_with_compile_gives_the_eager_outputs():
    import hanzoo

    eager = hanzoo.load("checkerboard-hannet-20x30")
    compiled = hanzoo.load("checkerboard-hannet-20x30", compile=True)
    x = torch.rand(33, 2) * 2 - 1
    with torch.no_grad():
        # inductor fuses and reorders the float32 sums: verify's output tolerance, not the same bits
        assert torch.allclose(compiled(x), eager(x), rtol=0, atol=1e-4)
    assert compiled.card == eager.card and compiled.meta == eager.meta
