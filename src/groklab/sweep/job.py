"""One sweep job: build its engine Job from the planned members (`build_job`), train it with
checkpoints and progress (`run_job`, in the driver, a pool worker or a Ray task), and the stop flag
a Ctrl-C or SIGTERM sets (`_graceful_stop`, `_check_stop`), which a running job reads at its next step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from groklab.errors import GroklabError
from groklab.sweep import store as store_mod
from groklab.sweep.store import PROGRESS, PROGRESS_EVERY_S, _now
from groklab.train import record

__all__ = ["build_job", "run_job"]


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


# ---- stopping -------------------------------------------------------------------------------------------
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
