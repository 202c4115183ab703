"""The weighted SAGE and GAT victims: without an edge weight they are PyG's ``GraphSAGE`` and
``GAT`` bit for bit (same state_dict, same outputs, same gradients); with one they follow the
weighted-adjacency rule GTA's topology generator trains through."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn.models import GAT, GraphSAGE

from gnnbackdoor.models import MODELS
from gnnbackdoor.models.graph import (
    GATSpec,
    SAGESpec,
    WeightedGAT,
    WeightedGATConv,
    WeightedGraphSAGE,
    WeightedSAGEConv,
)


class _PyGSAGESpec(SAGESpec):
    encoder_cls = GraphSAGE


class _PyGGATSpec(GATSpec):
    encoder_cls = GAT


PAIRS = {"sage": (SAGESpec, _PyGSAGESpec), "gat": (GATSpec, _PyGGATSpec)}
#: a small directed graph with a node without in-edges (5); no repeated edge or self-loop, so
#: the victim may take it as a sparse adjacency (``models.base.sparse_adjacency``)
EDGES = torch.tensor([[0, 1, 1, 2, 3, 4, 0, 2, 5, 1], [1, 0, 2, 1, 4, 0, 3, 4, 2, 3]])


def _graph(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(6, 7, generator=g), torch.tensor([0, 0, 0, 1, 1, 1])


def test_registered_sage_and_gat_use_the_weighted_encoders():
    assert MODELS.get("sage").encoder_cls is WeightedGraphSAGE
    assert MODELS.get("gat").encoder_cls is WeightedGAT
    for name in ("sage", "gat"):
        model = MODELS.get(name)().build(7, 2)
        assert model.supports_edge_weight


@pytest.mark.parametrize("name", ["sage", "gat"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unweighted_models_are_pyg_bit_for_bit(name, seed):
    """Same initial state_dict for the same seed, same eval outputs, and in train mode the
    same outputs and parameter gradients (so the same training), edge path and (SAGE)
    sparse-adjacency path."""
    ours_spec, pyg_spec = PAIRS[name]
    torch.manual_seed(seed)
    ours = ours_spec(hidden_channels=16, num_layers=3).build(7, 3)
    torch.manual_seed(seed)
    pyg = pyg_spec(hidden_channels=16, num_layers=3).build(7, 3)
    assert isinstance(pyg.encoder, GraphSAGE | GAT)
    assert not isinstance(pyg.encoder, WeightedGraphSAGE | WeightedGAT)
    ours_state, pyg_state = ours.state_dict(), pyg.state_dict()
    assert list(ours_state) == list(pyg_state)
    for key, value in ours_state.items():
        assert value.shape == pyg_state[key].shape and torch.equal(value, pyg_state[key])
    x, batch = _graph(seed)
    thresholds = [16.0, 0.0] if name == "sage" else [16.0]  # 0: the sparse adjacency
    seen: list[torch.Tensor] = []
    ours.encoder.convs[0].register_forward_pre_hook(lambda _, args: seen.append(args[1]))
    for threshold in thresholds:
        seen.clear()
        ours.sparse_min_mean_degree = pyg.sparse_min_mean_degree = threshold
        ours.eval(), pyg.eval()
        assert torch.equal(ours(x, EDGES, batch), pyg(x, EDGES, batch))
        ours.train(), pyg.train()
        torch.manual_seed(seed)
        out_ours = ours(x, EDGES, batch)
        torch.manual_seed(seed)
        out_pyg = pyg(x, EDGES, batch)
        assert torch.equal(out_ours, out_pyg)
        grads_ours = torch.autograd.grad(out_ours.square().sum(), list(ours.parameters()))
        grads_pyg = torch.autograd.grad(out_pyg.square().sum(), list(pyg.parameters()))
        for a, b in zip(grads_ours, grads_pyg, strict=True):
            assert torch.equal(a, b)
        assert seen and all((s.layout != torch.strided) == (threshold == 0.0) for s in seen)


def test_unweighted_sage_takes_the_sparse_adjacency():
    model = MODELS.get("sage")().build(7, 2)
    model.sparse_min_mean_degree = 0.0
    seen = []
    model.encoder.convs[0].register_forward_pre_hook(lambda _, args: seen.append(args[1]))
    model(_graph(0)[0], EDGES)
    assert seen[-1].layout != torch.strided


def _convs(seed: int):
    torch.manual_seed(seed)
    return {
        "sage": WeightedSAGEConv(7, 5),
        "gat": WeightedGATConv(7, 3, heads=2),
    }


@pytest.mark.parametrize("name", ["sage", "gat"])
def test_weights_follow_the_weighted_adjacency(name):
    x, _ = _graph(3)
    conv = _convs(3)[name]
    plain = conv(x, EDGES)
    ones = torch.ones(EDGES.size(1))
    assert torch.allclose(conv(x, EDGES, ones), plain, atol=1e-6)
    mask = torch.tensor([1, 0, 1, 1, 0, 1, 1, 0, 1, 1], dtype=torch.float)
    removed = conv(x, EDGES[:, mask.bool()])
    assert torch.allclose(conv(x, EDGES, mask), removed, atol=1e-6)
    assert not torch.allclose(removed, plain, atol=1e-3)
    # the whole victim agrees too (batch norm in eval mode)
    model = MODELS.get(name)(hidden_channels=16).build(7, 2).eval()
    assert torch.allclose(model(x, EDGES, edge_weight=mask), model(x, EDGES[:, mask.bool()]))
    assert torch.allclose(model(x, EDGES, edge_weight=torch.ones(EDGES.size(1))), model(x, EDGES))


def test_weighted_sage_is_the_weighted_mean():
    x, _ = _graph(4)
    conv = _convs(4)["sage"]
    weight = torch.rand(EDGES.size(1)) + 0.5
    src, dst = EDGES
    total = torch.zeros(6, 7).index_add_(0, dst, weight.view(-1, 1) * x[src])
    norm = torch.zeros(6).index_add_(0, dst, weight).clamp(min=1)
    expected = conv.lin_l(total / norm.view(-1, 1)) + conv.lin_r(x)
    assert torch.allclose(conv(x, EDGES, weight), expected, atol=1e-6)


def test_weighted_gat_attention_is_the_renormalised_softmax():
    """alpha_ij = w_ij exp(e_ij) / sum_k w_ik exp(e_ik) (self-loops weight 1), by hand."""
    x, _ = _graph(5)
    conv = _convs(5)["gat"]
    weight = torch.rand(EDGES.size(1))
    h = conv.lin(x).view(-1, 2, 3)
    loops = torch.arange(6)
    src = torch.cat([EDGES[0], loops])
    dst = torch.cat([EDGES[1], loops])
    w = torch.cat([weight, torch.ones(6)])
    e = torch.nn.functional.leaky_relu(
        (h * conv.att_src).sum(-1)[src] + (h * conv.att_dst).sum(-1)[dst], conv.negative_slope
    )
    num = w.view(-1, 1) * e.exp()
    den = torch.zeros(6, 2).index_add_(0, dst, num)
    alpha = num / den[dst]
    out = torch.zeros(6, 2, 3).index_add_(0, dst, alpha.unsqueeze(-1) * h[src])
    expected = out.reshape(6, 6) + conv.bias
    assert torch.allclose(conv(x, EDGES, weight), expected, atol=1e-6)


@pytest.mark.parametrize("name", ["sage", "gat"])
def test_gradients_reach_the_edge_weights(name):
    x, batch = _graph(6)
    model = MODELS.get(name)(hidden_channels=16).build(7, 2).eval()
    weight = torch.tensor([1, 0, 1, 1, 0, 1, 1, 0, 1, 1], dtype=torch.float, requires_grad=True)
    model(x, EDGES, batch, weight).square().sum().backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all()
    assert bool((weight.grad != 0).any())
    assert float(weight.grad[weight.detach() == 0].abs().sum()) > 0  # absent edges too


@pytest.mark.parametrize("name", ["sage", "gat"])
def test_weights_with_a_sparse_adjacency_are_refused(name):
    x, _ = _graph(7)
    conv = _convs(7)[name]
    adjacency = torch.sparse_coo_tensor(EDGES.flip(0), torch.ones(EDGES.size(1)), (6, 6))
    with pytest.raises(ValueError, match="edge_index"):
        conv(x, adjacency.coalesce(), torch.ones(EDGES.size(1)))
