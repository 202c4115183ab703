"""Helpers for the graph-attack tests: a tiny run context over ``tiny_graph_dataset``."""

from __future__ import annotations

import pytest
import torch

from gnnbackdoor.contracts.context import GraphContext
from gnnbackdoor.datasets.splits import split_graphs
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig


def make_context(graphs, model: str = "gin", seed: int = 0, train_clean: bool = True):
    split = split_graphs(graphs, seed, train_fraction=0.75, val_fraction=0.2)
    spec = MODELS.get(model)(hidden_channels=16, num_layers=2)
    config = GraphTrainConfig(max_epochs=5, patience=5, batch_size=16)
    torch.manual_seed(seed)
    ctx = GraphContext(split, spec, config, seed, torch.Generator().manual_seed(seed))
    if train_clean:
        ctx.clean_model = ctx.train_new_model(split.train, desc="clean")
    return ctx


@pytest.fixture
def tiny_context(tiny_graph_dataset):
    return make_context(tiny_graph_dataset)
