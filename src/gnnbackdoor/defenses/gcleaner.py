"""GCleaner: purify a backdoored graph classifier by explainer-guided trigger recovery and
unlearning by distillation with a Grad-CAM heat-map loss (Zhang et al., 2024).

``repair`` runs the paper's two modules on the defender's clean graphs:

1. :mod:`gnnbackdoor.defenses.trigger_recovery` (Section 4.3, Eq. 5-8): an explainer ranks
   the nodes of each clean graph, a generator learns an ``n``-node trigger that replaces the
   ``n`` least important ones so that trigger-embedded graphs crowd together in the
   backdoored model's embedding space;
2. :mod:`gnnbackdoor.defenses.unlearning` (Section 4.4, Eq. 9-14): a teacher (the
   backdoored model fine-tuned on the clean set, frozen) and the backdoored model as student;
   the student unlearns with logit distances and a multi-layer Grad-CAM heat-map distance.

The defender's data (Section 5.1): the paper's *holding rate* is "the ratio of the number
of clean data samples to the total data size", drawn from the test split; so by default
``holding_rate`` is a share of the whole dataset (3 % of AIDS's 2,000 graphs = 60 of its
400 test graphs), with ``holding_basis=test`` it is a share of the test split instead. With
``auxiliary_dataset`` the clean graphs come from another dataset of the same feature width
(Table V), as many as the holding rate would give, and every test graph is evaluated. Their
own labels belong to another task (NCI1's anti-cancer screen is not AIDS's activity), so
they are relabelled with the backdoored model's predictions, the only labels in the
victim's label space the defender has; a clean graph carries no trigger, so these are the
model's clean behaviour, which the teacher's fine-tuning then distils.

Attributable results (issue 20, beyond the paper): the teacher is fine-tuned at its own
rate on the defender's graphs less a held-out share and refused when it is less accurate
there than the backdoored model (the refusal is recorded, and a frozen copy of the
backdoored model teaches instead, ``unlearning.teacher_fallback=backdoored``, or with
``none`` the model is returned unchanged, so a sweep goes on);
:meth:`GCleaner.unlearn_control` runs the same unlearning with the attack's true trigger
(oracle) or with no trigger, so a record can say how much of the removal the recovered
trigger earns; the trigger's slots break explainer ties at random from the run's stream.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch_geometric.data import Data

from gnnbackdoor.attacks.trigger_layer import seed_from
from gnnbackdoor.contracts.results import (
    Probe,
    RepairResult,
    ScoredModel,
    TriggeredGraphs,
)
from gnnbackdoor.defenses.base import DEFENSES, ModelRepairDefense, holding_count
from gnnbackdoor.defenses.trigger_recovery import (
    Explainer,
    RecoveryConfig,
    least_important,
    node_importance,
    recover_trigger,
)
from gnnbackdoor.defenses.unlearning import (
    TeacherCheck,
    TeacherFallback,
    UnlearningConfig,
    UnlearningReport,
    check_teacher,
    fine_tune_teacher,
    frozen_copy,
    holdout_split,
    unlearn,
)
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.models.train_graph import predict_graphs
from gnnbackdoor.settings import Fraction, PositiveInt

if TYPE_CHECKING:
    from gnnbackdoor.contracts.context import GraphContext
    from gnnbackdoor.datasets.base import DataLocation
    from gnnbackdoor.models.base import GraphClassifier

logger = logging.getLogger(__name__)


class HoldingBasis(StrEnum):
    """What GCleaner's holding rate is a share of."""

    DATASET = "dataset"  # the paper: all graphs (drawn from the test split)
    TEST = "test"  # the test split


@dataclass
class PreparedTeacher:
    """A fine-tuned, frozen teacher with its check (:meth:`GCleaner.prepare_teacher`).

    Attributes:
        model: The teacher (eval mode, no gradients).
        losses: Its fine-tuning cross-entropy per epoch.
        check: Held-out comparison with the backdoored model; ``check.refused`` means no
            unlearning runs with the fine-tuned teacher.
        shuffle_seed: Seed of the unlearning's shuffling, drawn once from the run's stream
            with the teacher, so that the recovered-trigger unlearning and the controls
            (:meth:`GCleaner.unlearn_control`) see the same batches in the same order.
        fingerprint: Hash of the backdoored weights the teacher was made from.
        fallback: ``model`` is a frozen copy of the backdoored model, standing in for a
            refused teacher (``unlearning.teacher_fallback=backdoored``).
    """

    model: GraphClassifier
    losses: list[float]
    check: TeacherCheck
    shuffle_seed: int
    fingerprint: str
    fallback: bool = False


def _fingerprint(model: torch.nn.Module) -> str:
    """A hash of ``model``'s state (which backdoored weights a teacher belongs to)."""
    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@DEFENSES.register("gcleaner")
@dataclass
class GCleaner(ModelRepairDefense):
    """Trigger recovery by explanation, then unlearning by distillation with Grad-CAM.

    Settings come in three parts: the defender's data and the trigger's placement at the top,
    the generator's training in ``recovery`` (:class:`RecoveryConfig`, ``defense.recovery.*``)
    and the unlearning in ``unlearning`` (:class:`UnlearningConfig`, ``defense.unlearning.*``).

    Attributes:
        holding_rate: Share of clean graphs the defender holds, in (0, 1] (default 0.03).
        holding_basis: ``dataset`` (the paper: a share of all graphs, drawn from the test
            split) or ``test`` (a share of the test split).
        auxiliary_dataset: Registered dataset to draw the clean graphs from instead (e.g.
            ``NCI1``); ``None`` uses the test split.
        auxiliary_pad: Zero-pad an auxiliary dataset's narrower node features to the
            victim's width (AIDS has 38 one-hot atom types, NCI1 37); otherwise a width
            mismatch is an error.
        explainer: Where the trigger goes: ``gnnexplainer`` (default), ``pgexplainer``,
            ``integrated_gradients``, ``guided_backprop`` or ``random``.
        explainer_epochs: GNNExplainer / PGExplainer optimisation epochs.
        num_trigger_nodes: ``n``, nodes of the recovered trigger (default 3).
        recovery: The trigger generator's training (Eq. 6-8): ``epochs`` (20), ``lr``,
            ``batch_size`` (``B``), ``similarity_threshold`` (``τ``), ``trigger_features``,
            ``center_embeddings``, ``generator_hidden``, and ours beyond the paper ``prior``
            (``none``, ``feature``, ``logit_shift``) and ``prior_weight``; see
            :class:`RecoveryConfig`.
        unlearning: The teacher's fine-tuning and the unlearning (Eq. 9-14): ``epochs`` (60),
            ``lr`` (0.01), ``batch_size``, ``momentum``, ``weight_decay``, ``heatmap_weight``
            (``λ``, 3), ``heatmap`` (Table VI), ``heatmap_reference``, ``student_term`` and
            ``teacher_term`` (Table IX), ``logit_norm``, ``output_space``, ``max_grad_norm``,
            ``teacher_epochs``, ``teacher_lr`` (0.01), ``teacher_holdout`` (0.2); see
            :class:`UnlearningConfig`.

    :meth:`repair` returns the record's ``gc_*`` figures in its info (the teacher's check
    among them: ``gc_teacher_refused``, ``gc_teacher_holdout_acc``,
    ``gc_backdoored_holdout_acc``; the check in one line in its notes) and the defender's
    graphs with the recovered trigger as its ``recovered`` graphs (for Table IV's cosine,
    :func:`gnnbackdoor.metrics.gcleaner.trigger_embedding_cosine`); :meth:`unlearn_control`
    runs the oracle and no-trigger controls.
    """

    holding_rate: Fraction = 0.03
    holding_basis: HoldingBasis = HoldingBasis.DATASET
    auxiliary_dataset: str | None = None
    auxiliary_pad: bool = False
    explainer: Explainer = Explainer.GNNEXPLAINER
    explainer_epochs: PositiveInt = 100
    num_trigger_nodes: PositiveInt = 3
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    unlearning: UnlearningConfig = field(default_factory=UnlearningConfig)
    reference: ClassVar[str] = (
        "Zhang et al., Effective Backdoor Mitigation in Graph Neural Networks (GCleaner), 2024"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.auxiliary_dataset is not None:  # a registered name: fail now, one spelling
            from gnnbackdoor.datasets import DATASETS

            self.auxiliary_dataset = DATASETS.canonical(self.auxiliary_dataset)
        self.auxiliary_graphs_: list[Data] | None = None
        # a cache, not a result: the teacher made from one backdoored model, so that the
        # controls (unlearn_control) unlearn with the very teacher and batches repair used
        self.teacher_: PreparedTeacher | None = None

    # ------------------------------------------------------------------ defender's data

    def _count(self, test_size: int, dataset_size: int | None) -> int:
        base = dataset_size if self.holding_basis == "dataset" and dataset_size else test_size
        basis = "dataset" if base == dataset_size else "test"
        return holding_count(self.holding_rate, base, basis)

    def split_defender_data(
        self,
        test: Sequence[Data],
        generator: torch.Generator,
        dataset_size: int | None = None,
        location: DataLocation | None = None,
    ) -> tuple[list[int], list[int]]:
        """Draw the defender's clean graphs; fails fast on impossible settings (before any
        model is trained): ``n`` larger than every graph, an auxiliary dataset of another
        feature width, or no graph left to evaluate."""
        width = int(test[0].x.size(1))
        count = self._count(len(test), dataset_size)
        if self.auxiliary_dataset:
            pool = self._load_auxiliary(width, location)
            order = torch.randperm(len(pool), generator=generator).tolist()
            self.auxiliary_graphs_ = [pool[i] for i in order[: min(count, len(pool))]]
            self._check_sizes(self.auxiliary_graphs_, f"auxiliary dataset {self.auxiliary_dataset}")
            return [], list(range(len(test)))
        if count < 2 and self.unlearning.teacher_holdout > 0:
            raise ConfigError(
                f"holding_rate {self.holding_rate} gives {count} defender graph; the teacher's "
                "held-out check needs at least 2"
            )
        if count >= len(test):
            raise ConfigError(
                f"holding_rate {self.holding_rate} gives {count} defender graphs, leaving none "
                f"of the {len(test)} test graphs to evaluate"
            )
        order = torch.randperm(len(test), generator=generator).tolist()
        defender, evaluation = sorted(order[:count]), sorted(order[count:])
        self._check_sizes([test[i] for i in defender], "the defender's graphs")
        return defender, evaluation

    def _check_sizes(self, graphs: Sequence[Data], what: str) -> None:
        largest = max((g.num_nodes for g in graphs), default=0)
        if self.num_trigger_nodes > largest:
            raise ConfigError(
                f"num_trigger_nodes={self.num_trigger_nodes} is larger than every graph of "
                f"{what} (largest: {largest} nodes)"
            )

    def _load_auxiliary(self, width: int, location: DataLocation | None) -> list[Data]:
        from gnnbackdoor.datasets import load_dataset

        graphs = load_dataset(self.auxiliary_dataset or "", location)
        if not isinstance(graphs, list) or not graphs or graphs[0].y is None:
            raise ConfigError(
                f"auxiliary_dataset {self.auxiliary_dataset} is not a graph-classification dataset"
            )
        aux_width = int(graphs[0].x.size(1))
        if aux_width != width:
            if not (self.auxiliary_pad and aux_width < width):
                raise ConfigError(
                    f"auxiliary_dataset {self.auxiliary_dataset} has {aux_width} node features, "
                    f"the victim's data {width}"
                    + ("" if aux_width > width else " (set defense.auxiliary_pad=true to pad)")
                )
            pad = width - aux_width
            graphs = [
                Data(x=torch.nn.functional.pad(g.x, (0, pad)), edge_index=g.edge_index, y=g.y)
                for g in graphs
            ]
        return graphs

    # ------------------------------------------------------------------ repair

    def pseudo_labelled(self, model: GraphClassifier, graphs: Sequence[Data]) -> list[Data]:
        """Copies of auxiliary ``graphs`` labelled with ``model``'s predictions (their own
        labels are another task's); the class counts go to the record."""
        predicted = predict_graphs(model, graphs)[0]
        out = []
        for graph, label in zip(graphs, predicted.tolist(), strict=True):
            copy = graph.clone()
            copy.y = torch.tensor([int(label)], dtype=torch.long)
            out.append(copy)
        counts = torch.bincount(predicted, minlength=int(predicted.max()) + 1).tolist()
        self.auxiliary_label_counts_ = counts
        return out

    def repair(
        self, model: GraphClassifier, clean_graphs: Sequence[Data], ctx: GraphContext
    ) -> RepairResult:
        """Recover a trigger on the defender's graphs and unlearn it (see the module
        docstring). The result's info holds the recovery's and the unlearning's figures
        (``gc_*``); its probes ask the pipeline for the recovered trigger's ASR towards each
        class ``K`` (:meth:`recovery_probes`) on the model handed in
        (``gc_recovery_asr_cK``), on the run's clean victim (``gc_recovery_clean_model_asr_cK``)
        and on the repaired model (``gc_unlearned_recovery_asr_cK``)."""
        clean = list(self.auxiliary_graphs_ if self.auxiliary_dataset else clean_graphs)
        if self.auxiliary_dataset and self.auxiliary_graphs_ is None:
            raise ConfigError("auxiliary_dataset is set but split_defender_data was not called")
        if self.auxiliary_dataset:
            clean = self.pseudo_labelled(model, clean)
        n = self.num_trigger_nodes
        usable = [g for g in clean if g.num_nodes >= n]
        if not usable:
            raise ConfigError(f"num_trigger_nodes={n} is larger than every defender graph")
        generator = ctx.generator
        model.eval()

        # The teacher is fine-tuned first, so that its random draws (shuffling, dropout) do
        # not depend on the recovery settings: ablations of the recovery share one teacher.
        start = time.perf_counter()
        prepared = self.prepare_teacher(model, clean, generator)
        teacher_s = time.perf_counter() - start

        start = time.perf_counter()
        scores = node_importance(model, usable, self.explainer, self.explainer_epochs, generator)
        positions = [least_important(s, n, generator) for s in scores]
        explain_s = time.perf_counter() - start
        recovery = recover_trigger(model, usable, positions, n, self.recovery, generator)
        recovery_s = time.perf_counter() - start

        start = time.perf_counter()
        report = self._unlearn(model, prepared, usable, recovery.triggered)
        unlearning_s = time.perf_counter() - start + teacher_s
        teacher_losses = prepared.losses

        ctx.timings["gcleaner_explain_s"] = explain_s
        ctx.timings["gcleaner_recovery_s"] = recovery_s
        ctx.timings["gcleaner_unlearning_s"] = unlearning_s
        info: dict[str, Any] = {
            "gc_num_clean_graphs": len(clean),
            "gc_num_trigger_graphs": len(usable),
            "gc_recovery_similarity": recovery.similarity,
            "gc_clean_similarity": recovery.clean_similarity,
            "gc_unlearn_loss_first": report.losses[0] if report.losses else float("nan"),
            "gc_unlearn_loss_last": report.losses[-1] if report.losses else float("nan"),
            "gc_unlearn_skipped_steps": float(report.skipped_steps),
            "gc_recovery_similarity_first": recovery.history[0]
            if recovery.history
            else float("nan"),
            "gc_teacher_loss_last": teacher_losses[-1] if teacher_losses else float("nan"),
            "gc_weighted_structure": float(model.supports_edge_weight),
            **self._teacher_info(prepared.check),
            "gc_teacher_fallback_used": float(prepared.fallback),
        }
        if self.auxiliary_dataset:
            counts = getattr(self, "auxiliary_label_counts_", [])
            for c in range(ctx.num_classes):
                info[f"gc_auxiliary_pseudo_labels_c{c}"] = float(
                    counts[c] if c < len(counts) else 0
                )
        probes = self.recovery_probes(usable, recovery.triggered, ctx.num_classes)
        # the recovered trigger on the defender's graphs, for measurements the defense cannot
        # make itself (Table IV's cosine against the attack's trigger); source: positions in
        # clean_graphs, so none when the graphs came from an auxiliary dataset
        recovered = None
        if not self.auxiliary_dataset:
            index = {id(g): i for i, g in enumerate(clean_graphs)}
            recovered = TriggeredGraphs(
                list(recovery.triggered),
                [[int(p) for p in placed] for placed in positions],
                [index[id(g)] for g in usable],
            )
        return RepairResult(
            model,
            info,
            probes,
            recovered=recovered,
            notes={"gc_teacher_check": prepared.check.message()},
        )

    # ------------------------------------------------------------------ teacher and controls

    def prepare_teacher(
        self, model: GraphClassifier, clean: Sequence[Data], generator: torch.Generator
    ) -> PreparedTeacher:
        """The teacher of Eq. 9: a copy of the backdoored ``model`` fine-tuned with
        cross-entropy on the defender's ``clean`` graphs less a held-out share
        (``unlearning.teacher_holdout``), then compared with ``model`` on that share
        (:func:`~gnnbackdoor.defenses.unlearning.check_teacher`); a less accurate teacher is
        refused (issue 20). Made once per backdoored model: a second call with the same
        weights (the controls after :meth:`repair`) returns the same teacher without
        drawing from ``generator``.

        Raises:
            ConfigError: fewer than two clean graphs.
        """
        fingerprint = _fingerprint(model)
        if self.teacher_ is not None and self.teacher_.fingerprint == fingerprint:
            return self.teacher_
        graphs = list(clean)
        config = self.unlearning
        if config.teacher_holdout == 0:  # no check: the teacher fits every graph (pre-issue 20)
            teacher, losses = fine_tune_teacher(model, graphs, config, generator)
            check = TeacherCheck.unchecked()
        else:
            if len(graphs) < 2:
                raise ConfigError(
                    f"GCleaner's teacher check needs at least 2 defender graphs, got "
                    f"{len(graphs)} (defense.unlearning.teacher_holdout=0 turns it off)"
                )
            fit, held = holdout_split(len(graphs), config.teacher_holdout, generator)
            teacher, losses = fine_tune_teacher(model, [graphs[i] for i in fit], config, generator)
            # auxiliary graphs carry the model's own predictions: it is right on them by
            # construction, so the comparison is recorded but refuses nothing
            check = check_teacher(
                teacher, model, [graphs[i] for i in held], checked=not self.auxiliary_dataset
            )
        fallback = False
        if check.refused and config.teacher_fallback == TeacherFallback.BACKDOORED:
            # the refused teacher is dropped; the backdoored model (frozen) teaches: Eq. 9
            # and 14 only show the teacher clean graphs (UnlearningConfig.teacher_fallback)
            teacher = frozen_copy(model)
            fallback = True
            logger.warning("GCleaner: %s; the backdoored model teaches instead", check.message())
        elif check.refused:
            logger.warning(
                "GCleaner: %s; the backdoored model is returned unchanged", check.message()
            )
        self.teacher_ = PreparedTeacher(
            teacher, losses, check, seed_from(generator), fingerprint, fallback
        )
        return self.teacher_

    def _unlearn(
        self,
        model: GraphClassifier,
        prepared: PreparedTeacher,
        clean: Sequence[Data],
        triggered: Sequence[Data],
    ) -> UnlearningReport:
        """Eq. 14 on aligned pairs with ``prepared``'s teacher and shuffling seed; nothing
        (an empty report, ``model`` unchanged) when the teacher was refused."""
        if prepared.check.refused and not prepared.fallback:
            return UnlearningReport()
        shuffle = torch.Generator().manual_seed(prepared.shuffle_seed)
        return unlearn(model, prepared.model, clean, triggered, self.unlearning, shuffle)

    @staticmethod
    def _teacher_info(check: TeacherCheck) -> dict[str, float]:
        return {
            "gc_teacher_refused": float(check.refused),
            "gc_teacher_checked": float(check.checked),
            "gc_teacher_holdout_acc": check.teacher_acc,
            "gc_backdoored_holdout_acc": check.model_acc,
            "gc_teacher_holdout_loss": check.teacher_loss,
            "gc_backdoored_holdout_loss": check.model_loss,
            "gc_teacher_holdout_graphs": float(check.num_graphs),
        }

    def unlearn_control(
        self,
        model: GraphClassifier,
        clean_graphs: Sequence[Data],
        triggered_graphs: Sequence[Data] | None,
        ctx: GraphContext,
    ) -> GraphClassifier:
        """Issue 20's controls: :meth:`repair`'s unlearning (same teacher, same settings,
        same shuffling) with given triggered copies instead of the recovered trigger, so a
        record can say how much of the removal the recovered trigger earns.

        * **oracle**: ``triggered_graphs`` are ``clean_graphs`` carrying the attack's true
          trigger (node for node: the subgraph attacks replace nodes, never add them);
        * **no-trigger**: ``triggered_graphs=None`` unlearns on untriggered copies.

        Args:
            model: A copy of the backdoored model; purified in place and returned (unchanged
                when the teacher is refused).
            clean_graphs: The defender's graphs to unlearn on (after :meth:`repair`: those of
                its ``recovered`` graphs' sources, or those of them the attack can trigger).
            triggered_graphs: ``triggered_graphs[i]`` is ``clean_graphs[i]`` with the
                attack's trigger, or ``None``.
            ctx: The run (``ctx.generator`` makes the teacher if :meth:`repair` did not).

        Raises:
            ValueError: the two lists are not aligned (length or node counts).
        """
        clean = list(clean_graphs)
        triggered = (
            [g.clone() for g in clean] if triggered_graphs is None else list(triggered_graphs)
        )
        if len(triggered) != len(clean) or any(
            t.num_nodes != c.num_nodes for t, c in zip(triggered, clean, strict=True)
        ):
            raise ValueError("unlearn_control needs triggered copies aligned with clean_graphs")
        model.eval()
        teacher_graphs = clean
        if self.auxiliary_dataset and self.auxiliary_graphs_ is not None:
            teacher_graphs = self.pseudo_labelled(model, self.auxiliary_graphs_)
        prepared = self.prepare_teacher(model, teacher_graphs, ctx.generator)
        self._unlearn(model, prepared, clean, triggered)
        return model

    @staticmethod
    def recovery_probes(
        clean: Sequence[Data], triggered: Sequence[Data], num_classes: int
    ) -> dict[str, Probe]:
        """For each class ``c``: the defender's graphs whose label is not ``c``, with the
        recovered trigger embedded, to be classified as ``c``: the recovered trigger's ASR if
        ``c`` were the target (the defense never learns the attacker's target; the page reads
        the entry of the attack's ``target_class``). Scored on the model handed to the repair,
        on the repaired model, and (a diagnostic the defense never sees: high rates mean the
        recovered "trigger" is a perturbation that flips any model, not the backdoor) on the
        victim trained without poison."""
        labels = [int(g.y.view(-1)[0]) for g in clean]
        probes: dict[str, Probe] = {}
        for c in range(num_classes):
            graphs = [t for t, label in zip(triggered, labels, strict=True) if label != c]
            probes[f"gc_recovery_asr_c{c}"] = Probe(graphs, c, ScoredModel.INPUT)
            probes[f"gc_unlearned_recovery_asr_c{c}"] = Probe(graphs, c, ScoredModel.REPAIRED)
            probes[f"gc_recovery_clean_model_asr_c{c}"] = Probe(graphs, c, ScoredModel.CLEAN)
        return probes
