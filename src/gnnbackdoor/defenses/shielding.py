"""What the baseline input shields (randomized smoothing, GNNSecurer, Prune) share: the label of
a rejected input, the call's random source, and the model-backed prediction function that a
white-box shield (GNNSecurer) needs.

Rejected inputs. A shield that declines to classify a graph (GNNSecurer flags it as
triggered; Prune removed every node; smoothing drew no non-empty subgraph, or the graph has no
nodes) answers :data:`REJECTED` (``-1``) for it. The pipeline's figures then read it as
follows, with no special case: a rejected *triggered* graph is not classified as the target,
so it counts as a failed attack in the ASR; a rejected *clean* graph is not classified as its
true class, so it counts as an error in the accuracy (a false alarm costs accuracy). This is
the defender-favourable reading for ASR and the pessimistic one for accuracy; the per-graph
``details`` say which graphs were rejected, so other readings can be computed from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.models.train_graph import predict_graphs

if TYPE_CHECKING:
    from gnnbackdoor.models.base import GraphClassifier

#: The label a shield gives an input it rejects (never a class index).
REJECTED = -1


class Unit(StrEnum):
    """What a structural shield removes or subsamples."""

    NODE = "node"  # nodes (the induced subgraph of those kept)
    EDGE = "edge"  # undirected edges (every node stays)


def root_seed(seed: int | np.random.Generator | None, default: int) -> np.random.SeedSequence:
    """The call's root ``SeedSequence``: from ``seed`` (an int, or one 128-bit draw from a
    ``numpy.random.Generator``), ``default`` when ``None`` (as GraphProt's ``predict``).

    Raises:
        ValueError: a negative int seed.
    """
    if seed is None:
        seed = default
    if isinstance(seed, np.random.Generator):
        seed = int.from_bytes(seed.bytes(16), "little")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.SeedSequence(seed)


def num_nodes(graph: Data) -> int:
    """Node count of ``graph`` (0 for a graph without a feature matrix or nodes)."""
    if graph.x is not None:
        return int(graph.x.size(0))
    return int(graph.num_nodes or 0)


@dataclass
class ModelPredictFn:
    """A prediction function that also hands over the model: the white-box access a shield
    such as GNNSecurer needs (explanations take gradients). Called like any
    :data:`~gnnbackdoor.defenses.base.PredictFn`, so every shield accepts it.

    Attributes:
        model: The (possibly backdoored) classifier behind the function.
        batch_size: Graphs per forward pass.
        clean_graphs: The defender's clean reference graphs (GNNSecurer sets its thresholds
            on them; Downer et al. use a clean validation set). Never the graphs being
            classified.
        graphs: Graphs answered so far (the pipeline's ``queried_graphs``).
    """

    model: GraphClassifier
    batch_size: int = 512
    clean_graphs: Sequence[Data] = ()
    graphs: int = field(default=0, init=False)

    def __call__(self, graphs: Sequence[Data]) -> Tensor:
        """Labels ``[B]`` of ``graphs`` (argmax of the model's class probabilities). The
        data loader draws a seed from torch's global generator even without shuffling, so
        the call runs under ``torch.random.fork_rng``: the caller's state is unchanged."""
        self.graphs += len(graphs)
        if not graphs:
            return torch.empty(0, dtype=torch.long)
        with torch.random.fork_rng(devices=[]):
            return predict_graphs(self.model, graphs, self.batch_size)[0]
