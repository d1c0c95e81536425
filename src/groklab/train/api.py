"""The Python API: `run(cfg)` and `resume(dir)` train and write a run folder; the CLI is a thin shell
around them. Everything the CLI prints, these return as data (`Run`).

    >>> from groklab import RunConfig, run
    >>> r = run(RunConfig.from_flat({"group": "Z11", "frac": 0.5, "steps": 20, "width": 32}), out=None)
    >>> r.summary["status"], len(r.summary["members"])
    ('complete', 1)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import signal
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import torch

from groklab.errors import GroklabError
from groklab.models import build_model
from groklab.tasks import make_task
from groklab.train import record
from groklab.train.config import RunConfig
from groklab.train.engine import (
    Job,
    State,
    StopRequested,
    init_state,
    make_job,
    pick_device,
    train,
)


class Interrupted(Exception):
    """Raised after a run was interrupted (Ctrl-C / SIGTERM) and its checkpoint saved."""

    def __init__(self, run_dir: Path, step: int):
        super().__init__(f"interrupted at step {step}; resume with: groklab run --resume {run_dir}")
        self.run_dir, self.step = run_dir, step


@dataclass
class Run:
    """A finished (or diverged) run: its folder, summary.json as a dict, and metrics as a table."""

    dir: Path
    summary: dict
    metrics: pa.Table
    config: RunConfig

    def metrics_df(self):
        return self.metrics.to_pandas()


def default_out(cfg: RunConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in cfg.task.group)[:40]
    return Path("runs") / f"{safe}-{stamp}"


def prepare(cfg: RunConfig) -> Job:
    """Build the task, the splits and the --init tensors: every check that can fail on user input,
    before anything is written."""
    task = make_task(cfg.task.group)
    job = make_job(cfg, task)
    if cfg.model.init is not None:
        probe = build_model(dataclasses.replace(cfg.model, init=None), task.order, [0])
        job.init = record.load_init(cfg.model.init, probe, job.n_members)
    return job


@contextmanager
def _graceful_signals():
    """Ctrl-C or SIGTERM (a scheduler's kill) asks the run to stop at the next step boundary, where
    the state is consistent and the checkpoint resumes bit-exactly; a second one stops at once
    (the last periodic checkpoint stands). Yields the poll that train() calls between steps."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: flag["stop"]
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _drive(run_dir: Path, job: Job, state: State | None, device, on_eval, keep_checkpoint: bool) -> Run:
    try:
        with _graceful_signals() as should_stop:
            state = train(job, state, device=device, on_eval=on_eval, should_stop=should_stop,
                          on_checkpoint=lambda st: record.save_checkpoint(run_dir, st, job))
    except StopRequested as stop:  # between two steps: save exactly this state
        record.mark_interrupted(run_dir, stop.state, job)
        raise Interrupted(run_dir, stop.state.step) from None
    except KeyboardInterrupt:  # second Ctrl-C, or raised inside a hook: mid-step, keep the last checkpoint
        raise Interrupted(run_dir, record.checkpoint_step(run_dir)) from None
    except record.WriteError as e:  # disk full mid-run: every file is still its last complete version
        raise _stopped(run_dir, e) from None
    try:
        summary = record.finish_run(run_dir, state, job, keep_checkpoint=keep_checkpoint)
    except record.WriteError as e:  # the marker and the checkpoint go last, so the folder still resumes
        raise _stopped(run_dir, e) from None
    return Run(run_dir, summary, record.metrics_table(state.rows), job.cfg)


def _stopped(run_dir: Path, e: record.WriteError) -> GroklabError:
    step = record.checkpoint_step(run_dir)
    where = f"the last good checkpoint (step {step})" if step else "the start"
    return GroklabError(f"run stopped: {e}; once there is space again, `groklab run --resume {run_dir}` "
                        f"continues from {where}")


def _check_memory(job: Job, device, what: str) -> None:
    """Refuse (one line, nothing written) a run that cannot fit; say so when a smaller evaluation block fits."""
    import sys

    from groklab.train import memory

    note = memory.check_job(job, device, what=what)
    if note:
        print(f"groklab: {note}", file=sys.stderr)


def run(cfg: RunConfig, out: str | Path | None = "auto", *, argv: list[str] | None = None,
        on_eval: Callable[[State, dict], None] | None = None, keep_checkpoint: bool = False) -> Run:
    """Train `cfg` and write its run folder to `out` ("auto": runs/<group>-<time>; None: a
    temporary folder, for quick experiments and doctests). Raises GroklabError on bad input
    (nothing written), Interrupted on Ctrl-C/SIGTERM (checkpoint written, resumable)."""
    job = prepare(cfg)
    device = pick_device(cfg.train.device)
    _check_memory(job, device, "this run")
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="groklab-run-"))
    elif out == "auto":
        out = default_out(cfg)
    out = Path(out)
    record.check_out_dir(out)
    record.create_run(out, cfg, job.task, job.seeds, job.train_idx, argv)
    return _drive(out, job, None, device, on_eval, keep_checkpoint)


def resume(run_dir: str | Path, *, on_eval: Callable[[State, dict], None] | None = None,
           keep_checkpoint: bool = False) -> Run:
    """Continue an interrupted or killed run from its last checkpoint (or from the start if it had
    none); the result is bit-identical to an uninterrupted run of the same config."""
    run_dir = Path(run_dir)
    cfg, _ = record.load_config(run_dir)
    if not (run_dir / record.MARKER).exists():
        raise GroklabError(f"--resume {run_dir}: this run is already complete (no {record.MARKER} marker); nothing to resume")
    job = prepare(cfg)
    seeds, splits = record.load_split(run_dir)
    if seeds != job.seeds:
        raise GroklabError(f"--resume {run_dir}: split.npz seeds {seeds} do not match config seeds {job.seeds}")
    job.train_idx = splits  # replay the saved split exactly
    device = pick_device(cfg.train.device)
    _check_memory(job, device, "this run")
    dtype = torch.float64 if cfg.train.dtype == "float64" else torch.float32
    state = init_state(job, device, dtype)
    if (run_dir / record.CKPT).exists():
        record.load_checkpoint(run_dir, state, device)
    return _drive(run_dir, job, state, device, on_eval, keep_checkpoint)


def load_run(run_dir: str | Path) -> Run:
    """Read a finished run folder."""
    run_dir = Path(run_dir)
    cfg, _ = record.load_config(run_dir)
    summary = record.read_json(run_dir / record.SUMMARY, str(run_dir))
    return Run(run_dir, summary, record.load_metrics(run_dir), cfg)
