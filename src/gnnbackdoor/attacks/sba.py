"""SBA: subgraph-based backdoor (Zhang, Jia, Wang, Gong, SACMAT 2021).

One random trigger graph is drawn once from a random-graph generator; every poisoned training
graph and every test graph gets it at uniformly random nodes (Sec. 4.1 of the paper: "we
randomly sample t nodes from the graph and replace their connections with the trigger").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import networkx as nx
import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.attacks.base import ATTACKS
from gnnbackdoor.attacks.triggers import SubgraphTriggerAttack, Trigger, random_positions
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.settings import Fraction, PositiveInt

if TYPE_CHECKING:
    from gnnbackdoor.contracts.context import GraphContext


class Pattern(StrEnum):
    """Random-graph families for the trigger (GraphProt Fig. 3(c) compares all four)."""

    ERDOS_RENYI = "erdos_renyi"
    SMALL_WORLD = "small_world"
    PREFERENTIAL_ATTACHMENT = "preferential_attachment"
    COMPLETE = "complete"


#: Redraws allowed to get a connected trigger before giving up.
MAX_DRAWS = 200


def draw_pattern(
    pattern: Pattern, size: int, seed: int, edge_prob: float, sw_neighbours: int, ba_edges: int
) -> nx.Graph:
    """One graph of ``size`` nodes from ``pattern``, seeded (networkx generators)."""
    if pattern is Pattern.ERDOS_RENYI:
        return nx.erdos_renyi_graph(size, edge_prob, seed=seed)
    if pattern is Pattern.SMALL_WORLD:
        k = min(sw_neighbours, size - 1)
        return nx.watts_strogatz_graph(size, max(k, 1), edge_prob, seed=seed)
    if pattern is Pattern.PREFERENTIAL_ATTACHMENT:
        return nx.barabasi_albert_graph(size, min(ba_edges, size - 1), seed=seed)
    return nx.complete_graph(size)


def draw_connected_trigger(
    pattern: Pattern,
    size: int,
    generator: torch.Generator,
    edge_prob: float = 0.8,
    sw_neighbours: int = 2,
    ba_edges: int = 2,
) -> Trigger:
    """A connected trigger from ``pattern``: redraw (seeds from ``generator``) until the drawn
    graph is connected, so that every trigger node is part of the pattern."""
    for _ in range(MAX_DRAWS):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        graph = draw_pattern(pattern, size, seed, edge_prob, sw_neighbours, ba_edges)
        if nx.is_connected(graph):
            return Trigger.from_networkx(graph, name=pattern.value)
    raise ConfigError(
        f"no connected {pattern.value} trigger of {size} nodes in {MAX_DRAWS} draws; "
        "raise attack.edge_prob"
    )


@ATTACKS.register("sba")
@dataclass
class SBA(SubgraphTriggerAttack):
    """Subgraph-based backdoor: one random trigger graph at random nodes.

    Attributes:
        pattern: ``erdos_renyi`` (default), ``small_world``, ``preferential_attachment`` or
            ``complete``.
        edge_prob: Erdős–Rényi edge probability (the paper's trigger density, 0.8); the
            rewiring probability of ``small_world``.
        sw_neighbours: Ring neighbours of each node in ``small_world`` (Watts–Strogatz k).
        ba_edges: Edges of each new node in ``preferential_attachment`` (Barabási–Albert m).
    """

    pattern: Pattern = Pattern.ERDOS_RENYI
    edge_prob: Fraction = 0.8
    sw_neighbours: PositiveInt = 2
    ba_edges: PositiveInt = 2
    reference = "Zhang et al., Backdoor Attacks to Graph Neural Networks, SACMAT 2021"

    def _fit_trigger(self, ctx: GraphContext) -> None:
        self.trigger_ = draw_connected_trigger(
            Pattern(self.pattern),
            self.size_,
            ctx.generator,
            self.edge_prob,
            self.sw_neighbours,
            self.ba_edges,
        )

    def _positions(self, graph: Data) -> Tensor:
        return random_positions(int(graph.num_nodes), self.size_, self.generator_)

    def _embed(self, graph: Data) -> tuple[Data, Tensor]:
        positions = self._positions(graph)
        return self.trigger_.apply(graph, positions), positions

    def trigger_info(self) -> dict[str, Any]:
        return {
            "trigger_pattern": self.trigger_.name,
            "trigger_edges": self.trigger_.to_networkx_edges(),
            "placement": "random",
        }
