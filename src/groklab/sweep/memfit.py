"""Fitting a sweep into memory before it runs (issue 16; the estimate is train.memory's).

Three decisions, made by the driver before any job starts, each said in one line:

1. A member that cannot fit even alone (a job of one member above the limit) refuses the whole
   sweep with train.memory's one-line error, before the sweep folder is created.
2. A planned job whose ensemble does not fit is cut into near-equal jobs of fewer members (the
   most that fit); plan.json is rewritten with the new jobs. Each member's numbers do not depend
   on which job it trains in (members are independent), so the results are the same; only the
   packing is then machine-dependent.
3. Local workers run at once only as many as fit side by side: the largest job's estimate plus a
   worker process's own footprint (WORKER_BYTES), times workers, within the limit.

Ray workers are not checked here (each node has its own memory; Ray's memory monitor kills a task
that overflows, and the driver reports that job as failed, execute.py).
"""

from __future__ import annotations

import hashlib
import math
import shutil

import numpy as np

from groklab.train import memory

WORKER_BYTES = 400 << 20  # a spawned worker's interpreter with torch imported (measured ~300-350 MB RSS)


def device_of(members) -> str:
    dev = members[0].cfg.train.device if members else "cpu"
    if dev == "auto":
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"
    return dev


def _est(m, E: int, n: int) -> memory.Estimate:
    return memory.estimate(m.cfg, m.order, n, E, what=f"one job of {E} member{'s' if E > 1 else ''}")


def refuse_unfittable(members, limit: memory.Limit) -> None:
    """Raise train.memory's one-line error if some member cannot fit even in a job of its own."""
    seen = set()
    for m in members:
        key = (m.order, m.n_train, m.cfg.model, m.cfg.train.opt, m.cfg.train.dtype, m.cfg.train.batch_size,
               m.cfg.train.grokfast, m.cfg.train.grokfast_window, m.cfg.train.steps, m.cfg.train.eval_every)
        if key in seen:
            continue
        seen.add(key)
        est = _est(m, 1, m.n_train)
        if not memory.fits(est, limit):
            est = memory.Estimate(est.total, est.parts, est.drivers, f"sweep member {m.id} alone")
            memory.require(est, limit)


def job_estimate(job: dict, by_id: dict) -> memory.Estimate | None:
    ms = [by_id.get(mid) for mid in job["members"]]
    if any(m is None for m in ms):  # planned by an earlier spec (--extend): not checked
        return None
    return _est(ms[0], len(ms), max(m.n_train for m in ms))


def split_jobs(store, plan: dict, todo: list[dict], by_id: dict, limit: memory.Limit) -> tuple[list[dict], list[str]]:
    """Cut every job of `todo` that does not fit into jobs of as many members as fit (decision 2).
    Returns the new todo list and the notes to print; rewrites plan.json when anything changed."""
    from groklab.train import record

    out, notes, changed = [], [], False
    for job in todo:
        est = job_estimate(job, by_id)
        if est is None or memory.fits(est, limit):
            out.append(job)
            continue
        ms = [by_id[mid] for mid in job["members"]]
        n = max(m.n_train for m in ms)
        k = memory.max_members(ms[0].cfg, ms[0].order, n, limit, len(ms))
        if k == 0:  # refuse_unfittable ran first; only reachable for a shape it could not see
            memory.require(est, limit)
        parts = math.ceil(len(ms) / k)
        bounds = np.linspace(0, len(ms), parts + 1).round().astype(int)
        new = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            ids = list(job["members"][lo:hi])
            new.append({**job, "id": hashlib.sha256(",".join(ids).encode()).hexdigest()[:12], "members": ids,
                        "work": job["work"] * len(ids) / len(ms)})
        i = next(i for i, j in enumerate(plan["jobs"]) if j["id"] == job["id"])
        plan["jobs"][i:i + 1] = new
        shutil.rmtree(store.job_dir(job["id"]), ignore_errors=True)  # its checkpoint holds all E members
        changed = True
        out.extend(new)
        notes.append(f"memory: job {job['id']} ({len(ms)} members, about {memory.format_bytes(est.total)}) does not fit in "
                     f"{memory.format_bytes(limit.bytes)} ({limit.source}); split into {parts} jobs of at most {k} members")
    if changed:
        record.write_json(store.out / "plan.json", plan)
        store.plan = plan
    return out, notes


def workers_that_fit(todo: list[dict], by_id: dict, limit: memory.Limit, workers: int) -> tuple[int, str | None]:
    """How many local workers fit side by side (decision 3), and a note when that is fewer than asked."""
    if workers <= 1:
        return workers, None
    ests = [e.total for e in (job_estimate(j, by_id) for j in todo) if e is not None]
    if not ests:
        return workers, None
    each = max(ests) + WORKER_BYTES
    fit = max(1, min(workers, limit.bytes // each))
    if fit >= workers:
        return workers, None
    return fit, (f"memory: running {fit} worker{'s' if fit > 1 else ''} at once instead of {workers}: the largest job needs "
                 f"about {memory.format_bytes(each)} with its process, and {limit.source} is {memory.format_bytes(limit.bytes)}")


def members_by_id(sp) -> dict:
    return {m.id: m for m in sp.members}


__all__ = ["refuse_unfittable", "split_jobs", "workers_that_fit", "members_by_id", "device_of"]
