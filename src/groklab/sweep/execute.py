"""Running a sweep: one job's training (`run_job`), the executors, and the driver (`execute`).

Executors: `local` runs one job at a time in this process when workers == 1, else a pool of
`workers` spawned processes (one torch thread each by default); `ray` submits the jobs as Ray
tasks. Each job runs with execution.threads torch threads on every executor, so all give the same
numbers. Workers only train and return results; the driver, holding the folder's lock, writes
every file but the running jobs' checkpoints (sweep_store).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groklab.errors import GroklabError
from groklab.sweep import store as store_mod
from groklab.sweep.spec import Spec, SweepResult, load_spec
from groklab.sweep.store import INDEX, PROGRESS, PROGRESS_EVERY_S, Store, _now
from groklab.train import record

INDEX_EVERY_S = 10.0  # rebuild index.parquet at most this often while jobs finish (and at the end)


# ---- one job --------------------------------------------------------------------------------------------
def build_job(job: dict, flats: list[dict]):
    """The engine Job of a planned job: shared config, per-member seed, split, lr, wd."""
    import dataclasses

    from groklab.models import build_model
    from groklab.tasks import make_split, make_task
    from groklab.train.config import RunConfig
    from groklab.train.engine import Job

    cfgs = []
    for f in flats:
        f = dict(f)
        seed = f.pop("seed")
        cfgs.append((seed, RunConfig.from_flat({**f, "seeds": (seed,)})))
    cfg0 = cfgs[0][1]
    task = make_task(cfg0.task.group)
    splits = [make_split(task, c.task.split_seed if c.task.split_seed is not None else s,
                         frac=c.task.frac, n_train=c.task.n_train, crit_mult=c.task.crit_mult) for s, c in cfgs]
    seeds = [s for s, _ in cfgs]
    E = len(seeds)
    # Checkpoints are offered every eval step; run_job saves at ckpt_every or when checkpoint_s passed.
    train_cfg = dataclasses.replace(cfg0.train, ckpt_every=min(cfg0.train.ckpt_every, cfg0.train.eval_every))
    eng = Job(dataclasses.replace(cfg0, train=train_cfg), task, seeds, splits,
              np.array([c.train.lr for _, c in cfgs]), np.array([c.train.wd for _, c in cfgs]))
    if cfg0.model.init is not None:
        probe = build_model(dataclasses.replace(cfg0.model, init=None), task.order, [0])
        eng.init = record.load_init(cfg0.model.init, probe, E)
    return eng, cfg0.train.ckpt_every


def run_job(out: str | None, job: dict, flats: list[dict], on_eval: Callable | None = None,
            storage=None, storage_is_default: bool = False) -> dict:
    """Train one planned job (resuming from its checkpoint if there is one) and return its
    summary and metrics; the caller writes them. Runs in the driver, a pool worker or a Ray task.

    storage None: the checkpoint and progress live in <out>/jobs/<id>/ (the local executor).
    storage a JobStorage (Ray): they live in <storage>/<id>/ and `out` is never touched; when that is
    the default location and this node cannot write it, the job runs without checkpoints and
    its result says so ("note")."""
    import torch

    from groklab.train.engine import StopRequested, init_state, pick_device, train

    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(job["threads"]))
    try:
        eng, ckpt_every = build_job(job, flats)
        jid = job["id"]
        device = pick_device(eng.cfg.train.device)
        dtype = torch.float64 if eng.cfg.train.dtype == "float64" else torch.float32
        state = init_state(eng, device, dtype)
        keep = _JobFiles(out, jid, eng, storage, storage_is_default)
        state = keep.load(state, lambda: init_state(eng, device, dtype), device)
        last = {"ckpt": time.monotonic(), "progress": 0.0}
        checkpoint_s = float(job["checkpoint_s"])
        steps = eng.cfg.train.steps
        start_step = state.step
        an = _analyzer(job, eng, keep, state.step)

        def eval_hook(st, m):
            if an is not None:
                an.on_eval(st, m)
            now = time.monotonic()
            if now - last["progress"] >= PROGRESS_EVERY_S or st.step >= steps:
                last["progress"] = now
                keep.progress({"job": jid, "step": st.step, "steps": steps, "active": int(st.active.sum()),
                               "members": eng.n_members, "pid": os.getpid(), "host": socket.gethostname(),
                               "updated": time.time(), "resumed_from": start_step})
            if on_eval is not None:
                on_eval(jid, st, m)

        def ckpt_hook(st):
            now = time.monotonic()
            if st.step % ckpt_every == 0 or now - last["ckpt"] >= checkpoint_s:
                last["ckpt"] = now
                keep.save(st, an)

        try:
            state = train(eng, state, device=device, on_eval=eval_hook, on_checkpoint=ckpt_hook,
                          should_stop=lambda: _STOP["requested"])
        except StopRequested as stop:  # Ctrl-C / SIGTERM: the state is between two steps, a valid checkpoint
            keep.save(stop.state, an)
            raise KeyboardInterrupt from None
        summary = record.summarize(state, eng, record.run_status(state))
        rows = _dedupe_rows(state.rows)
        ids = job["members"]
        metrics = pa.table({"member_id": pa.array([ids[e] for e in rows["member"]], pa.string()),
                            "seed": pa.array(rows["seed"], pa.int64()), "step": pa.array(rows["step"], pa.int64()),
                            **{k: pa.array(rows[k], pa.float64()) for k in rows if k not in ("member", "seed", "step")}})
        res = {"summary": summary, "metrics": metrics, "n_pairs": eng.task.n_pairs, "finished": _now(),
               "resumed_from": start_step, "host": socket.gethostname(), "note": keep.note}
        if an is not None:
            at = an.table()
            mids = pa.array([ids[e] for e in at.column("member").to_pylist()], pa.string())
            res["analysis"] = at.drop(["member"]).add_column(0, "member_id", mids)
        return res
    finally:
        torch.set_num_threads(old_threads)


class _JobFiles:
    """A running job's checkpoint and progress: files in <out>/jobs/<id>/ (storage None) or
    objects in <storage>/<id>/ (sweep.storage; Ray workers, which never write into `out`)."""

    def __init__(self, out: str | None, jid: str, eng, storage, storage_is_default: bool):
        self.jid, self.eng, self.storage, self.default = jid, eng, storage, storage_is_default
        self.jdir = Path(out) / "jobs" / jid if storage is None else None
        self.note = None
        if self.jdir is not None:
            self.jdir.mkdir(parents=True, exist_ok=True)

    def load(self, state, fresh, device):
        """Restore `state` from the job's checkpoint if it has one; returns the state to train from."""
        if self.jdir is not None:
            if (self.jdir / record.CKPT).exists():
                try:
                    record.load_checkpoint(self.jdir, state, device)
                except GroklabError:  # unreadable (cannot happen with atomic writes): start the job over
                    return fresh()
            return state
        ck = self.storage.get_checkpoint(self.jid, device)
        if ck is not None:
            record.restore_checkpoint(state, ck)
        return state

    def save(self, st, an=None) -> None:
        """The checkpoint, then (execution.analysis) the analysis up to it."""
        if self.jdir is not None:
            record.save_checkpoint(self.jdir, st, self.eng)
        elif self.storage is not None:
            self._try(lambda: self.storage.put_checkpoint(self.jid, record.checkpoint_dict(st)))
        if an is not None:
            self.put_extra(store_mod.ANALYSIS_STATE, _analyzer_state(an, st.step))

    def put_extra(self, name: str, data: dict) -> None:
        import io

        import torch

        if self.jdir is not None:
            record.atomic_write(self.jdir / name, lambda tmp: torch.save(data, tmp))
        elif self.storage is not None:
            buf = io.BytesIO()
            torch.save(data, buf)
            self._try(lambda: self.storage.put(self.jid, name, buf.getvalue()))

    def get_extra(self, name: str):
        """A file saved by put_extra (torch.load), or None."""
        import io

        import torch

        if self.jdir is not None:
            p = self.jdir / name
            return torch.load(p, weights_only=False) if p.exists() else None
        raw = self.storage.get(self.jid, name) if self.storage is not None else None
        return torch.load(io.BytesIO(raw), weights_only=False) if raw else None

    @property
    def where(self) -> str:
        return str(self.jdir) if self.jdir is not None else f"{self.storage.uri if self.storage else '--storage'}/{self.jid}"

    def progress(self, obj: dict) -> None:
        if self.jdir is not None:
            record.write_json(self.jdir / PROGRESS, obj)
        elif self.storage is not None:
            self._try(lambda: self.storage.put_json(self.jid, PROGRESS, obj))

    def _try(self, put) -> None:
        from groklab.sweep.storage import StorageError

        try:
            put()
        except StorageError as e:
            if not self.default:
                raise  # the user's --storage must work: stop with its one line
            # The default (the driver's folder) is not writable from this node: no shared filesystem.
            self.storage = None
            self.note = (f"job {self.jid} ran without checkpoints on {socket.gethostname()}: the sweep folder is not "
                         f"writable there ({e}); give --storage URI (a path or bucket every node can write) so a retried "
                         "job resumes")


def _analyzer(job: dict, eng, keep: "_JobFiles", step: int):
    """The live Li2 analysis of a job (execution.analysis), restored from jobs/<job>/ when the job
    resumes from a checkpoint (its rows up to that checkpoint), else new; None when off."""
    if not job.get("analysis"):
        return None
    from groklab.analysis import Analyzer

    an = Analyzer(eng, int(job["analysis"]))
    saved = keep.get_extra(store_mod.ANALYSIS_STATE) if step > 0 else None
    if saved is not None:
        if saved["step"] == step:  # written right after the checkpoint it belongs to
            an.rows, an.spectra, an.done = saved["rows"], saved["spectra"], set(saved["done"])
            for k, v in saved["ref"].items():
                setattr(an.probe, k, v.to(getattr(an.probe, "device", v.device)))
            return an
    if step > 0:
        raise GroklabError(f"{keep.where}: the checkpoint at step {step} has no matching {store_mod.ANALYSIS_STATE}; "
                           f"delete {keep.where} to run the job again from the start")
    return an


def _analyzer_state(an, step: int) -> dict:
    """The analysis of a job up to `step` (its checkpoint's): rows, spectra, analysed steps, and
    the probe's reference weights (the relative changes are measured from the first analysis)."""
    probe = an.probe
    ref = {k: getattr(probe, k).cpu() for k in ("w0", "v0") if getattr(probe, k, None) is not None}
    return {"step": int(step), "rows": an.rows, "spectra": an.spectra, "done": sorted(an.done), "ref": ref}


def _dedupe_rows(rows: dict[str, list]) -> dict[str, list]:
    """A job resumed at an evaluation step evaluates that step again (same numbers): keep the
    first row of each (step, member)."""
    seen, keep = set(), []
    for i, key in enumerate(zip(rows["step"], rows["member"])):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return {k: [v[i] for i in keep] for k, v in rows.items()}


# ---- executors --------------------------------------------------------------------------------------------
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

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, out: Path, jobs: list[dict], flats: dict[str, list[dict]], on_done, on_tick, on_eval, on_failed=None):
        if self.workers == 1:
            for job in jobs:
                _check_stop()
                on_done(job, run_job(str(out), job, flats[job["id"]], on_eval=on_eval))
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


# ---- the driver ------------------------------------------------------------------------------------------
def execute(sp: Spec, out: Path, *, executor: str = "local", workers: int | None = None, extend: bool = False,
            quiet: bool = True, ray_address: str | None = None, on_progress: Callable[[dict], None] | None = None,
            analyze: bool = True, storage: str | None = None, max_retries: int = RAY_MAX_RETRIES) -> SweepResult:
    from groklab.sweep.view import SweepProgress, say

    store = Store(out)
    t0 = time.perf_counter()
    if executor not in ("local", "ray"):
        raise GroklabError(f"--executor {executor!r}: expected local or ray")
    if storage is not None and executor != "ray":
        raise GroklabError(f"--storage {storage}: only used with --executor ray (local jobs keep checkpoints in the sweep folder)")
    if storage is not None:
        from groklab.sweep.storage import JobStorage

        JobStorage(storage).open()  # a bad URI or missing s3/gs support: one line, before anything is written
    from groklab.sweep import memfit
    from groklab.train import memory

    by_id = memfit.members_by_id(sp)
    limit = memory.available(memfit.device_of(sp.members)) if executor == "local" else None
    if limit is not None:
        memfit.refuse_unfittable(sp.members, limit)  # before the folder exists: nothing written
    with store.locked(), _graceful_stop():
        plan, added = store.prepare(sp, extend)
        if extend and not quiet:
            say(f"--extend: {added} new members added to {out}" if added else f"--extend: no new members; {out} already plans all of them")
        done = store.done_jobs()
        store.sync_index(done)
        store.drop_job_dirs(done)
        todo = sorted([j for j in plan["jobs"] if j["id"] not in done], key=lambda j: -j["work"])
        n_total = len(plan["members"])
        if not todo:
            res = _finish(store, quiet, ran=0, t0=t0, analyze=analyze, analyze_if_stale=True)
            if not quiet:
                say(f"sweep {out}: all {n_total} members are done; nothing to run")
            return res
        notes = []
        if limit is not None:
            todo, notes = memfit.split_jobs(store, plan, todo, by_id, limit)
            todo.sort(key=lambda j: -j["work"])
        flats = {j["id"]: [plan["members"][m] for m in j["members"]] for j in todo}
        threads = max(int(j["threads"]) for j in todo)
        if executor == "ray":
            ex: Any = RayExecutor(ray_address, workers, threads, storage=storage, out=out, max_retries=max_retries)
            n_workers = workers or 0
        else:
            n_workers = workers or max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) // threads)
            n_workers = min(n_workers, len(todo))
            if limit is not None:
                n_workers, note = memfit.workers_that_fit(todo, by_id, limit, n_workers)
                notes += [note] if note else []
            ex = LocalExecutor(n_workers)
        for note in notes:
            say(note)  # said even with --quiet: the sweep runs differently from what was asked
        tracker = Tracker(store, plan, done, executor, n_workers, on_progress)
        if executor == "ray" and storage is not None:
            tracker.read_progress = ex.progress  # workers report to the storage, not the sweep folder
        ran = 0
        with SweepProgress(tracker, quiet=quiet) as view:
            if not quiet:
                n_left = sum(len(j["members"]) for j in todo)
                say(f"sweep {out}: {n_total - n_left} of {n_total} members done; running {n_left} in {len(todo)} jobs "
                    f"({executor}, {(str(n_workers) + (' workers' if n_workers > 1 else ' worker')) if n_workers else 'cluster'}, {threads} thread(s) each)")

            last_index = [time.monotonic()]

            failed: list[tuple[dict, str]] = []

            def on_failed(job, err):
                failed.append((job, str(err)))
                tracker.job_done(job)
                tracker.done.discard(job["id"])
                say(f"sweep job {job['id']} failed: {err}; members {', '.join(job['members'])} are not done "
                    "(re-run the same command to retry them); the other jobs go on")

            resumed: dict[str, int] = {}

            def on_done(job, res):
                nonlocal ran
                if res.get("note"):
                    say(res["note"])
                if res.get("resumed_from"):  # a retry (Ray) or a re-run: say so, a node or worker died
                    resumed[job["id"]] = int(res["resumed_from"])
                    say(f"job {job['id']} resumed from step {res['resumed_from']} (its checkpoint) and finished on {res.get('host', '?')}")
                try:
                    ran += store.write_result(job, res)
                except record.WriteError as e:  # disk full: finished jobs' files are intact
                    raise GroklabError(f"sweep stopped: {e}; every finished job is kept; once there is space "
                                       f"again, re-run the same command to continue") from None
                tracker.job_done(job)
                if time.monotonic() - last_index[0] >= INDEX_EVERY_S:  # readable while it runs
                    store.build_index()
                    last_index[0] = time.monotonic()
                view.refresh(force=True)

            def on_eval(jid, st, m):
                tracker.job_step(jid, st.step, st.active.sum())
                view.refresh()

            def on_tick():
                tracker.poll_jobs()
                view.refresh()

            ex.run(out, todo, flats, on_done, on_tick, on_eval, on_failed)
        store.build_index()
        tracker.write(final=True)
        res = _finish(store, quiet, ran=ran, t0=t0, analyze=analyze)
        res.failed = {job["id"]: list(job["members"]) for job, _ in failed}
        res.resumed = resumed
        if failed:
            say(f"sweep {out}: {len(failed)} job(s) failed ({sum(len(j['members']) for j, _ in failed)} members not done); "
                "re-run the same command to retry them")
        return res


_STOP = {"requested": False}


@contextlib.contextmanager
def _graceful_stop():
    """Ctrl-C or SIGTERM asks the sweep to stop: a job running in this process saves a checkpoint
    at its next step boundary (engine.train's should_stop) and the sweep ends; pool and Ray workers
    are stopped (their last checkpoints stand). A second Ctrl-C stops at once."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if _STOP["requested"]:
            raise KeyboardInterrupt
        _STOP["requested"] = True

    _STOP["requested"] = False
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        _STOP["requested"] = False


def _check_stop() -> None:
    if _STOP["requested"]:
        raise KeyboardInterrupt


def _finish(store: Store, quiet: bool, *, ran: int, t0: float, analyze: bool = True, analyze_if_stale: bool = False) -> SweepResult:
    from groklab.sweep.scaling import analyze as write_analysis
    from groklab.sweep.scaling import format_fit

    out = store.out
    index = pq.read_table(out / INDEX)
    fit = None
    png = out / "phase.png"
    stale = not (out / "fit.json").exists() or not png.exists() or (out / "fit.json").stat().st_mtime < (out / INDEX).stat().st_mtime
    if analyze and index.num_rows and (ran or stale or not analyze_if_stale):
        fit = write_analysis(index, out)
        if not quiet:
            from groklab.sweep.view import say

            say(format_fit(fit))
            say(f"wrote {out / INDEX} ({index.num_rows} members), {out / 'fit.json'}, {png}")
    elif (out / "fit.json").exists():
        fit = record.read_json(out / "fit.json", str(out))
    return SweepResult(out, index, fit, png if png.exists() else None, len(store.read_plan()["members"]), ran,
                       time.perf_counter() - t0)


class Tracker:
    """What is done and running, for the display, progress.json and --status."""

    def __init__(self, store: Store, plan: dict, done: set[str], executor: str, workers: int, on_progress):
        self.store, self.plan, self.on_progress = store, plan, on_progress
        self.jobs = {j["id"]: j for j in plan["jobs"]}
        self.done = set(done)
        self.total = len(plan["members"])
        self.work_total = sum(j["work"] for j in plan["jobs"])
        self.running: dict[str, dict] = {}
        self.started, self.executor, self.workers = time.time(), executor, workers
        self.done_at_start = self.members_done()
        self.work_at_start = self.work_done()
        self._last_write = 0.0

    def members_done(self) -> int:
        return sum(len(self.jobs[j]["members"]) for j in self.done if j in self.jobs)

    def work_done(self) -> float:
        w = sum(self.jobs[j]["work"] for j in self.done if j in self.jobs)
        return w + sum(self.jobs[j]["work"] * r["step"] / max(r["steps"], 1) for j, r in self.running.items())

    def job_step(self, jid: str, step: int, active: int) -> None:
        self.running[jid] = {"step": int(step), "steps": self.jobs[jid]["steps"],
                             "active": int(active), "members": len(self.jobs[jid]["members"]), "updated": time.time()}

    def job_done(self, job: dict) -> None:
        self.done.add(job["id"])
        self.running.pop(job["id"], None)

    read_progress: Callable | None = None  # jids -> {jid: progress}; None: the sweep folder's jobs/*/progress.json

    def poll_jobs(self) -> None:
        """Read jobs/*/progress.json (pool and Ray workers write them), or the --storage's."""
        if self.read_progress is not None:
            now = time.time()
            if now - getattr(self, "_polled", 0.0) >= PROGRESS_EVERY_S:  # an object store: not every tick
                self._polled = now
                todo = [j for j in self.jobs if j not in self.done]
                for jid, r in self.read_progress(todo).items():
                    if r.get("updated", 0) >= self.started and jid not in self.done:
                        self.running[jid] = r
            return
        d = self.store.out / "jobs"
        if d.is_dir():
            for p in d.glob(f"*/{PROGRESS}"):
                jid = p.parent.name
                if jid in self.jobs and jid not in self.done:
                    try:
                        r = json.loads(p.read_text())
                    except (OSError, ValueError):
                        continue
                    if r.get("updated", 0) >= self.started:
                        self.running[jid] = r

    def snapshot(self) -> dict:
        now = time.time()
        elapsed = now - self.started
        done = self.members_done()
        running = sum(len(self.jobs[j]["members"]) for j in self.running)
        rate = (done - self.done_at_start) / elapsed * 60 if elapsed > 0 else 0.0
        w_rate = (self.work_done() - self.work_at_start) / elapsed if elapsed > 0 else 0.0
        left_work = self.work_total - self.work_done()
        eta = left_work / w_rate if w_rate > 0 else None
        return {"kind": "groklab.sweep.progress", "pid": os.getpid(), "host": socket.gethostname(), "executor": self.executor,
                "workers": self.workers, "started": self.started, "updated": now, "members": self.total, "done": done,
                "running": running, "left": self.total - done, "jobs": len(self.jobs), "jobs_done": len(self.done),
                "jobs_running": len(self.running), "members_per_min": rate, "eta_s": eta,
                "running_jobs": {j: {"step": r["step"], "steps": r["steps"], "members": r["members"]} for j, r in self.running.items()}}

    def write(self, final: bool = False) -> dict:
        snap = self.snapshot()
        if final or time.time() - self._last_write >= PROGRESS_EVERY_S:
            self._last_write = time.time()
            record.write_json(self.store.out / PROGRESS, snap)
            if self.on_progress is not None:
                self.on_progress(snap)
        return snap


# ---- the Python API ------------------------------------------------------------------------------------
def run_sweep(spec: str | Path | dict | Spec, out: str | Path | None = None, *, executor: str = "local",
              workers: int | None = None, extend: bool = False, quiet: bool = True,
              ray_address: str | None = None, on_progress: Callable[[dict], None] | None = None,
              analyze: bool = True, storage: str | None = None, max_retries: int = RAY_MAX_RETRIES) -> SweepResult:
    """Run every member of `spec` not yet done in `out` (default sweeps_out/<name>), then write
    index.parquet, fit.json and phase.png. Resumable: killed at any moment, the same call finishes
    it with each member exactly once. A different spec under an existing folder is an error
    unless extend=True (which adds the new members). analyze=False skips fit.json and phase.png.

    workers > 1 starts worker processes by `spawn`, which re-imports the calling script: call it
    under ``if __name__ == "__main__":`` there (the CLI does)."""
    sp = spec if isinstance(spec, Spec) else load_spec(spec)
    out = Path(out) if out is not None else Path("sweeps_out") / sp.name
    return execute(sp, out, executor=executor, workers=workers, extend=extend, quiet=quiet,
                              ray_address=ray_address, on_progress=on_progress, analyze=analyze, storage=storage,
                              max_retries=max_retries)


def sweep_status(out: str | Path) -> dict:
    """done / running / left members and jobs, rate and ETA of a sweep folder (running or not)."""
    return store_mod.status(Path(out))


def load_results(out: str | Path) -> SweepResult:
    """Read a sweep folder (finished or not) without running anything."""
    return store_mod.load_results(Path(out))
