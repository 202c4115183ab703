"""Micro-batching: requests that arrive while the shield is busy are answered together, with
one shield call and so one model query for all of them.

Nothing waits on purpose: a request that finds the shield idle runs alone; under load,
batches grow by themselves. Each graph's answer is the same either way (the shield seeds a
graph's draws from the graph itself, never from its batch).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from torch_geometric.data import Data

from gnnbackdoor.defenses.base import InputShield, PredictFn


@dataclass
class _Job:
    shield: InputShield
    backend: PredictFn
    graphs: list[Data]
    future: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ShieldBatcher:
    """Runs shield calls one at a time on a worker thread, merging queued requests.

    Args:
        max_graphs: Most graphs merged into one shield call.
    """

    def __init__(self, max_graphs: int = 256):
        self.max_graphs = max_graphs
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def predict(
        self, shield: InputShield, backend: PredictFn, graphs: list[Data]
    ) -> tuple[list[int], list[dict[str, Any]]]:
        """Labels and details of ``graphs``; raises what the shield or the model raised."""
        job = _Job(shield, backend, graphs)
        await self._queue.put(job)
        return await job.future

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            total = len(jobs[0].graphs)
            while not self._queue.empty() and total < self.max_graphs:
                nxt = self._queue._queue[0]  # peek: merge only jobs for the same shield/model
                if nxt.shield is not jobs[0].shield or nxt.backend is not jobs[0].backend:
                    break
                jobs.append(self._queue.get_nowait())
                total += len(nxt.graphs)
            graphs = [g for job in jobs for g in job.graphs]
            try:
                result = await asyncio.to_thread(jobs[0].shield.predict, jobs[0].backend, graphs)
            except Exception as error:  # handed to each waiting request
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            labels = result.labels.tolist()
            start = 0
            for job in jobs:
                end = start + len(job.graphs)
                if not job.future.done():  # the client may have gone
                    job.future.set_result((labels[start:end], result.details[start:end]))
                start = end
