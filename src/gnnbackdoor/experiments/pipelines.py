"""One pipeline per task. A pipeline loads and splits the data, trains the clean victim, lets
the attack and the defense act through their base-class methods, and measures everything.
Attacks and defenses are resolved by the runner from registries: adding one never touches
this module."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch_geometric.data import Data

from gnnbackdoor.attacks.base import Attack, GraphAttack, LinkAttack
from gnnbackdoor.datasets.base import DataLocation, GraphDataset
from gnnbackdoor.datasets.splits import split_graphs, split_links
from gnnbackdoor.defenses.base import Defense, InputShield, ModelRepairDefense
from gnnbackdoor.errors import ConfigError
from gnnbackdoor.experiments import clean_cache, stage_cache
from gnnbackdoor.experiments.config import DataConfig, as_dict
from gnnbackdoor.experiments.context import GraphContext, LinkContext
from gnnbackdoor.metrics import (
    accuracy,
    attack_success_rate,
    average_misclassification_confidence,
    benign_performance_drop,
)
from gnnbackdoor.metrics.shield import shield_diagnostics
from gnnbackdoor.models.base import ModelSpec
from gnnbackdoor.models.io import save_model
from gnnbackdoor.models.train_graph import GraphTrainConfig, graph_labels, predict_graphs
from gnnbackdoor.models.train_link import (
    LinkTrainConfig,
    TrainReport,
    evaluate_links,
    link_scores,
)
from gnnbackdoor.registry import Registry
from gnnbackdoor.utils.seeding import seed_everything
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
        with timer.phase("load_s"):
            graph = run.dataset.fetch(run.location)
            data_config = run.data_config
            split = split_links(graph, run.seed, data_config.link_val, data_config.link_test)
        generator = seed_everything(run.seed)
        ctx = LinkContext(graph, split, run.model_spec, run.train_config, run.seed, generator)
        with timer.phase("clean_train_s"):
            clean = ctx.build_model()
            report = ctx.train_model(clean, split.train, desc="clean")
        ctx.clean_model = clean
        clean_scores = evaluate_links(clean, split.test)
        metrics: dict[str, float] = {
            "clean_auc": clean_scores["auc"],
            "clean_ap": clean_scores["ap"],
            "clean_val_auc": report.best_val,
            "clean_epochs": report.epochs,
        }
        timer.add("clean_epoch_s", report.seconds_per_epoch)
        _save(run, "clean", clean, ctx.num_features, None)
        info: dict[str, Any] = {}
        if isinstance(run.attack, LinkAttack):
            attack = run.attack
            with timer.phase("attack_fit_s"):
                attack.fit(ctx)
            with timer.phase("backdoor_train_s"):
                backdoored = attack.backdoor(ctx)
            with timer.phase("attack_eval_s"):
                metrics.update(self._attack_metrics(ctx, attack, clean, backdoored))
            _save(run, "backdoored", backdoored, ctx.num_features, None)
            info = attack.describe()
            for name, seconds in ctx.timings.items():
                timer.add(name, seconds)
        return PipelineOutput(metrics, info)

    @staticmethod
    def _attack_metrics(ctx: LinkContext, attack: LinkAttack, clean, backdoored) -> dict:
        clean_graph = ctx.split.train
        targets = attack.test_targets(ctx)
        triggered = attack.activate(clean_graph, targets)
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


@TASKS.register("graph")
class GraphPipeline(TaskPipeline):
    """Graph classification: clean accuracy; with an attack, backdoored accuracy, ASR and the
    trigger's ASR on the clean model; with a defense, defended accuracy and ASR.

    ASR counts evaluation graphs whose true label is not the target class. A model-repair
    defense takes its clean graphs from the test split; they are excluded from every figure.
    """

    task = "graph"
    train_config_cls = GraphTrainConfig

    def execute(self, run: ResolvedRun, timer: PhaseTimer) -> PipelineOutput:
        with timer.phase("load_s"):
            graphs = run.dataset.fetch(run.location)
            data = run.data_config
            split = split_graphs(
                graphs,
                run.seed,
                data.train_fraction,
                data.val_fraction,
                cv_folds=data.cv_folds,
                cv_fold=data.cv_fold,
            )
        generator = seed_everything(run.seed)
        ctx = GraphContext(split, run.model_spec, run.train_config, run.seed, generator)
        defense = run.defense
        defender_graphs: list[Data] = []
        defender_pos: list[int] = []
        eval_graphs = split.test
        if isinstance(defense, ModelRepairDefense):
            defender_pos, eval_pos = defense.split_defender_data(
                split.test, generator, dataset_size=len(graphs), location=run.location
            )
            defender_graphs = [split.test[i] for i in defender_pos]
            eval_graphs = [split.test[i] for i in eval_pos]
        labels = graph_labels(eval_graphs)
        attack = run.attack
        cache = None
        if defense is not None:
            cache = stage_cache.cache_path(run, defender_pos, len(eval_graphs))
        payload = stage_cache.load(cache) if cache is not None else None
        if payload is not None:
            stage = payload["stage"]
            clean = ctx.build_model()
            clean.load_state_dict(stage.clean_state)
            clean.eval()
            ctx.clean_model = clean
            model_under_test = clean
            if stage.backdoored_state is not None:
                model_under_test = ctx.build_model()
                model_under_test.load_state_dict(stage.backdoored_state)
                model_under_test.eval()
            stage_cache.restore_random_states(payload, generator)
            metrics, triggered = stage.metrics, stage.triggered
            positions = getattr(stage, "trigger_positions", None)
            info = {**stage.info, "stage_cached": True}
            for name, seconds in stage.seconds.items():
                timer.add(name, seconds)
            ctx.timings.update(stage.ctx_timings)
        else:
            seconds_before = dict(timer.seconds)
            metrics, info, model_under_test, triggered = self._attack_stage(
                run, ctx, split, eval_graphs, labels, timer
            )
            positions = _trigger_positions(run.attack, triggered)
            if cache is not None:
                stage = stage_cache.Stage(
                    metrics=dict(metrics),
                    info=dict(info),
                    clean_state=ctx.clean_model.state_dict(),
                    backdoored_state=(
                        None
                        if model_under_test is ctx.clean_model
                        else model_under_test.state_dict()
                    ),
                    triggered=triggered,
                    seconds={k: v - seconds_before.get(k, 0.0) for k, v in timer.seconds.items()},
                    ctx_timings=dict(ctx.timings),
                    trigger_positions=positions,
                )
                stage_cache.save(cache, stage, generator)
        if defense is not None:
            target = attack.target_class if isinstance(attack, GraphAttack) else None
            metrics.update(
                self._defend(
                    run,
                    ctx,
                    defense,
                    model_under_test,
                    defender_graphs,
                    eval_graphs,
                    triggered,
                    target,
                    timer,
                    positions,
                )
            )
        for name, seconds in ctx.timings.items():
            timer.add(name, seconds)
        return PipelineOutput(metrics, info)

    def _attack_stage(self, run, ctx, split, eval_graphs, labels, timer):
        """Clean victim, then (with an attack) the backdoored victim and its metrics."""
        batch = run.train_config.eval_batch_size
        with timer.phase("clean_train_s"):
            clean = ctx.build_model()
            cached = clean_cache.cache_path(
                {
                    "dataset": run.dataset_name,
                    "model": [run.model_spec.registered_name, as_dict(run.model_spec)],
                    "data": as_dict(run.data_config),
                    "train": as_dict(run.train_config),
                    "seed": run.seed,
                }
            )
            report = TrainReport()
            if cached is None or not clean_cache.load(cached, clean, report):
                report = ctx.train_model(clean, split.train, desc="clean")
                if cached is not None:
                    clean_cache.save(cached, clean, report)
            else:
                timer.add("clean_cache_hit", 1.0)
        ctx.clean_model = clean
        timer.add("clean_epoch_s", report.seconds_per_epoch)
        metrics: dict[str, float] = {
            "clean_acc": accuracy(predict_graphs(clean, eval_graphs, batch)[0], labels),
            "clean_val_acc": report.best_val,
            "clean_epochs": report.epochs,
            "num_eval_graphs": len(eval_graphs),
        }
        _save(run, "clean", clean, ctx.num_features, ctx.num_classes)
        info: dict[str, Any] = {}
        model_under_test = clean
        triggered: list[Data] = []
        attack = run.attack
        if isinstance(attack, GraphAttack):
            if not 0 <= attack.target_class < ctx.num_classes:
                raise ConfigError(
                    f"target_class {attack.target_class} is not a class of {run.dataset_name} "
                    f"(0..{ctx.num_classes - 1})"
                )
            with timer.phase("attack_fit_s"):
                attack.fit(ctx)
            with timer.phase("backdoor_train_s"):
                backdoored = attack.backdoor(ctx)
            with timer.phase("attack_eval_s"):
                eligible = [g for g in eval_graphs if int(g.y.view(-1)[0]) != attack.target_class]
                triggered = attack.activate(eligible)
                metrics["backdoored_acc"] = accuracy(
                    predict_graphs(backdoored, eval_graphs, batch)[0], labels
                )
                metrics["asr"] = self._asr(backdoored, triggered, attack.target_class, batch)
                metrics["clean_model_asr"] = self._asr(clean, triggered, attack.target_class, batch)
                metrics["num_triggered"] = len(triggered)
            _save(run, "backdoored", backdoored, ctx.num_features, ctx.num_classes)
            info = attack.describe()
            model_under_test = backdoored
        return metrics, info, model_under_test, triggered

    @staticmethod
    def _asr(model, triggered: Sequence[Data], target: int, batch: int) -> float:
        if not triggered:
            return float("nan")
        predicted = predict_graphs(model, triggered, batch)[0]
        return attack_success_rate(predicted == target)

    def _defend(
        self,
        run,
        ctx,
        defense,
        model,
        defender_graphs,
        eval_graphs,
        triggered,
        target,
        timer,
        positions=None,
    ) -> dict[str, float]:
        labels = graph_labels(eval_graphs)
        batch = run.train_config.eval_batch_size
        out: dict[str, float] = {}
        if isinstance(defense, ModelRepairDefense):
            with timer.phase("defense_s"):
                repaired = defense.repair(copy.deepcopy(model), defender_graphs, ctx)
            out["defended_acc"] = accuracy(predict_graphs(repaired, eval_graphs, batch)[0], labels)
            if target is not None:
                out["defended_asr"] = self._asr(repaired, triggered, target, batch)
            out["num_defender_graphs"] = len(defender_graphs)
            _save(run, "defended", repaired, ctx.num_features, ctx.num_classes)
        elif isinstance(defense, InputShield):
            predict_fn = _counting_predict_fn(model, batch)
            with timer.phase("defense_s"):
                shielded = defense.predict(predict_fn, eval_graphs)
                out["defended_acc"] = accuracy(shielded.labels, labels)
                queries = shielded.queries
                shielded_triggered = None
                if target is not None and triggered:
                    shielded_triggered = defense.predict(predict_fn, triggered)
                    out["defended_asr"] = attack_success_rate(shielded_triggered.labels == target)
                    queries += shielded_triggered.queries
            out["queries"] = queries
            out["queried_graphs"] = predict_fn.graphs  # type: ignore[attr-defined]
            out.update(
                shield_diagnostics(shielded, labels.tolist(), shielded_triggered, target, positions)
            )
        out.update(defense.describe())
        return out


def _trigger_positions(attack, triggered: Sequence[Data]) -> list[list[int]] | None:
    """The trigger's nodes in each triggered graph, when the attack recorded them."""
    positions = getattr(attack, "activation_positions_", None)
    if positions is None or len(positions) != len(triggered):
        return None
    return [list(p) for p in positions]


def _counting_predict_fn(model, batch: int) -> Callable[[Sequence[Data]], torch.Tensor]:
    """The black-box view of ``model``: graphs in, labels out; counts graphs queried."""

    def predict_fn(graphs: Sequence[Data]) -> torch.Tensor:
        predict_fn.graphs += len(graphs)  # type: ignore[attr-defined]
        return predict_graphs(model, graphs, batch)[0]

    predict_fn.graphs = 0  # type: ignore[attr-defined]
    return predict_fn
