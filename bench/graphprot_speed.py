"""GraphProt speed: shielded vs bare predictions per second, and the service's latency.

1. Library: for AIDS and COLLAB (GraphProt split, seed 0: the 1/3 test graphs), graphs per
   second of the bare model and of GraphProt-R/T/TF in front of it (one query per call), with
   the service's prediction function (a GCN; its weights do not change the cost, so it is not
   trained) and, for TF, with the pipeline's PyG ``DataLoader`` prediction function too.
2. Service: ``gnnbackdoor serve`` (GraphProt-TF, GCN for AIDS; once per ``--workers``
   count, default 1 and 2) started as a subprocess on
   loopback; single-graph requests from the AIDS test set at concurrency 8 for a fixed
   number of requests; p50/p99 latency, throughput and errors (any non-200 answer or
   exception).

    python bench/graphprot_speed.py [--requests 2000] [--concurrency 8] [--seconds 3]

Writes ``bench/results/graphprot_speed.json`` and ``.md``. The machine is shared: the load
average at the start of each part is recorded beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from gnnbackdoor.datasets import DATASETS, DataLocation
from gnnbackdoor.datasets.splits import split_graphs
from gnnbackdoor.defenses.graphprot import GraphProtR, GraphProtT, GraphProtTF
from gnnbackdoor.experiments.records import versions
from gnnbackdoor.models import MODELS
from gnnbackdoor.models.io import save_model
from gnnbackdoor.models.train_graph import predict_graphs
from gnnbackdoor.service.backends import ModelBackend
from gnnbackdoor.service.keys import add_key
from gnnbackdoor.service.process import wait_until_healthy
from gnnbackdoor.utils.progress import set_quiet

OUT = Path(__file__).resolve().parent / "results"
SHIELDS = {"graphprot-r": GraphProtR, "graphprot-t": GraphProtT, "graphprot-tf": GraphProtTF}
COLUMNS = {
    "bare": "bare",
    "graphprot-r": "GraphProt-R",
    "graphprot-t": "GraphProt-T",
    "graphprot-tf": "GraphProt-TF",
    "bare (PyG DataLoader)": "bare (PyG loader)",
    "graphprot-tf (PyG DataLoader)": "GraphProt-TF (PyG loader)",
}


def rate(fn, count: int, seconds: float) -> dict[str, float]:
    """Graphs per second of ``fn()`` (which handles ``count`` graphs), repeated for at least
    ``seconds`` of wall time: ``wall`` (graphs per elapsed second, what a user sees on this
    shared machine) and ``cpu`` (graphs per CPU-second of this process: the rate of one
    dedicated core)."""
    fn()  # warm-up
    repeats, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        repeats += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            cpu = time.process_time() - cpu_start
            return {"wall": count * repeats / elapsed, "cpu": count * repeats / max(cpu, 1e-9)}


def test_graphs(name: str):
    graphs = DATASETS.get(name)().load(DataLocation())
    split = split_graphs(graphs, 0, 0.6667, 0.1)
    return split


def bench_library(name: str, seconds: float) -> dict:
    split = test_graphs(name)
    graphs = split.test
    torch.manual_seed(0)
    model = MODELS.get("gcn")().build(split.num_features, split.num_classes).eval()
    backend = ModelBackend(model, split.num_features)
    result = {
        "dataset": name,
        "test_graphs": len(graphs),
        "mean_nodes": sum(g.num_nodes for g in graphs) / len(graphs),
        "load_avg_1min": os.getloadavg()[0],
        "graphs_per_s": {},
    }
    result["graphs_per_s"]["bare"] = rate(lambda: backend(graphs), len(graphs), seconds)
    for shield_name, cls in SHIELDS.items():
        shield = cls()
        result["graphs_per_s"][shield_name] = rate(
            lambda shield=shield: shield.predict(backend, graphs), len(graphs), seconds
        )
    shield = GraphProtTF()
    pyg_fn = lambda batch: predict_graphs(model, batch, 512)[0]  # noqa: E731
    result["graphs_per_s"]["bare (PyG DataLoader)"] = rate(
        lambda: pyg_fn(graphs), len(graphs), seconds
    )
    result["graphs_per_s"]["graphprot-tf (PyG DataLoader)"] = rate(
        lambda: shield.predict(pyg_fn, graphs), len(graphs), seconds
    )
    print(json.dumps(result), flush=True)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def load(url: str, key: str, bodies: list[bytes], requests: int, concurrency: int):
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:

        async def worker():
            for i in counter:
                start = time.perf_counter()
                try:
                    response = await c.post("/v1/predict", content=bodies[i % len(bodies)])
                    if response.status_code != 200:
                        errors.append(f"HTTP {response.status_code}")
                except httpx.HTTPError as error:
                    errors.append(type(error).__name__)
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


def bench_service(requests: int, concurrency: int, workers: int = 1) -> dict:
    split = test_graphs("AIDS")
    torch.manual_seed(0)
    spec = MODELS.get("gcn")()
    model = spec.build(split.num_features, split.num_classes)
    bodies = [
        json.dumps({"graphs": [{"x": g.x.tolist(), "edge_index": g.edge_index.tolist()}]}).encode()
        for g in split.test
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_model(model, spec, Path(tmp) / "gcn", split.num_features, split.num_classes)
        key = add_key(Path(tmp) / "keys.txt")
        port = free_port()
        command = [
            sys.executable, "-m", "gnnbackdoor", "serve", "--model", str(folder),
            "--defense", "graphprot-tf", "--api-keys", str(Path(tmp) / "keys.txt"),
            "--host", "127.0.0.1", "--port", str(port), "--threads", "1", "--quiet",
            "--workers", str(workers),
        ]  # fmt: skip
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(url, server)
            asyncio.run(load(url, key, bodies, 50, concurrency))  # warm-up
            load_avg = os.getloadavg()[0]
            latencies, errors, wall = asyncio.run(load(url, key, bodies, requests, concurrency))
        finally:
            server.terminate()
            server.wait(10)
    ordered = sorted(latencies)
    result = {
        "dataset": "AIDS",
        "defense": "graphprot-tf",
        "requests": requests,
        "concurrency": concurrency,
        "workers": workers,
        "graphs_per_request": 1,
        "load_avg_1min": load_avg,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max_ms": 1000 * ordered[-1],
        "throughput_rps": requests / wall,
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
    }
    print(json.dumps(result), flush=True)
    return result


def markdown(result: dict) -> str:
    lines = [
        "# GraphProt speed",
        "",
        f"Measured {result['created']} on {result['machine']['cpus']} CPU cores shared with "
        "other jobs (load average at the start of each part shown), one torch thread, "
        f"torch {result['versions'].get('torch')}. Command: `{result['command']}`.",
        "",
        "## Library: graphs per second (test split, one query per call)",
        "",
        "Each cell: graphs per elapsed second on this shared machine / graphs per CPU-second "
        "of the benchmark process (the rate of one dedicated core).",
        "",
        "| dataset | test graphs | mean nodes | load avg | " + " | ".join(COLUMNS.values()) + " |",
        "|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for row in result["library"]:
        g = row["graphs_per_s"]
        cells = [f"{g[k]['wall']:.0f} / {g[k]['cpu']:.0f}" for k in COLUMNS]
        lines.append(
            f"| {row['dataset']} | {row['test_graphs']} | {row['mean_nodes']:.1f} | "
            f"{row['load_avg_1min']:.1f} | " + " | ".join(cells) + " |"
        )
    aids = next((r for r in result["library"] if r["dataset"] == "AIDS"), None)
    if aids:
        tf = aids["graphs_per_s"]["graphprot-tf"]
        lines += [
            "",
            "Target ≥ 500 shielded AIDS graphs/s (GraphProt-TF): "
            f"{'met' if tf['wall'] >= 500 else 'not met'} in elapsed time ({tf['wall']:.0f}), "
            f"{'met' if tf['cpu'] >= 500 else 'not met'} per CPU-second ({tf['cpu']:.0f}).",
        ]
    services = result.get("service")
    if isinstance(services, dict):  # results files written before --workers
        services = [services]
    if services:
        first = services[0]
        lines += [
            "",
            "## Service: single-graph requests over loopback",
            "",
            f"`gnnbackdoor serve --workers W` (GraphProt-TF, GCN) in its own process(es); "
            f"{first['requests']} requests of one AIDS test graph each, "
            f"{first['concurrency']} in flight (httpx AsyncClient in this process, on the same "
            "2 cores).",
            "",
            "| workers | p50 ms | p99 ms | max ms | throughput req/s | errors | load avg "
            "| target |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in services:
            met = s["p99_ms"] < 50 and s["errors"] == 0
            lines.append(
                f"| {s.get('workers', 1)} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
                f"{s['max_ms']:.1f} | {s['throughput_rps']:.0f} | {s['errors']} | "
                f"{s['load_avg_1min']:.1f} | {'met' if met else 'not met'} |"
            )
        lines += ["", "Target: p99 < 50 ms with zero errors."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["AIDS", "COLLAB"])
    parser.add_argument("--seconds", type=float, default=3.0, help="per library measurement")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-service", action="store_true")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="server processes, one run each"
    )
    args = parser.parse_args()
    set_quiet(True)
    torch.set_num_threads(1)
    result = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python bench/graphprot_speed.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(),
        "library": [bench_library(name, args.seconds) for name in args.datasets],
    }
    if not args.no_service:
        result["service"] = [
            bench_service(args.requests, args.concurrency, workers) for workers in args.workers
        ]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "graphprot_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "graphprot_speed.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
