"""What `groklab sweep` shows: a Rich progress line (members done / left, members per minute,
ETA), the --status text and the --dry-run plan."""

from __future__ import annotations

import sys
import time
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def fmt_eta(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class SweepProgress:
    """A bar over members on a terminal; one plain line every 10 s when stderr is a file or pipe;
    nothing when quiet. Also writes progress.json (for --status) through the tracker."""

    def __init__(self, tracker, quiet: bool = False):
        self.tracker, self.quiet = tracker, quiet
        self.progress = None
        self._last_draw = 0.0
        self._last_line = time.perf_counter()

    def __enter__(self):
        if not self.quiet and console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]members {task.completed:>4.0f}/{task.total:.0f}"), BarColumn(),
                TextColumn("{task.fields[running]} running · {task.fields[rate]:.1f} members/min · ETA {task.fields[eta]}"),
                TimeElapsedColumn(), console=console)
            self.progress.__enter__()
            snap = self.tracker.snapshot()
            self.task = self.progress.add_task("sweep", total=snap["members"], completed=snap["done"], running=0, rate=0.0, eta="?")
        self.refresh(force=True)
        return self

    def refresh(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_draw < 0.5:
            return
        self._last_draw = now
        snap = self.tracker.write()
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.update(self.task, completed=snap["done"], running=snap["running"], rate=snap["members_per_min"],
                                 eta=fmt_eta(snap["eta_s"]))
        elif force or now - self._last_line > 10:
            self._last_line = now
            print(f"members {snap['done']}/{snap['members']}  running {snap['running']}  "
                  f"{snap['members_per_min']:.1f} members/min  ETA {fmt_eta(snap['eta_s'])}", file=sys.stderr)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False


def status_text(s: dict) -> str:
    lines = [f"sweep {s['dir']} ({s['name']}): {s['done']} done, {s['running']} running, {s['left']} left "
             f"of {s['members']} members ({s['jobs_done']}/{s['jobs']} jobs done)"]
    if s["complete"]:
        lines.append("complete")
    elif s["driver_alive"]:
        rate = s["members_per_min"]
        lines.append(f"running: {0.0 if rate is None else rate:.1f} members/min, ETA {fmt_eta(s['eta_s'])}")
    else:
        extra = f"; {s['checkpointed_jobs']} jobs will resume from checkpoints" if s["checkpointed_jobs"] else ""
        lines.append(f"not running{extra}: run the same `groklab sweep SPEC --out {s['dir']}` to finish it")
    return "\n".join(lines)


def plan_text(sp, jobs, out) -> str:
    sizes = Counter(len(j.members) for j in jobs)
    lines = [f"{sp.describe()} -> {len(jobs)} jobs in {out}",
             "members per job: " + ", ".join(f"{k} x{v}" for k, v in sorted(sizes.items()))]
    by_id = {m.id: m for m in sp.members}
    for j in jobs[:40]:
        ms = [by_id[i] for i in j.members]
        m0 = ms[0]
        lines.append(f"  job {j.id}: {m0.cfg.task.group}, width {m0.cfg.model.width}, {len(ms)} members, "
                     f"n_train {min(m.n_train for m in ms)}-{max(m.n_train for m in ms)}, {m0.cfg.train.steps} steps")
    if len(jobs) > 40:
        lines.append(f"  ... and {len(jobs) - 40} more")
    return "\n".join(lines)
