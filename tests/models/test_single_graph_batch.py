"""A last training mini-batch of one graph is skipped (it would move batch norm's running
statistics towards one graph every epoch); every other batch is trained on as before."""

from __future__ import annotations

import torch

from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig, train_graph_model


class _Counting(torch.nn.Module):
    """Wraps a classifier and records the graph count of every training forward pass."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.sizes: list[int] = []

    def forward(self, x, edge_index, batch=None, num_graphs=None):
        if self.training:
            self.sizes.append(int(num_graphs))
        return self.model(x, edge_index, batch, num_graphs=num_graphs)


def _train(graphs, batch_size: int) -> list[int]:
    torch.manual_seed(0)
    model = _Counting(MODELS.get("gin")(hidden_channels=8, num_layers=2).build(3, 2))
    config = GraphTrainConfig(max_epochs=2, patience=2, batch_size=batch_size)
    train_graph_model(model, graphs, [], config, torch.Generator().manual_seed(0))
    return model.sizes


def test_a_last_batch_of_one_graph_is_skipped(tiny_graph_dataset):
    assert _train(tiny_graph_dataset[:9], batch_size=4) == [4, 4, 4, 4]  # 9 = 2 x 4 + 1


def test_other_last_batches_are_kept(tiny_graph_dataset):
    assert _train(tiny_graph_dataset[:10], batch_size=4) == [4, 4, 2, 4, 4, 2]
    assert _train(tiny_graph_dataset[:1], batch_size=4) == [1, 1]  # a single graph still trains
