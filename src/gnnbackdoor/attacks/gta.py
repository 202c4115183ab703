"""GTA: Graph Trojaning Attack (Xi, Pang, Wang, Wang, USENIX Security 2021), graph
classification.

Each graph gets its own trigger: at ``k`` chosen nodes (uniformly random, fixed per graph), a
*topology generator* maps the nodes' current sub-adjacency and features to trigger adjacency
logits, and a *feature generator* maps them to the trigger nodes' features (GTA Sec. 4,
"trigger generation function"). Edges are kept where ``sigmoid(logit) > 0.5`` (a
straight-through estimator carries the gradient through the threshold). Features are
projected into the clean features' domain (:mod:`~gnnbackdoor.attacks.feature_domain`: a
one-hot row for one-hot node labels, again with a straight-through gradient): free values
in ``[0, 1]`` on one-hot atom types are inputs no clean graph has, and a never-poisoned model
classified them as the target by themselves (clean-model ASR 100 % on AIDS and DHFR).

Training is GTA's bi-level optimisation (Sec. 4, Eq. 2-3), one bi-level epoch being:
(a) materialise the triggers of the poisoned training graphs with the current generators and
train the victim on the poisoned set for ``inner_epochs`` epochs; (b) freeze the victim and
take ``generator_steps`` Adam steps on the generators to make triggered non-target graphs
classify as the target. Before the loop the generators are pre-trained against the clean model
for ``pretrain_epochs`` if asked (GCleaner App. B: "train a topology generator and a feature
generator ... for five epochs"; off by default, see the attribute); after it (GraphProt: 20
bi-level epochs) the triggers are frozen and the victim keeps training on the final poisoned
set with the run's early stopping.

On one-hot node labels each trigger node's type is a learned choice among the labels that
are common in the clean training graphs (``trigger_type_min_share``), weighted by their
frequency (``trigger_type_prior``): left free, the generator gave every trigger node one and
the same atom type found on 0.0-0.01 % of clean nodes, and that one node alone carried the
backdoor (issue 14). ``describe()`` records ``trigger_feature_rarity`` (the mean share of
clean training nodes whose feature row equals a trigger node's) and
:meth:`GTA.activate_single_node` gives graphs carrying one trigger node alone, for the
pipeline's ``single_node_asr``.

Topology gradients reach the generator through edge weights: GTA formulates the victim as
``f(A, X)`` with a (possibly weighted) adjacency ``A``, and every registered victim takes one
(GCN natively; GIN, GraphSAGE and GAT through their weighted layers in
:mod:`gnnbackdoor.models.graph`, which equal PyG's layers on the graph without the 0-weight
edges). Before those layers existed GAT and GraphSAGE took no weight and only the feature
generator learned; ``describe()`` records which was the case (``topology_learned``).

The generator, the differentiable trigger embedding and the straight-through adjacency are
the shared :mod:`~gnnbackdoor.attacks.trigger_layer` (GCleaner's trigger recovery uses them
too).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from gnnbackdoor.attacks.base import ATTACKS
from gnnbackdoor.attacks.feature_domain import FeatureDomain, FeatureKind, feature_row_share
from gnnbackdoor.attacks.trigger_layer import (
    TriggerGenerator,
    TriggerSlots,
    embed_trigger,
    seed_from,
)
from gnnbackdoor.attacks.triggers import (
    SubgraphTriggerAttack,
    Trigger,
    label_of,
    random_positions,
)
from gnnbackdoor.models.base import GraphClassifier
from gnnbackdoor.settings import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
)
from gnnbackdoor.utils.progress import progress

if TYPE_CHECKING:
    from gnnbackdoor.contracts.context import GraphContext


@ATTACKS.register("gta")
@dataclass
class GTA(SubgraphTriggerAttack):
    """Graph Trojaning Attack: per-graph triggers from topology and feature generators,
    trained by bi-level optimisation against the victim.

    Attributes:
        bilevel_epochs: Bi-level epochs (GraphProt: 20).
        inner_epochs: Victim epochs on the poisoned set per bi-level epoch.
        generator_steps: Generator updates per bi-level epoch (one mini-batch each).
        pretrain_epochs: Generator passes over the non-target training graphs against the
            clean model before the loop (default 0: pre-training against the clean model
            turns the trigger into an adversarial example for it, clean-model ASR up to 100 %
            on AIDS, where GraphProt reports 15-20 %).
        generator_lr: Adam learning rate of the generators.
        hidden: Hidden width of each generator MLP.
        generator_batch: Graphs per generator mini-batch.
        feature_domain: Domain of the trigger nodes' features (see
            :mod:`~gnnbackdoor.attacks.feature_domain`): ``auto`` (default) keeps them in the
            clean training features' domain, a one-hot row for one-hot node labels (AIDS,
            DHFR, ...), a value between each feature's clean minimum and maximum for
            continuous ones; ``unit`` writes free values in ``[0, 1]`` (out of distribution
            for one-hot labels: clean-model ASR 100 % on AIDS and DHFR with GCN).
        trigger_type_min_share: One-hot features: a trigger node may take only labels carried
            by at least this share of the clean training nodes (default 0.01: the atom types
            of at least 1 % of the atoms; the most common label is always allowed). 0 allows
            every label present, the legacy rule.
        trigger_type_prior: One-hot features: weight of ``log(share)`` added to the feature
            generator's output before its argmax, a frequency-weighted learned choice
            (default 1: the raw output is scored against the label's log-frequency; the
            generator can still prefer a rarer allowed label by that margin). 0 is the legacy
            rule (the argmax of the raw output).
    """

    bilevel_epochs: PositiveInt = 20
    inner_epochs: PositiveInt = 1
    generator_steps: PositiveInt = 4
    pretrain_epochs: NonNegativeInt = 0
    generator_lr: PositiveFloat = 0.01
    hidden: PositiveInt = 64
    generator_batch: PositiveInt = 64
    feature_domain: FeatureKind = FeatureKind.AUTO
    trigger_type_min_share: Probability = 0.01
    trigger_type_prior: NonNegativeFloat = 1.0
    #: Values of fields added after records were first made, which reproduce those records.
    legacy_values: ClassVar[dict[str, object]] = {
        "trigger_type_min_share": 0.0,
        "trigger_type_prior": 0.0,
    }
    reference = "Xi et al., Graph Backdoor (GTA), USENIX Security 2021"

    # -- fitting ---------------------------------------------------------------------------

    def _fit_trigger(self, ctx: GraphContext) -> None:
        seed = seed_from(ctx.generator)
        train = ctx.split.train
        self.domain_ = FeatureDomain.from_graphs(
            train,
            self.feature_domain,
            min_share=self.trigger_type_min_share,
            prior=self.trigger_type_prior,
        )
        self.clean_x_ = torch.cat([g.x for g in train])
        # nn.Linear initialises from torch's global RNG only: seed it from ctx.generator in
        # a forked state (the caller's global state is restored)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net_ = TriggerGenerator(
                self.size_,
                ctx.num_features,
                self.hidden,
                self.domain_,
                reads_structure=True,  # GTA's generators read the sub-adjacency too
                shared_body=False,  # separate topology and feature generators
            )
        self.optimiser_ = torch.optim.Adam(self.net_.parameters(), lr=self.generator_lr)
        # The generator pool: non-target training graphs that can carry the trigger, each
        # with its own fixed positions.
        self.pool_ = [
            (g, random_positions(int(g.num_nodes), self.size_, ctx.generator))
            for g in train
            if int(g.num_nodes) >= self.size_ and label_of(g) != self.target_class
        ]
        if not self.pool_:
            self.pool_ = [
                (g, random_positions(int(g.num_nodes), self.size_, ctx.generator))
                for g in train
                if int(g.num_nodes) >= self.size_
            ]
        self.topology_learns_ = False
        self.generator_losses_: list[float] = []
        if ctx.clean_model is not None and self.pretrain_epochs:
            steps = self.pretrain_epochs * max(1, len(self.pool_) // self.generator_batch)
            self._generator_steps(ctx.clean_model, steps)

    def _generator_steps(self, model: GraphClassifier, steps: int) -> None:
        """``steps`` Adam updates of the generators with ``model`` frozen (GTA Eq. 3)."""
        self.topology_learns_ = self.topology_learns_ or model.supports_edge_weight
        was_training = model.training
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.net_.train()
        try:
            for _ in range(steps):
                pick = torch.randperm(len(self.pool_), generator=self.generator_)
                chosen = [self.pool_[i] for i in pick[: self.generator_batch].tolist()]
                x, edge_index, weight, batch = self._differentiable_batch(chosen, model)
                logits = model(x, edge_index, batch, weight)
                target = torch.full((len(chosen),), self.target_class, dtype=torch.long)
                loss = F.cross_entropy(logits, target)
                self.optimiser_.zero_grad()
                loss.backward()
                self.optimiser_.step()
                self.generator_losses_.append(loss.item())
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
            model.train(was_training)
            self.net_.eval()

    def _differentiable_batch(
        self, items: Sequence[tuple[Data, Tensor]], model: GraphClassifier
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """One batch of triggered graphs whose trigger edges (as weights) and features keep
        their graph to the generators."""
        slots = TriggerSlots.build([g for g, _ in items], [pos for _, pos in items])
        features, adjacency = self.net_(slots.slot_features(), slots.slot_adjacency())
        x, edge_index, weight = embed_trigger(
            slots, features, adjacency, weighted=model.supports_edge_weight
        )
        return x, edge_index, weight, slots.batch.batch

    # -- triggers --------------------------------------------------------------------------

    @torch.no_grad()
    def trigger_for(self, graph: Data, positions: Tensor) -> Trigger:
        """The generators' trigger for ``graph`` at ``positions`` (hard edges)."""
        self.net_.eval()
        slots = TriggerSlots.build([graph], [positions])
        features, adjacency = self.net_(slots.slot_features(), slots.slot_adjacency())
        return Trigger.from_dense(adjacency[0].detach(), features[0].detach(), name="gta")

    def _embed_at(self, graph: Data, positions: Tensor) -> Data:
        return self.trigger_for(graph, positions).apply(graph, positions)

    def _embed(self, graph: Data) -> tuple[Data, Tensor]:
        positions = random_positions(int(graph.num_nodes), self.size_, self.generator_)
        return self._embed_at(graph, positions), positions

    # -- the bi-level loop -----------------------------------------------------------------

    @torch.no_grad()
    def _materialise(self, graphs: Sequence[Data], index: list[int], positions: dict) -> list:
        """Copies of ``graphs`` where those of ``index`` carry their current trigger (one
        generator pass for all of them) and the target label."""
        out = list(graphs)
        if not index:
            return out
        self.net_.eval()
        slots = TriggerSlots.build([graphs[i] for i in index], [positions[i] for i in index])
        features, adjacency = self.net_(slots.slot_features(), slots.slot_adjacency())
        for b, i in enumerate(index):
            trigger = Trigger.from_dense(adjacency[b], features[b], name="gta")
            triggered = trigger.apply(graphs[i], positions[i])
            triggered.y = torch.tensor([self.target_class], dtype=torch.long)
            out[i] = triggered
        return out

    def backdoor(self, ctx: GraphContext) -> GraphClassifier:
        """Bi-level optimisation of victim and generators, then training to convergence on
        the final poisoned set."""
        self._check_fitted()
        train = ctx.split.train
        index = self.choose_poison_index(train)
        positions = {
            i: random_positions(int(train[i].num_nodes), self.size_, self.generator_) for i in index
        }
        model = ctx.build_model()
        config = ctx.train_config
        optimiser = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        # the victim's shuffling: its own stream, seeded from the attack's generator (so the
        # later draws of activation positions do not depend on the number of batches)
        shuffle = torch.Generator().manual_seed(seed_from(self.generator_))
        start = time.perf_counter()
        for _ in progress(range(self.bilevel_epochs), desc="gta bi-level"):
            poisoned = self._materialise(train, index, positions)
            model.train()
            for _ in range(self.inner_epochs):
                loader = DataLoader(
                    poisoned, batch_size=config.batch_size, shuffle=True, generator=shuffle
                )
                for batch in loader:
                    optimiser.zero_grad()
                    loss = F.cross_entropy(
                        model(batch.x, batch.edge_index, batch.batch), batch.y.view(-1)
                    )
                    loss.backward()
                    optimiser.step()
            self._generator_steps(model, self.generator_steps)
        final = self._materialise(train, index, positions)
        rows = [final[i].x[positions[i]] for i in index]
        self.trigger_feature_rarity_ = feature_row_share(
            torch.cat(rows) if rows else self.clean_x_[:0], self.clean_x_
        )
        ctx.timings["gta_bilevel_s"] = time.perf_counter() - start
        ctx.timings["gta_bilevel_epoch_s"] = ctx.timings["gta_bilevel_s"] / self.bilevel_epochs
        self.poisoned_index_ = index
        self.num_train_graphs_ = len(train)
        self.poison_positions_ = {i: positions[i].tolist() for i in index}
        val = self.validation_graphs(ctx)
        self._record_training_set(final, val)
        ctx.train_model(model, final, desc="backdoored", val=val)
        return model

    def activate_single_node(
        self,
        graphs: Sequence[Data],
        generator: torch.Generator | None = None,
        node: int | None = None,
    ) -> tuple[list[Data], list[list[int]]]:
        """Copies of ``graphs`` where one trigger node alone is inserted: the graph's trigger
        is generated as by :meth:`activate` (positions drawn from ``generator``), then only
        trigger node ``node``'s feature row is written at its position; no edge changes. With
        ``node=None`` every trigger node in turn (one copy per trigger node, graph-major:
        copy ``g * size + i`` carries node ``i`` of graph ``g``). Graphs smaller than the
        trigger are left out, as in :meth:`activate`. Labels are kept. The ASR of these
        copies is the ``single_node_asr`` of issue 14: near the full trigger's ASR when one
        node's features alone are the backdoor.

        Args:
            graphs: Clean graphs to trigger.
            generator: Source of the positions; ``None`` uses a private stream seeded 0, so
                the attack's own stream (and every later draw of the run) is untouched.
            node: A trigger node index in ``0..size-1``, or ``None`` for all.

        Returns:
            ``(graphs, positions)``: the copies and, for each, the one-element list of the
            node written (the fields of the contracts' ``TriggeredGraphs``).

        Raises:
            ValueError: ``node`` out of range.
        """
        self._check_fitted()
        if node is not None and not 0 <= node < self.size_:
            raise ValueError(f"node must be in 0..{self.size_ - 1}, got {node}")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        nodes = range(self.size_) if node is None else [node]
        out: list[Data] = []
        positions_out: list[list[int]] = []
        for graph in graphs:
            if int(graph.num_nodes) < self.size_:
                continue
            positions = random_positions(int(graph.num_nodes), self.size_, generator)
            trigger = self.trigger_for(graph, positions)
            assert trigger.features is not None
            for i in nodes:
                copy = graph.clone()
                x = graph.x.clone()
                x[positions[i]] = trigger.features[i].to(x.dtype)
                copy.x = x
                out.append(copy)
                positions_out.append([int(positions[i])])
        return out, positions_out

    def trigger_info(self) -> dict[str, Any]:
        losses = self.generator_losses_
        return {
            "trigger_pattern": "adaptive (per-graph generator)",
            "placement": "random",
            "topology_learned": self.topology_learns_,
            "bilevel_epochs": self.bilevel_epochs,
            "generator_loss_first": losses[0] if losses else None,
            "generator_loss_last": losses[-1] if losses else None,
            "generator_updates": len(losses),
            "trigger_feature_rarity": getattr(self, "trigger_feature_rarity_", None),
            **self.domain_.describe(),
        }
