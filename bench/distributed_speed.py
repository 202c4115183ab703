"""Distributed sweep speed: one 16-run sweep sequentially, on a local process pool of 2 jobs
and on a local Ray instance with 2 CPUs (issue 18).

The sweep: GIN on the embedded Motifs dataset, 16 seeds, ``train.max_epochs`` small, one
torch thread per run. Each mode runs the real command in a fresh process
(``gnnbackdoor sweep FILE --out DIR --threads 1 [--executor local --jobs 2 | --executor ray
--jobs 2]``) into an empty folder, so every wall time includes what a user waits for: the
interpreter and torch import, the worker pool or the Ray instance starting, the runs, the
driver writing records. The script also checks that the three folders hold the same records
(metrics equal by key) and times ``ray.init(num_cpus=2)`` alone.

Per-run overhead of a parallel mode: ``(wall * jobs - sum of the runs' timings.total_s) / runs``,
the slot time per run spent outside the runs themselves (start-up, scheduling, shipping
records back, an idle slot at the end). Ray's per-run overhead over the local pool is the
difference of the two.

Writes ``bench/results/distributed_speed.json`` and ``.md``. Run on a quiet 2-core machine::

    python bench/distributed_speed.py [--runs 16] [--epochs 150]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results"
SRC = Path(__file__).resolve().parents[1] / "src"


def _env() -> dict[str, str]:
    paths = [str(SRC), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _records(folder: Path) -> dict[str, dict]:
    lines = (folder / "records.jsonl").read_text().splitlines()
    return {r["key"]: r for r in map(json.loads, lines)}


def _sweep(sweep: Path, out: Path, extra: list[str]) -> float:
    argv = [sys.executable, "-m", "gnnbackdoor", "sweep", str(sweep), "--out", str(out)]
    argv += ["--threads", "1", "--quiet", *extra]
    start = time.perf_counter()
    subprocess.run(argv, env=_env(), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _burn(_: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(20_000_000):
        total += i
    return time.perf_counter() - start


def machine_parallelism() -> float:
    """What two processes get from this machine right now: the time of a pure-Python CPU loop
    alone, times 2, over the time of two such loops side by side (2.0 on two idle cores; about
    1.0 when other work leaves the equivalent of one core). It bounds the sweep's speed-up."""
    alone = _burn(0)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_burn, [0, 0])  # start the processes outside the timing
        start = time.perf_counter()
        pool.map(_burn, [0, 1])
        both = time.perf_counter() - start
    return round(2 * alone / both, 2)


def _ray_start_s() -> float | None:
    code = (
        "import time, ray\n"
        "t = time.perf_counter()\n"
        "ray.init(num_cpus=2, include_dashboard=False, logging_level='ERROR')\n"
        "print(time.perf_counter() - t)\n"
        "ray.shutdown()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=False
    )
    return float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=150)
    args = parser.parse_args()
    try:
        import ray  # noqa: F401

        has_ray = True
    except ImportError:
        has_ray = False
    load_before = _load()
    parallelism_before = machine_parallelism()
    modes = {"sequential": [], "local-2": ["--executor", "local", "--jobs", "2"]}
    if has_ray:
        modes["ray-2"] = ["--executor", "ray", "--jobs", "2"]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="distributed-bench-") as tmp:
        sweep = Path(tmp) / "sweep.yaml"
        sweep.write_text(
            "runs:\n  - task: graph\n    datasets: [Motifs]\n    models: [gin]\n"
            f"    seeds: {list(range(args.runs))}\n"
            f"    set: {{train.max_epochs: {args.epochs}, train.patience: {args.epochs}}}\n"
        )
        records = {}
        for name, extra in modes.items():
            out = Path(tmp) / name
            wall = _sweep(sweep, out, extra)
            records[name] = _records(out)
            jobs = 1 if name == "sequential" else 2
            run_s = sum(r["timings"]["total_s"] for r in records[name].values())
            rows[name] = {
                "wall_s": round(wall, 2),
                "jobs": jobs,
                "runs": len(records[name]),
                "sum_run_total_s": round(run_s, 2),
                "overhead_per_run_s": round((wall * jobs - run_s) / args.runs, 3),
                "load_after": _load(),
            }
            print(name, rows[name], flush=True)
        reference = records["sequential"]
        same = {
            name: set(got) == set(reference)
            and all(got[k]["metrics"] == reference[k]["metrics"] for k in reference)
            for name, got in records.items()
        }
    seq = rows["sequential"]["wall_s"]
    for row in rows.values():
        row["speedup"] = round(seq / row["wall_s"], 2)
    ray_start = _ray_start_s() if has_ray else None
    result = {
        "runs": args.runs,
        "sweep": f"graph Motifs gin, seeds 0..{args.runs - 1}, train.max_epochs={args.epochs}",
        "threads_per_run": 1,
        "cpus": os.cpu_count(),
        "modes": rows,
        "same_records_as_sequential": same,
        "ray_init_s": round(ray_start, 2) if ray_start is not None else None,
        "ray_overhead_per_run_over_local_s": round(
            rows["ray-2"]["overhead_per_run_s"] - rows["local-2"]["overhead_per_run_s"], 3
        )
        if has_ray
        else None,
        "load_before": load_before,
        "load_after": _load(),
        "machine_parallelism_before": parallelism_before,
        "machine_parallelism_after": machine_parallelism(),
        "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "distributed_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "distributed_speed.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = [
        "# Distributed sweep speed",
        "",
        f"One sweep of {result['runs']} small runs ({result['sweep']}; 1 torch thread each), "
        f"run with `python bench/distributed_speed.py` on a {result['cpus']}-core machine, "
        f"{result['measured']}. Wall times are the whole `gnnbackdoor sweep` command in a fresh "
        "process into an empty folder (imports, pool or Ray start, runs, records).",
        "",
        "| mode | wall (s) | speed-up vs sequential | Σ run total_s | overhead per run (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in result["modes"].items():
        lines.append(
            f"| {name} | {row['wall_s']:.1f} | {row['speedup']:.2f}x | "
            f"{row['sum_run_total_s']:.1f} | {row['overhead_per_run_s']:.2f} |"
        )
    same = ", ".join(
        f"{k}: {'yes' if v else 'NO'}" for k, v in result["same_records_as_sequential"].items()
    )
    lines += [
        "",
        "Overhead per run = (wall × jobs − Σ run total_s) / runs: slot time outside the runs "
        "(start-up, scheduling, shipping records, an idle slot at the end). Σ run total_s grows "
        "when runs get less than a core each (two runs sharing what the machine gives, or "
        "other work on it).",
        "",
        f"- Same records (metrics equal by key) as the sequential sweep: {same}.",
    ]
    if result["ray_init_s"] is not None:
        lines.append(
            f"- Ray: starting a local instance (`ray.init(num_cpus=2)`) alone takes "
            f"{result['ray_init_s']:.1f} s; Ray's per-run overhead over the local pool is "
            f"{result['ray_overhead_per_run_over_local_s']:.2f} s (start-up included, spread "
            "over the runs)."
        )
    lines += [
        f"- Load average (1, 5, 15 min) before: {result['load_before']}, after: "
        f"{result['load_after']}. On a shared machine every figure here is noisy; a "
        "load average above the core count means other work took CPU time from these runs.",
        f"- Parallelism the machine gave two pure-Python CPU loops (2.0 on two idle cores): "
        f"{result['machine_parallelism_before']:.2f}x before, "
        f"{result['machine_parallelism_after']:.2f}x after. No executor can speed a sweep up "
        "beyond it; below about 1.9 these figures measure the machine's load, not the "
        "executors: re-run on a quiet machine.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
