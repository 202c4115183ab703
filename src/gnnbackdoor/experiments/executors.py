"""Where the runs of a sweep execute: in the driver, in a local process pool, or on Ray.

:func:`~gnnbackdoor.experiments.runner.run_sweep` (the driver) resolves every run, drops the
ones already recorded and hands the rest, as :class:`RunTask` objects, to an executor. The
executor runs a worker function on each task and yields one :class:`Outcome` per task as the
tasks finish, in whatever order they finish. Workers only *return* records; the driver alone
appends them to ``records.jsonl`` (one writer, so no two processes ever append to the file).

* :class:`SequentialExecutor` (``--executor sequential``, the default): one run after the
  other in the driver's process, with the driver's torch thread count.
* :class:`LocalExecutor` (``--executor local --jobs N``): a pool of ``N`` worker processes
  (:class:`concurrent.futures.ProcessPoolExecutor`, ``forkserver`` start method: workers are
  forked from a server process that imported torch and the package once and ran nothing, never
  from the driver, whose torch thread pools may be running). A worker process that dies
  (killed, out of memory) breaks the pool; the executor starts a new pool and resubmits every
  task the broken pool had not finished, each at most ``max_retries`` times.
* :class:`RayExecutor` (``--executor ray [--address ...]``): one Ray task per run with
  ``num_cpus`` equal to the run's thread count, on a cluster or on a local Ray instance. Ray
  re-executes a task whose worker process died up to ``max_retries`` times (an exception
  raised *by the run* is not retried: the worker returns it as a failed :class:`Outcome`).

Ray is an optional dependency (``pip install -e ".[distributed]"``); it is imported only by
:class:`RayExecutor`.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gnnbackdoor.errors import UserError

if TYPE_CHECKING:
    from gnnbackdoor.datasets.base import DataLocation

logger = logging.getLogger(__name__)

#: Times a run whose worker process died is started again before it is recorded as failed.
MAX_RETRIES = 2
RAY_INSTALL = 'pip install -e ".[distributed]"'
#: Environment variables a worker needs from the driver (caches, mirror); Ray workers on other
#: machines get them through the job's runtime environment.
FORWARDED_ENV = (
    "GNNBACKDOOR_DATA_MIRROR",
    "GNNBACKDOOR_CACHE",
    "GNNBACKDOOR_CLEAN_CACHE",
    "GNNBACKDOOR_STAGE_CACHE",
)


class ExecutorKind(enum.Enum):
    """``--executor``: where the runs of a sweep execute."""

    SEQUENTIAL = "sequential"
    LOCAL = "local"
    RAY = "ray"


@dataclass(frozen=True)
class RunTask:
    """One run handed to a worker.

    Attributes:
        index: Position of the run in the sweep (for ordering and messages).
        spec: What to run: a :class:`~gnnbackdoor.experiments.runner.RunSpec` (typed
            ``Any`` here: the runner imports this module, and the layer check forbids the
            cycle even under ``TYPE_CHECKING``).
        key: The run key the driver computed; a worker that computes another one (different
            code or settings on its machine) fails the run instead of recording it under a key
            the driver does not expect.
        location: Where datasets come from (absolute paths: workers may run elsewhere).
        save_dir: Where this run's trained models go (``save_dir/<role>``, absolute; the
            driver picks one folder per run), or ``None``.
        threads: torch threads the worker sets before the run (``None``: keep the process's
            own count, as the sequential executor does).
        catch: Return an exception raised by the run as a failed :class:`Outcome` (``False``:
            let it propagate; only the in-process executor can do that).
    """

    index: int
    spec: Any
    key: str
    location: DataLocation
    save_dir: Path | None
    threads: int | None
    catch: bool = True


@dataclass(frozen=True)
class Outcome:
    """What a worker returns for a :class:`RunTask`: the run's record, or the one-line error
    that stopped it (``"ValueError: ..."``, never a traceback), or why the driver did not run
    it after all (``skipped``: another sweep holds or has recorded it; see
    :mod:`~gnnbackdoor.experiments.claims`)."""

    index: int
    record: dict[str, Any] | None = None
    error: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.record is not None


def error_line(error: BaseException) -> str:
    """``"<ExceptionType>: <first line of the message>"`` (one line, no traceback)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


Worker = Callable[[RunTask], Outcome]


class Executor(Protocol):
    """Runs ``worker`` on every task and yields the outcomes as they finish."""

    #: torch threads of each run (``None``: the driver's current count; sequential only).
    threads: int | None

    def run(self, worker: Worker, tasks: list[RunTask]) -> Iterator[Outcome]: ...

    def close(self) -> None: ...


class SequentialExecutor:
    """Each run in the driver's process, one after the other (the default)."""

    threads: int | None = None

    def run(self, worker: Worker, tasks: list[RunTask]) -> Iterator[Outcome]:
        for task in tasks:
            yield worker(task)

    def close(self) -> None:
        pass


def worker_context() -> multiprocessing.context.BaseContext:
    """The ``forkserver`` start method, its server preloading the runner (torch, PyG and the
    registries): each worker then starts in milliseconds instead of importing torch anew.
    (The preload list applies when this process first starts its fork server.)"""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["gnnbackdoor.experiments.runner"])
    return context


def _forwarded_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in FORWARDED_ENV}


def _exit_when_gone(driver: int) -> None:
    """Exit this worker once the driver process ``driver`` is gone (killed with SIGKILL, say):
    nobody can receive its record any more, and a pool worker would otherwise wait forever
    on the task queue it holds both ends of."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(driver, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # the pid now belongs to another user's process
            os._exit(1)


def _init_local_worker(level: int, env: dict[str, str | None], driver: int, threads: int) -> None:
    """Runs once in each pool process: the driver's cache and mirror variables as they are now
    (the fork server's environment is the one it started with), native thread pools (BLAS,
    OpenMP) limited to the run's ``threads`` as Ray limits its workers to a task's CPUs, no
    progress bars (several workers would interleave them on one terminal; the driver reports
    each finished run), the driver's log level, and a watcher that ends the worker when the
    driver dies."""
    from threadpoolctl import threadpool_limits

    from gnnbackdoor.utils.progress import set_quiet

    threadpool_limits(limits=threads)
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    set_quiet(True)
    logging.basicConfig(level=level, format="%(message)s")
    threading.Thread(target=_exit_when_gone, args=(driver,), daemon=True).start()


class LocalExecutor:
    """A pool of ``jobs`` worker processes on this machine (``--executor local --jobs N``).

    Args:
        jobs: Worker processes (runs at a time).
        threads: torch threads of each run (also its CPU count: ``jobs * threads`` should not
            exceed the machine's cores).
        max_retries: Times a task that was unfinished when a worker process died is
            resubmitted to a fresh pool (every unfinished task of the broken pool counts one
            attempt: the pool cannot tell which run killed it).
    """

    def __init__(self, jobs: int, threads: int, max_retries: int = MAX_RETRIES) -> None:
        if jobs < 1 or threads < 1:
            raise UserError(f"--jobs and --threads must be at least 1, got {jobs} and {threads}")
        self.jobs = jobs
        self.threads = threads
        self.max_retries = max_retries

    def _pool(self, size: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=size,
            mp_context=worker_context(),
            initializer=_init_local_worker,
            initargs=(
                logging.getLogger("gnnbackdoor").getEffectiveLevel(),
                _forwarded_env(),
                os.getpid(),
                self.threads,
            ),
        )

    def run(self, worker: Worker, tasks: list[RunTask]) -> Iterator[Outcome]:
        attempts = dict.fromkeys((task.index for task in tasks), 0)
        queue = list(tasks)
        while queue:
            pool = self._pool(min(self.jobs, len(queue)))
            futures: dict[Future, RunTask] = {pool.submit(worker, task): task for task in queue}
            queue = []
            finished = False
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        task = futures.pop(future)
                        try:
                            outcome = future.result()
                        except BrokenProcessPool:
                            attempts[task.index] += 1
                            if attempts[task.index] <= self.max_retries:
                                queue.append(task)
                                continue
                            outcome = Outcome(
                                task.index,
                                error="WorkerDied: a worker process died while this run was "
                                f"unfinished, {attempts[task.index]} times",
                            )
                        except Exception as error:  # the outcome could not be sent back
                            outcome = Outcome(task.index, error=error_line(error))
                        yield outcome
                finished = True
            finally:
                # on an early exit (Ctrl-C, the driver stopped reading) drop the queued runs
                # instead of waiting for them
                pool.shutdown(wait=finished, cancel_futures=True)
            if queue:
                logger.warning(
                    "a worker process died; resubmitting %d unfinished run(s)", len(queue)
                )

    def close(self) -> None:
        pass


def _check_reachable(address: str | None, timeout_s: float = 10.0) -> None:
    """Stop at once when a ``HOST:PORT`` address does not answer (Ray itself retries for
    minutes before it gives up).

    Raises:
        UserError: nothing accepts a TCP connection at ``HOST:PORT``.
    """
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except ValueError:
        raise UserError(f"--address expects auto or HOST:PORT, got {address!r}") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"cannot reach the Ray cluster at {address}: {reason}") from None


def _in_ray_worker(worker: Worker, task: RunTask) -> Outcome:
    """What each Ray task runs: ``worker(task)`` without progress bars (Ray would forward
    every worker's bars to the driver's terminal)."""
    from gnnbackdoor.utils.progress import set_quiet

    set_quiet(True)
    return worker(task)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray: {RAY_INSTALL}") from None
    return ray


class RayExecutor:
    """One Ray task per run (``--executor ray [--address auto|HOST:PORT]``).

    Connects to the cluster at ``address``, or starts a local Ray instance when ``address``
    is ``None`` (with ``num_cpus`` CPUs, default all of this machine's); a Ray session the
    caller already started with :func:`ray.init` is used as it is. Each run is a task with
    ``num_cpus=threads``, so Ray places at most ``cores // threads`` runs on a node at a time.

    Args:
        threads: torch threads (and Ray CPUs) of each run.
        address: ``"auto"`` (the cluster this machine belongs to), ``"HOST:PORT"`` (its head
            node), ``"ray://HOST:PORT"`` (Ray Client), or ``None`` (a local instance).
        num_cpus: CPUs of a local instance (ignored with an address).
        max_retries: Ray's ``max_retries``: times a task whose worker process died runs again.

    Raises:
        UserError: Ray is not installed (the message names the install command), or the
            cluster cannot be reached.
    """

    def __init__(
        self,
        threads: int,
        address: str | None = None,
        num_cpus: int | None = None,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        if threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}")
        self.ray = _import_ray()
        self.threads = threads
        self.max_retries = max_retries
        self._started = False
        _check_reachable(address)
        if not self.ray.is_initialized():
            runtime_env: dict[str, Any] = {}
            env = {k: v for k, v in _forwarded_env().items() if v is not None}
            if env:
                runtime_env["env_vars"] = env
            if address:
                # the cluster's workers import this very package (uploaded once per job),
                # whatever version their machines have installed
                import gnnbackdoor

                runtime_env["py_modules"] = [gnnbackdoor]
            try:
                self.ray.init(
                    address=address,
                    num_cpus=None if address else num_cpus,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    runtime_env=runtime_env or None,
                )
            except ConnectionError as error:
                raise UserError(f"cannot reach the Ray cluster at {address}: {error}") from None
            self._started = True
        resources = self.ray.cluster_resources()
        if resources.get("CPU", 0) < threads:
            self.close()
            raise UserError(
                f"--threads {threads} asks each run for {threads} CPUs, but the Ray cluster "
                f"has {resources.get('CPU', 0):g}"
            )

    def run(self, worker: Worker, tasks: list[RunTask]) -> Iterator[Outcome]:
        ray = self.ray
        remote = ray.remote(_in_ray_worker).options(
            num_cpus=self.threads, max_retries=self.max_retries, retry_exceptions=False
        )
        pending = {remote.remote(worker, task): task for task in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as error:
                        # the worker died more than max_retries times, or the task could not
                        # be scheduled/serialised
                        outcome = Outcome(
                            task.index, error=_ray_error_line(error, self.max_retries)
                        )
                    yield outcome
        finally:
            for ref in pending:  # an early exit: stop the runs still queued or running
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False


def _ray_error_line(error: BaseException, max_retries: int) -> str:
    """One line for an error Ray raised instead of returning an :class:`Outcome`: a worker
    that died every time, or the underlying error of a task Ray could not run (Ray wraps it,
    e.g. a worker that cannot import the package, in ``RayTaskError(RaySystemError)``)."""
    name = type(error).__name__
    if "WorkerCrashed" in name or "ActorDied" in name or "NodeDied" in name:
        return f"WorkerDied: the worker process died {max_retries + 1} times during this run"
    cause: BaseException = error
    for _ in range(8):  # unwrap RayTaskError.cause and RaySystemError(original)
        inner = getattr(cause, "cause", None)
        if not isinstance(inner, BaseException) and cause.args:
            inner = cause.args[0]
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    return error_line(cause)


def run_threads(kind: ExecutorKind, threads: int | None) -> int | None:
    """The torch thread count each run of ``--executor kind`` gets, which is part of its key.

    ``threads`` when given; otherwise 1 for ``local`` and ``ray`` (one run per core), and
    ``None`` for ``sequential``: its runs use the driver's own count. ``sweep --plan`` asks
    this so that it plans the keys the sweep would write.
    """
    if threads is not None or kind is ExecutorKind.SEQUENTIAL:
        return threads
    return 1


def make_executor(
    kind: ExecutorKind,
    *,
    jobs: int | None = None,
    threads: int | None = None,
    address: str | None = None,
) -> Executor:
    """The executor ``--executor kind`` asks for.

    Args:
        jobs: Runs at a time for ``local`` (default: the machine's cores // ``threads``) and
            for a local Ray instance (its CPUs: ``jobs * threads``); not allowed otherwise.
        threads: torch threads of each run (default 1 for ``local`` and ``ray``; part of each
            run's key). ``sequential`` uses the driver's count.
        address: Ray cluster address; only with ``ray``.

    Raises:
        UserError: an option that does not apply to ``kind``, or Ray missing.
    """
    if address is not None and kind is not ExecutorKind.RAY:
        raise UserError("--address applies to --executor ray only")
    if kind is ExecutorKind.SEQUENTIAL:
        if jobs is not None:
            raise UserError("--jobs needs a parallel executor: --executor local or ray")
        return SequentialExecutor()
    if threads is None:
        logger.info("each run uses 1 torch thread (--threads sets it; it is part of the run key)")
    threads = run_threads(kind, threads)
    assert threads is not None  # sequential returned above
    if kind is ExecutorKind.LOCAL:
        return LocalExecutor(jobs or max(1, (os.cpu_count() or 1) // threads), threads)
    if jobs is not None and address is not None:
        raise UserError("--jobs sizes a local Ray instance; a cluster's size is its own")
    return RayExecutor(threads, address, num_cpus=jobs * threads if jobs else None)
