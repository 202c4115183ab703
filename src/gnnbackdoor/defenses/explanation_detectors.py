"""Explanation-based detectors of poisoned training graphs: GCleaner's ``ED`` and ``XGBD``
baselines (Table VII, Appendix C).

Sources.

* ED: Jiang and Li, "Defending against Backdoor Attack on Graph Neural Network by
  Explainability" (arXiv 2209.02902, 2022): an explainer attributes each training graph's
  prediction to an explanatory subgraph, and an explanation evaluation metric (fidelity)
  separates backdoor graphs, whose prediction rests on the few trigger nodes, from clean
  ones.
* XGBD: Guan, Du and Liu, "XGBD: Explanation-Guided Graph Backdoor Detection" (ECAI 2023):
  a helper model is trained on the dataset, an explainer attributes its predictions to an
  explanatory subgraph, and the explanation's topological features replace the training
  loss (backdoor samples' loss drops faster: the vision-domain phenomenon XGBD starts from)
  as more discriminative features for detection.
* GCleaner App. C: "ED and XGBG, as detectors, have the capability to access the entire
  training set, detect, and subsequently exclude backdoor samples"; Table VII reports the ASR
  and accuracy of the model trained on what they keep.

What both do here (:class:`TrainingDefense`): take a helper model (the victim the run trained
on the training set, handed over by the pipeline, or one trained on it), explain every
training graph with GNNExplainer through ``torch_geometric.explain`` (object-level node mask,
explaining the helper's own prediction; logits scaled as for GNNSecurer, see
:mod:`gnnbackdoor.defenses.gnnsecurer`), take the ``explanation_fraction`` most important
nodes as the explanatory subgraph ``S`` (at least one node), flag graphs, and train a fresh
victim with the run's settings on the graphs not flagged. The validation graphs are screened
by the same rule (fitted on the training graphs), since an attacker who poisons the data may
have poisoned them too; the retrained victim early-stops on those kept
(``screen_validation``). The pipeline scores that model and
the flags (``detector_precision`` / ``detector_recall`` against the attack's poisoned graphs).

Per graph ``G`` with the helper's predicted class ``c``: ``p(G)``, the probability of ``c``;
``fidelity_plus = p(G) - p(G \\ S)`` (``S`` removed with its edges) and ``fidelity_minus =
p(G) - p(S)`` (probability fidelities, GraphFramEx's fid+ and fid-).

Adaptations (our decisions; neither paper's rule fits a fixed library without its code):

* ED flags a graph when its ``fidelity_plus`` is a high outlier among the training graphs: a
  robust z-score ``(f - median) / (1.4826 MAD)`` above ``z_threshold`` (the standard
  deviation replaces a zero MAD; no spread: nothing flagged). The defender knows no clean
  graph to calibrate on, so the reference is the training set itself.
* XGBD's classifier is scikit-learn's ``HistGradientBoostingClassifier`` (default) or
  ``GradientBoostingClassifier``, standing in for XGBoost (gradient-boosted trees both; no
  new dependency). Features: :data:`XGBD_FEATURES` (fidelities, the mask's concentration and
  entropy, the explanatory subgraph's density, connectivity and relative degree, the graph's
  size). Training labels are pseudo-labels from XGBD's loss phenomenon: a fresh victim is
  trained ``helper_epochs`` epochs (Adam, the run's learning rate and batch size), the
  ``seed_fraction`` of graphs with the lowest loss are labelled poisoned and the
  ``clean_fraction`` with the highest loss clean; the classifier, trained on them, labels
  every graph from its explanation (out-of-fold probabilities for the pseudo-labelled
  graphs, 5-fold or fewer), and graphs with probability at least ``threshold`` are flagged.

Randomness: every draw comes from ``ctx.generator`` (the defense stage's): one seed per chunk
of ``explain_batch`` graphs, for GNNExplainer's mask initialisation in a forked torch
generator; XGBD's folds and classifier seed; mini-batch shuffling. Module initialisation and
dropout use torch's global generator, seeded by the pipeline for the stage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.explain.algorithm import GNNExplainer
from torch_geometric.utils import degree, subgraph

from gnnbackdoor.contracts.context import GraphContext
from gnnbackdoor.contracts.results import TrainingDefenseResult
from gnnbackdoor.defenses.abl import cross_entropy, per_graph_loss, run_epochs
from gnnbackdoor.defenses.base import DEFENSES, TrainingDefense
from gnnbackdoor.defenses.gnnsecurer import _largest_component_share, graph_node_masks
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.models.base import GraphClassifier
from gnnbackdoor.settings import Fraction, OpenFraction, PositiveFloat, PositiveInt

#: The per-graph features XGBD's classifier reads (see :func:`explanation_features`).
XGBD_FEATURES = (
    "p_full",
    "fidelity_plus",
    "fidelity_minus",
    "mask_top_share",
    "mask_entropy",
    "sub_density",
    "sub_connectivity",
    "sub_degree_ratio",
    "num_nodes",
)


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def _data(g: Data) -> Data:
    return Data(x=g.x.detach().float(), edge_index=g.edge_index.detach())


@torch.no_grad()
def _probabilities(model: GraphClassifier, graphs: list[Data]) -> Tensor:
    batch = Batch.from_data_list(graphs)
    logits = model(batch.x, batch.edge_index, batch.batch, num_graphs=len(graphs))
    return torch.softmax(logits, dim=-1)


def _without(g: Data, nodes: Tensor) -> Data:
    n = int(g.num_nodes)
    keep = torch.ones(n, dtype=torch.bool)
    keep[nodes] = False
    edges, _ = subgraph(keep, g.edge_index, relabel_nodes=True, num_nodes=n)
    return Data(x=g.x.detach().float()[keep], edge_index=edges)


def _only(g: Data, nodes: Tensor) -> Data:
    edges, _ = subgraph(nodes, g.edge_index, relabel_nodes=True, num_nodes=int(g.num_nodes))
    return Data(x=g.x.detach().float()[nodes], edge_index=edges)


def explanation_features(
    model: GraphClassifier,
    graphs: Sequence[Data],
    fraction: float,
    epochs: int,
    chunk: int,
    generator: torch.Generator,
) -> list[dict[str, float]]:
    """The :data:`XGBD_FEATURES` of each graph (each with at least one node), explained by
    GNNExplainer in chunks of ``chunk`` graphs (see the module docstring).

    Args:
        model: The helper model (eval mode during the call; its mode is restored).
        graphs: Graphs to explain (not modified).
        fraction: Share of a graph's nodes in its explanatory subgraph (at least one).
        epochs: GNNExplainer's optimisation epochs.
        chunk: Graphs explained together.
        generator: One seed per chunk is drawn from it.

    Raises:
        ValueError: A graph has no nodes.
    """
    graphs = list(graphs)
    if any(int(g.num_nodes) == 0 for g in graphs):
        raise ValueError("cannot explain a graph without nodes")
    seeds = [_seed(generator) for _ in range(math.ceil(len(graphs) / chunk))]
    rows: list[dict[str, float]] = []
    was_training = model.training
    model.eval()
    try:
        for c, seed in enumerate(seeds):
            rows += _chunk_features(
                model, graphs[c * chunk : (c + 1) * chunk], fraction, epochs, seed
            )
    finally:
        model.train(was_training)
    return rows


def _chunk_features(
    model: GraphClassifier, graphs: list[Data], fraction: float, epochs: int, seed: int
) -> list[dict[str, float]]:
    plain = [_data(g) for g in graphs]
    batch = Batch.from_data_list(plain)
    sizes = [int(g.num_nodes) for g in plain]
    masks = graph_node_masks(model, GNNExplainer(epochs=epochs), batch, sizes, seed)
    tops = []
    for mask in masks:
        k = max(1, math.ceil(fraction * mask.numel()))
        tops.append(torch.sort(torch.topk(mask, k).indices).values)
    full = _probabilities(model, plain)
    predicted = full.argmax(dim=-1)
    without = _probabilities(model, [_without(g, t) for g, t in zip(plain, tops, strict=True)])
    only = _probabilities(model, [_only(g, t) for g, t in zip(plain, tops, strict=True)])
    rows = []
    for j, (g, mask, top) in enumerate(zip(plain, masks, tops, strict=True)):
        c = int(predicted[j])
        n, k = sizes[j], int(top.numel())
        mass = mask.clamp(min=0)
        total = float(mass.sum())
        share = mass / total if total > 0 else torch.full_like(mass, 1.0 / n)
        entropy = float(-(share * share.clamp(min=1e-12).log()).sum())
        deg = degree(g.edge_index[0], num_nodes=n)
        inner, _ = subgraph(top, g.edge_index, num_nodes=n)
        pairs = k * (k - 1) / 2
        rows.append(
            {
                "p_full": float(full[j, c]),
                "fidelity_plus": float(full[j, c] - without[j, c]),
                "fidelity_minus": float(full[j, c] - only[j, c]),
                "mask_top_share": float(share[top].sum()),
                "mask_entropy": entropy / math.log(n) if n > 1 else 0.0,
                "sub_density": (inner.size(1) / 2) / pairs if pairs else 0.0,
                "sub_connectivity": _largest_component_share(top, g.edge_index, n),
                "sub_degree_ratio": (
                    float(deg[top].mean() / deg.mean()) if float(deg.mean()) > 0 else 0.0
                ),
                "num_nodes": float(n),
            }
        )
    return rows


def robust_scale(reference: np.ndarray) -> tuple[float, float] | None:
    """``(median, 1.4826 MAD)`` of ``reference`` (the standard deviation replaces a zero
    MAD); ``None`` when the values do not spread or there are none."""
    if reference.size == 0:
        return None
    median = float(np.median(reference))
    scale = 1.4826 * float(np.median(np.abs(reference - median)))
    if scale <= 1e-12:
        scale = float(reference.std())
    return None if scale <= 1e-12 else (median, scale)


def robust_outliers(
    values: np.ndarray, z_threshold: float, reference: np.ndarray | None = None
) -> list[int]:
    """Positions of ``values`` whose robust z-score ``(v - median) / (1.4826 MAD)``, with the
    median and MAD of ``reference`` (default: ``values``), exceeds ``z_threshold`` (high side
    only; see :func:`robust_scale`; nothing when the reference does not spread)."""
    stats = robust_scale(values if reference is None else reference)
    if stats is None or values.size == 0:
        return []
    z = (values - stats[0]) / stats[1]
    return [int(i) for i in np.flatnonzero(z > z_threshold)]


@dataclass
class _ExplanationDetector(TrainingDefense):
    """Common settings and flow of ED and XGBD: explain, flag, retrain on the rest.

    Attributes:
        explanation_fraction: Share of a graph's nodes in its explanatory subgraph, (0, 1].
        explainer_epochs: GNNExplainer optimisation epochs (>= 3; PyG's default 100).
        explain_batch: Graphs explained together (>= 1).
        screen_validation: Also screen the validation graphs (the rule fitted on the
            training graphs) and early-stop the retrained victim on those it keeps: the
            attacker may have poisoned them too (``attack.poison_validation``), and the
            defender trains with both. Off: retrain on the validation graphs as given.
    """

    explanation_fraction: Fraction = 0.2
    explainer_epochs: Annotated[int, Field(ge=3)] = 100
    explain_batch: PositiveInt = 64
    screen_validation: bool = True

    def train(
        self,
        graphs_train: Sequence[Data],
        graphs_val: Sequence[Data],
        ctx: GraphContext,
        victim: GraphClassifier | None = None,
    ) -> TrainingDefenseResult:
        """Flag training graphs from their explanations, then train a fresh victim with the
        run's settings on the rest (early-stopping on ``graphs_val``).

        Args:
            graphs_train: The training graphs (not modified).
            graphs_val: The victim's validation graphs.
            ctx: The run; ``ctx.generator`` is the defense stage's.
            victim: The helper model (``None``: one is trained on ``graphs_train``); not
                modified.

        Returns:
            The retrained model, ``kept`` (positions not flagged) and info
            ``<name>_flagged_share`` plus the detector's own figures.

        Raises:
            ValueError: ``graphs_train`` is empty or holds a graph without nodes.
        """
        graphs = list(graphs_train)
        if not graphs:
            raise ValueError(f"{self.registered_name} needs training graphs")
        val = list(graphs_val)
        helper = victim
        if helper is None:
            helper = ctx.train_new_model(graphs, desc="detector helper", val=val)
        screened = val if self.screen_validation else []
        features = explanation_features(
            helper,
            graphs + screened,
            self.explanation_fraction,
            self.explainer_epochs,
            self.explain_batch,
            ctx.generator,
        )
        flagged, flagged_val, info = self.flag(
            features[: len(graphs)], features[len(graphs) :], graphs, ctx
        )
        chosen, chosen_val = set(flagged), set(flagged_val)
        kept = [i for i in range(len(graphs)) if i not in chosen]
        model = ctx.train_new_model(
            [graphs[i] for i in kept],
            desc=f"{self.registered_name} retrained",
            val=[g for j, g in enumerate(val) if j not in chosen_val],
        )
        model.eval()
        prefix = self.registered_name.replace("-", "_")
        info = {
            f"{prefix}_flagged_share": len(flagged) / len(graphs),
            f"{prefix}_val_flagged": float(len(flagged_val)),
            **info,
        }
        return TrainingDefenseResult(model, info, kept=kept)

    def flag(
        self,
        features: list[dict[str, float]],
        val_features: list[dict[str, float]],
        graphs: list[Data],
        ctx: GraphContext,
    ) -> tuple[list[int], list[int], dict[str, Any]]:
        """Flagged training positions and validation positions (increasing; the rule is
        fitted on the training graphs and applied to both), and figures about the
        detection."""
        raise NotImplementedError


@DEFENSES.register("ed")
@dataclass
class ED(_ExplanationDetector):
    """Flag training graphs whose explanation's fidelity is a high outlier, retrain on the
    rest (Jiang and Li 2022, as in GCleaner's Appendix C).

    Attributes:
        z_threshold: Robust z-score of ``fidelity_plus`` above which a graph is flagged.

    Settings out of range raise :class:`~gnnbackdoor.errors.ConfigError` on construction.
    """

    reference: ClassVar[str] = (
        "Jiang and Li, Defending against Backdoor Attack on Graph Neural Network by "
        "Explainability (2022); GCleaner's ED baseline (Table VII)"
    )

    z_threshold: PositiveFloat = 3.0

    def flag(self, features, val_features, graphs, ctx):
        fidelity = np.array([row["fidelity_plus"] for row in features], dtype=float)
        flagged = robust_outliers(fidelity, self.z_threshold)
        val = np.array([row["fidelity_plus"] for row in val_features], dtype=float)
        flagged_val = robust_outliers(val, self.z_threshold, reference=fidelity)
        return (
            flagged,
            flagged_val,
            {
                "ed_fidelity_median": float(np.median(fidelity)),
                "ed_fidelity_flagged_min": (
                    float(fidelity[flagged].min()) if flagged else float("nan")
                ),
            },
        )


class BoostedTrees(StrEnum):
    """XGBD's classifier (scikit-learn's gradient-boosted trees, standing in for XGBoost)."""

    HIST_GRADIENT_BOOSTING = "hist_gradient_boosting"
    GRADIENT_BOOSTING = "gradient_boosting"


@DEFENSES.register("xgbd")
@dataclass
class XGBD(_ExplanationDetector):
    """Flag training graphs that a gradient-boosted classifier over explanation features
    labels poisoned (trained on the early-loss pseudo-labels), retrain on the rest (Guan,
    Du and Liu 2023, as in GCleaner's Appendix C).

    Attributes:
        helper_epochs: Epochs of the short training whose per-graph losses give the
            pseudo-labels.
        seed_fraction: Share of graphs with the lowest loss labelled poisoned, (0, 1).
        clean_fraction: Share of graphs with the highest loss labelled clean, (0, 1);
            ``seed_fraction + clean_fraction`` must not exceed 1.
        threshold: Classifier probability from which a graph is flagged, (0, 1).
        classifier: ``hist_gradient_boosting`` or ``gradient_boosting``.

    Settings out of range raise :class:`~gnnbackdoor.errors.ConfigError` on construction.
    """

    reference: ClassVar[str] = (
        "Guan, Du and Liu, XGBD: Explanation-Guided Graph Backdoor Detection (ECAI 2023); "
        "GCleaner's XGBD baseline (Table VII)"
    )

    helper_epochs: PositiveInt = 5
    seed_fraction: OpenFraction = 0.05
    clean_fraction: OpenFraction = 0.5
    threshold: OpenFraction = 0.5
    classifier: BoostedTrees = BoostedTrees.HIST_GRADIENT_BOOSTING

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seed_fraction + self.clean_fraction > 1:
            raise ConfigError(
                f"defense.seed_fraction={self.seed_fraction} and defense.clean_fraction="
                f"{self.clean_fraction} overlap; their sum must not exceed 1"
            )

    def flag(self, features, val_features, graphs, ctx):
        config = ctx.train_config
        early = ctx.build_model()
        optimiser = torch.optim.Adam(
            early.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        run_epochs(
            early,
            graphs,
            self.helper_epochs,
            optimiser,
            cross_entropy,
            config.batch_size,
            ctx.generator,
        )
        loss = per_graph_loss(early, graphs, config.eval_batch_size).numpy()
        n = len(graphs)
        order = sorted(range(n), key=lambda i: (float(loss[i]), i))
        positives = order[: max(1, round(self.seed_fraction * n))]
        negatives = order[n - max(1, round(self.clean_fraction * n)) :]
        if n < 2 or set(positives) & set(negatives):
            return [], [], {"xgbd_pseudo_labelled": 0.0}
        x = np.array([[row[f] for f in XGBD_FEATURES] for row in features], dtype=float)
        x_val = np.array([[row[f] for f in XGBD_FEATURES] for row in val_features], dtype=float)
        seeds = positives + negatives
        y = np.array([1] * len(positives) + [0] * len(negatives))
        random_state = _seed(ctx.generator) % (2**31 - 1)
        probability, probability_val = self._fit_predict(x, x_val, seeds, y, random_state)
        flagged = [int(i) for i in np.flatnonzero(probability >= self.threshold)]
        flagged_val = [int(i) for i in np.flatnonzero(probability_val >= self.threshold)]
        return (
            flagged,
            flagged_val,
            {
                "xgbd_pseudo_labelled": float(len(seeds)),
                "xgbd_probability_mean": float(probability.mean()),
            },
        )

    def _classifier(self, random_state: int):
        if self.classifier == BoostedTrees.GRADIENT_BOOSTING:
            return GradientBoostingClassifier(random_state=random_state)
        return HistGradientBoostingClassifier(random_state=random_state)

    def _fit_predict(
        self, x: np.ndarray, x_val: np.ndarray, seeds: list[int], y: np.ndarray, random_state: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probability of "poisoned" for every training graph (out-of-fold for the
        pseudo-labelled ones when both labels have at least 2 members, from the classifier
        fitted on all of them for the rest) and every validation graph (the latter)."""
        fitted = self._classifier(random_state).fit(x[seeds], y)
        probability = fitted.predict_proba(x)[:, 1]
        probability_val = fitted.predict_proba(x_val)[:, 1] if len(x_val) else np.zeros(0)
        folds = min(5, int(y.sum()), int((1 - y).sum()))
        if folds >= 2:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=random_state)
            probability[seeds] = cross_val_predict(
                self._classifier(random_state), x[seeds], y, cv=splitter, method="predict_proba"
            )[:, 1]
        return probability, probability_val
