"""The sweep folder (docs/formats.md): plan, per-job results and metrics, the index, status.

`plan.json` holds every member's flat config and the jobs they are packed into. Per job, once it
is done, `metrics/<job>.parquet` then `results/<job>.parquet` (one row per member) are written,
each atomically: a job is done exactly when its results file exists. `index.parquet` is rebuilt
from the results files, so a kill at any moment (SIGKILL included) never writes a member twice
and loses at most the running jobs' work since their last checkpoint (`jobs/<job>/`).
Only the process holding the folder's lock (`Store.locked`) writes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groklab.errors import GroklabError
from groklab.science import VERSION as __version__
from groklab.sweep.spec import EXECUTION_DEFAULTS, FIELD_KINDS, Member, Spec, SweepResult, plan_jobs
from groklab.train import record

PLAN, INDEX, LOCK, PROGRESS, SPEC_FILE = "plan.json", "index.parquet", ".lock", "progress.json", "spec.yaml"
ANALYSIS_DIR, ANALYSIS_STATE = "analysis", "analysis_state.pt"  # analysis/<job>.parquet; jobs/<job>/analysis_state.pt
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
    from groklab.train.engine import METRICS

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
        if self.out.exists() and not (self.out / PLAN).exists():
            if not self.out.is_dir() or any(p.name != LOCK for p in self.out.iterdir()):
                raise GroklabError(f"--out {self.out}: exists and holds no sweep ({PLAN}); choose a new folder")
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
            plan = {"kind": "groklab.sweep", "version": FORMAT_VERSION, "groklab": __version__, "name": sp.name,
                    "created": _now(), "execution": sp.execution, "spec_members": [m.id for m in sp.members],
                    "members": {}, "jobs": []}
            added = _add_members(plan, sp.members, sp.execution)
        else:
            # The same spec = the same members and execution settings as the folder's latest spec
            # (the plan itself is the union of every spec run there with --extend).
            plan = self.read_plan()
            planned = plan["members"]
            new = [m for m in sp.members if m.id not in planned]
            ids = {m.id for m in sp.members}
            # folders planned before an execution setting existed hold its default
            plan["execution"] = {**EXECUTION_DEFAULTS, **plan["execution"]}
            same = ids == set(plan["spec_members"]) and plan["execution"] == sp.execution
            if same:
                return plan, 0
            if not extend:
                gone = len(set(plan["spec_members"]) - ids)
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
            plan["spec_members"] = [m.id for m in sp.members]
            plan["execution"] = sp.execution
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
        if res.get("analysis") is not None:  # before the results file: a done job has its analysis
            (self.out / ANALYSIS_DIR).mkdir(exist_ok=True)
            at = res["analysis"]
            record.atomic_write(self.out / ANALYSIS_DIR / f"{job['id']}.parquet", lambda tmp: pq.write_table(at, tmp))
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
                             "threads": execution["threads"], "checkpoint_s": execution["checkpoint_s"],
                             "analysis": execution.get("analysis")})
    return len(members)


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


def load_results(out: Path) -> SweepResult:
    store = Store(out)
    plan = store.read_plan()
    index = pq.read_table(out / INDEX) if (out / INDEX).exists() else index_schema().empty_table()
    fit = record.read_json(out / "fit.json", str(out)) if (out / "fit.json").exists() else None
    png = out / "phase.png"
    return SweepResult(out, index, fit, png if png.exists() else None, len(plan["members"]))


def load_analysis(out: Path) -> pa.Table:
    """Every done job's analysis/<job>.parquet as one table (member_id, seed, step, the measures of
    analysis.parquet, spectrum_<block>); GroklabError when the sweep ran without execution.analysis."""
    out = Path(out)
    files = sorted((out / ANALYSIS_DIR).glob("*.parquet")) if (out / ANALYSIS_DIR).is_dir() else []
    if not files:
        raise GroklabError(f"{out}: no {ANALYSIS_DIR}/ files; run the sweep with `execution: {{analysis: STEPS}}` in its spec")
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables, promote_options="default")
