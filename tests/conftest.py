"""Shared fixtures: tiny hand-made graphs, a temporary dataset cache, and the offline mirror.

Tests that need real data carry ``@pytest.mark.realdata`` and are skipped when no mirror is
found (``GNNBACKDOOR_DATA_MIRROR`` or ``../shared/datasets`` beside the repository).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch_geometric.data import Data

from gnnbackdoor.datasets import DataLocation
from gnnbackdoor.datasets.base import GraphDataset
from gnnbackdoor.utils.progress import set_quiet

REPO = Path(__file__).resolve().parents[1]


def find_mirror() -> Path | None:
    env = os.environ.get("GNNBACKDOOR_DATA_MIRROR")
    for candidate in [Path(env)] if env else [REPO.parent / "shared" / "datasets"]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(autouse=True)
def _quiet_and_single_threaded():
    set_quiet(True)
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = find_mirror()
    if path is None:
        pytest.skip("no dataset mirror (set GNNBACKDOOR_DATA_MIRROR or put ../shared/datasets)")
    return path


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One dataset cache for the whole session (PyG processing is the slow part)."""
    env = os.environ.get("GNNBACKDOOR_TEST_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("dataset-cache")


@pytest.fixture(scope="session")
def real_location(mirror, shared_cache) -> DataLocation:
    return DataLocation(cache_dir=shared_cache, mirror_dir=mirror, allow_download=False)


@pytest.fixture
def offline_location(tmp_path) -> DataLocation:
    """A location with an empty mirror and no downloads: only generated datasets load."""
    empty = tmp_path / "mirror"
    empty.mkdir()
    return DataLocation(cache_dir=tmp_path / "cache", mirror_dir=empty, allow_download=False)


def undirected(pairs: list[tuple[int, int]]) -> torch.Tensor:
    """``edge_index`` ``[2, 2E]`` with both directions of each pair."""
    src = [a for a, b in pairs] + [b for a, b in pairs]
    dst = [b for a, b in pairs] + [a for a, b in pairs]
    return torch.tensor([src, dst], dtype=torch.long)


@pytest.fixture
def path_graph() -> Data:
    """A 6-node path 0-1-2-3-4-5 with 4 features per node, label 1."""
    edge_index = undirected([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)])
    x = torch.arange(24, dtype=torch.float).view(6, 4) / 24
    return Data(x=x, edge_index=edge_index, y=torch.tensor([1]))


@pytest.fixture
def tiny_graph_dataset() -> list[Data]:
    """40 small graphs of two classes (cycles: class 0, stars: class 1), 3 features."""
    graphs = []
    for i in range(40):
        n = 6 + i % 4
        if i % 2 == 0:
            pairs = [(k, (k + 1) % n) for k in range(n)]
        else:
            pairs = [(0, k) for k in range(1, n)]
        x = torch.zeros(n, 3)
        x[:, i % 3] = 1
        graphs.append(Data(x=x, edge_index=undirected(pairs), y=torch.tensor([i % 2])))
    return graphs


class TinyDataset(GraphDataset):
    """A dataset object over given graphs, for pipelines run without the registry."""

    task: ClassVar[str] = "graph"
    registered_name: ClassVar[str] = "tiny"

    def __init__(self, graphs: list[Data]) -> None:
        self.graphs = graphs

    def load(self, location: DataLocation) -> list[Data]:
        return self.graphs


def tiny_run(graphs: list[Data], defense=None, seed: int = 0, attack: bool = True):
    """A resolved graph run over ``graphs``: a small GIN with dropout, 4 epochs, SBA (target
    class 1, 4-node trigger, 30 % injection) unless ``attack`` is false, and ``defense``."""
    from gnnbackdoor.attacks import ATTACKS
    from gnnbackdoor.experiments.config import DataConfig
    from gnnbackdoor.experiments.pipelines import ResolvedRun
    from gnnbackdoor.models import MODELS
    from gnnbackdoor.models.train_graph import GraphTrainConfig

    return ResolvedRun(
        dataset_name="tiny",
        dataset=TinyDataset(graphs),
        model_spec=MODELS.get("gin")(hidden_channels=16, num_layers=2, dropout=0.5),
        data_config=DataConfig(train_fraction=0.6, val_fraction=0.2),
        train_config=GraphTrainConfig(max_epochs=4, patience=4, batch_size=8),
        attack=(
            ATTACKS.get("sba")(target_class=1, injection_ratio=0.3, trigger_size=4)
            if attack
            else None
        ),
        defense=defense,
        seed=seed,
        location=DataLocation(),
    )


@pytest.fixture
def graph_run():
    """:func:`tiny_run`, the factory of small resolved graph runs."""
    return tiny_run
