"""Running a sweep: the sweep folder, one job's training, the executors, progress and status.

The sweep folder (docs/formats.md) holds `plan.json` (every member's flat config and the jobs
they are packed into), and per job, once it is done, `metrics/<job>.parquet` then
`results/<job>.parquet` (one row per member), each written atomically: a job is done exactly
when its results file exists. `index.parquet` is rebuilt from the results files, so a kill at any
moment (SIGKILL included) loses at most the running jobs' work since their last checkpoint
(`jobs/<job>/checkpoint.pt`, bit-exact resume) and never writes a member twice.

Executors: `local` runs one job at a time in this process when workers == 1, else a pool of
`workers` spawned processes; `ray` submits the jobs as Ray tasks. Each job runs with
execution.threads torch threads on every executor, so they give the same numbers.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
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

from . import __version__, record
from .errors import GroklabError
from .sweep import FIELD_KINDS, Member, PlannedJob, Spec, SweepResult, plan_jobs

PLAN, INDEX, LOCK, PROGRESS, SPEC_FILE = "plan.json", "index.parquet", ".lock", "progress.json", "spec.yaml"
FORMAT_VERSION = 1
PROGRESS_EVERY_S = 2.0

# ---- the index schema ----------------------------------------------------------------------------
_ARROW = {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "bool": pa.bool_()}
RESULT_FIELDS: list[tuple[str, pa.DataType]] = [
    ("order", pa.int64()), ("sizing", pa.string()), ("train_frac", pa.float64()), ("critical_size", pa.float64()),
    ("status", pa.string()), ("final_train_acc", pa.float64()), ("final_test_acc", pa.float64()),
    ("final_train_loss", pa.float64()), ("final_test_loss", pa.float64()), ("step_memorized", pa.int64()),
    ("step_generalized", pa.int64()), ("last_step", pa.int64()), ("diverged_step", pa.int64()),
    ("wall_s", pa.float64()), ("job_members", pa.int64()), ("finished", pa.string())]


def index_schema() -> pa.Schema:
    cfg = [(k, _ARROW[FIELD_KINDS[k]]) for k in FIELD_KINDS]
    return pa.schema([("member_id", pa.string()), ("job", pa.string()), *cfg, *RESULT_FIELDS])


def metrics_schema() -> pa.Schema:
    from .engine import METRICS

    return pa.schema([("member_id", pa.string()), ("seed", pa.int64()), ("step", pa.int64()),
                      *[(k, pa.float64()) for k in METRICS]])


# ---- the sweep folder -----------------------------------------------------------------------------
class Store:
    """Files of one sweep folder. Only the process holding the lock (`locked`) writes."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.plan: dict | None = None

    @contextlib.contextmanager
    def locked(self):
        self.out.mkdir(parents=True, exist_ok=True)
        f = open(self.out / LOCK, "a+")
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GroklabError(f"--out {self.out}: another `groklab sweep` is running on this folder "
                                   f"(see `groklab sweep --status {self.out}`)") from None
            yield self
        finally:
            f.close()

    def is_running(self) -> bool:
        """Whether some process holds the folder's lock (a sweep driver is alive)."""
        if not (self.out / LOCK).exists():
            return False
        with open(self.out / LOCK, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
        return False

    # -- the plan --
    def read_plan(self) -> dict:
        if self.plan is None:
            p = self.out / PLAN
            if not p.exists():
                raise GroklabError(f"{self.out}: not a sweep folder (no {PLAN})")
            raw = record.read_json(p, str(self.out))
            if not isinstance(raw, dict) or raw.get("kind") != "groklab.sweep":
                raise GroklabError(f"{p}: not a groklab sweep plan")
            if raw.get("version") != FORMAT_VERSION:
                raise GroklabError(f"{p}: sweep format version {raw.get('version')!r} is not supported (this groklab reads {FORMAT_VERSION})")
            self.plan = raw
        return self.plan

    def prepare(self, sp: Spec, extend: bool) -> tuple[dict, int]:
        """Create the plan, or check the spec against the existing one (extend: add its new
        members as new jobs). Returns the plan and the number of members added."""
        import yaml

        if not (self.out / PLAN).exists():
            if any(p.name not in (LOCK,) for p in self.out.iterdir()):
                raise GroklabError(f"--out {self.out}: holds files but no sweep ({PLAN}); choose a new folder")
            plan = {"kind": "groklab.sweep", "version": FORMAT_VERSION, "groklab": __version__, "name": sp.name,
                    "created": _now(), "execution": sp.execution, "members": {}, "jobs": []}
            added = _add_members(plan, sp.members, sp.execution)
        else:
            plan = self.read_plan()
            planned = plan["members"]
            new = [m for m in sp.members if m.id not in planned]
            same = not new and len(planned) == len(sp.members) and plan["execution"] == sp.execution
            if not same and not extend:
                gone = len(set(planned) - {m.id for m in sp.members})
                what = []
                if new:
                    what.append(f"adds {len(new)} members")
                if gone:
                    what.append(f"lacks {gone} of its members")
                if plan["execution"] != sp.execution:
                    what.append("changes execution settings")
                raise GroklabError(f"--out {self.out}: holds a different sweep (this spec {' and '.join(what)}); "
                                   "use --extend to add the spec's new members to it, or choose another --out")
            added = _add_members(plan, new, sp.execution) if new else 0
            if not added:
                return plan, 0
        record.write_json(self.out / PLAN, plan)
        text = yaml.safe_dump(sp.raw, sort_keys=False)
        record.atomic_write(self.out / SPEC_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        self.plan = plan
        return plan, added

    # -- jobs and results --
    def done_jobs(self) -> set[str]:
        d = self.out / "results"
        return {p.stem for p in d.glob("*.parquet")} if d.is_dir() else set()

    def job_dir(self, jid: str) -> Path:
        return self.out / "jobs" / jid

    def write_result(self, job: dict, res: dict) -> int:
        """metrics/<job>.parquet, then results/<job>.parquet (the 'done' mark), then drop jobs/<job>/."""
        plan = self.read_plan()
        (self.out / "metrics").mkdir(exist_ok=True)
        (self.out / "results").mkdir(exist_ok=True)
        mt = res["metrics"].cast(metrics_schema())
        record.atomic_write(self.out / "metrics" / f"{job['id']}.parquet", lambda tmp: pq.write_table(mt, tmp))
        rows = []
        for mid, s in zip(job["members"], res["summary"]["members"]):
            flat = plan["members"][mid]
            sizing = next(k for k in ("n_train", "crit_mult", "frac") if flat.get(k) is not None)
            row = {"member_id": mid, "job": job["id"], **flat, "n_train": s["n_train"], "order": res["summary"]["order"],
                   "sizing": sizing, "train_frac": s["n_train"] / res["n_pairs"], "critical_size": res["summary"]["critical_size"],
                   "wall_s": res["summary"]["wall_s"], "job_members": len(job["members"]), "finished": res["finished"]}
            row.update({k: s[k] for k in ("status", "final_train_acc", "final_test_acc", "final_train_loss", "final_test_loss",
                                          "step_memorized", "step_generalized", "last_step", "diverged_step")})
            rows.append(row)
        table = pa.Table.from_pylist(rows, schema=index_schema())
        record.atomic_write(self.out / "results" / f"{job['id']}.parquet", lambda tmp: pq.write_table(table, tmp))
        self.drop_job_dirs({job["id"]})
        return len(rows)

    def drop_job_dirs(self, done: set[str]) -> None:
        """A kill right after a results file leaves that job's checkpoint folder: remove it."""
        import shutil

        for jid in done:
            if self.job_dir(jid).exists():
                shutil.rmtree(self.job_dir(jid), ignore_errors=True)

    def sync_index(self, done: set[str]) -> None:
        """Rebuild index.parquet if it does not hold exactly the finished jobs (a kill between a
        results file and the index); leave it (and its time stamp) alone otherwise."""
        p = self.out / INDEX
        if p.exists():
            try:
                have = set(pq.read_table(p, columns=["job"]).column("job").to_pylist())
            except (OSError, pa.ArrowInvalid):
                have = None
            if have == {j for j in done if any(j == job["id"] for job in self.read_plan()["jobs"])}:
                return
        self.build_index()

    def build_index(self) -> pa.Table:
        """index.parquet: every finished member once, in plan order."""
        plan = self.read_plan()
        order = {mid: i for i, mid in enumerate(plan["members"])}
        tables = [pq.read_table(self.out / "results" / f"{j}.parquet").cast(index_schema())
                  for j in sorted(self.done_jobs()) if any(j == job["id"] for job in plan["jobs"])]
        table = pa.concat_tables(tables) if tables else index_schema().empty_table()
        if table.num_rows:
            pos = np.argsort([order[m] for m in table.column("member_id").to_pylist()], kind="stable")
            table = table.take(pa.array(pos))
        record.atomic_write(self.out / INDEX, lambda tmp: pq.write_table(table, tmp))
        return table


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _add_members(plan: dict, members: list[Member], execution: dict) -> int:
    for m in members:
        plan["members"][m.id] = m.flat
    for j in plan_jobs(members, execution):
        plan["jobs"].append({"id": j.id, "members": list(j.members), "work": j.work, "steps": plan["members"][j.members[0]]["steps"],
                             "threads": execution["threads"], "checkpoint_s": execution["checkpoint_s"]})
    return len(members)


# ---- one job --------------------------------------------------------------------------------------------
def build_job(job: dict, flats: list[dict]):
    """The engine Job of a planned job: shared config, per-member seed, split, lr, wd."""
    import dataclasses

    from .config import RunConfig
    from .engine import Job
    from .models import build_model
    from .tasks import make_split, make_task

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

    from .engine import init_state, pick_device, train

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

        def eval_hook(st, m):
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

        holder = {}

        def eval_and_hold(st, m):
            holder["state"] = st
            eval_hook(st, m)

        try:
            state = train(eng, state, device=device, on_eval=eval_and_hold, on_checkpoint=ckpt_hook)
        except KeyboardInterrupt:
            if "state" in holder:  # between two steps: a valid checkpoint
                record.save_checkpoint(jdir, holder["state"], eng)
            raise
        summary = record.summarize(state, eng, record.run_status(state))
        rows = _dedupe_rows(state.rows)
        ids = job["members"]
        metrics = pa.table({"member_id": pa.array([ids[e] for e in rows["member"]], pa.string()),
                            "seed": pa.array(rows["seed"], pa.int64()), "step": pa.array(rows["step"], pa.int64()),
                            **{k: pa.array(rows[k], pa.float64()) for k in rows if k not in ("member", "seed", "step")}})
        return {"summary": summary, "metrics": metrics, "n_pairs": eng.task.n_pairs, "finished": _now()}
    finally:
        torch.set_num_threads(old_threads)


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
                on_done(job, run_job(str(out), job, flats[job["id"]], on_eval=on_eval))
            return
        import multiprocessing as mp

        self.pool = mp.get_context("spawn").Pool(self.workers, initializer=_worker_init)
        try:
            pending = {job["id"]: (job, self.pool.apply_async(_pool_job, (str(out), job, flats[job["id"]]))) for job in jobs}
            while pending:
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
        refs = {}
        for job in jobs:
            task = ray.remote(num_cpus=int(job["threads"]), max_retries=0)(run_job)
            refs[task.remote(str(out.resolve()), job, flats[job["id"]])] = job
        try:
            while refs:
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
    from .sweep_view import SweepProgress, say

    store = Store(out)
    t0 = time.perf_counter()
    if executor not in ("local", "ray"):
        raise GroklabError(f"--executor {executor!r}: expected local or ray")
    with store.locked(), _sigterm_as_interrupt():
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

            def on_done(job, res):
                nonlocal ran
                ran += store.write_result(job, res)
                store.build_index()
                tracker.job_done(job)
                view.refresh(force=True)

            def on_eval(jid, st, m):
                tracker.job_step(jid, st.step, st.active.sum())
                view.refresh()

            def on_tick():
                tracker.poll_jobs()
                view.refresh()

            ex.run(out, todo, flats, on_done, on_tick, on_eval)
        tracker.write(final=True)
        return _finish(store, quiet, ran=ran, t0=t0, analyze=analyze)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM is handled like Ctrl-C: the running job saves a checkpoint, then the sweep stops."""
    from .api import _sigterm_as_interrupt as sig

    with sig():
        yield


def _finish(store: Store, quiet: bool, *, ran: int, t0: float, analyze: bool = True, analyze_if_stale: bool = False) -> SweepResult:
    from .scaling import analyze as write_analysis, format_fit

    out = store.out
    index = pq.read_table(out / INDEX)
    fit = None
    png = out / "phase.png"
    stale = not (out / "fit.json").exists() or not png.exists() or (out / "fit.json").stat().st_mtime < (out / INDEX).stat().st_mtime
    if analyze and index.num_rows and (ran or stale or not analyze_if_stale):
        fit = write_analysis(index, out)
        if not quiet:
            from .sweep_view import say

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


# ---- status, results, plans ------------------------------------------------------------------------------------
def status(out: Path) -> dict:
    store = Store(out)
    plan = store.read_plan()
    jobs = {j["id"]: j for j in plan["jobs"]}
    done_jobs = store.done_jobs() & set(jobs)
    done = sum(len(jobs[j]["members"]) for j in done_jobs)
    alive = store.is_running()
    prog = None
    if (out / PROGRESS).exists():
        try:
            prog = json.loads((out / PROGRESS).read_text())
        except (OSError, ValueError):
            prog = None
    running_jobs = {}
    if alive and prog:
        running_jobs = {j: r for j, r in prog.get("running_jobs", {}).items() if j not in done_jobs}
    running = sum(len(jobs[j]["members"]) for j in running_jobs if j in jobs)
    total = len(plan["members"])
    partial = sorted(p.parent.name for p in (out / "jobs").glob(f"*/{record.CKPT}")) if (out / "jobs").is_dir() else []
    return {"dir": str(out), "name": plan.get("name"), "members": total, "done": done, "running": running,
            "left": total - done - running, "jobs": len(jobs), "jobs_done": len(done_jobs), "jobs_running": len(running_jobs),
            "checkpointed_jobs": len([j for j in partial if j not in done_jobs]), "driver_alive": alive,
            "members_per_min": prog.get("members_per_min") if alive and prog else None,
            "eta_s": prog.get("eta_s") if alive and prog else None,
            "updated": prog.get("updated") if prog else None, "complete": done == total}


def print_status(s: dict) -> None:
    from .sweep_view import status_text

    print(status_text(s))


def load_results(out: Path) -> SweepResult:
    store = Store(out)
    plan = store.read_plan()
    index = pq.read_table(out / INDEX) if (out / INDEX).exists() else index_schema().empty_table()
    fit = record.read_json(out / "fit.json", str(out)) if (out / "fit.json").exists() else None
    png = out / "phase.png"
    return SweepResult(out, index, fit, png if png.exists() else None, len(plan["members"]))


def print_plan(sp: Spec, out: Path) -> None:
    from .sweep_view import plan_text

    print(plan_text(sp, plan_jobs(sp.members, sp.execution), out))
