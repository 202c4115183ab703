"""The runner and pipelines end to end on the embedded datasets: records, resume, metric
definitions (ASR over eligible inputs only), saved models, and the CLI's error contract."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch_geometric.data import Data

from gnnbackdoor.attacks.base import ATTACKS, GraphAttack, PoisonResult
from gnnbackdoor.cli import main
from gnnbackdoor.contracts.results import TriggeredGraphs
from gnnbackdoor.experiments.records import read_records
from gnnbackdoor.experiments.runner import RunSpec, run_all
from gnnbackdoor.models.io import load_model

FAST_LINK = {"train.max_epochs": "15", "train.patience": "15"}
FAST_GRAPH = {"train.max_epochs": "8", "train.patience": "8"}


@ATTACKS.register("test-marker")
@dataclass
class MarkerAttack(GraphAttack):
    """Test double: the trigger sets every node's first feature to 5 (far outside the data)."""

    reference: ClassVar[str] = "test double"
    seen_labels: ClassVar[list[int]] = []

    def fit(self, ctx):
        self.fitted_ = True
        return self

    def _mark(self, graph: Data) -> Data:
        marked = graph.clone()
        marked.x = graph.x.clone()
        marked.x[:, 0] = 5.0
        return marked

    def poison(self, graphs: Sequence[Data]) -> PoisonResult:
        count = max(1, round(self.injection_ratio * len(graphs)))
        out = list(graphs)
        for i in range(count):
            out[i] = self._mark(graphs[i])
            out[i].y = torch.tensor([self.target_class])
        return PoisonResult(out, list(range(count)))

    def activate(self, graphs: Sequence[Data]) -> TriggeredGraphs:
        MarkerAttack.seen_labels.extend(int(g.y) for g in graphs)
        return TriggeredGraphs(
            [self._mark(g) for g in graphs], [list(range(g.num_nodes)) for g in graphs]
        )


def test_link_run_writes_one_complete_record_per_seed_and_resumes(tmp_path, offline_location):
    specs = [RunSpec("link", "sbm", "gae", seed=s, overrides=FAST_LINK) for s in (0, 1)]
    written = run_all(specs, tmp_path, offline_location)
    assert len(written) == 2
    records = read_records(tmp_path)
    assert [r["seed"] for r in records] == [0, 1]
    record = records[0]
    for key in (
        "task",
        "dataset",
        "model",
        "attack",
        "defense",
        "seed",
        "config",
        "metrics",
        "timings",
        "versions",
        "key",
        "overrides",
    ):
        assert key in record
    assert record["dataset"] == "SBM" and record["model"] == "gae" and record["attack"] is None
    assert record["config"]["train"]["max_epochs"] == 15
    assert record["config"]["model"]["hidden_channels"] == 32
    assert 0.0 <= record["metrics"]["clean_auc"] <= 1.0
    assert record["timings"]["clean_train_s"] > 0
    assert "torch" in record["versions"]
    # a second call finds both runs recorded and runs nothing
    assert run_all(specs, tmp_path, offline_location) == []
    assert len(read_records(tmp_path)) == 2
    # a duplicate line (two sweeps racing on one run) and a torn last line are ignored
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    (tmp_path / "records.jsonl").write_text("\n".join([*lines, lines[0], lines[1][:50]]))
    assert [r["seed"] for r in read_records(tmp_path)] == [0, 1]


def test_same_seed_gives_the_same_metrics(tmp_path, offline_location):
    spec = RunSpec("link", "SBM", "vgae", seed=5, overrides=FAST_LINK)
    first = run_all([spec], tmp_path / "a", offline_location)[0]
    second = run_all([spec], tmp_path / "b", offline_location)[0]
    assert first["metrics"] == second["metrics"]


def test_graph_attack_asr_counts_only_non_target_graphs(tmp_path, offline_location):
    MarkerAttack.seen_labels.clear()
    spec = RunSpec(
        "graph",
        "Motifs",
        "gin",
        attack="test-marker",
        seed=0,
        overrides={**FAST_GRAPH, "attack.target_class": "1", "attack.injection_ratio": "0.3"},
    )
    record = run_all([spec], tmp_path, offline_location)[0]
    assert MarkerAttack.seen_labels and 1 not in MarkerAttack.seen_labels
    metrics = record["metrics"]
    for key in ("clean_acc", "backdoored_acc", "asr", "clean_model_asr"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["num_triggered"] == len(MarkerAttack.seen_labels)
    assert record["config"]["attack"]["target_class"] == 1


def test_save_model_writes_loadable_clean_and_backdoored_models(tmp_path, offline_location):
    spec = RunSpec("graph", "Motifs", "gcn", attack="test-marker", seed=0, overrides=FAST_GRAPH)
    run_all([spec], tmp_path / "runs", offline_location, save_root=tmp_path / "models")
    folder = tmp_path / "models"  # one run: its models go straight into the chosen folder
    for role in ("clean", "backdoored"):
        model, config = load_model(folder / role)
        assert not model.training
        assert config["role"] == role and config["model"] == "gcn"
        assert config["out_channels"] == 3


def _cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--dataset", "nope", "--model", "gae"], "unknown dataset 'nope'; valid choices:"),
        (["--dataset", "sbm", "--model", "gin"], "model 'gin' is for --task graph"),
        (["--dataset", "sbm", "--model", "gae", "--attack", "zzz"], "unknown attack 'zzz'"),
        (
            ["--dataset", "sbm", "--model", "gae", "--set", "train.lr=fast"],
            "train.lr=fast: expected a finite number > 0",
        ),
        (["--dataset", "sbm", "--model", "gae", "--set", "lr"], "key=value"),
        (["--dataset", "sbm", "--model", "gae", "--set", "train.max_epochs=0"], "max_epochs"),
        (["--dataset", "Cora", "--model", "gae"], "GNNBACKDOOR_DATA_MIRROR"),
    ],
)
def test_cli_user_errors_are_one_line_with_exit_2(
    argv, fragment, tmp_path, capsys, monkeypatch, offline_location
):
    monkeypatch.setenv("GNNBACKDOOR_DATA_MIRROR", str(offline_location.mirror_dir))
    monkeypatch.setenv("GNNBACKDOOR_CACHE", str(offline_location.cache_dir))
    code, _, err = _cli(["run", "--task", "link", *argv, "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_unknown_task_and_command(tmp_path, capsys):
    code, _, err = _cli(
        ["run", "--task", "node", "--dataset", "sbm", "--model", "gae", "--out", str(tmp_path)],
        capsys,
    )
    assert code == 2 and "unknown task 'node'" in err
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_cli_run_and_report(tmp_path, capsys, monkeypatch, offline_location):
    monkeypatch.setenv("GNNBACKDOOR_CACHE", str(offline_location.cache_dir))
    argv = [
        "run",
        "--task",
        "link",
        "--dataset",
        "SBM",
        "--model",
        "gae",
        "--seeds",
        "0",
        "1",
        "--set",
        "train.max_epochs=10",
        "train.patience=10",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    code, out, _ = _cli(argv, capsys)
    assert code == 0
    assert [json.loads(line)["seed"] for line in out.splitlines()] == [0, 1]
    code, out, _ = _cli(["report", str(tmp_path)], capsys)
    assert code == 0
    assert "| SBM | gae | none | 2 |" in out and " ± " in out and "Glossary:" in out
    code, out, _ = _cli(["report", str(tmp_path), "--wide"], capsys)
    assert code == 0
    assert "| SBM | gae |" in out and "clean_auc (%)" in out and "| 2 |" in out
    code, out, _ = _cli(["report", str(tmp_path), "--format", "json"], capsys)
    (row,) = json.loads(out)
    assert row["seeds"] == 2 and 0 <= row["clean_auc"] <= 1 and "clean_auc_std" in row
    code, _, err = _cli(
        ["report", str(tmp_path), "--page", "clean_models", "--format", "csv"], capsys
    )
    assert code == 2 and "--page writes Markdown" in err


def test_graph_record_keeps_one_triggered_graph_and_report_draws_it(
    tmp_path, capsys, offline_location
):
    spec = RunSpec("graph", "Motifs", "gin", attack="sba", seed=0, overrides=FAST_GRAPH)
    (record,) = run_all([spec], tmp_path, offline_location)
    example = record["attack_info"]["example_graph"]
    assert record["metrics"]["num_classes"] == 3
    assert example["trigger_nodes"] and max(example["trigger_nodes"]) < example["num_nodes"]
    assert all(u < v < example["num_nodes"] for u, v in example["edges"])
    trigger = set(example["trigger_nodes"])  # SBA's trigger is a subgraph on those nodes
    assert any(u in trigger and v in trigger for u, v in example["edges"])
    assert example["target_class"] == record["config"]["attack"]["target_class"]
    assert example["backdoored_prediction"] in (0, 1, 2)
    code, _, err = _cli(["report", str(tmp_path), "--figures"], capsys)
    assert code == 0
    drawing = tmp_path / "figures" / "triggered_graph_Motifs_sba.png"
    assert str(drawing) in err and drawing.read_bytes()[:4] == b"\x89PNG"


def test_cli_report_without_records_is_an_error(tmp_path, capsys):
    code, _, err = _cli(["report", str(tmp_path)], capsys)
    assert code == 2 and "no records.jsonl" in err


def test_cli_list_names_every_family(capsys):
    code, out, _ = _cli(["list"], capsys)
    assert code == 0
    for word in ("datasets:", "models:", "attacks:", "defenses:", "Cora_ML_LCC", "gic"):
        assert word in out
