"""Seconds GCleaner spends purifying a GIN, per dataset: trigger recovery (explainer plus
generator training) and unlearning (teacher fine-tuning plus distillation).

For each dataset (AIDS, COLLAB) a GIN is trained on the training split (``--max-epochs``
epochs; the weights do not change the amount of work, only the timing of the victim), an SBA
backdoor is planted the same way when ``--attack`` is given, and GCleaner repairs it with its
defaults, the defender holding 3 % of the dataset. One seed, one torch thread unless told.

    python bench/gcleaner_speed.py --threads 1 [--datasets AIDS COLLAB] [--max-epochs 20]

Writes ``bench/results/gcleaner_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import torch

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.contracts.context import GraphContext
from gnnbackdoor.datasets import DATASETS, DataLocation
from gnnbackdoor.datasets.splits import split_graphs
from gnnbackdoor.defenses import DEFENSES
from gnnbackdoor.experiments.records import versions
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig
from gnnbackdoor.utils.progress import set_quiet
from gnnbackdoor.utils.seeding import RunStreams, Stage

OUT = Path(__file__).resolve().parent / "results"
TARGET_SECONDS = 60.0  # the target for the whole purification on AIDS


def bench_dataset(name: str, seed: int, max_epochs: int, attack: str | None) -> dict:
    graphs = DATASETS.get(name)().load(DataLocation())
    split = split_graphs(graphs, seed, 0.8, 0.1)
    torch.manual_seed(seed)  # a script: module initialisation draws from the global RNG
    generator = RunStreams(seed).torch_generator(Stage.VICTIM)
    ctx = GraphContext(
        split, MODELS.get("gin")(), GraphTrainConfig(max_epochs=max_epochs), seed, generator
    )
    defense = DEFENSES.get("gcleaner")()
    defender_pos, _ = defense.split_defender_data(split.test, generator, dataset_size=len(graphs))
    clean_graphs = [split.test[i] for i in defender_pos]
    start = time.perf_counter()
    ctx.clean_model = ctx.train_new_model(split.train, desc=f"{name} clean")
    victim = ctx.clean_model
    if attack:
        attacker = ATTACKS.get(attack)(
            trigger_fraction=0.3, injection_ratio=0.1, target_class=1, poison_validation=True
        )
        attacker.fit(ctx)
        victim = attacker.backdoor(ctx)
    victim_s = time.perf_counter() - start
    start = time.perf_counter()
    defense.repair(copy.deepcopy(victim), clean_graphs, ctx)
    total = time.perf_counter() - start
    explain = ctx.timings["gcleaner_explain_s"]
    recovery = ctx.timings["gcleaner_recovery_s"]
    unlearning = ctx.timings["gcleaner_unlearning_s"]
    return {
        "dataset": name,
        "graphs": len(graphs),
        "defender_graphs": len(clean_graphs),
        "avg_nodes": sum(g.num_nodes for g in clean_graphs) / len(clean_graphs),
        "avg_edges": sum(g.edge_index.size(1) / 2 for g in clean_graphs) / len(clean_graphs),
        "victim": f"gin ({attack or 'clean'}, {max_epochs} max epochs)",
        "victim_train_s": victim_s,
        "explain_s": explain,
        "recovery_s": recovery,
        "unlearning_s": unlearning,
        "purification_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["AIDS", "COLLAB"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--attack", default="sba")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_quiet(True)
    rows: list[dict] = []
    for dataset in args.datasets:  # written after each dataset, so a cut-off run keeps some
        rows.append(bench_dataset(dataset, args.seed, args.max_epochs, args.attack or None))
        _write(args, rows)


def _write(args: argparse.Namespace, rows: list[dict]) -> None:
    meta = {
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "versions": versions(),
        "command": "python bench/gcleaner_speed.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "datasets")
        + " --datasets "
        + " ".join(args.datasets),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gcleaner_speed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    defaults = DEFENSES.get("gcleaner")()
    lines = [
        "# GCleaner speed",
        "",
        f"Seconds on {meta['threads']} torch thread(s) ({meta['cpu']}), one seed; the machine "
        "is shared, so these are upper bounds. Recovery includes the explainer; unlearning "
        "includes the teacher's fine-tuning. Defaults: GNNExplainer "
        f"{defaults.explainer_epochs} epochs, n = {defaults.num_trigger_nodes}, "
        f"{defaults.recovery.epochs} recovery epochs, "
        f"{defaults.unlearning.teacher_epochs} teacher epochs, "
        f"{defaults.unlearning.epochs} unlearning epochs (SGD {defaults.unlearning.lr}, "
        f"λ = {defaults.unlearning.heatmap_weight:g}); the defender holds "
        f"{100 * defaults.holding_rate:.0f} % of the dataset. "
        f"Target: whole purification under {TARGET_SECONDS:.0f} s on AIDS.",
        "",
        "| dataset | defender graphs | avg nodes | avg edges | explain s | recovery s | "
        "unlearning s | purification s | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = (
            ("met" if r["purification_s"] < TARGET_SECONDS else "missed")
            if r["dataset"] == "AIDS"
            else "—"
        )
        lines.append(
            f"| {r['dataset']} | {r['defender_graphs']} | {r['avg_nodes']:.1f} | "
            f"{r['avg_edges']:.1f} | {r['explain_s']:.1f} | {r['recovery_s']:.1f} | "
            f"{r['unlearning_s']:.1f} | {r['purification_s']:.1f} | {verdict} |"
        )
    lines += ["", f"Command: `{meta['command']}`", ""]
    (OUT / "gcleaner_speed.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
