"""Foundation speed: seconds per training epoch and per full clean run.

GAE on Cora and CS (link prediction), GIN on AIDS and COLLAB (graph classification), on the
CPU threads given (default 2). For GAE it also times a plain PyTorch Geometric loop doing the
same work per epoch (one training step with fresh negatives + validation AUC) to measure the
toolkit's overhead.

Writes ``bench/results/foundation_speed.json`` and ``.md``. Run::

    GNNBACKDOOR_DATA_MIRROR=../shared/datasets python bench/foundation_speed.py

``--datasets`` re-measures a subset; the other rows of an existing JSON are kept, each row
carrying when it was measured, the load average then, its thread count and its process CPU
seconds (the time on a dedicated core when threads = 1), so rows taken on a busy machine
can be read honestly.
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
from sklearn.metrics import roc_auc_score
from torch_geometric.nn import GAE, GCNConv
from torch_geometric.utils import negative_sampling

from gnnbackdoor.datasets import DataLocation, load_dataset, split_graphs, split_links
from gnnbackdoor.experiments.records import versions
from gnnbackdoor.experiments.runner import RunSpec, execute
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.train_graph import GraphTrainConfig, train_graph_model
from gnnbackdoor.models.train_link import LinkTrainConfig, train_link_model
from gnnbackdoor.utils.progress import set_quiet
from gnnbackdoor.utils.seeding import RunStreams, Stage

OUT = Path(__file__).resolve().parent / "results"


class _PlainEncoder(torch.nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1 = GCNConv(in_channels, 32)
        self.conv2 = GCNConv(32, 16)

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


def plain_pyg_gae_epoch_s(split, epochs: int) -> float:
    """Median seconds per epoch of a plain PyG GAE loop doing the toolkit's per-epoch work."""
    torch.manual_seed(0)
    train, val = split.train, split.val
    model = GAE(_PlainEncoder(train.num_features))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    pairs = torch.cat([val.pos_edge_label_index, val.neg_edge_label_index], 1)
    labels = torch.cat(
        [
            torch.ones(val.pos_edge_label_index.size(1)),
            torch.zeros(val.neg_edge_label_index.size(1)),
        ]
    )
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        optimiser.zero_grad()
        z = model.encode(train.x, train.edge_index)
        pos = train.pos_edge_label_index
        neg = negative_sampling(train.edge_index, train.num_nodes, pos.size(1))
        model.recon_loss(z, pos, neg).backward()
        optimiser.step()
        model.eval()
        with torch.no_grad():
            z = model.encode(val.x, val.edge_index)
            roc_auc_score(labels.numpy(), model.decoder(z, pairs).numpy())
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def toolkit_link_epoch_s(split, epochs: int) -> float:
    """Median seconds per epoch of the toolkit's trainer on GAE (fixed number of epochs)."""
    torch.manual_seed(0)
    model = MODELS.get("gae")().build(split.train.num_features)
    report = train_link_model(
        model, split.train, split.val, LinkTrainConfig(max_epochs=epochs, patience=epochs)
    )
    return report.seconds / report.epochs


def toolkit_graph_epoch_s(graphs, epochs: int) -> float:
    split = split_graphs(graphs, seed=0)
    torch.manual_seed(0)
    model = MODELS.get("gin")().build(split.num_features, split.num_classes)
    report = train_graph_model(
        model,
        split.train,
        split.val,
        GraphTrainConfig(max_epochs=epochs, patience=epochs),
        torch.Generator().manual_seed(0),
    )
    return report.seconds / report.epochs


def full_run(task: str, dataset: str, model: str, location: DataLocation) -> dict:
    cpu_start = time.process_time()
    record = execute(RunSpec(task, dataset, model, seed=0), location)
    timings = record["timings"]
    return {
        "total_s": timings["total_s"],
        "cpu_s": time.process_time() - cpu_start,
        "load_s": timings["load_s"],
        "clean_train_s": timings["clean_train_s"],
        "epochs": record["metrics"]["clean_epochs"],
        "metric": record["metrics"].get("clean_auc", record["metrics"].get("clean_acc")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=50, help="epochs timed per model")
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["Cora", "CS", "AIDS", "COLLAB"],
        help="rows to (re-)measure; rows of an existing JSON that are not named are kept",
    )
    parser.add_argument(
        "--skip-collab-full",
        action="store_true",
        help="time COLLAB epochs but not a full COLLAB run",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_quiet(True)
    location = DataLocation()
    previous = OUT / "foundation_speed.json"
    results: dict = json.loads(previous.read_text()) if previous.exists() else {}
    results.setdefault("link", {})
    results.setdefault("graph", {})
    for entry in [*results["link"].values(), *results["graph"].values()]:
        entry.setdefault("threads", results.get("threads"))
    results.update(
        threads=args.threads,
        machine=platform.processor() or platform.machine(),
        versions=versions(),
    )
    for dataset in [d for d in ("Cora", "CS") if d in args.datasets]:
        load_dataset(dataset, location)  # process once, outside the timings
        with RunStreams(0).running(Stage.DATA_SPLIT):
            split = split_links(load_dataset(dataset, location))
        load_start = os.getloadavg()[0]
        epochs = args.epochs if dataset == "Cora" else max(10, args.epochs // 5)
        plain = plain_pyg_gae_epoch_s(split, epochs)
        ours = toolkit_link_epoch_s(split, epochs)
        results["link"][dataset] = {
            "model": "gae",
            "plain_pyg_epoch_s": plain,
            "toolkit_epoch_s": ours,
            "overhead_pct": 100 * (ours - plain) / plain,
            "full_run": full_run("link", dataset, "gae", location),
            **_conditions(args.threads, load_start),
        }
        print(dataset, results["link"][dataset], flush=True)
    for dataset in [d for d in ("AIDS", "COLLAB") if d in args.datasets]:
        graphs = load_dataset(dataset, location)
        load_start = os.getloadavg()[0]
        epochs = args.epochs // 5 if dataset == "AIDS" else 3
        entry = {"model": "gin", "toolkit_epoch_s": toolkit_graph_epoch_s(graphs, epochs)}
        if dataset == "AIDS" or not args.skip_collab_full:
            entry["full_run"] = full_run("graph", dataset, "gin", location)
        entry.update(_conditions(args.threads, load_start))
        results["graph"][dataset] = entry
        print(dataset, entry, flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "foundation_speed.json").write_text(json.dumps(results, indent=2))
    (OUT / "foundation_speed.md").write_text(render(results))


def _conditions(threads: int, load_start: float) -> dict:
    """When and how a row was measured."""
    return {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_1m": load_start,
        "threads": threads,
    }


def _measured(entry: dict) -> str:
    """``threads | load | when`` cells of a row (rows from before these fields: '—')."""
    if "measured_at" not in entry:
        return f"{entry.get('threads', '—')} | — | —"
    return f"{entry['threads']} | {entry['load_avg_1m']:.1f} | {entry['measured_at']}"


def _cpu(full: dict | None) -> str:
    return f"{full['cpu_s']:.1f}" if full and "cpu_s" in full else "—"


def render(results: dict) -> str:
    lines = [
        "# Foundation speed",
        "",
        f"torch {results['versions']['torch']}, "
        f"torch_geometric {results['versions']['torch_geometric']}. "
        "Generated by `python bench/foundation_speed.py` (rows re-measured alone with "
        "`--datasets`). *full run CPU s* is the process's CPU time; with one thread it is "
        "the run's time on a dedicated core, whatever else the machine was doing. "
        "*load* is the 1-minute load average when the row started (2 cores).",
        "",
        "| task | dataset | model | plain PyG s/epoch | toolkit s/epoch | overhead | full clean "
        "run s | full run CPU s | epochs | clean metric | threads | load | measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, entry in results["link"].items():
        full = entry["full_run"]
        lines.append(
            f"| link | {dataset} | gae | {entry['plain_pyg_epoch_s']:.4f} | "
            f"{entry['toolkit_epoch_s']:.4f} | {entry['overhead_pct']:+.1f} % | "
            f"{full['total_s']:.1f} | {_cpu(full)} | {full['epochs']} | "
            f"AUC {100 * full['metric']:.2f} | {_measured(entry)} |"
        )
    for dataset, entry in results["graph"].items():
        full = entry.get("full_run")
        full_text = (
            f"{full['total_s']:.1f} | {_cpu(full)} | {full['epochs']} | "
            f"acc {100 * full['metric']:.2f}"
            if full
            else "not run | — | — | —"
        )
        lines.append(
            f"| graph | {dataset} | gin | — | {entry['toolkit_epoch_s']:.4f} | — | {full_text} | "
            f"{_measured(entry)} |"
        )
    lines += [
        "",
        "Per-epoch work, both columns: one training step with freshly sampled "
        "negatives, then the validation AUC. A full run includes loading (from the "
        "processed cache), the split, training with early stopping and evaluation.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
