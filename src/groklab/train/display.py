"""What the CLI shows while and after training (Rich): a progress bar and a summary table."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from groklab.train.config import RunConfig

console = Console(stderr=True)


class RunProgress:
    """Progress: step, train/test accuracy (mean over members), steps per second. A Rich bar on a
    terminal; one plain line every 10 s when stderr is a file or pipe (logs); nothing with quiet."""

    def __init__(self, cfg: RunConfig, quiet: bool = False):
        self.total = cfg.train.steps
        self.quiet = quiet
        self.progress = None
        self._last_line = time.perf_counter()
        self._t0 = time.perf_counter()
        self._step0: int | None = None

    def __enter__(self):
        if not self.quiet and console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]step {task.completed:>6}/{task.total}"), BarColumn(),
                TextColumn("train {task.fields[train]:.3f}  test {task.fields[test]:.3f}  {task.fields[sps]:,.0f} steps/s"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console)
            self.progress.__enter__()
            self.task = self.progress.add_task("train", total=self.total, train=0.0, test=0.0, sps=0.0)
        return self

    def update(self, state, m) -> None:
        if self.quiet:
            return
        if self._step0 is None:
            self._step0, self._t0 = state.step, time.perf_counter()
        dt = time.perf_counter() - self._t0
        sps = (state.step - self._step0) / dt if dt > 0 else 0.0
        train, test = float(m["train_acc"].mean()), float(m["test_acc"].mean())
        if self.progress is not None:
            self.progress.update(self.task, completed=state.step, train=train, test=test, sps=sps)
        elif time.perf_counter() - self._last_line > 10:
            self._last_line = time.perf_counter()
            print(f"step {state.step}/{self.total}  train {train:.3f}  test {test:.3f}  {sps:,.0f} steps/s", file=sys.stderr)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False


def _fmt_step(s) -> str:
    return "never" if s is None else str(s)


def summary_table(title: str, summary: dict) -> Table:
    t = Table(title=title)
    for col in ("seed", "status", "train acc", "test acc", "memorized at", "generalized at"):
        t.add_column(col, justify="right")
    for m in summary["members"]:
        acc = (lambda v: "-" if v is None else f"{v:.3f}")
        t.add_row(str(m["seed"]), m["status"], acc(m["final_train_acc"]), acc(m["final_test_acc"]),
                  _fmt_step(m["step_memorized"]), _fmt_step(m["step_generalized"]))
    return t


def print_summary(result) -> None:
    s = result.summary
    out = Console()
    out.print(summary_table(f"{s['group']}: {s['n_train']} training pairs ({s['train_frac']:.1%}), "
                            f"{s['steps']} steps, {s['wall_s']:.1f} s", s))
    for m in s["members"]:
        if m["status"] == "diverged":
            out.print(f"[red]seed {m['seed']} diverged at step {m['diverged_step']}: non-finite loss "
                      f"(try a smaller --lr); its results are not reported[/red]")
    out.print(f"run folder: {result.dir}")
