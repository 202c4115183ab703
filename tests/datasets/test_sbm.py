"""The generated SBM: drawn from its own generator (the global RNG untouched), the same graph
as PyG's ``stochastic_blockmodel_graph`` under the same seed."""

from __future__ import annotations

import torch
from torch_geometric.utils import stochastic_blockmodel_graph, to_undirected

from gnnbackdoor.datasets.link import StochasticBlockModel, undirected_block_model


def test_sbm_is_pyg_s_graph_for_its_seed_and_leaves_the_global_rng_alone(offline_location):
    torch.manual_seed(99)
    expected_next = torch.rand(4)
    torch.manual_seed(99)
    graph = StochasticBlockModel().load(offline_location)
    assert torch.equal(torch.rand(4), expected_next)
    data = StochasticBlockModel
    sizes = [data.block_size] * data.num_blocks
    probs = torch.full((data.num_blocks, data.num_blocks), data.p_out)
    probs.fill_diagonal_(data.p_in)
    with torch.random.fork_rng():
        torch.manual_seed(1234)  # what the dataset did before it had its own generator
        reference = to_undirected(stochastic_blockmodel_graph(sizes, probs))
    assert torch.equal(graph.edge_index, reference)
    assert graph.x.shape == (240, 32) and graph.y.bincount().tolist() == [60] * 4


def test_block_model_follows_its_generator():
    block = torch.arange(3).repeat_interleave(10)
    probs = torch.full((3, 3), 0.3)
    a = undirected_block_model(block, probs, torch.Generator().manual_seed(0))
    b = undirected_block_model(block, probs, torch.Generator().manual_seed(0))
    c = undirected_block_model(block, probs, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert bool((a[0] != a[1]).all())  # no self-loops
