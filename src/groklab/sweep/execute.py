"""Running a sweep: the driver (`execute`, `run_sweep`); one job's training is sweep/job.py, the
executors sweep/executors.py (`run_job` is re-exported here: the in-process executor calls it by this name).

Executors: `local` runs one job at a time in this process when workers == 1, else a pool of
`workers` spawned processes (one torch thread each by default); `ray` submits the jobs as Ray
tasks. Each job runs with execution.threads torch threads on every executor, so all give the same
numbers. Workers only train and return results; the driver, holding the folder's lock, writes
every file but the running jobs' checkpoints (sweep_store).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq

from groklab.errors import GroklabError
from groklab.sweep import store as store_mod
from groklab.sweep.spec import Spec, SweepResult, load_spec
from groklab.sweep.store import INDEX, PROGRESS, PROGRESS_EVERY_S, Store
from groklab.sweep.executors import RAY_MAX_RETRIES, JobFailed, LocalExecutor, RayExecutor  # noqa: F401 (re-exported)
from groklab.sweep.job import _STOP, _check_stop, _graceful_stop, build_job, run_job  # noqa: F401 (re-exported)
from groklab.train import record

INDEX_EVERY_S = 10.0  # rebuild index.parquet at most this often while jobs finish (and at the end)

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
            ex = LocalExecutor(n_workers, runner=run_job)  # run_job looked up here at call time (tests replace it)
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
