"""Link-Backdoor (Zheng et al.): a backdoor on link prediction by node injection, with triggers
optimised from gradients, white-box and black-box (Sec. 4, Algorithm 1, Eq. 2-7).

How it runs (the line numbers are Algorithm 1's):

* ``fit``: the trigger model is the pre-trained clean victim (white-box) or a surrogate victim
  trained clean (black-box, ``surrogate=NAME``). ``round(p × E_train)`` poisoning target links
  ``E_T`` are drawn among non-edges that the trigger model predicts absent (line 1); a trigger
  ``g_0`` with ``m`` injected nodes per target is generated (line 2, Eq. 2) and optimised by
  ``init_updates`` sign steps on the trigger model (lines 6-11, Eq. 4-7).
* ``backdoor``: the victim, starting from its pre-trained clean weights (line 4), is trained
  (``ctx.train_model``, i.e. exactly as the clean model) on the poisoned graph ``Ĝ = M(G, g)``
  (line 12, Eq. 3): every training target link carries a copy of the trigger and is labelled
  as existing. White-box only: from epoch ``warmup_epochs + 1`` on, every ``update_every``
  epochs the trigger is re-optimised on the model being trained and the poisoned graph is
  rebuilt (lines 5-13); as the backdoored model starts from the pre-trained clean one, the
  default warm-up is 0, not the paper's 100. Black-box keeps the surrogate's trigger: the
  attacker never sees the target model (``blackbox_target``: see
  :mod:`gnnbackdoor.attacks.link_frame`).

The frame (targets, placement, poisoned training, activation) lives in
:class:`~gnnbackdoor.attacks.link_frame.InjectedTriggerAttack`, shared with the baselines.
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

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.attacks.base import ATTACKS
from gnnbackdoor.attacks.link_frame import (
    FEATURE_INITS,
    BlackBoxTarget,
    BlackBoxTrigger,
    FeatureInit,
    InjectedTriggerAttack,
    _pair_keys,
    sample_non_edges,
)
from gnnbackdoor.attacks.link_triggers import (
    TriggerPattern,
    TriggerPlacement,
    attack_gradients,
    candidate_pairs,
    update_pattern,
)
from gnnbackdoor.contracts.context import LinkContext
from gnnbackdoor.models.base import LinkPredictor
from gnnbackdoor.settings import Fraction, NonNegativeInt, PositiveInt

__all__ = [
    "FEATURE_INITS",
    "BlackBoxTarget",
    "BlackBoxTrigger",
    "FeatureInit",
    "LinkBackdoor",
    "LinkBackdoorNoInjection",
    "_pair_keys",
    "sample_non_edges",
]


@ATTACKS.register("link-backdoor")
@dataclass
class LinkBackdoor(InjectedTriggerAttack):
    """Link-Backdoor: node-injection triggers optimised by gradient sign steps.

    The shared attributes (``m``, ``Q``, ``p``, ``feature_budget``, ``feature_init``,
    ``num_test_targets``, ``surrogate``, ``init_from_clean``, ``blackbox_target``) are those of
    :class:`~gnnbackdoor.attacks.link_frame.InjectedTriggerAttack`.

    Attributes:
        feature_step: ``α`` of Eq. 7 (1 for binary features).
        init_updates: Trigger updates on the pre-trained (clean or surrogate) model before the
            backdoored training starts.
        warmup_epochs: No trigger update during the first epochs of backdoored training. The
            paper waits 100 epochs; our white-box model starts from the pre-trained clean model
            (line 4), and early stopping usually keeps an epoch before 100, so the default is 0
            (updates at epochs e, 2e, ...). Set 100 for the paper's schedule.
        update_every: ``e``: re-optimise the trigger every this many epochs after the warm-up
            (white-box only: black-box keeps the surrogate's trigger, the attacker never sees
            the target model).
    """

    feature_step: Fraction = 1.0
    init_updates: NonNegativeInt = 5
    warmup_epochs: NonNegativeInt = 0
    update_every: PositiveInt = 10
    reference: ClassVar[str] = (
        "Zheng et al., Link-Backdoor: Backdoor Attack on Link Prediction via Node Injection, "
        "IEEE TCSS 2023"
    )

    def _initial_updates(self) -> int:
        return self.init_updates

    def _training_schedule(self) -> tuple[int, int] | None:
        return (self.warmup_epochs, self.update_every)

    def _update(self, model: LinkPredictor, train: Data) -> bool:
        """One trigger update (Algorithm 1, lines 6-11); returns whether ``g`` changed."""
        gradients = attack_gradients(
            model, train, self.poison_targets_, self.placement_, self.trigger_
        )
        updated = update_pattern(
            self.trigger_, gradients, self.Q, self.feature_budget, self.feature_step
        )
        self._losses.append(gradients.loss)
        changed = not torch.equal(updated.structure, self.trigger_.structure) or (
            updated.features is not None
            and self.trigger_.features is not None
            and not torch.equal(updated.features, self.trigger_.features)
        )
        self.trigger_ = updated
        return changed


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
