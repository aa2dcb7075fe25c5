"""The drill over a Dask cluster: the same per-patient checks, partitioned by patient folders
over ``dask.distributed`` workers instead of local processes.

Why Dask and how little changes: the drill already cuts the work into chunks of patient folders
(:data:`fhir_gateway.drill.run.CHUNK`) whose results are small, picklable summaries
(:class:`~fhir_gateway.drill.worker.ChunkResult`) merged in any order.  Here each chunk is a Dask
task; the scheduler spreads them over workers on as many machines as mount the same storage
path, and the merge, the report and its checksum are the local run's.  At most
``IN_FLIGHT_PER_WORKER`` chunks per worker are submitted ahead, so a tree of millions of
patients never sits in the scheduler's memory at once.

A task is ``task_size`` patient folders (default 64, the drill's chunk: a few seconds of work,
so the scheduler's per-task cost, milliseconds, is negligible — measured: workers are busy 92-99 %
of the drill's wall time; larger tasks only pay on a cluster with slow links, smaller ones
balance a small tree over more workers).  Each task reports the worker's CPU and wall seconds
(:attr:`DaskExecutor.per_worker`), so throughput per worker can be told apart from the
cluster's start-up and the scheduling.
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator

from fhir_gateway.drill.worker import ChunkResult, Options

IN_FLIGHT_PER_WORKER = 4


def _run_chunk(opts: Options, chunk: list[tuple[str, str]]) -> tuple[ChunkResult, str, float, float]:
    """On a Dask worker: set the worker process up once per drill, then check one chunk:
    (result, worker address, CPU seconds, wall seconds)."""
    from distributed import get_worker

    from fhir_gateway.drill import worker

    t, c = time.perf_counter(), time.process_time()
    if worker._OPTS != opts:
        worker.init(opts)
    result = worker.check_chunk(chunk)
    return result, get_worker().address, time.process_time() - c, time.perf_counter() - t


def _tasks(chunks: Iterable[list], size: int) -> Iterator[list]:
    """The drill's chunks re-cut into tasks of ``size`` patient folders."""
    batch: list = []
    for chunk in chunks:
        batch.extend(chunk)
        while len(batch) >= size:
            yield batch[:size]
            batch = batch[size:]
    if batch:
        yield batch


class DaskExecutor:
    """``executor(options, chunks) -> results`` for :func:`fhir_gateway.drill.run.check_storage`,
    over a scheduler address (``tcp://host:8786``) or a local cluster of ``local`` workers."""

    def __init__(self, address: str | None = None, local: int = 0, task_size: int = 64) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise RuntimeError("--dask needs dask.distributed: pip install "
                               "'fhir-gateway[scale]'") from exc
        self.cluster = None
        if local:
            self.cluster = LocalCluster(n_workers=local, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=40)
            self.client = Client(self.cluster)
        else:
            self.client = Client(address, timeout=30)
        self.address = self.client.scheduler.address
        self.task_size = max(1, task_size)
        # worker address -> {"tasks", "files", "cpu_s", "busy_s"} of the last drill
        self.per_worker: dict[str, dict[str, float]] = {}

    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {})) or 1

    def __call__(self, opts: Options, chunks: Iterable[list]) -> Iterator[ChunkResult]:
        from distributed import as_completed

        limit = IN_FLIGHT_PER_WORKER * self.workers()
        it = _tasks(chunks, self.task_size)
        self.per_worker = {}
        pending = as_completed()
        for chunk in it:
            pending.add(self.client.submit(_run_chunk, opts, chunk, pure=False))
            if pending.count() >= limit:
                break
        for fut in pending:
            result, where, cpu, busy = fut.result()  # a worker's exception is raised here
            fut.release()
            w = self.per_worker.setdefault(where, {"tasks": 0, "files": 0, "cpu_s": 0.0,
                                                   "busy_s": 0.0})
            w["tasks"] += 1
            w["files"] += result.files
            w["cpu_s"] += cpu
            w["busy_s"] += busy
            nxt = next(it, None)
            if nxt is not None:
                pending.add(self.client.submit(_run_chunk, opts, nxt, pure=False))
            yield result

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
