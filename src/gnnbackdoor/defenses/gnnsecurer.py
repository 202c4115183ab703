"""GNNSecurer: explanation and topology metrics that flag triggered graphs -- the
``GNNsecurer`` baseline of GraphProt (Tables 1-2).

Source. Downer, Wang and Wang, "Securing GNNs: Explanation-Based Identification of
Backdoored Training Graphs" (2024, arXiv 2403.18136): seven metrics taken from a GNN
explainer's secondary outputs (prediction confidence, explainability, connectivity, the node
degree variance of the explanatory subgraph and of the graph, and the elbow and curvature of
the explainer's loss curve); a graph is flagged as backdoored when the metrics fall outside
what a clean validation set shows. GraphProt (Sec. 5.1) uses it as a baseline that
"identifies backdoors by utilizing explainability metrics based on graph topology and model
information" and notes that it "requires access to model-relevant information".

Access (our decision). The metrics need the explainer's optimisation, i.e. gradients through
the model, so this shield is white-box: ``predict`` takes a
:class:`~gnnbackdoor.defenses.shielding.ModelPredictFn` (a prediction function that also
hands over the model and the defender's clean reference graphs) and refuses a bare black box
with one line. The explanations go through ``torch_geometric.explain`` (GNNExplainer, an
object-level node mask, explaining the model's own prediction).

Protocol (our reading of GraphProt's use, which is at test time: the baseline has ASR and
accuracy on test inputs). Thresholds are set once per model on the clean reference graphs;
each input graph is explained and scored; a graph flagged by at least ``min_flags`` of the
seven metrics is rejected (:data:`~gnnbackdoor.defenses.shielding.REJECTED`: a rejected
triggered graph is a failed attack, a rejected clean graph an error -- see that module);
the others get the model's label.

The seven metrics, per graph (our reading of Downer et al.'s names; their exact formulas are
not in either defense paper):

* ``prediction_confidence``: softmax probability of the predicted class;
* ``explainability``: the same probability on the explanatory subgraph alone (the
  ``k = max(2, ceil(explanation_fraction * n))`` nodes of largest mask, induced);
* ``connectivity``: share of the explanatory nodes in its largest connected component;
* ``subgraph_degree_variance``: variance of the explanatory nodes' degrees;
* ``degree_variance``: variance of all node degrees;
* ``elbow``: where the explainer's loss curve (this graph's cross-entropy at each epoch)
  bends, as a share of the epochs: the point farthest from the chord from the first to the
  last value, on the curve rescaled to the unit square (Kneedle's difference curve, written
  out: one line of NumPy, no extra dependency);
* ``curvature``: the largest curvature ``|y''| / (1 + y'^2)^(3/2)`` of that rescaled curve.

A metric flags a graph outside the central ``quantile`` of its values on the reference
graphs (below the ``(1 - quantile) / 2`` quantile or above the ``(1 + quantile) / 2`` one), so
each metric alone flags about ``1 - quantile`` of clean graphs. Both tails, because neither
paper gives the side on which a triggered graph lies, and the sides we first guessed were
wrong for three metrics in our first measurement (AIDS, GIN, SBA: triggered graphs had *lower*
explainability and curvature and a *later* elbow than clean ones); :data:`METRICS` holds the
side of each metric should the paper's be found.

Randomness: GNNExplainer initialises its mask from torch's global generator only, so each
chunk of ``explain_batch`` graphs is explained inside ``torch.random.fork_rng()`` seeded from
the call's seed (``predict(..., seed=)``, default ``random_state``); the caller's global state
is restored. A graph's answer depends on the seed and on the chunk it is explained in
(GNNExplainer's mask penalties are means over the chunk).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import GNNExplainer
from torch_geometric.utils import degree, subgraph

from gnnbackdoor.defenses.base import DEFENSES, InputShield, PredictFn, ShieldResult
from gnnbackdoor.defenses.shielding import REJECTED, ModelPredictFn, num_nodes, root_seed
from gnnbackdoor.errors import UserError
from gnnbackdoor.settings import Fraction, NonNegativeInt, PositiveInt

#: Metric name -> the side on which it flags a graph (``high``, ``low`` or ``both``; all
#: ``both``, see the module docstring).
METRICS: dict[str, str] = {
    "prediction_confidence": "both",
    "explainability": "both",
    "connectivity": "both",
    "subgraph_degree_variance": "both",
    "degree_variance": "both",
    "elbow": "both",
    "curvature": "both",
}

#: Logits are scaled to at most this magnitude before GNNExplainer sees them (a confident
#: model's saturated softmax gives the explainer no gradient; the label is unchanged).
MAX_LOGIT = 5.0


class _ScaledLogits(torch.nn.Module):
    """``model`` as ``(x, edge_index, batch) -> logits`` with each graph's logits scaled to
    at most :data:`MAX_LOGIT` in magnitude."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None) -> Tensor:
        logits = self.model(x, edge_index, batch)
        peak = logits.detach().abs().amax(dim=-1, keepdim=True)
        return logits * (MAX_LOGIT / peak.clamp(min=MAX_LOGIT))


def graph_node_masks(
    model: torch.nn.Module, algorithm: GNNExplainer, batch: Batch, sizes: list[int], seed: int
) -> tuple[Tensor, ...]:
    """One node mask per graph of ``batch`` (``sizes[i]`` nodes each) from
    ``torch_geometric.explain`` with ``algorithm`` on ``model``'s scaled logits
    (:class:`_ScaledLogits`); GNNExplainer draws from torch's global generator, so the call
    runs in a forked generator seeded with ``seed`` (the caller's state is restored)."""
    explainer = Explainer(
        model=_ScaledLogits(model).eval(),
        algorithm=algorithm,
        explanation_type="model",
        node_mask_type="object",
        edge_mask_type=None,
        model_config={
            "mode": "multiclass_classification",
            "task_level": "graph",
            "return_type": "raw",
        },
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        explanation = explainer(batch.x, batch.edge_index, batch=batch.batch)
    return explanation.node_mask.detach().view(-1).split(sizes)


class _RecordingGNNExplainer(GNNExplainer):
    """PyG's GNNExplainer that keeps each graph's prediction loss at every epoch (the loss
    curve whose elbow and curvature Downer et al. read)."""

    def __init__(self, epochs: int) -> None:
        super().__init__(epochs=epochs)
        self.history: list[Tensor] = []

    def _loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        self.history.append(F.cross_entropy(y_hat.detach(), y, reduction="none"))
        return super()._loss(y_hat, y)


def curve_elbow_curvature(curve: np.ndarray) -> tuple[float, float]:
    """``(elbow, curvature)`` of a loss curve ``[E]``: the elbow as a share of the epochs
    (the point farthest from the chord of the curve rescaled to the unit square; 0 for a
    flat curve) and the largest curvature of the rescaled curve (0 for a flat curve)."""
    if curve.size < 3:
        return 0.0, 0.0
    span = float(curve.max() - curve.min())
    if span <= 1e-12:
        return 0.0, 0.0
    t = np.linspace(0.0, 1.0, curve.size)
    y = (curve - curve.min()) / span
    chord = y[0] + (y[-1] - y[0]) * t
    elbow = int(np.argmax(np.abs(chord - y)))
    dy = np.gradient(y, t)
    d2y = np.gradient(dy, t)
    curvature = np.abs(d2y) / (1.0 + dy**2) ** 1.5
    return elbow / (curve.size - 1), float(curvature.max())


def _child(root: np.random.SeedSequence, index: int) -> np.random.SeedSequence:
    """``root``'s child ``index``, built from the key (``spawn`` would depend on how many
    children were spawned before)."""
    return np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, index))


def _variance(values: Tensor) -> float:
    return float(values.float().var(unbiased=False)) if values.numel() else 0.0


def _largest_component_share(nodes: Tensor, edge_index: Tensor, n: int) -> float:
    sub_edges, _ = subgraph(nodes, edge_index, relabel_nodes=True, num_nodes=n)
    k = int(nodes.numel())
    if k <= 1:
        return 1.0
    e = sub_edges.numpy()
    adjacency = coo_matrix((np.ones(e.shape[1]), (e[0], e[1])), shape=(k, k))
    _, labels = connected_components(adjacency, directed=False)
    return float(np.bincount(labels).max() / k)


@DEFENSES.register("gnnsecurer")
@dataclass
class GNNSecurer(InputShield):
    """Reject inputs whose explanation and topology metrics look triggered (white-box).

    Attributes:
        explainer_epochs: GNNExplainer optimisation epochs (>= 3; its default 100).
        explanation_fraction: Share of a graph's nodes in its explanatory subgraph, (0, 1].
        quantile: Each metric flags outside this central share of its values on the clean
            reference graphs, in (0.5, 1).
        min_flags: Flags (of the 7 metrics) that reject a graph, in 1..7.
        explain_batch: Graphs explained together (>= 1).
        random_state: The default seed of :meth:`predict` (>= 0).
    """

    #: White-box: ``predict`` needs a ModelPredictFn (a service or CLI holding only a black
    #: box can refuse this shield up front).
    requires_model: ClassVar[bool] = True
    reference: ClassVar[str] = (
        "Downer, Wang, Wang, Securing GNNs: Explanation-Based Identification of Backdoored "
        "Training Graphs (2024), as GraphProt's baseline"
    )

    explainer_epochs: Annotated[int, Field(ge=3)] = 100
    explanation_fraction: Fraction = 0.2
    quantile: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    min_flags: Annotated[int, Field(ge=1, le=len(METRICS))] = 2
    explain_batch: PositiveInt = 32
    random_state: NonNegativeInt = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._calibration: tuple[Any, ...] | None = None
        self._graphs = 0
        self._rejected = 0

    # -- public API -------------------------------------------------------------------

    def predict(
        self,
        predict_fn: PredictFn,
        graphs: Sequence[Data],
        *,
        seed: int | np.random.Generator | None = None,
    ) -> ShieldResult:
        """Labels of ``graphs``, :data:`REJECTED` for those flagged as triggered.

        Args:
            predict_fn: A :class:`~gnnbackdoor.defenses.shielding.ModelPredictFn` (the model
                and at least 2 clean reference graphs).
            graphs: Graphs to classify (not modified).
            seed: An int seed (``None``: ``random_state``) or a ``numpy.random.Generator``
                from which one 128-bit seed is drawn.

        Returns:
            Labels ``[B]`` and per graph: ``metrics`` (name -> value), ``flags`` (the
            metrics that flagged it), ``rejected`` and ``model_label`` (the model's answer,
            also for rejected graphs; ``None`` for a graph without nodes, which is rejected
            unexplained). ``queries`` counts the one call to ``predict_fn`` for the labels.

        Raises:
            UserError: ``predict_fn`` is a bare black box, or has too few reference graphs.
            ValueError: a negative seed.
        """
        model = getattr(predict_fn, "model", None)
        if not isinstance(predict_fn, ModelPredictFn) or not isinstance(model, torch.nn.Module):
            raise UserError(
                "gnnsecurer is white-box: it needs a ModelPredictFn (the model and clean "
                "reference graphs), not a bare prediction function"
            )
        root = root_seed(seed, self.random_state)
        thresholds = self._thresholds(predict_fn, root)
        usable = [i for i, g in enumerate(graphs) if num_nodes(g) > 0]
        values = self.metrics(model, [graphs[i] for i in usable], _child(root, 1))
        answers: list[int] = []
        if usable:
            answers = [int(v) for v in predict_fn([graphs[i] for i in usable]).view(-1).tolist()]
        labels = [REJECTED] * len(graphs)
        details: list[dict[str, Any]] = [
            {"metrics": {}, "flags": [], "rejected": True, "model_label": None} for _ in graphs
        ]
        for i, row, answer in zip(usable, values, answers, strict=True):
            flags = self.flags(row, thresholds)
            rejected = len(flags) >= self.min_flags
            labels[i] = REJECTED if rejected else answer
            details[i] = {
                "metrics": row,
                "flags": flags,
                "rejected": rejected,
                "model_label": answer,
            }
        self._graphs += len(graphs)
        self._rejected += sum(d["rejected"] for d in details)
        return ShieldResult(
            torch.tensor(labels, dtype=torch.long),
            details,
            queries=1 if usable else 0,
            graphs_queried=len(usable),
        )

    def describe(self) -> dict[str, Any]:
        """The share of every answered graph that was rejected, and of the clean reference
        graphs the thresholds would reject (the in-sample false-alarm rate)."""
        if not self._graphs:
            return {}
        out: dict[str, Any] = {"gnnsecurer_rejected_fraction": self._rejected / self._graphs}
        if self._calibration is not None:
            out["gnnsecurer_reference_reject_rate"] = self._calibration[-1]
            out["gnnsecurer_reference_graphs"] = len(self._calibration[1])
        return out

    # -- steps ------------------------------------------------------------------------

    def flags(self, row: dict[str, float], thresholds: dict[str, tuple[float, float]]) -> list:
        """The metrics of ``row`` outside their ``(low, high)`` thresholds."""
        out = []
        for name, side in METRICS.items():
            low, high = thresholds[name]
            value = row[name]
            if (side in ("high", "both") and value > high) or (
                side in ("low", "both") and value < low
            ):
                out.append(name)
        return out

    def _thresholds(
        self, predict_fn: ModelPredictFn, root: np.random.SeedSequence
    ) -> dict[str, tuple[float, float]]:
        """Per metric ``(low, high)`` from the reference graphs, cached per model, reference
        set and seed (the pipeline calls ``predict`` twice with the same function)."""
        reference = predict_fn.clean_graphs
        cached = self._calibration
        if (
            cached is not None
            and cached[0] is predict_fn.model
            and cached[1] is reference
            and cached[2] == (root.entropy, root.spawn_key)
        ):
            return cached[3]
        usable = [g for g in reference if num_nodes(g) > 0]
        if len(usable) < 2:
            raise UserError(
                f"gnnsecurer needs at least 2 clean reference graphs with nodes "
                f"(ModelPredictFn.clean_graphs), got {len(usable)}"
            )
        rows = self.metrics(predict_fn.model, usable, _child(root, 0))
        q = self.quantile
        thresholds: dict[str, tuple[float, float]] = {}
        for name, side in METRICS.items():
            values = np.array([row[name] for row in rows])
            # observed values as the cut-offs (flagged: strictly beyond), so a metric flags
            # at most about 1 - q of the reference graphs even when there are few of them
            if side == "high":
                thresholds[name] = (-math.inf, float(np.quantile(values, q, method="higher")))
            elif side == "low":
                thresholds[name] = (float(np.quantile(values, 1 - q, method="lower")), math.inf)
            else:
                lo = np.quantile(values, (1 - q) / 2, method="lower")
                hi = np.quantile(values, (1 + q) / 2, method="higher")
                thresholds[name] = (float(lo), float(hi))
        rate = sum(len(self.flags(r, thresholds)) >= self.min_flags for r in rows) / len(rows)
        self._calibration = (
            predict_fn.model,
            reference,
            (root.entropy, root.spawn_key),
            thresholds,
            rate,
        )
        return thresholds

    def metrics(
        self, model: torch.nn.Module, graphs: Sequence[Data], seeds: np.random.SeedSequence
    ) -> list[dict[str, float]]:
        """The seven metrics of each of ``graphs`` (all with nodes), explained in chunks of
        ``explain_batch``; chunk ``c`` seeds torch's forked generator from
        ``seeds``' child ``c``."""
        rows: list[dict[str, float]] = []
        for c in range(math.ceil(len(graphs) / self.explain_batch)):
            child = _child(seeds, c)
            chunk = graphs[c * self.explain_batch : (c + 1) * self.explain_batch]
            torch_seed = int(child.generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))
            rows.extend(self._chunk_metrics(model, chunk, torch_seed))
        return rows

    def _chunk_metrics(
        self, model: torch.nn.Module, graphs: Sequence[Data], torch_seed: int
    ) -> list[dict[str, float]]:
        batch = Batch.from_data_list(
            [Data(x=g.x.detach().float(), edge_index=g.edge_index.detach()) for g in graphs]
        )
        sizes = [num_nodes(g) for g in graphs]
        was_training = model.training
        algorithm = _RecordingGNNExplainer(self.explainer_epochs)
        try:
            with torch.no_grad():
                probs = torch.softmax(model(batch.x, batch.edge_index, batch.batch), dim=-1)
            predicted = probs.argmax(dim=-1)
            masks = graph_node_masks(model, algorithm, batch, sizes, torch_seed)
            curves = torch.stack(algorithm.history).numpy()  # [epochs, B]
            tops, explanatory = [], []
            for g, mask in zip(graphs, masks, strict=True):
                n = mask.numel()
                k = min(n, max(2, math.ceil(self.explanation_fraction * n)))
                top = torch.sort(torch.topk(mask, k).indices).values
                tops.append(top)
                sub_edges, _ = subgraph(top, g.edge_index, relabel_nodes=True, num_nodes=n)
                explanatory.append(Data(x=g.x.detach().float()[top], edge_index=sub_edges))
            with torch.no_grad():
                sub = Batch.from_data_list(explanatory)
                sub_probs = torch.softmax(model(sub.x, sub.edge_index, sub.batch), dim=-1)
        finally:
            model.train(was_training)
        rows = []
        for j, (g, top) in enumerate(zip(graphs, tops, strict=True)):
            n = sizes[j]
            deg = degree(g.edge_index[0], num_nodes=n)
            elbow, curvature = curve_elbow_curvature(curves[:, j])
            rows.append(
                {
                    "prediction_confidence": float(probs[j, predicted[j]]),
                    "explainability": float(sub_probs[j, predicted[j]]),
                    "connectivity": _largest_component_share(top, g.edge_index, n),
                    "subgraph_degree_variance": _variance(deg[top]),
                    "degree_variance": _variance(deg),
                    "elbow": elbow,
                    "curvature": curvature,
                }
            )
        return rows
