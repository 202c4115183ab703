"""Link-Backdoor (Zheng et al.): a backdoor on link prediction by node injection, with triggers
optimised from gradients, white-box and black-box (Sec. 4, Algorithm 1, Eq. 2-7).

How it runs (the line numbers are Algorithm 1's):

* ``fit``: the trigger model is the pre-trained clean victim (white-box) or a surrogate victim
  trained clean (black-box, ``surrogate=NAME``). ``round(p × E_train)`` poisoning target links
  ``E_T`` are drawn among non-edges that the trigger model predicts absent (line 1); a trigger
  ``g_0`` with ``m`` injected nodes per target is generated (line 2, Eq. 2) and optimised by
  ``init_updates`` sign steps on the trigger model (lines 6-11, Eq. 4-7).
* ``backdoor``: a fresh victim is trained (``ctx.train_model``, i.e. exactly as the clean model)
  on the poisoned graph ``Ĝ = M(G, g)`` (line 12, Eq. 3): every training target link carries a
  copy of the trigger and is labelled as existing. White-box only: from epoch
  ``warmup_epochs + 1`` on, every ``update_every`` epochs the trigger is re-optimised on the
  model being trained and the poisoned graph is rebuilt (lines 5-13); as the backdoored model
  starts from the pre-trained clean one (line 4), the default warm-up is 0, not the paper's
  100. Black-box keeps the
  surrogate's trigger: the attacker never sees the target model.
* ``test_targets`` / ``activate``: held-out target links (non-edges of the whole graph, not
  validation/test negatives, not poisoning targets) get a copy of the same learned trigger
  ``g`` ("the target link is connected to the injection nodes in a certain way", Sec. 4.3).

Decisions where the paper is silent, recorded in ``describe()``:

* ``p`` counts poisoning target links: ``round(p × number of training edges)`` (Cora: 449 of
  4,488), as the paper's code poisons about 10 % of the edge count.
* One trigger pattern ``g = (A_g, X_g)`` is shared by all target links (Algorithm 1 returns
  one ``g``); each target link gets its own ``m`` injected nodes carrying that pattern. Its
  gradient is the sum over the copies (Eq. 4 averages the loss over target links).
* ``Q`` bounds the links of each copy; ``feature_budget`` (``Q_X``) bounds, per injected node,
  the feature entries that differ from the features it started from.
* The trigger's links are edges of the poisoned graph, so they are also reconstruction
  targets; the target links are labelled existing but are not message-passing edges.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.attacks.base import ATTACKS, LinkAttack
from gnnbackdoor.attacks.link_triggers import (
    TriggerPattern,
    TriggerPlacement,
    attach,
    attack_gradients,
    candidate_pairs,
    limit_links,
    update_pattern,
)
from gnnbackdoor.contracts.context import LinkContext
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.models.base import MODELS, LinkPredictor
from gnnbackdoor.models.train_link import link_scores
from gnnbackdoor.settings import Fraction, NonNegativeInt, PositiveInt

logger = logging.getLogger(__name__)


class FeatureInit(StrEnum):
    """Initial features of injected trigger nodes."""

    COPY = "copy"  # features of randomly chosen existing nodes
    RANDOM = "random"  # Bernoulli draws at the data's mean feature density


def _pair_keys(pairs: Tensor, num_nodes: int) -> Tensor:
    """Order-free keys ``min * N + max`` of node pairs ``[2, P]``."""
    low, high = pairs.min(dim=0).values, pairs.max(dim=0).values
    return low * num_nodes + high


def sample_non_edges(
    num_nodes: int, forbidden: Tensor, count: int, generator: torch.Generator
) -> Tensor:
    """``[2, count]`` distinct node pairs ``u != v`` whose keys (see :func:`_pair_keys`) are not
    in ``forbidden``, drawn uniformly with ``generator``."""
    found = torch.empty(0, dtype=torch.long)
    taken = forbidden.unique()
    for _ in range(100):
        need = count - found.numel()
        if need <= 0:
            break
        draw = torch.randint(0, num_nodes, (2, 2 * need + 16), generator=generator)
        draw = draw[:, draw[0] != draw[1]]
        keys = _pair_keys(draw, num_nodes)
        keys = keys[~torch.isin(keys, taken)]
        # keep first occurrences, in draw order (unique sorts; undo that for determinism)
        uniq, inverse = torch.unique(keys, return_inverse=True)
        first = torch.full((uniq.numel(),), keys.numel(), dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(keys.numel()), reduce="amin")
        keys = keys[first.sort().values]
        found = torch.cat([found, keys[:need]])
        taken = torch.cat([taken, keys[:need]])
    if found.numel() < count:
        raise ConfigError(f"the graph has fewer than {count} free node pairs for target links")
    return torch.stack([found // num_nodes, found % num_nodes])


@ATTACKS.register("link-backdoor")
@dataclass
class LinkBackdoor(LinkAttack):
    """Link-Backdoor: node-injection triggers optimised by gradient sign steps.

    Attributes:
        m: Injected (trigger) nodes per target link (paper: 2).
        Q: Most links in one trigger copy, each touching a trigger node (paper: 5).
        p: Poison ratio in (0, 1]: poisoning target links = ``round(p × training edges)``.
        feature_budget: ``Q_X``: most feature entries of an injected node that may differ from
            its initial features (per node, after every update).
        feature_step: ``α`` of Eq. 7 (1 for binary features).
        feature_init: ``"copy"``: injected nodes start from the features of randomly chosen
            existing nodes; ``"random"``: Bernoulli draws at the data's mean feature density.
        init_updates: Trigger updates on the pre-trained (clean or surrogate) model before the
            backdoored training starts.
        warmup_epochs: No trigger update during the first epochs of backdoored training. The
            paper waits 100 epochs; our white-box model starts from the pre-trained clean model
            (line 4), and early stopping usually keeps an epoch before 100, so the default is 0
            (updates at epochs e, 2e, ...). Set 100 for the paper's schedule.
        update_every: ``e``: re-optimise the trigger every this many epochs after the warm-up.
        num_test_targets: Held-out target links used to measure the attack.
        surrogate: Black-box: the registered link model on which triggers are optimised (trained
            clean with the run's settings); ``None``: white-box on the clean victim.
        init_from_clean: White-box only: the backdoored model starts from the pre-trained clean
            model's weights (Algorithm 1, line 4: ``f_θb ← f_θ``) and is then trained on the
            poisoned graph exactly as the clean one; ``False``: from a fresh initialisation.
            Black-box always trains a fresh target model.
    """

    m: PositiveInt = 2
    Q: PositiveInt = 5
    p: Fraction = 0.1
    feature_budget: NonNegativeInt = 20
    feature_step: Fraction = 1.0
    feature_init: FeatureInit = FeatureInit.COPY
    init_updates: NonNegativeInt = 5
    warmup_epochs: NonNegativeInt = 0
    update_every: PositiveInt = 10
    num_test_targets: PositiveInt = 500
    surrogate: str | None = None
    init_from_clean: bool = True
    reference: ClassVar[str] = (
        "Zheng et al., Link-Backdoor: Backdoor Attack on Link Prediction via Node Injection, "
        "IEEE TCSS 2023"
    )
    inject_nodes: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        name = self.registered_name
        if self.surrogate is not None:
            if self.surrogate not in MODELS or MODELS.get(self.surrogate).task != "link":
                links = [n for n, c in MODELS.items() if c.task == "link"]
                raise ConfigError(
                    f"{name}: surrogate {self.surrogate!r} is not a link model; "
                    f"valid choices: {', '.join(links)}"
                )
            self.surrogate = MODELS.canonical(self.surrogate)

    # --- fit: targets and the initial trigger (Algorithm 1, lines 1-4) -----------------------

    def fit(self, ctx: LinkContext) -> LinkBackdoor:
        self._generator = ctx.generator  # every draw of the attack, activation included
        self._update_seconds: list[float] = []
        self._update_cpu_seconds: list[float] = []
        self._losses: list[float] = []
        self._updates_in_training = 0
        train = ctx.split.train
        self._num_nodes = int(train.num_nodes)
        self.trigger_model_ = self._trigger_model(ctx)

        # Line 1: E_T <- select links. Non-edges of the whole graph, never a validation/test
        # negative; poisoning targets are those the trigger model predicts absent.
        forbidden = torch.cat(
            [
                _pair_keys(ctx.graph.edge_index, self._num_nodes),
                _pair_keys(ctx.split.val.neg_edge_label_index, self._num_nodes),
                _pair_keys(ctx.split.test.neg_edge_label_index, self._num_nodes),
            ]
        )
        num_train_edges = int(train.pos_edge_label_index.size(1))
        self.num_train_edges_ = num_train_edges
        self.num_poison_ = round(self.p * num_train_edges)
        if self.num_poison_ == 0:
            raise ConfigError(
                f"attack.p={self.p} gives 0 poisoning target links of the {num_train_edges} "
                f"training edges; use at least {0.5 / max(num_train_edges, 1):.2g}"
            )
        pool = sample_non_edges(self._num_nodes, forbidden, 3 * self.num_poison_, self._generator)
        absent = link_scores(self.trigger_model_, train, pool) < 0.5
        ordered = torch.cat([pool[:, absent], pool[:, ~absent]], dim=1)
        self.poison_targets_ = ordered[:, : self.num_poison_]
        self.poison_targets_absent_ = int(absent.sum().clamp(max=self.num_poison_))
        forbidden = torch.cat([forbidden, _pair_keys(pool, self._num_nodes)])
        self.test_targets_ = sample_non_edges(
            self._num_nodes, forbidden, self.num_test_targets, self._generator
        )

        # Line 2: g_0 <- Gen_g(G, m) (Eq. 2), random structure within Q, initial features.
        self.placement_ = self._placement(self.poison_targets_)
        self.trigger_ = self._initial_pattern(train.x)
        self.initial_trigger_ = self.trigger_
        # Lines 6-11 on the pre-trained model: the trigger starts optimised.
        for _ in range(self.init_updates):
            self._update(self.trigger_model_, train)
        self.fit_trigger_ = self.trigger_
        return self

    def _trigger_model(self, ctx: LinkContext) -> LinkPredictor:
        if self.surrogate is None:
            if ctx.clean_model is None:
                raise ConfigError(f"{self.registered_name}: white-box needs the clean model")
            return ctx.clean_model
        start = time.perf_counter()
        surrogate = ctx.build_model(self.surrogate)
        ctx.train_model(surrogate, ctx.split.train, desc=f"surrogate {self.surrogate}")
        ctx.timings["surrogate_train_s"] = time.perf_counter() - start
        return surrogate

    def _placement(self, targets: Tensor) -> TriggerPlacement:
        return TriggerPlacement.injected(targets, self._num_nodes, self.m)

    def _initial_pattern(self, x: Tensor) -> TriggerPattern:
        pairs = candidate_pairs(self.m).size(1)
        # Random structure: min(Q, P) random candidate links, anchored at u and v.
        score = torch.rand(pairs, generator=self._generator)
        structure = limit_links(torch.ones(pairs, dtype=torch.bool), score, self.Q)
        if self.feature_init == "copy":
            donors = torch.randperm(x.size(0), generator=self._generator)[: self.m]
            features = x[donors].clamp(0, 1).clone()
        else:
            density = float((x > 0).float().mean())
            features = torch.bernoulli(
                torch.full((self.m, x.size(1)), density), generator=self._generator
            )
        return TriggerPattern(structure, features, features.clone())

    def _update(self, model: LinkPredictor, train: Data) -> bool:
        """One trigger update (Algorithm 1, lines 6-11); returns whether ``g`` changed."""
        start, cpu_start = time.perf_counter(), time.process_time()
        gradients = attack_gradients(
            model, train, self.poison_targets_, self.placement_, self.trigger_
        )
        updated = update_pattern(
            self.trigger_, gradients, self.Q, self.feature_budget, self.feature_step
        )
        self._update_seconds.append(time.perf_counter() - start)
        self._update_cpu_seconds.append(time.process_time() - cpu_start)
        self._losses.append(gradients.loss)
        changed = not torch.equal(updated.structure, self.trigger_.structure) or (
            updated.features is not None
            and self.trigger_.features is not None
            and not torch.equal(updated.features, self.trigger_.features)
        )
        self.trigger_ = updated
        return changed

    # --- backdoor: poisoned training (Algorithm 1, lines 5-14) -------------------------------

    def poisoned_graph(self, train: Data) -> Data:
        """Line 12 (Eq. 3): the training graph with a trigger copy at every poisoning target;
        the targets and the trigger links are added to ``pos_edge_label_index``."""
        graph = attach(train, self.placement_, self.trigger_)
        trigger_links = graph.edge_index[:, train.edge_index.size(1) :]
        half = trigger_links.size(1) // 2
        graph.pos_edge_label_index = torch.cat(
            [train.pos_edge_label_index, trigger_links[:, :half], self.poison_targets_], dim=1
        )
        return graph

    def backdoor(self, ctx: LinkContext) -> LinkPredictor:
        train = ctx.split.train
        white_box = self.surrogate is None
        model = ctx.build_model()
        if white_box and self.init_from_clean and ctx.clean_model is not None:
            model.load_state_dict(ctx.clean_model.state_dict())  # line 4: f_θb <- f_θ

        # (first epoch trained with it, trigger): the trainer keeps the weights of its best
        # validation epoch, so activation must use the trigger that epoch was trained with.
        history: list[tuple[int, TriggerPattern]] = [(1, self.trigger_)]

        def callback(epoch: int, current: LinkPredictor) -> Data | None:
            # Line 6: if epoch % e == 0 and epoch > warm-up: re-optimise g on f_θb.
            if not white_box or epoch <= self.warmup_epochs or epoch % self.update_every:
                return None
            self._updates_in_training += 1
            if self._update(current, train):
                history.append((epoch + 1, self.trigger_))
                return self.poisoned_graph(train)  # lines 12-13
            return None

        report = ctx.train_model(model, self.poisoned_graph(train), callback, desc="backdoored")
        self.backdoor_epochs_ = report.epochs
        self.backdoor_best_epoch_ = report.best_epoch
        self.last_trigger_ = self.trigger_
        self.trigger_ = [g for start, g in history if start <= max(report.best_epoch, 1)][-1]
        self.trigger_versions_ = len(history)
        ctx.timings["per_update_s"] = sum(self._update_seconds) / max(len(self._update_seconds), 1)
        ctx.timings["per_update_cpu_s"] = sum(self._update_cpu_seconds) / max(
            len(self._update_cpu_seconds), 1
        )
        ctx.timings["trigger_update_total_s"] = sum(self._update_seconds)
        return model

    # --- inference-time activation --------------------------------------------------------

    def test_targets(self, ctx: LinkContext) -> Tensor:
        return self.test_targets_

    def activate(self, graph: Data, targets: Tensor) -> Data:
        """A copy of ``graph`` with a copy of the learned trigger ``g`` at every target link."""
        return attach(graph, self._placement(targets), self.trigger_)

    def describe(self) -> dict[str, Any]:
        pattern = self.trigger_
        return {
            "p_counts": "poisoning target links = round(p * training edges)",
            "num_train_edges": int(self.num_train_edges_),
            "num_poison_targets": int(self.num_poison_),
            "poison_targets_predicted_absent": int(self.poison_targets_absent_),
            "num_test_targets": int(self.test_targets_.size(1)),
            "nodes_per_trigger": self.m,
            "injected_nodes_train": int(self.placement_.num_injected),
            "mode": "white-box" if self.surrogate is None else f"black-box ({self.surrogate})",
            "trigger_links": [list(link) for link in pattern.links()],
            "trigger_num_links": pattern.num_links,
            "trigger_feature_changes": pattern.feature_changes().tolist(),
            "trigger_feature_ones": (
                pattern.features.sum(dim=1).tolist() if pattern.features is not None else None
            ),
            "trigger_updates": len(self._update_seconds),
            "trigger_updates_in_training": self._updates_in_training,
            "trigger_versions_in_training": getattr(self, "trigger_versions_", 1),
            "activation_trigger_is_last": bool(getattr(self, "last_trigger_", pattern) is pattern),
            "attack_loss_first": self._losses[0] if self._losses else None,
            "attack_loss_last": self._losses[-1] if self._losses else None,
            "backdoor_epochs": getattr(self, "backdoor_epochs_", None),
            "backdoor_best_epoch": getattr(self, "backdoor_best_epoch_", None),
        }


@ATTACKS.register("link-backdoor-no-inj")
@dataclass
class LinkBackdoorNoInjection(LinkBackdoor):
    """Ablation Link-Backdoor_no-inj (Sec. 5.2.2): the trigger nodes are existing nodes.

    For each target link, ``m`` existing nodes (other than its end nodes, drawn at random) take
    the injected nodes' places; only the trigger's structure is optimised (existing features
    are never modified), and trigger links never duplicate an existing edge.
    """

    inject_nodes: ClassVar[bool] = False

    def fit(self, ctx: LinkContext) -> LinkBackdoorNoInjection:
        self._edge_keys = _pair_keys(ctx.split.train.edge_index, int(ctx.split.train.num_nodes))
        super().fit(ctx)
        return self

    def _placement(self, targets: Tensor) -> TriggerPlacement:
        num_targets = targets.size(1)
        hosts = torch.randint(0, self._num_nodes, (num_targets, self.m), generator=self._generator)
        # skip the target's own end nodes (and repeat draws until the m hosts are distinct)
        for _ in range(100):
            clash = (hosts == targets[0].unsqueeze(1)) | (hosts == targets[1].unsqueeze(1))
            sorted_hosts = hosts.sort(dim=1).values
            duplicate = (sorted_hosts[:, 1:] == sorted_hosts[:, :-1]).any(dim=1, keepdim=True)
            bad = clash.any(dim=1, keepdim=True) | duplicate
            if not bool(bad.any()):
                break
            redraw = torch.randint(0, self._num_nodes, hosts.shape, generator=self._generator)
            hosts = torch.where(bad, redraw, hosts)
        placement = TriggerPlacement.existing(targets, hosts)
        src, dst = placement.pair_nodes(candidate_pairs(self.m))
        keys = _pair_keys(torch.stack([src.reshape(-1), dst.reshape(-1)]), self._num_nodes)
        placement.allowed = ~torch.isin(keys, self._edge_keys).view_as(src)
        return placement

    def _initial_pattern(self, x: Tensor) -> TriggerPattern:
        pattern = super()._initial_pattern(x)
        return TriggerPattern(pattern.structure, None, None)
