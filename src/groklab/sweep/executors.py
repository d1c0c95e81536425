"""Executors of a sweep's jobs: `LocalExecutor` (this process, or a pool of spawned workers) and
`RayExecutor` (Ray tasks). Each job runs with execution.threads torch threads on every executor, so
all give the same numbers. Workers only train and return results; the driver (sweep/execute.py),
holding the folder's lock, writes every file but the running jobs' checkpoints (sweep/store.py).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from groklab.errors import GroklabError
from groklab.sweep.job import _check_stop, run_job

__all__ = ["LocalExecutor", "RayExecutor", "JobFailed", "RAY_MAX_RETRIES"]


def _worker_init() -> None:
    """Pool workers: die with the driver (even on SIGKILL), leave Ctrl-C to the driver."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _worker_loop(conn) -> None:
    """A local worker process: run the jobs the driver sends, send back ("ok", result) or
    ("error", exception); exit on None or when the driver is gone."""
    _worker_init()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        try:
            reply = ("ok", run_job(*msg))
        except BaseException as e:  # noqa: BLE001 - sent to the driver, which decides
            # plain types cross the pipe (WriteError's constructor takes other arguments)
            reply = ("error", GroklabError(str(e)) if isinstance(e, GroklabError) else RuntimeError(f"{type(e).__name__}: {e}"))
        conn.send(reply)


class JobFailed(Exception):
    """A job whose worker died (OOM killer, a signal, a lost node): its members stay not done."""


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        hint = " (out of memory? the OOM killer sends SIGKILL)" if -exitcode == signal.SIGKILL else ""
        return f"its worker was killed by {name}{hint}"
    return f"its worker exited with status {exitcode}"


class LocalExecutor:
    """workers == 1: in this process, one job after another; else `workers` spawned processes,
    each running one job at a time. A worker that dies (e.g. killed by the OOM killer) fails only
    its job (on_failed), is replaced, and the sweep goes on; a re-run retries the job."""

    def __init__(self, workers: int, runner: Callable = run_job):
        self.workers = workers
        self.runner = runner  # what workers == 1 calls in this process (the driver passes its run_job)

    def run(self, out: Path, jobs: list[dict], flats: dict[str, list[dict]], on_done, on_tick, on_eval, on_failed=None):
        if self.workers == 1:
            for job in jobs:
                _check_stop()
                on_done(job, self.runner(str(out), job, flats[job["id"]], on_eval=on_eval))
            return
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")
        queue = list(jobs)
        busy: dict[Any, tuple[Any, Any, dict]] = {}  # conn -> (process, conn, job)
        idle: list[tuple[Any, Any]] = []

        def start():
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_loop, args=(child,), daemon=True)
            proc.start()
            child.close()
            return proc, parent

        try:
            while queue or busy:
                _check_stop()
                while queue and len(busy) < self.workers:
                    proc, conn = idle.pop() if idle else start()
                    job = queue.pop(0)
                    conn.send((str(out), job, flats[job["id"]]))
                    busy[conn] = (proc, conn, job)
                ready = wait([c for c in busy] + [p.sentinel for p, _, _ in busy.values()], timeout=0.2)
                for conn, (proc, _, job) in list(busy.items()):
                    if conn in ready or proc.sentinel in ready:
                        reply = None
                        try:
                            if conn.poll():
                                reply = conn.recv()
                        except (EOFError, OSError):
                            reply = None
                        if reply is None:
                            if proc.is_alive():
                                continue
                            del busy[conn]
                            proc.join()
                            failure = JobFailed(_death(proc.exitcode))
                            if on_failed is None:
                                raise GroklabError(f"sweep job {job['id']}: {failure}")
                            on_failed(job, failure)
                            continue
                        del busy[conn]
                        idle.append((proc, conn))
                        kind, value = reply
                        if kind == "error":
                            raise value
                        on_done(job, value)
                on_tick()
        finally:
            for proc, conn in idle + [(p, c) for p, c, _ in busy.values()]:
                try:
                    conn.send(None)
                except (OSError, ValueError):
                    pass
                if proc.is_alive():
                    proc.terminate()
            for proc, _ in idle + [(p, c) for p, c, _ in busy.values()]:
                proc.join(5)


RAY_MAX_RETRIES = 3  # Ray re-runs a job whose worker or node died this many times (it resumes from its checkpoint)


class RayExecutor:
    """Each job is a Ray task with num_cpus = threads; the workers need nothing of the driver's disk.

    A task gets its job and members as arguments and returns its summary and metrics through Ray's
    object store; only the driver writes the sweep folder. A job's checkpoint and progress go to
    `storage` (sweep.storage; default the sweep folder's jobs/, used when the workers can write it:
    a local Ray instance or a shared filesystem). When a worker or its node dies, Ray re-runs the
    task (max_retries) and it resumes from its last checkpoint there; the driver receives exactly
    one result per job, so no member is ever written twice."""

    def __init__(self, address: str | None, workers: int | None, threads: int, storage: str | None = None,
                 out: Path | None = None, max_retries: int = RAY_MAX_RETRIES):
        address = address or os.environ.get("RAY_ADDRESS")
        if not address and "ray" not in sys.modules:
            # Ray >= 2.59 turns token authentication on for a new local instance and prints a notice on
            # every start unless RAY_AUTH_MODE is set: set it to what Ray would choose anyway. It is read
            # when ray is imported, so only before that (an already imported ray keeps its notice).
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        try:
            import ray
        except ImportError:
            raise GroklabError("--executor ray needs Ray: pip install 'groklab[ray]' (or pip install ray)") from None
        from groklab.sweep.storage import JobStorage

        self.ray, self.max_retries = ray, max_retries
        self.storage_is_default = storage is None
        self.storage = JobStorage(storage if storage is not None else Path(out).resolve() / "jobs").open()
        self.started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address:
                ray.init(address=address, **kw)  # the cluster's RAY_AUTH_MODE / token apply (README)
            else:
                ray.init(num_cpus=(workers or os.cpu_count() or 1) * threads, **kw)
            self.started = True

    def progress(self, jids) -> dict[str, dict]:
        """The running jobs' progress.json from the storage (the driver's display)."""
        return self.storage.progress(jids)

    def run(self, out: Path, jobs: list[dict], flats: dict[str, list[dict]], on_done, on_tick, on_eval, on_failed=None):
        ray = self.ray
        refs, tasks = {}, {}
        for job in jobs:
            threads = int(job["threads"])
            if threads not in tasks:
                tasks[threads] = ray.remote(num_cpus=threads, max_retries=self.max_retries, retry_exceptions=False)(run_job)
            refs[tasks[threads].remote(None, job, flats[job["id"]], None, self.storage, self.storage_is_default)] = job
        try:
            while refs:
                _check_stop()
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
                for r in ready:
                    job = refs.pop(r)
                    try:
                        res = ray.get(r)
                    except ray.exceptions.RayTaskError as e:  # the job raised: as in-process
                        cause = getattr(e, "cause", None)
                        if isinstance(cause, GroklabError):
                            raise GroklabError(str(cause)) from None
                        if "No module named" in str(e):  # the node lacks groklab (or this version of it)
                            missing = str(e).split("No module named")[-1].splitlines()[0].strip()
                            raise GroklabError(f"--executor ray: a Ray worker cannot import {missing}; install the same "
                                               "groklab version (and torch) on every node of the cluster") from None
                        raise e.as_instanceof_cause() from None
                    except ray.exceptions.RayError as e:  # worker or node died (OOM, kill) after its retries
                        if on_failed is None:
                            raise
                        on_failed(job, JobFailed(f"its Ray worker died {self.max_retries + 1} times ({type(e).__name__})"))
                        continue
                    on_done(job, res)
                    self.storage.delete(job["id"])  # results are in the sweep folder now
                on_tick()
        finally:
            for r in refs:
                ray.cancel(r, force=True)
            if self.started:
                ray.shutdown()
