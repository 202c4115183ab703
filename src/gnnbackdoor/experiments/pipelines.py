"""One pipeline per task. A pipeline loads and splits the data, trains the clean victim, lets
the attack and the defense act through their base-class methods, and measures everything
with :mod:`gnnbackdoor.metrics`. Attacks and defenses are resolved by the runner from
registries: adding one never touches this module.

Each stage of a run (:class:`~gnnbackdoor.utils.seeding.Stage`: data split, victim, attack,
defender split, defense, evaluation) runs inside ``RunStreams.running``: torch's, Python's
and NumPy's global generators are forked and seeded from the stage's own stream, and the
stage's ``torch.Generator`` is handed to the acting component as ``ctx.generator``. No stage
shares a random stream with another, so a defense setting never moves a draw of the data
split, the victims or the attack. The pipelines never change torch's thread count (the CLI
does; results depend on it, so records and cache keys carry it).
"""

from __future__ import annotations

import copy
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch_geometric.data import Data

from gnnbackdoor.attacks.base import Attack, GraphAttack, LinkAttack, PoisonResult
from gnnbackdoor.attacks.triggers import summarise_positions
from gnnbackdoor.contracts import context as contracts_context
from gnnbackdoor.contracts.context import GraphContext, LinkContext
from gnnbackdoor.contracts.results import (
    RepairResult,
    ScoredModel,
    ShieldResult,
    TrainingDefenseResult,
    TriggeredGraphs,
)
from gnnbackdoor.datasets.base import DataLocation, GraphDataset
from gnnbackdoor.datasets.splits import split_graphs, split_links
from gnnbackdoor.defenses.base import (
    Defense,
    InputShield,
    ModelRepairDefense,
    TrainingDefense,
    UnlearningControls,
)
from gnnbackdoor.defenses.shielding import ModelPredictFn
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.experiments import clean_cache, stage_cache
from gnnbackdoor.experiments.config import DataConfig, as_dict
from gnnbackdoor.experiments.example_graph import choose_example, example_graph
from gnnbackdoor.metrics import (
    accuracy,
    already_target_share,
    attack_success_rate,
    average_misclassification_confidence,
    backdoor_implanted,
    benign_performance_drop,
    class_histogram,
    collapsed,
    defense_effectiveness_rating,
    detection_scores,
    evaluate_links,
    majority_share,
    trigger_embedding_cosine,
)
from gnnbackdoor.metrics.shield import shield_diagnostics
from gnnbackdoor.models import base as model_base
from gnnbackdoor.models import graph as model_graph
from gnnbackdoor.models import train_graph
from gnnbackdoor.models.base import GraphClassifier, ModelSpec
from gnnbackdoor.models.io import save_model
from gnnbackdoor.models.train_graph import GraphTrainConfig, graph_labels, predict_graphs
from gnnbackdoor.models.train_link import (
    LinkTrainConfig,
    TrainReport,
    link_scores,
)
from gnnbackdoor.registry import Registry
from gnnbackdoor.utils import seeding
from gnnbackdoor.utils.seeding import RunStreams, Stage, use_deterministic_kernels
from gnnbackdoor.utils.sources import own_classes
from gnnbackdoor.utils.timing import PhaseTimer


@dataclass
class ResolvedRun:
    """Everything a pipeline needs, already resolved from names and overrides."""

    dataset_name: str
    dataset: GraphDataset
    model_spec: ModelSpec
    data_config: DataConfig
    train_config: Any
    attack: Attack | None
    defense: Defense | None
    seed: int
    location: DataLocation
    save_dir: Path | None = None


@dataclass
class PipelineOutput:
    metrics: dict[str, float]
    attack_info: dict[str, Any]


class TaskPipeline(ABC):
    """Runs one (dataset, model, attack, defense, seed) of its task."""

    task: ClassVar[str]
    train_config_cls: ClassVar[type]
    registered_name: ClassVar[str]

    @abstractmethod
    def execute(self, run: ResolvedRun, timer: PhaseTimer) -> PipelineOutput: ...


TASKS: Registry[type[TaskPipeline]] = Registry("task")


def _save(run: ResolvedRun, role: str, model: torch.nn.Module, in_ch: int, out_ch: int | None):
    if run.save_dir is None:
        return
    save_model(
        model,
        run.model_spec,
        run.save_dir / role,
        in_ch,
        out_ch,
        extra={"dataset": run.dataset_name, "seed": run.seed, "role": role},
    )


@TASKS.register("link")
class LinkPipeline(TaskPipeline):
    """Link prediction: clean AUC/AP; with an attack, Link-Backdoor's metrics (Sec. 5.1.3).

    ASR counts target links that the clean model predicts absent (probability < 0.5) on the
    clean training graph; a hit is a probability >= 0.5 from the backdoored model on the
    triggered graph. ``no_trigger_rate`` is the share of those eligible links the backdoored
    model already predicts existing without the trigger; ``clean_model_asr`` is the trigger's
    ASR on the clean model.
    """

    task = "link"
    train_config_cls = LinkTrainConfig

    def execute(self, run: ResolvedRun, timer: PhaseTimer) -> PipelineOutput:
        use_deterministic_kernels()
        streams = RunStreams(run.seed)
        with timer.phase("load_s"):
            graph = run.dataset.fetch(run.location)
            data_config = run.data_config
            with streams.running(Stage.DATA_SPLIT):
                split = split_links(
                    graph,
                    val=data_config.link_val,
                    test=data_config.link_test,
                    rng=streams.numpy_generator(Stage.DATA_SPLIT),
                )
        ctx = LinkContext(
            graph,
            split,
            run.model_spec,
            run.train_config,
            run.seed,
            streams.torch_generator(Stage.VICTIM),
        )
        with timer.phase("clean_train_s"), streams.running(Stage.VICTIM) as generator:
            ctx.generator = generator
            clean = ctx.build_model()
            report = ctx.train_model(clean, split.train, desc="clean")
        ctx.clean_model = clean
        timer.add("clean_epoch_s", report.seconds_per_epoch)
        _save(run, "clean", clean, ctx.num_features, None)
        attack = run.attack if isinstance(run.attack, LinkAttack) else None
        info: dict[str, Any] = {}
        if attack is not None:
            with streams.running(Stage.ATTACK) as generator:
                ctx.generator = generator
                with timer.phase("attack_fit_s"):
                    attack.fit(ctx)
                with timer.phase("backdoor_train_s"):
                    backdoored = attack.backdoor(ctx)
                with timer.phase("attack_eval_s"):
                    targets = attack.test_targets(ctx)
                    triggered = attack.activate(split.train, targets)
            _save(run, "backdoored", backdoored, ctx.num_features, None)
            info = attack.describe()
            for name, seconds in ctx.timings.items():
                timer.add(name, seconds)
        with streams.running(Stage.EVALUATION):
            clean_scores = evaluate_links(clean, split.test)
            metrics: dict[str, float] = {
                "clean_auc": clean_scores["auc"],
                "clean_ap": clean_scores["ap"],
                "clean_val_auc": report.best_val,
                "clean_epochs": report.epochs,
            }
            if report.diverged:
                metrics["clean_diverged_epoch"] = report.diverged_epoch
            if attack is not None:
                with timer.phase("attack_eval_s"):
                    metrics.update(self._attack_metrics(ctx, clean, backdoored, targets, triggered))
                if getattr(backdoored, "diverged_epoch", 0):
                    metrics["backdoored_diverged_epoch"] = backdoored.diverged_epoch
        return PipelineOutput(metrics, info)

    @staticmethod
    def _attack_metrics(
        ctx: LinkContext, clean, backdoored, targets: torch.Tensor, triggered: Data
    ) -> dict[str, float]:
        clean_graph = ctx.split.train
        eligible = link_scores(clean, clean_graph, targets) < 0.5
        backdoored_p = link_scores(backdoored, triggered, targets)
        hit = backdoored_p >= 0.5
        bd_scores = evaluate_links(backdoored, ctx.split.test)
        clean_auc = evaluate_links(clean, ctx.split.test)["auc"]
        return {
            "backdoored_auc": bd_scores["auc"],
            "backdoored_ap": bd_scores["ap"],
            "bpd": benign_performance_drop(clean_auc, bd_scores["auc"]),
            "asr": attack_success_rate(hit, eligible),
            "amc": average_misclassification_confidence(backdoored_p, hit, eligible),
            "clean_model_asr": attack_success_rate(
                link_scores(clean, triggered, targets) >= 0.5, eligible
            ),
            "no_trigger_rate": attack_success_rate(
                link_scores(backdoored, clean_graph, targets) >= 0.5, eligible
            ),
            "num_targets": int(targets.size(1)),
            "num_eligible": int(eligible.sum()),
        }


@dataclass
class _AttackStage:
    """What a graph run holds once the clean victim is trained and the attack has acted (the
    victim and attack stages; the stage cache stores exactly this).

    Attributes:
        clean: The clean victim.
        backdoored: The backdoored victim (``None`` without an attack).
        triggered: The attack's activation of every test graph whose label is not the target
            class (``source`` indexes ``eligible``); ``None`` without an attack.
        eligible: Positions in the test split of the graphs handed to ``activate``.
        figures: The clean training's figures (``clean_val_acc``, ``clean_epochs``).
        info: The attack's ``describe()``.
        test_triggered: In a defended run, the attack's activation of *every* test graph
            (``source`` indexes the test split), made after ``triggered`` so that none of its
            draws moves: the attack's true trigger on the defender's graphs, for the
            measurement-only GCleaner controls (:func:`_repair_controls`).
        single_node: GTA only: copies of the eligible test graphs carrying one trigger node
            alone (``source`` indexes ``eligible``), for ``single_node_asr``
            (:func:`_single_node_copies`); ``None`` for other attacks.
        training: The training graphs the backdoored victim was trained on, with the
            poisoned positions (:meth:`GraphAttack.training_set`), for a training defense;
            ``None`` without an attack or when the attack does not record them.
        training_val: The validation graphs the backdoored victim was selected on.
    """

    clean: GraphClassifier
    backdoored: GraphClassifier | None
    triggered: TriggeredGraphs | None
    eligible: list[int]
    figures: dict[str, float]
    info: dict[str, Any]
    test_triggered: TriggeredGraphs | None = None
    single_node: TriggeredGraphs | None = None
    training: PoisonResult | None = None
    training_val: list[Data] | None = None


@TASKS.register("graph")
class GraphPipeline(TaskPipeline):
    """Graph classification: clean accuracy; with an attack, backdoored accuracy, ASR and the
    trigger's ASR on the clean model; with a defense, defended accuracy and ASR.

    ASR counts evaluation graphs whose true label is not the target class. A model-repair
    defense takes its clean graphs from the test split; they are excluded from every figure.
    A training defense trains in place of the backdoored victim, on the graphs the victim
    was trained on (poisoned ones included), and is scored like a repair, plus its
    detection of the poisoned graphs. The attack activates every eligible test graph (so its
    draws never depend on the defender's split); the figures use those outside the
    defender's set.
    """

    task = "graph"
    train_config_cls = GraphTrainConfig

    def execute(self, run: ResolvedRun, timer: PhaseTimer) -> PipelineOutput:
        use_deterministic_kernels()
        streams = RunStreams(run.seed)
        with timer.phase("load_s"):
            graphs = run.dataset.fetch(run.location)
            with streams.running(Stage.DATA_SPLIT):
                split = split_graphs(
                    graphs,
                    streams.seed(Stage.DATA_SPLIT),
                    run.data_config.train_fraction,
                    run.data_config.val_fraction,
                    cv_folds=run.data_config.cv_folds,
                    cv_fold=run.data_config.cv_fold,
                )
        ctx = GraphContext(
            split,
            run.model_spec,
            run.train_config,
            run.seed,
            streams.torch_generator(Stage.VICTIM),
        )
        attack = run.attack if isinstance(run.attack, GraphAttack) else None
        if attack is not None and not 0 <= attack.target_class < ctx.num_classes:
            raise ConfigError(
                f"target_class {attack.target_class} is not a class of {run.dataset_name} "
                f"(0..{ctx.num_classes - 1})"
            )
        defense = run.defense
        # The defender's split comes first only to fail fast on impossible settings before
        # any training; its stream is its own, so the order changes no draw.
        defender_pos: list[int] = []
        eval_pos = list(range(len(split.test)))
        if isinstance(defense, ModelRepairDefense):
            with streams.running(Stage.DEFENDER_SPLIT) as generator:
                defender_pos, eval_pos = defense.split_defender_data(
                    split.test, generator, dataset_size=len(graphs), location=run.location
                )
        stage = self._victim_and_attack(
            run, ctx, streams, timer, cached=attack is not None or defense is not None
        )
        training = _training_set(run, stage, ctx) if isinstance(defense, TrainingDefense) else None
        eval_graphs = [split.test[i] for i in eval_pos]
        triggered = _evaluated(stage, eval_pos)
        model_under_test = stage.backdoored if stage.backdoored is not None else stage.clean
        target = attack.target_class if attack is not None else None
        defended = None
        if defense is not None:
            with streams.running(Stage.DEFENSE) as generator:
                ctx.generator = generator
                defender_graphs = [split.test[i] for i in defender_pos]
                with timer.phase("defense_s"):
                    defended = _defend(
                        defense,
                        model_under_test,
                        defender_graphs,
                        eval_graphs,
                        triggered.graphs if target is not None else [],
                        ctx,
                        run.train_config.eval_batch_size,
                        training,
                    )
                # after the repair, in its stage: measurement only (see _repair_controls)
                if isinstance(defense, ModelRepairDefense) and stage.backdoored is not None:
                    with timer.phase("controls_s"):
                        defended.controls = _repair_controls(
                            defense,
                            stage.backdoored,
                            defender_graphs,
                            defender_pos,
                            defended.repaired,
                            stage.test_triggered,
                            ctx,
                        )
            if defended.repaired is not None:
                _save(run, "defended", defended.repaired.model, ctx.num_features, ctx.num_classes)
        info = dict(stage.info)
        if defended is not None and defended.repaired is not None:
            info.update(defended.repaired.notes)
        if attack is not None:
            info.update(_activation_info(triggered, stage, eval_pos))
        with streams.running(Stage.EVALUATION):
            batch = run.train_config.eval_batch_size
            labels = graph_labels(eval_graphs)
            clean_predicted = predict_graphs(stage.clean, eval_graphs, batch)[0]
            metrics: dict[str, float] = {
                "clean_acc": accuracy(clean_predicted, labels),
                **stage.figures,
                "num_eval_graphs": len(eval_graphs),
                "num_classes": ctx.num_classes,
                # the same flag on the clean victim: a "collapsed" backdoored model whose
                # clean twin is as lopsided says the victim, not the backdoor, is (issue 14)
                **_collapse_metrics("clean", clean_predicted, labels, ctx),
            }
            if attack is not None and stage.backdoored is not None:
                with timer.phase("attack_eval_s"):
                    predicted = predict_graphs(stage.backdoored, eval_graphs, batch)[0]
                    metrics["backdoored_acc"] = accuracy(predicted, labels)
                    metrics["asr"] = _asr(stage.backdoored, triggered.graphs, target, batch)
                    metrics["clean_model_asr"] = _asr(stage.clean, triggered.graphs, target, batch)
                    metrics["num_triggered"] = len(triggered)
                    metrics.update(_collapse_metrics("backdoored", predicted, labels, ctx))
                    metrics["backdoored_already_target"] = already_target_share(
                        predicted, labels, target
                    )
                    metrics["backdoor_implanted"] = float(
                        backdoor_implanted(metrics["asr"], metrics["clean_model_asr"])
                    )
                    metrics.update(
                        _target_class_metrics(graph_labels(split.train), target, ctx.num_classes)
                    )
                    single = _evaluated_single_node(stage, eval_pos)
                    if single is not None:
                        metrics["single_node_asr"] = _asr(
                            stage.backdoored, single.graphs, target, batch
                        )
            if defense is not None and defended is not None:
                models = {ScoredModel.INPUT: model_under_test, ScoredModel.CLEAN: stage.clean}
                metrics.update(
                    _defense_metrics(
                        defended, models, eval_graphs, labels, triggered, target, batch, ctx
                    )
                )
                if defended.trained is not None and training is not None:
                    metrics.update(_training_defense_metrics(defended.trained, training[0]))
                metrics.update(defense.describe())
                if "asr" in metrics and "defended_asr" in metrics:
                    metrics["der"] = defense_effectiveness_rating(
                        metrics["asr"],
                        metrics["defended_asr"],
                        metrics["backdoored_acc"],
                        metrics["defended_acc"],
                    )
                if defended.controls is not None:
                    metrics.update(
                        _control_metrics(
                            defended.controls,
                            stage.backdoored,
                            eval_graphs,
                            labels,
                            triggered,
                            target,
                            batch,
                        )
                    )
            if attack is not None and stage.backdoored is not None:
                example = _example(triggered, target, stage.clean, stage.backdoored, batch)
                if example is not None:
                    info["example_graph"] = example
        for name, seconds in ctx.timings.items():
            timer.add(name, seconds)
        if run.dataset.dropped_empty_graphs:
            metrics["num_empty_graphs_dropped"] = run.dataset.dropped_empty_graphs
        return PipelineOutput(metrics, info)

    def _victim_and_attack(
        self,
        run: ResolvedRun,
        ctx: GraphContext,
        streams: RunStreams,
        timer: PhaseTimer,
        cached: bool,
    ) -> _AttackStage:
        """The victim and attack stages, from the stage cache when it is on and holds them
        (attacked or defended runs; a clean run's victim is the clean cache's);
        ``ctx.clean_model`` is set either way. The key names no defense, so an attacked run
        without one and the defended runs of its cell share one entry."""
        path = stage_cache.cache_path(run, _STAGE_SOURCES) if cached else None
        entry = stage_cache.load(path) if path is not None else None
        if (
            entry is not None
            and isinstance(run.defense, TrainingDefense)
            and entry.backdoored_state is not None
            and getattr(entry, "training", None) is None
        ):
            entry = None  # made without the training set a training defense needs: rerun
        if entry is not None:
            stage = _AttackStage(
                clean=_rebuilt(ctx, entry.clean_state),
                backdoored=(
                    None
                    if entry.backdoored_state is None
                    else _rebuilt(ctx, entry.backdoored_state)
                ),
                triggered=entry.triggered,
                eligible=list(entry.eligible),
                figures=dict(entry.figures),
                info={**entry.info, "stage_cached": True},
                test_triggered=entry.test_triggered,
                single_node=getattr(entry, "single_node", None),
            )
            stored = getattr(entry, "training", None)
            if stored is not None:
                stage.training, stage.training_val = stored.restore(ctx.split.train, ctx.split.val)
            ctx.clean_model = stage.clean
            for name, seconds in entry.seconds.items():
                timer.add(name, seconds)
            ctx.timings.update(entry.ctx_timings)
            return stage
        seconds_before = dict(timer.seconds)
        stage = self._run_victim_and_attack(run, ctx, streams, timer)
        if path is not None:
            stage_cache.save(
                path,
                stage_cache.AttackStage(
                    clean_state=stage.clean.state_dict(),
                    backdoored_state=(
                        None if stage.backdoored is None else stage.backdoored.state_dict()
                    ),
                    triggered=stage.triggered,
                    eligible=stage.eligible,
                    figures=dict(stage.figures),
                    info=dict(stage.info),
                    seconds={k: v - seconds_before.get(k, 0.0) for k, v in timer.seconds.items()},
                    ctx_timings=dict(ctx.timings),
                    test_triggered=stage.test_triggered,
                    single_node=stage.single_node,
                    training=(
                        None
                        if stage.training is None
                        else stage_cache.StoredTraining.compact(
                            stage.training,
                            stage.training_val or [],
                            ctx.split.train,
                            ctx.split.val,
                        )
                    ),
                ),
            )
        return stage

    def _run_victim_and_attack(
        self, run: ResolvedRun, ctx: GraphContext, streams: RunStreams, timer: PhaseTimer
    ) -> _AttackStage:
        with timer.phase("clean_train_s"), streams.running(Stage.VICTIM) as generator:
            ctx.generator = generator
            clean, report = _clean_victim(run, ctx, timer)
        ctx.clean_model = clean
        timer.add("clean_epoch_s", report.seconds_per_epoch)
        _save(run, "clean", clean, ctx.num_features, ctx.num_classes)
        figures = {"clean_val_acc": report.best_val, "clean_epochs": report.epochs}
        if report.diverged:
            figures["clean_diverged_epoch"] = report.diverged_epoch
        attack = run.attack
        if not isinstance(attack, GraphAttack):
            return _AttackStage(clean, None, None, [], figures, {})
        test = ctx.split.test
        eligible = [i for i, g in enumerate(test) if int(g.y.view(-1)[0]) != attack.target_class]
        with streams.running(Stage.ATTACK) as generator:
            ctx.generator = generator
            with timer.phase("attack_fit_s"):
                attack.fit(ctx)
            with timer.phase("backdoor_train_s"):
                backdoored = attack.backdoor(ctx)
            with timer.phase("attack_eval_s"):
                triggered = attack.activate([test[i] for i in eligible])
            info = attack.describe()
            # after every draw the record's figures depend on: the true trigger on every
            # test graph (the defender's among them), for the defense's controls only
            test_triggered = attack.activate(test) if run.defense is not None else None
        single_node = _single_node_copies(attack, [test[i] for i in eligible], streams)
        recorded = attack.training_set()
        if getattr(backdoored, "diverged_epoch", 0):
            figures["backdoored_diverged_epoch"] = backdoored.diverged_epoch
        _save(run, "backdoored", backdoored, ctx.num_features, ctx.num_classes)
        return _AttackStage(
            clean,
            backdoored,
            triggered,
            eligible,
            figures,
            info,
            test_triggered,
            single_node,
            training=recorded[0] if recorded is not None else None,
            training_val=recorded[1] if recorded is not None else None,
        )


def clean_cache_path(run: ResolvedRun, model: type[torch.nn.Module]) -> Path | None:
    """The clean cache's file for ``run``'s clean victim, of class ``model``, or ``None``
    when the cache is off (:func:`~gnnbackdoor.experiments.clean_cache.cache_path`; the
    source digest covers ``model``'s and the dataset's classes and :data:`_CLEAN_SOURCES`)."""
    return clean_cache.cache_path(
        {
            "dataset": run.dataset_name,
            "model": [run.model_spec.registered_name, as_dict(run.model_spec)],
            "data": as_dict(run.data_config),
            "train": as_dict(run.train_config),
            "seed": run.seed,
        },
        [*own_classes(model), *own_classes(type(run.dataset)), *_CLEAN_SOURCES],
    )


def _clean_victim(
    run: ResolvedRun, ctx: GraphContext, timer: PhaseTimer
) -> tuple[GraphClassifier, TrainReport]:
    """The clean victim, from the clean-model cache when it is on and holds it."""
    clean = ctx.build_model()
    cached = clean_cache_path(run, type(clean))
    report = TrainReport()
    if cached is not None and clean_cache.load(cached, clean, report):
        timer.add("clean_cache_hit", 1.0)
        return clean, report
    report = ctx.train_model(clean, ctx.split.train, desc="clean")
    if cached is not None:
        clean_cache.save(cached, clean, report)
    return clean, report


def _rebuilt(ctx: GraphContext, state: dict[str, torch.Tensor]) -> GraphClassifier:
    model = ctx.build_model()
    model.load_state_dict(state)
    model.eval()
    return model


@dataclass
class _Defended:
    """What the defense stage produced (only the fields of the defense's kind are set).

    Attributes:
        num_defender_graphs: Graphs handed to a repair.
        repaired: A repair's result.
        shielded, shielded_triggered: A shield's results on the evaluation graphs and on
            their triggered copies (``None`` without an attack or triggered graphs).
        graphs_queried: Graphs a shield sent to the model.
        trained: A training defense's result (``repaired`` then holds its model and info,
            scored like a repair's).
    """

    num_defender_graphs: int = 0
    repaired: RepairResult | None = None
    shielded: ShieldResult | None = None
    shielded_triggered: ShieldResult | None = None
    graphs_queried: int = 0
    controls: _Controls | None = None
    trained: TrainingDefenseResult | None = None


@dataclass
class _Controls:
    """GCleaner's measurement-only controls (issue 20), made in the defense stage after the
    repair; nothing the repair returned depends on them.

    Attributes:
        original, recovered: The defender's graphs the repair unlearned on that the attack
            triggers, with the attack's true trigger and, paired graph by graph, with the
            recovered one (Table IV's cosine).
        models: ``"oracle"`` (unlearned with the attack's true trigger on the defender's
            graphs it triggers) and ``"notrigger"`` (unlearned on untriggered copies of the
            graphs the repair unlearned on); ``None`` when the repair's teacher was refused
            with no stand-in (then the repair changed nothing and neither would they; with
            the backdoored model standing in they run with it) and, for the oracle,
            when the attack triggers none of those graphs. Absent when the
            defense has no :class:`~gnnbackdoor.defenses.base.UnlearningControls`.
        oracle_graphs: Defender graphs the oracle unlearned on.
    """

    original: list[Data]
    recovered: list[Data]
    models: dict[str, GraphClassifier | None]
    oracle_graphs: int = 0


def _defend(
    defense: Defense,
    model: GraphClassifier,
    defender_graphs: list[Data],
    eval_graphs: list[Data],
    triggered: list[Data],
    ctx: GraphContext,
    batch: int,
    training: tuple[PoisonResult, list[Data]] | None = None,
) -> _Defended:
    """Let ``defense`` act: a repair on a copy of ``model`` with the defender's graphs, a
    shield in front of ``model``'s predictions on the evaluation and triggered graphs, a
    training defense on ``training`` (the graphs ``model`` was trained and validated on),
    with a copy of ``model`` as its optional helper."""
    if isinstance(defense, TrainingDefense):
        assert training is not None
        trained = defense.train(
            list(training[0].graphs), list(training[1]), ctx, victim=copy.deepcopy(model)
        )
        return _Defended(
            repaired=RepairResult(trained.model, dict(trained.info), notes=dict(trained.notes)),
            trained=trained,
        )
    if isinstance(defense, ModelRepairDefense):
        repaired = defense.repair(copy.deepcopy(model), defender_graphs, ctx)
        return _Defended(num_defender_graphs=len(defender_graphs), repaired=repaired)
    if not isinstance(defense, InputShield):
        raise TypeError(f"{type(defense).__name__} is neither a repair nor a shield")
    # The model's predictions, with the model at hand for a white-box shield (GNNSecurer) and
    # the defender's clean reference graphs: the clean validation graphs (never the graphs
    # being classified); counts the graphs queried.
    predict_fn = ModelPredictFn(model, batch, clean_graphs=list(ctx.split.val))
    shielded = defense.predict(predict_fn, eval_graphs)
    shielded_triggered = defense.predict(predict_fn, triggered) if triggered else None
    return _Defended(
        shielded=shielded,
        shielded_triggered=shielded_triggered,
        graphs_queried=predict_fn.graphs,
    )


def _defense_metrics(
    defended: _Defended,
    models: dict[ScoredModel, torch.nn.Module],
    eval_graphs: list[Data],
    labels: torch.Tensor,
    triggered: TriggeredGraphs,
    target: int | None,
    batch: int,
    ctx: GraphContext,
) -> dict[str, float]:
    """The defended figures: accuracy and ASR after the defense and the collapse flags of its
    predictions (:func:`_collapse_metrics`); for a repair, its info and its probes' ASRs
    (``models`` names the input and clean models); for a shield, its queries and
    :func:`~gnnbackdoor.metrics.shield.shield_diagnostics`."""
    out: dict[str, float] = {}
    if defended.repaired is not None:
        repaired = defended.repaired
        predicted = predict_graphs(repaired.model, eval_graphs, batch)[0]
        out["defended_acc"] = accuracy(predicted, labels)
        out.update(_collapse_metrics("defended", predicted, labels, ctx))
        if target is not None:
            out["defended_asr"] = _asr(repaired.model, triggered.graphs, target, batch)
            out["defended_robust_acc"] = _robust_accuracy(repaired.model, triggered.graphs, batch)
            out["defended_target_no_trigger"] = already_target_share(predicted, labels, target)
        if defended.trained is None:
            out["num_defender_graphs"] = defended.num_defender_graphs
        out.update(repaired.info)
        scored = {**models, ScoredModel.REPAIRED: repaired.model}
        for name, probe in repaired.probes.items():
            out[name] = _asr(scored[probe.model], probe.graphs, probe.target, batch)
        return out
    shielded, on_triggered = defended.shielded, defended.shielded_triggered
    assert shielded is not None
    out["defended_acc"] = accuracy(shielded.labels, labels)
    answered = shielded.labels >= 0  # a shield's rejections (REJECTED) are no class
    out.update(_collapse_metrics("defended", shielded.labels[answered], labels[answered], ctx))
    if on_triggered is not None:
        out["defended_asr"] = attack_success_rate(on_triggered.labels == target)
        if len(triggered):
            true = graph_labels(triggered.graphs)
            out["defended_robust_acc"] = accuracy(on_triggered.labels, true)
    out["queries"] = shielded.queries + (on_triggered.queries if on_triggered else 0)
    out["queried_graphs"] = defended.graphs_queried
    positions = triggered.positions if on_triggered is not None else None
    out.update(shield_diagnostics(shielded, labels.tolist(), on_triggered, target, positions))
    return out


def _training_set(
    run: ResolvedRun, stage: _AttackStage, ctx: GraphContext
) -> tuple[PoisonResult, list[Data]]:
    """What a training defense trains on: the attack's recorded training set (poisoned
    graphs in place) and validation graphs, or, without an attack, the clean split's.

    Raises:
        ConfigError: The attack trained its victim without recording the set."""
    if stage.backdoored is None:
        return PoisonResult(list(ctx.split.train), []), list(ctx.split.val)
    if stage.training is None:
        name = getattr(run.attack, "registered_name", type(run.attack).__name__)
        raise ConfigError(
            f"attack {name} does not record the training set its victim was trained on; "
            f"training defenses cannot run with it"
        )
    val = stage.training_val if stage.training_val is not None else list(ctx.split.val)
    return stage.training, val


def _training_defense_metrics(
    trained: TrainingDefenseResult, training: PoisonResult
) -> dict[str, float]:
    """``num_train_graphs``, ``num_kept_graphs`` (when the defense filtered) and, when it
    flags graphs, :func:`~gnnbackdoor.metrics.detection_scores` against the attack's
    poisoned positions (none without an attack)."""
    size = len(training.graphs)
    out: dict[str, float] = {"num_train_graphs": float(size)}
    if trained.kept is not None:
        out["num_kept_graphs"] = float(len(trained.kept))
    flagged = trained.flagged_positions(size)
    if flagged is not None:
        out.update(detection_scores(flagged, training.poisoned_index, size))
    return out


def _collapse_metrics(
    prefix: str, predicted: torch.Tensor, labels: torch.Tensor, ctx: GraphContext
) -> dict[str, float]:
    """``{prefix}_majority_share``: the largest class share among a model's predictions on
    the evaluation graphs; ``{prefix}_collapsed``: 1 when it exceeds the largest class share
    of their true labels by more than :data:`~gnnbackdoor.metrics.collapse.COLLAPSE_MARGIN`
    (ten points; issue 14 item 3, issue 20 item 5: an ASR of 0 from a model that predicts
    one class says nothing), else 0 (records' metrics are numbers). ``nan`` for no graphs."""
    if predicted.numel() == 0:
        return {f"{prefix}_majority_share": float("nan"), f"{prefix}_collapsed": float("nan")}
    return {
        f"{prefix}_majority_share": majority_share(predicted, ctx.num_classes),
        f"{prefix}_collapsed": float(collapsed(predicted, labels, ctx.num_classes)),
    }


def _target_class_metrics(train_labels: torch.Tensor, target: int, num_classes: int) -> dict:
    """``target_train_share``: the target class's share of the training graphs;
    ``target_is_majority``: 1 when it is the training graphs' one largest class (a shield
    or a collapsed model that falls back on the majority class then scores as attack
    success; issue 14 item 2), else 0 (ties, as on ENZYMES's equal classes: 0)."""
    shares = class_histogram(train_labels, num_classes)
    share = shares[target]
    others = [v for c, v in enumerate(shares) if c != target]
    return {
        "target_train_share": share,
        "target_is_majority": float(not others or share > max(others)),
    }


def _robust_accuracy(model: torch.nn.Module, triggered: Sequence[Data], batch: int) -> float:
    """Robust accuracy: the share of triggered graphs (labels unchanged) that ``model`` gives
    their true label (``nan`` for none)."""
    if not triggered:
        return float("nan")
    return accuracy(predict_graphs(model, list(triggered), batch)[0], graph_labels(triggered))


def _repair_controls(
    defense: Defense,
    backdoored: GraphClassifier,
    defender_graphs: list[Data],
    defender_pos: list[int],
    repaired: RepairResult,
    test_triggered: TriggeredGraphs | None,
    ctx: GraphContext,
) -> _Controls | None:
    """GCleaner's controls (issue 20), measurement only: the attack's true trigger on the
    defender's graphs (``test_triggered``, the attack's activation of the whole test split;
    only the graphs it triggered, node for node) paired with the repair's ``recovered``
    graphs, and, for a defense with
    :class:`~gnnbackdoor.defenses.base.UnlearningControls`, the oracle and no-trigger
    unlearnings of copies of ``backdoored``. ``None`` without recovered graphs (an auxiliary
    dataset: they are not the defender's test graphs) or without an activation."""
    recovered = repaired.recovered
    if recovered is None or test_triggered is None:
        return None
    where = {test_pos: k for k, test_pos in enumerate(defender_pos)}
    true: dict[int, Data] = {}
    for graph, source in zip(test_triggered.graphs, test_triggered.sources(), strict=True):
        k = where.get(source)
        if k is not None and graph.num_nodes == defender_graphs[k].num_nodes:
            true[k] = graph
    pairs = [
        (true[k], graph)
        for graph, k in zip(recovered.graphs, recovered.sources(), strict=True)
        if k in true
    ]
    controls = _Controls([p[0] for p in pairs], [p[1] for p in pairs], {})
    if not isinstance(defense, UnlearningControls):
        return controls
    if repaired.info.get("gc_teacher_refused") and not repaired.info.get(
        "gc_teacher_fallback_used"
    ):
        controls.models = {"oracle": None, "notrigger": None}
        return controls
    unlearned = [defender_graphs[k] for k in recovered.sources()]
    oracle_keys = [k for k in recovered.sources() if k in true]
    controls.oracle_graphs = len(oracle_keys)
    controls.models["oracle"] = (
        defense.unlearn_control(
            copy.deepcopy(backdoored),
            [defender_graphs[k] for k in oracle_keys],
            [true[k] for k in oracle_keys],
            ctx,
        )
        if oracle_keys
        else None
    )
    controls.models["notrigger"] = defense.unlearn_control(
        copy.deepcopy(backdoored), unlearned, None, ctx
    )
    return controls


def _control_metrics(
    controls: _Controls,
    backdoored: GraphClassifier,
    eval_graphs: list[Data],
    labels: torch.Tensor,
    triggered: TriggeredGraphs,
    target: int | None,
    batch: int,
) -> dict[str, float]:
    """``gc_trigger_cosine`` (Table IV:
    :func:`~gnnbackdoor.metrics.gcleaner.trigger_embedding_cosine` on the backdoored model)
    and, per control, ``gc_<control>_acc`` / ``gc_<control>_asr`` measured exactly like
    ``defended_acc`` / ``defended_asr`` (``nan``, a null in the record, when the teacher was
    refused with no stand-in)."""
    out = {
        "gc_trigger_cosine": trigger_embedding_cosine(
            backdoored, controls.original, controls.recovered, batch
        ),
        "gc_trigger_cosine_graphs": float(len(controls.original)),
    }
    if controls.models:
        out["gc_oracle_graphs"] = float(controls.oracle_graphs)
    for name, model in controls.models.items():
        if model is None:
            out[f"gc_{name}_acc"] = out[f"gc_{name}_asr"] = float("nan")
            continue
        out[f"gc_{name}_acc"] = accuracy(predict_graphs(model, eval_graphs, batch)[0], labels)
        out[f"gc_{name}_asr"] = _asr(model, triggered.graphs, target, batch)
    return out


def _evaluated(stage: _AttackStage, eval_pos: Sequence[int]) -> TriggeredGraphs:
    """The attack's triggered graphs made from evaluation graphs (``source``: positions in
    the evaluation list)."""
    if stage.triggered is None:
        return TriggeredGraphs([], [])
    rank = {test_pos: i for i, test_pos in enumerate(eval_pos)}
    keep = [
        (j, rank[stage.eligible[s]])
        for j, s in enumerate(stage.triggered.sources())
        if stage.eligible[s] in rank
    ]
    return TriggeredGraphs(
        [stage.triggered.graphs[j] for j, _ in keep],
        [list(stage.triggered.positions[j]) for j, _ in keep],
        [r for _, r in keep],
    )


def _single_node_copies(
    attack: GraphAttack, graphs: list[Data], streams: RunStreams
) -> TriggeredGraphs | None:
    """GTA's single-node activation (:meth:`GTA.activate_single_node`, every trigger node in
    turn) of ``graphs`` (the eligible test graphs), ``source`` indexing ``graphs``; ``None``
    for attacks without one.

    The positions come from a fresh generator of the evaluation stream, and the generator's
    trigger is computed without any draw from torch's global state, so no other figure of the
    run moves. It is made with the attack stage only because the fitted attack lives there
    (the stage cache keeps the copies, not the attack); :func:`_evaluated_single_node` keeps
    those of the evaluation graphs.
    """
    single = getattr(attack, "activate_single_node", None)
    if single is None:
        return None
    generator = streams.torch_generator(Stage.EVALUATION)
    copies: list[Data] = []
    positions: list[list[int]] = []
    source: list[int] = []
    for i, graph in enumerate(graphs):
        out, where = single([graph], generator)
        copies += out
        positions += where
        source += [i] * len(out)
    return TriggeredGraphs(copies, positions, source)


def _evaluated_single_node(stage: _AttackStage, eval_pos: Sequence[int]) -> TriggeredGraphs | None:
    """The single-node copies made from evaluation graphs (``None``: no such copies)."""
    single = getattr(stage, "single_node", None)
    if single is None:
        return None
    evaluated = set(eval_pos)
    keep = [j for j, s in enumerate(single.sources()) if stage.eligible[s] in evaluated]
    return TriggeredGraphs(
        [single.graphs[j] for j in keep], [list(single.positions[j]) for j in keep]
    )


def _activation_info(
    triggered: TriggeredGraphs, stage: _AttackStage, eval_pos: Sequence[int]
) -> dict[str, Any]:
    """The record's ``attack_info`` entries about the evaluation graphs' activation."""
    evaluated = set(eval_pos)
    eligible = sum(1 for i in stage.eligible if i in evaluated)
    return {
        "num_activated": len(triggered),
        "activation_skipped_small_graphs": eligible - len(triggered),
        "activation_positions": summarise_positions(
            {str(i): p for i, p in enumerate(triggered.positions)}
        ),
    }


def _asr(model, graphs: Sequence[Data], target: int | None, batch: int) -> float:
    """Share of ``graphs`` that ``model`` classifies as ``target`` (``nan`` for none)."""
    if not graphs or target is None:
        return float("nan")
    predicted = predict_graphs(model, graphs, batch)[0]
    return attack_success_rate(predicted == target)


def _example(
    triggered: TriggeredGraphs,
    target: int,
    clean: GraphClassifier,
    backdoored: GraphClassifier,
    batch: int,
) -> dict | None:
    """One triggered evaluation graph for the record (see
    :mod:`gnnbackdoor.experiments.example_graph`), with the clean and the backdoored models'
    predictions for it. A DataLoader draws its base seed from torch's global generator, so
    the predictions run in a forked RNG: the record's other figures are the same with or
    without the example."""
    index = choose_example(triggered.graphs, triggered.positions)
    if index is None:
        return None
    graph = triggered.graphs[index]
    with torch.random.fork_rng(devices=[]):
        clean_pred = int(predict_graphs(clean, [graph], batch)[0][0])
        backdoored_pred = int(predict_graphs(backdoored, [graph], batch)[0][0])
    return {
        "index": index,
        **example_graph(graph, triggered.positions[index], target, clean_pred, backdoored_pred),
    }


#: The modules whose source shapes a clean graph victim besides its own and its dataset's
#: classes (part of the clean cache's key).
_CLEAN_SOURCES: list[Any] = [model_base, model_graph, train_graph, seeding]

#: The code that shapes the victim and attack stages (besides the attack's and the dataset's
#: own classes); its source goes into the stage cache's key.
_STAGE_SOURCES: list[Any] = [sys.modules[__name__], contracts_context, *_CLEAN_SOURCES]
