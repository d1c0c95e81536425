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


def run_job(out: str, job: dict, flats: list[dict], on_eval: Callable | None = None) -> dict:
    """Train one planned job (resuming from its checkpoint if there is one) and return its
    summary and metrics; the caller writes them. Runs in the driver, a pool worker or a Ray task."""
    import torch

    from groklab.train.engine import StopRequested, init_state, pick_device, train

    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(job["threads"]))
    try:
        eng, ckpt_every = build_job(job, flats)
        jdir = Path(out) / "jobs" / job["id"]
        jdir.mkdir(parents=True, exist_ok=True)
        device = pick_device(eng.cfg.train.device)
        dtype = torch.float64 if eng.cfg.train.dtype == "float64" else torch.float32
        state = init_state(eng, device, dtype)
        if (jdir / record.CKPT).exists():
            try:
                record.load_checkpoint(jdir, state, device)
            except GroklabError:  # unreadable (cannot happen with atomic writes): start the job over
                state = init_state(eng, device, dtype)
        last = {"ckpt": time.monotonic(), "progress": 0.0}
        checkpoint_s = float(job["checkpoint_s"])
        steps = eng.cfg.train.steps
        an = _analyzer(job, eng, jdir, state.step)

        def eval_hook(st, m):
            if an is not None:
                an.on_eval(st, m)
            now = time.monotonic()
            if now - last["progress"] >= PROGRESS_EVERY_S or st.step >= steps:
                last["progress"] = now
                record.write_json(jdir / PROGRESS, {"job": job["id"], "step": st.step, "steps": steps,
                                                    "active": int(st.active.sum()), "members": eng.n_members,
                                                    "pid": os.getpid(), "host": socket.gethostname(), "updated": time.time()})
            if on_eval is not None:
                on_eval(job["id"], st, m)

        def ckpt_hook(st):
            now = time.monotonic()
            if st.step % ckpt_every == 0 or now - last["ckpt"] >= checkpoint_s:
                last["ckpt"] = now
                record.save_checkpoint(jdir, st, eng)
                if an is not None:  # the analysis so far, consistent with the checkpoint just saved
                    _save_analyzer(an, jdir / store_mod.ANALYSIS_STATE, st.step)

        try:
            state = train(eng, state, device=device, on_eval=eval_hook, on_checkpoint=ckpt_hook,
                          should_stop=lambda: _STOP["requested"])
        except StopRequested as stop:  # Ctrl-C / SIGTERM: the state is between two steps, a valid checkpoint
            record.save_checkpoint(jdir, stop.state, eng)
            if an is not None:
                _save_analyzer(an, jdir / store_mod.ANALYSIS_STATE, stop.state.step)
            raise KeyboardInterrupt from None
        summary = record.summarize(state, eng, record.run_status(state))
        rows = _dedupe_rows(state.rows)
        ids = job["members"]
        metrics = pa.table({"member_id": pa.array([ids[e] for e in rows["member"]], pa.string()),
                            "seed": pa.array(rows["seed"], pa.int64()), "step": pa.array(rows["step"], pa.int64()),
                            **{k: pa.array(rows[k], pa.float64()) for k in rows if k not in ("member", "seed", "step")}})
        res = {"summary": summary, "metrics": metrics, "n_pairs": eng.task.n_pairs, "finished": _now()}
        if an is not None:
            at = an.table()
            mids = pa.array([ids[e] for e in at.column("member").to_pylist()], pa.string())
            res["analysis"] = at.drop(["member"]).add_column(0, "member_id", mids)
        return res
    finally:
        torch.set_num_threads(old_threads)


def _analyzer(job: dict, eng, jdir: Path, step: int):
    """The live Li2 analysis of a job (execution.analysis), restored from jobs/<job>/ when the job
    resumes from a checkpoint (its rows up to that checkpoint), else new; None when off."""
    if not job.get("analysis"):
        return None
    import torch

    from groklab.analysis import Analyzer

    an = Analyzer(eng, int(job["analysis"]))
    p = jdir / store_mod.ANALYSIS_STATE
    if step > 0 and p.exists():
        saved = torch.load(p, weights_only=False)
        if saved["step"] == step:  # written right after the checkpoint it belongs to
            an.rows, an.spectra, an.done = saved["rows"], saved["spectra"], set(saved["done"])
            for k, v in saved["ref"].items():
                setattr(an.probe, k, v.to(getattr(an.probe, "device", v.device)))
            return an
    if step > 0:
        raise GroklabError(f"{jdir}: the checkpoint at step {step} has no matching {store_mod.ANALYSIS_STATE}; "
                           f"delete {jdir} to run the job again from the start")
    return an


def _save_analyzer(an, path: Path, step: int) -> None:
    """The analysis of a job up to `step` (its checkpoint's): rows, spectra, analysed steps, and
    the probe's reference weights (the relative changes are measured from the first analysis)."""
    import torch

    probe = an.probe
    ref = {k: getattr(probe, k).cpu() for k in ("w0", "v0") if getattr(probe, k, None) is not None}
    data = {"step": int(step), "rows": an.rows, "spectra": an.spectra, "done": sorted(an.done), "ref": ref}
    record.atomic_write(path, lambda tmp: torch.save(data, tmp))


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


def _pool_job(out: str, job: dict, flats: list[dict]) -> dict:
    if os.getppid() == 1:  # the driver is gone
        os._exit(1)
    return run_job(out, job, flats)


class LocalExecutor:
    """workers == 1: in this process, one job after another; else a pool of spawned processes."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = None

    def run(self, out: Path, jobs: list[dict], flats: dict[str, list[dict]], on_done, on_tick, on_eval):
        if self.workers == 1:
            for job in jobs:
                _check_stop()
                on_done(job, run_job(str(out), job, flats[job["id"]], on_eval=on_eval))
            return
        import multiprocessing as mp

        self.pool = mp.get_context("spawn").Pool(self.workers, initializer=_worker_init)
        try:
            pending = {job["id"]: (job, self.pool.apply_async(_pool_job, (str(out), job, flats[job["id"]]))) for job in jobs}
            while pending:
                _check_stop()
                for jid, (job, ar) in list(pending.items()):
                    if ar.ready():
                        del pending[jid]
                        on_done(job, ar.get())
                on_tick()
                time.sleep(0.2)
            self.pool.close()
        finally:
            self.pool.terminate()
            self.pool.join()


class RayExecutor:
    """Each job is a Ray task with num_cpus = threads. The workers need the sweep folder (for
    checkpoints) at the same path: a local Ray instance, or a cluster with a shared filesystem."""

    def __init__(self, address: str | None, workers: int | None, threads: int):
        try:
            import ray
        except ImportError:
            raise GroklabError("--executor ray needs Ray: pip install 'groklab[ray]' (or pip install ray)") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS")
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=(workers or os.cpu_count() or 1) * threads, **kw)
            self.started = True

    def run(self, out: Path, jobs: list[dict], flats: dict[str, list[dict]], on_done, on_tick, on_eval):
        ray = self.ray
        refs, tasks = {}, {}
        for job in jobs:
            threads = int(job["threads"])
            if threads not in tasks:
                tasks[threads] = ray.remote(num_cpus=threads, max_retries=0)(run_job)
            refs[tasks[threads].remote(str(out.resolve()), job, flats[job["id"]])] = job
        try:
            while refs:
                _check_stop()
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
                for r in ready:
                    on_done(refs.pop(r), ray.get(r))
                on_tick()
        finally:
            for r in refs:
                ray.cancel(r, force=True)
            if self.started:
                ray.shutdown()


# ---- the driver ------------------------------------------------------------------------------------------
def execute(sp: Spec, out: Path, *, executor: str = "local", workers: int | None = None, extend: bool = False,
            quiet: bool = True, ray_address: str | None = None, on_progress: Callable[[dict], None] | None = None,
            analyze: bool = True) -> SweepResult:
    from groklab.sweep.view import SweepProgress, say

    store = Store(out)
    t0 = time.perf_counter()
    if executor not in ("local", "ray"):
        raise GroklabError(f"--executor {executor!r}: expected local or ray")
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
        flats = {j["id"]: [plan["members"][m] for m in j["members"]] for j in todo}
        threads = max(int(j["threads"]) for j in todo)
        if executor == "ray":
            ex: Any = RayExecutor(ray_address, workers, threads)
            n_workers = workers or 0
        else:
            n_workers = workers or max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) // threads)
            n_workers = min(n_workers, len(todo))
            ex = LocalExecutor(n_workers)
        tracker = Tracker(store, plan, done, executor, n_workers, on_progress)
        ran = 0
        with SweepProgress(tracker, quiet=quiet) as view:
            if not quiet:
                n_left = sum(len(j["members"]) for j in todo)
                say(f"sweep {out}: {n_total - n_left} of {n_total} members done; running {n_left} in {len(todo)} jobs "
                    f"({executor}, {(str(n_workers) + (' workers' if n_workers > 1 else ' worker')) if n_workers else 'cluster'}, {threads} thread(s) each)")

            last_index = [time.monotonic()]

            def on_done(job, res):
                nonlocal ran
                ran += store.write_result(job, res)
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

            ex.run(out, todo, flats, on_done, on_tick, on_eval)
        store.build_index()
        tracker.write(final=True)
        return _finish(store, quiet, ran=ran, t0=t0, analyze=analyze)


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

    def poll_jobs(self) -> None:
        """Read jobs/*/progress.json (pool and Ray workers write them)."""
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
              analyze: bool = True) -> SweepResult:
    """Run every member of `spec` not yet done in `out` (default sweeps_out/<name>), then write
    index.parquet, fit.json and phase.png. Resumable: killed at any moment, the same call finishes
    it with each member exactly once. A different spec under an existing folder is an error
    unless extend=True (which adds the new members). analyze=False skips fit.json and phase.png.

    workers > 1 starts worker processes by `spawn`, which re-imports the calling script: call it
    under ``if __name__ == "__main__":`` there (the CLI does)."""
    sp = spec if isinstance(spec, Spec) else load_spec(spec)
    out = Path(out) if out is not None else Path("sweeps_out") / sp.name
    return execute(sp, out, executor=executor, workers=workers, extend=extend, quiet=quiet,
                              ray_address=ray_address, on_progress=on_progress, analyze=analyze)


def sweep_status(out: str | Path) -> dict:
    """done / running / left members and jobs, rate and ETA of a sweep folder (running or not)."""
    return store_mod.status(Path(out))


def load_results(out: str | Path) -> SweepResult:
    """Read a sweep folder (finished or not) without running anything."""
    return store_mod.load_results(Path(out))
