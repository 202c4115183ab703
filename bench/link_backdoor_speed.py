"""Link-Backdoor speed: seconds per trigger update (GAE) beside the paper's Table 4, and the
whole white-box GAE run on Cora (clean pre-training, poisoned training, evaluation).

Each trigger update is one forward and one backward pass over all poisoning target links
(p = 0.1 of the training edges) with the candidate trigger links as differentiable edge
weights, then the sign step of Eq. 7. The update's cost does not depend on how well the
model is trained, so the per-update figure is measured on a freshly initialised GAE
(``--updates`` updates after one warm-up update); the end-to-end figure is a full
``gnnbackdoor run`` on Cora through the runner.

Usage (from the repository root; single-threaded as the sweeps run)::

    GNNBACKDOOR_DATA_MIRROR=../shared/datasets python bench/link_backdoor_speed.py \\
        --threads 1 --out bench/results

Writes ``link_backdoor_speed.json`` and ``link_backdoor_speed.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from gnnbackdoor.attacks.link_backdoor import LinkBackdoor
from gnnbackdoor.contracts.context import LinkContext
from gnnbackdoor.datasets import DATASETS, DataLocation, split_links
from gnnbackdoor.experiments.records import versions
from gnnbackdoor.experiments.report import markdown_table, reference_table
from gnnbackdoor.experiments.runner import RunSpec, execute
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_link import LinkTrainConfig
from gnnbackdoor.utils.progress import set_quiet
from gnnbackdoor.utils.seeding import RunStreams, Stage

DATASETS_TIMED = ["Cora", "CiteSeer", "Cora_ML_LCC", "CS"]
PAPER_NAMES = {"Cora_ML_LCC": "Cora_ML"}


def time_updates(dataset: str, location: DataLocation, updates: int, seed: int = 0) -> dict:
    """Seconds per trigger update for GAE on ``dataset`` (p = 0.1, m = 2, Q = 5)."""
    graph = DATASETS.get(dataset)().load(location)
    streams = RunStreams(seed)
    with streams.running(Stage.DATA_SPLIT):
        split = split_links(graph)
    torch.manual_seed(seed)  # a script: module initialisation draws from the global RNG
    generator = streams.torch_generator(Stage.VICTIM)
    ctx = LinkContext(graph, split, MODELS.get("gae")(), LinkTrainConfig(), seed, generator)
    ctx.clean_model = ctx.build_model()
    attack = LinkBackdoor(init_updates=updates + 1)
    attack.fit(ctx)
    seconds = attack._update_seconds[1:]  # the first update pays one-off allocations
    cpu = attack._update_cpu_seconds[1:]
    return {
        "dataset": dataset,
        "nodes": int(graph.num_nodes),
        "features": int(graph.x.size(1)),
        "poison_targets": int(attack.num_poison_),
        "injected_nodes": int(attack.placement_.num_injected),
        "updates": len(seconds),
        "per_update_s": statistics.mean(seconds),
        "per_update_min_s": min(seconds),
        "per_update_cpu_s": statistics.mean(cpu),
    }


def time_full_run(location: DataLocation, seed: int = 0) -> dict:
    """The whole white-box run on Cora with GAE, through the runner (no record written)."""
    start = time.perf_counter()
    record = execute(RunSpec("link", "Cora", "gae", "link-backdoor", None, seed, {}), location)
    total = time.perf_counter() - start
    return {
        "seconds": total,
        "phases": record["timings"],
        "metrics": {k: record["metrics"][k] for k in ("asr", "bpd", "clean_auc")},
    }


def render(results: list[dict], full: dict, threads: int, load: float) -> str:
    paper = {r["dataset"]: float(r["link_backdoor_s"]) for r in
             reference_table("link_backdoor_table4_seconds_per_update.csv")}  # fmt: skip
    rows = []
    for r in results:
        theirs = paper.get(PAPER_NAMES.get(r["dataset"], r["dataset"]), float("nan"))
        speedup = theirs / r["per_update_s"]
        rows.append(
            [
                r["dataset"],
                f"{r['nodes']:,}",
                f"{r['poison_targets']:,}",
                f"{r['injected_nodes']:,}",
                f"{r['per_update_s']:.4f}",
                f"{r['per_update_cpu_s']:.4f}",
                f"{theirs:.3f}",
                f"{speedup:.1f}×",
                f"{theirs / r['per_update_cpu_s']:.1f}×",
                "yes" if speedup >= 5 else "no",
            ]
        )
    lines = [
        "# Link-Backdoor: seconds per trigger update (GAE)",
        "",
        f"CPU, {threads} thread(s) ({platform.processor() or platform.machine()}); the paper: "
        "TITAN XP GPU (its Table 4). One update = one forward and one backward pass over all "
        "poisoning target links (p = 0.1 of the training edges, m = 2 injected nodes each) "
        "plus the sign step of Eq. 7. Mean over the timed updates after one warm-up update. "
        "*wall* is elapsed time; *CPU* is this process's CPU time (one thread, so it is the "
        "elapsed time on an otherwise idle core). The machine is shared (2 cores, load "
        f"average {load:.1f} when measured), so wall time includes waiting for a core.",
        "",
        markdown_table(
            [
                "dataset",
                "nodes",
                "poisoning targets",
                "injected nodes",
                "ours, wall (s)",
                "ours, CPU (s)",
                "paper (s)",
                "speed-up (wall)",
                "speed-up (CPU)",
                "≥ 5× (wall)",
            ],
            rows,
        ),
        "",
        "## Whole white-box run, Cora, GAE",
        "",
        f"Clean pre-training, trigger fitting, poisoned training and evaluation: "
        f"**{full['seconds']:.1f} s** (target: under 90 s). Phases (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(full["phases"].items()))
        + ". Metrics of that run: "
        + ", ".join(f"{k} {100 * v:.2f}" for k, v in full["metrics"].items())
        + " (points).",
        "",
        "Regenerate: `GNNBACKDOOR_DATA_MIRROR=../shared/datasets python "
        "bench/link_backdoor_speed.py --threads 1 --out bench/results`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", default=DATASETS_TIMED)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_quiet(True)
    location = DataLocation()
    results = [time_updates(d, location, args.updates) for d in args.datasets]
    full = time_full_run(location)
    load = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "threads": args.threads,
        "load_average_1min": load,
        "per_update": results,
        "full_run_cora_gae": full,
        "versions": versions(),
    }
    (args.out / "link_backdoor_speed.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "link_backdoor_speed.md").write_text(render(results, full, args.threads, load))


if __name__ == "__main__":
    main()
