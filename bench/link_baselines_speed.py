"""Seconds per trigger update of every optimised link attack (Link-Backdoor, GTA for links,
P-Backdoor), as a ratio to Link-Backdoor's in the same run, beside the paper's Table 4 ratios.

One update is what each attack does when it re-optimises its trigger: Link-Backdoor one
forward and backward pass over all poisoning target links and the sign step (Eq. 4-7); GTA
``generator_steps`` Adam steps of its trigger generator; P-Backdoor one PSO round
(``particles × iterations`` forward passes, the paper's 200 × 50 by default). ERB and
R-Backdoor draw their trigger once and never update it. As in ``link_backdoor_speed.py``, the
cost does not depend on how well the model is trained, so updates run on a freshly
initialised GAE; the first update of each attack is a warm-up and is not timed.

Usage (from the repository root; single-threaded as the sweeps run)::

    GNNBACKDOOR_DATA_MIRROR=../shared/datasets python bench/link_baselines_speed.py \\
        --threads 1 --out bench/results

Writes ``link_baselines_speed.json`` and ``link_baselines_speed.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from gnnbackdoor.attacks import ATTACKS
from gnnbackdoor.contracts.context import LinkContext
from gnnbackdoor.datasets import DATASETS, DataLocation, split_links
from gnnbackdoor.experiments.records import versions
from gnnbackdoor.experiments.report import markdown_table, reference_table
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_link import LinkTrainConfig
from gnnbackdoor.utils.progress import set_quiet
from gnnbackdoor.utils.seeding import RunStreams, Stage

#: attack -> (the paper's Table 4 column, settings for the bench)
#: (no updates inside ``fit``: the bench times its own)
ATTACKS_TIMED = {
    "link-backdoor": ("link_backdoor_s", {"init_updates": 0}),
    "gta-link": ("gta_s", {"init_updates": 0}),
    "p-backdoor": ("pso_s", {"rounds": 0}),
}
PAPER_NAMES = {"Cora_ML_LCC": "Cora_ML"}


def time_attack(name: str, dataset: str, location: DataLocation, updates: int, seed: int,
                settings: dict) -> dict:  # fmt: skip
    """Seconds per update of attack ``name`` on ``dataset`` with a fresh GAE."""
    graph = DATASETS.get(dataset)().load(location)
    streams = RunStreams(seed)
    with streams.running(Stage.DATA_SPLIT):
        split = split_links(graph)
    generator = streams.torch_generator(Stage.ATTACK)
    ctx = LinkContext(graph, split, MODELS.get("gae")(), LinkTrainConfig(), seed, generator)
    with streams.running(Stage.VICTIM):
        ctx.clean_model = ctx.build_model()
    attack = ATTACKS.get(name)(**settings)
    attack.fit(ctx)  # builds targets and the initial trigger (and runs its own fit updates)
    attack._update_seconds.clear()
    attack._update_cpu_seconds.clear()
    for _ in range(updates + 1):
        attack._timed_update(ctx.clean_model, split.train)
    seconds, cpu = attack._update_seconds[1:], attack._update_cpu_seconds[1:]
    return {
        "attack": name,
        "dataset": dataset,
        "settings": settings,
        "poison_targets": int(attack.num_poison_),
        "updates": len(seconds),
        "per_update_s": statistics.mean(seconds),
        "per_update_cpu_s": statistics.mean(cpu),
    }


def render(results: list[dict], threads: int, load: float) -> str:
    table4 = reference_table("link_backdoor_table4_seconds_per_update.csv")
    paper = {r["dataset"]: r for r in table4}
    rows = []
    for r in results:
        base = next(
            b for b in results if b["dataset"] == r["dataset"] and b["attack"] == "link-backdoor"
        )
        theirs = paper.get(PAPER_NAMES.get(r["dataset"], r["dataset"]))
        column = ATTACKS_TIMED[r["attack"]][0]
        paper_s = float(theirs[column]) if theirs else float("nan")
        paper_ratio = paper_s / float(theirs["link_backdoor_s"]) if theirs else float("nan")
        rows.append(
            [
                r["dataset"],
                r["attack"],
                f"{r['per_update_s']:.4f}",
                f"{r['per_update_cpu_s']:.4f}",
                f"{r['per_update_s'] / base['per_update_s']:.1f}×",
                f"{r['per_update_cpu_s'] / base['per_update_cpu_s']:.1f}×",
                f"{paper_s:.3f}",
                f"{paper_ratio:.1f}×",
            ]
        )
    lines = [
        "# Link attacks: seconds per trigger update, as a ratio to Link-Backdoor (GAE)",
        "",
        f"CPU, {threads} thread(s) ({platform.processor() or platform.machine()}), load average "
        f"{load:.1f} when measured (shared machine: wall time includes waiting for a core; CPU "
        "time does not). The paper: TITAN XP GPU (its Table 4). One update: Link-Backdoor one "
        "gradient step over all poisoning targets; GTA its generator's Adam steps; P-Backdoor "
        "one PSO round. Mean over the timed updates after one warm-up update; every attack at "
        "its registered defaults unless the settings column of the JSON says otherwise.",
        "",
        markdown_table(
            [
                "dataset",
                "attack",
                "ours, wall (s)",
                "ours, CPU (s)",
                "ratio to Link-Backdoor (wall)",
                "ratio (CPU)",
                "paper (s)",
                "paper's ratio",
            ],
            rows,
        ),
        "",
        "Regenerate: `GNNBACKDOOR_DATA_MIRROR=../shared/datasets python "
        "bench/link_baselines_speed.py --threads 1 --out bench/results`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["Cora"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_quiet(True)
    location = DataLocation()
    results = []
    for dataset in args.datasets:
        for name, (_, settings) in ATTACKS_TIMED.items():
            updates = 1 if name == "p-backdoor" else args.updates
            result = time_attack(name, dataset, location, updates, args.seed, settings)
            print(json.dumps(result))
            results.append(result)
    load = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"threads": args.threads, "load_average": load, "versions": versions(),
               "per_update": results}  # fmt: skip
    (args.out / "link_baselines_speed.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "link_baselines_speed.md").write_text(render(results, args.threads, load))


if __name__ == "__main__":
    main()
