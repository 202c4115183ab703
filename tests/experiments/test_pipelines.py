"""The graph pipeline's stages on a tiny dataset: each stage draws from its own stream (a
defense setting moves no draw of the data split, the victims, the attack or the defender's
split), runs repeat exactly, the caches change no figure, and every metric, a repair's
probes included, is computed by the pipeline from returned values."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from gnnbackdoor.contracts.results import Probe, RepairResult, ScoredModel, ShieldResult
from gnnbackdoor.defenses.base import InputShield, ModelRepairDefense
from gnnbackdoor.experiments.pipelines import GraphPipeline, ResolvedRun
from gnnbackdoor.models.train_graph import predict_graphs
from gnnbackdoor.utils.timing import PhaseTimer


@dataclass
class NoisyRepair(ModelRepairDefense):
    """Test double: fine-tunes with dropout for ``steps`` steps on shuffled defender graphs
    (draws from ``ctx.generator`` and from torch's global generator, as real repairs do)."""

    holding_rate: float = 0.2
    steps: int = 1
    seen: ClassVar[list[list]] = []

    def repair(self, model, clean_graphs, ctx) -> RepairResult:
        from torch_geometric.data import Batch

        NoisyRepair.seen.append(list(clean_graphs))
        optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
        model.train()
        for _ in range(self.steps):
            order = torch.randperm(len(clean_graphs), generator=ctx.generator).tolist()
            batch = Batch.from_data_list([clean_graphs[i] for i in order])
            logits = torch.nn.functional.dropout(model(batch.x, batch.edge_index, batch.batch))
            loss = torch.nn.functional.cross_entropy(logits, batch.y.view(-1))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        probe = Probe(list(clean_graphs), 1, ScoredModel.INPUT)
        return RepairResult(model, {"noisy_steps": float(self.steps)}, {"noisy_probe": probe})


@dataclass
class RejectOddShield(InputShield):
    """Test double: a shield without subgraph votes (as GNNsecurer or Prune) that passes the
    model's labels through but rejects every odd-numbered graph."""

    def predict(self, predict_fn, graphs) -> ShieldResult:
        from gnnbackdoor.defenses.shielding import REJECTED

        labels = predict_fn(list(graphs)).clone()
        labels[1::2] = REJECTED
        return ShieldResult(labels, [{} for _ in graphs], queries=1, graphs_queried=len(graphs))


@pytest.fixture
def stages(monkeypatch):
    """Each run's victim-and-attack stage and its split, as the pipeline produced them."""
    captured: list[dict] = []
    original = GraphPipeline._run_victim_and_attack

    def spy(self, run, ctx, streams, timer):
        stage = original(self, run, ctx, streams, timer)
        captured.append({"stage": stage, "split": copy.deepcopy(ctx.split.test_index)})
        return stage

    monkeypatch.setattr(GraphPipeline, "_run_victim_and_attack", spy)
    return captured


def execute(run: ResolvedRun):
    return GraphPipeline().execute(run, PhaseTimer())


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def same_stage(a: dict, b: dict) -> bool:
    sa, sb = a["stage"], b["stage"]
    graphs_equal = all(
        torch.equal(x.edge_index, y.edge_index) and torch.equal(x.x, y.x)
        for x, y in zip(sa.triggered.graphs, sb.triggered.graphs, strict=True)
    )
    return (
        a["split"] == b["split"]
        and same_state(sa.clean, sb.clean)
        and same_state(sa.backdoored, sb.backdoored)
        and sa.triggered.positions == sb.triggered.positions
        and sa.triggered.source == sb.triggered.source
        and sa.eligible == sb.eligible
        and graphs_equal
        and sa.info["poison_positions"] == sb.info["poison_positions"]
    )


def test_changing_a_defense_setting_changes_no_draw_of_the_stages_before_it(
    tiny_graph_dataset, stages, graph_run
):
    NoisyRepair.seen.clear()
    few = execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=1)))
    many = execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=5)))
    bare = execute(graph_run(tiny_graph_dataset, None))
    held = execute(graph_run(tiny_graph_dataset, NoisyRepair(holding_rate=0.5)))
    assert len(stages) == 4
    # data split, clean victim, backdoored victim, poisoning and activation: all equal
    assert same_stage(stages[0], stages[1])
    assert same_stage(stages[0], stages[2])
    assert same_stage(stages[0], stages[3])
    # the defender's split does not depend on the defense's other settings
    assert [id(g) for g in NoisyRepair.seen[0]] == [id(g) for g in NoisyRepair.seen[1]]
    assert len(NoisyRepair.seen[2]) > len(NoisyRepair.seen[0])
    # the figures of the earlier stages are those of the same evaluation graphs
    for key in ("clean_acc", "backdoored_acc", "asr", "clean_model_asr", "num_triggered"):
        assert few.metrics[key] == many.metrics[key], key
    assert few.metrics["noisy_steps"] == 1 and many.metrics["noisy_steps"] == 5
    assert few.metrics["noisy_probe"] == many.metrics["noisy_probe"]  # scored on the input
    assert bare.metrics["clean_val_acc"] == few.metrics["clean_val_acc"]
    assert held.metrics["num_defender_graphs"] > few.metrics["num_defender_graphs"]


def test_a_run_repeats_exactly(tiny_graph_dataset, graph_run):
    first = execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=3), seed=4))
    second = execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=3), seed=4))
    other = execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=3), seed=5))
    assert first.metrics == second.metrics
    assert first.attack_info == second.attack_info
    assert other.attack_info["poison_positions"] != first.attack_info["poison_positions"]


def test_the_pipeline_never_changes_the_callers_random_state_or_threads(
    tiny_graph_dataset, graph_run
):
    threads = torch.get_num_threads()
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    execute(graph_run(tiny_graph_dataset, NoisyRepair()))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_the_caches_change_no_figure(tiny_graph_dataset, tmp_path, monkeypatch, graph_run):
    plain = execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=2)))
    monkeypatch.setenv("GNNBACKDOOR_CLEAN_CACHE", str(tmp_path / "clean"))
    monkeypatch.setenv("GNNBACKDOOR_STAGE_CACHE", str(tmp_path / "stage"))
    miss = execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=2)))
    assert len(list((tmp_path / "stage").glob("stage-*.pt"))) == 1
    assert len(list((tmp_path / "clean").glob("clean-*.pt"))) == 1
    hit = execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=2)))
    assert plain.metrics == miss.metrics == hit.metrics
    assert hit.attack_info.pop("stage_cached") is True
    assert plain.attack_info == miss.attack_info == hit.attack_info
    # another holding rate shares the entry: the stages before the defense do not depend on it
    held = execute(graph_run(tiny_graph_dataset, NoisyRepair(holding_rate=0.4)))
    assert held.attack_info["stage_cached"] is True
    assert len(list((tmp_path / "stage").glob("stage-*.pt"))) == 1
    # the clean cache alone: an undefended run takes its clean victim from the cache
    monkeypatch.delenv("GNNBACKDOOR_STAGE_CACHE")
    timer = PhaseTimer()
    bare_hit = GraphPipeline().execute(graph_run(tiny_graph_dataset, None), timer)
    assert timer.seconds.get("clean_cache_hit") == 1.0
    monkeypatch.delenv("GNNBACKDOOR_CLEAN_CACHE")
    timer = PhaseTimer()
    bare_plain = GraphPipeline().execute(graph_run(tiny_graph_dataset, None), timer)
    assert "clean_cache_hit" not in timer.seconds
    assert bare_plain.metrics == bare_hit.metrics


def test_probes_are_scored_by_the_pipeline_on_the_model_they_name(
    tiny_graph_dataset, stages, graph_run
):
    out = execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=2)))
    stage = stages[0]["stage"]
    defender = NoisyRepair.seen[-1]
    assert out.metrics["num_defender_graphs"] == len(defender)
    predicted = predict_graphs(stage.backdoored, defender)[0]  # ScoredModel.INPUT
    assert out.metrics["noisy_probe"] == float((predicted == 1).float().mean())


def test_triggered_evaluation_graphs_exclude_the_defenders(tiny_graph_dataset, stages, graph_run):
    out = execute(graph_run(tiny_graph_dataset, NoisyRepair(holding_rate=0.5)))
    bare = execute(graph_run(tiny_graph_dataset, None))
    assert (
        out.metrics["num_eval_graphs"] + out.metrics["num_defender_graphs"]
        == (bare.metrics["num_eval_graphs"])
    )
    assert out.metrics["num_triggered"] < bare.metrics["num_triggered"]
    assert out.attack_info["num_activated"] == out.metrics["num_triggered"]
    assert bare.attack_info["num_activated"] == len(stages[1]["stage"].triggered)


def test_every_attacked_record_flags_the_implant_and_the_target_class(
    tiny_graph_dataset, graph_run
):
    from gnnbackdoor.metrics import backdoor_implanted, defense_effectiveness_rating

    out = execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=2))).metrics
    assert out["backdoor_implanted"] == float(
        backdoor_implanted(out["asr"], out["clean_model_asr"])
    )
    assert 0.0 < out["target_train_share"] < 1.0
    assert out["target_is_majority"] in (0.0, 1.0)
    assert out["der"] == defense_effectiveness_rating(
        out["asr"], out["defended_asr"], out["backdoored_acc"], out["defended_acc"]
    )
    assert 0.0 <= out["defended_robust_acc"] <= 1.0
    assert 0.0 <= out["defended_target_no_trigger"] <= 1.0
    bare = execute(graph_run(tiny_graph_dataset, None)).metrics
    assert "der" not in bare and "defended_robust_acc" not in bare


def test_a_shield_without_subgraph_votes_reports_its_no_trigger_rate(tiny_graph_dataset, graph_run):
    """Issue 17: every defense report gives the floor, GNNsecurer's and Prune's included;
    the pipeline reads it from the shield's labels on the clean graphs of other classes, a
    rejection counting as no target."""
    out = execute(graph_run(tiny_graph_dataset, RejectOddShield())).metrics
    assert 0.0 <= out["defended_target_no_trigger"] <= out["backdoored_already_target"] + 1e-9
    assert "subgraph_acc" not in out


def test_an_entry_made_by_other_code_never_hits(
    tiny_graph_dataset, tmp_path, monkeypatch, graph_run
):
    """Both caches key on the source of the code that shapes their entries: a clean victim
    or a stage trained before a change to it is trained again, not reused."""
    import gnnbackdoor.experiments.pipelines as pipelines
    from gnnbackdoor.experiments import report as other_module

    monkeypatch.setenv("GNNBACKDOOR_CLEAN_CACHE", str(tmp_path / "clean"))
    monkeypatch.setenv("GNNBACKDOOR_STAGE_CACHE", str(tmp_path / "stage"))
    execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=2)))
    # "other code": one more module in each key, as if a module's source had changed
    monkeypatch.setattr(pipelines, "_CLEAN_SOURCES", [*pipelines._CLEAN_SOURCES, other_module])
    monkeypatch.setattr(pipelines, "_STAGE_SOURCES", [*pipelines._STAGE_SOURCES, other_module])
    timer = PhaseTimer()
    again = GraphPipeline().execute(graph_run(tiny_graph_dataset, NoisyRepair(steps=2)), timer)
    assert "stage_cached" not in again.attack_info and "clean_cache_hit" not in timer.seconds
    assert len(list((tmp_path / "clean").glob("clean-*.pt"))) == 2
    assert len(list((tmp_path / "stage").glob("stage-*.pt"))) == 2
