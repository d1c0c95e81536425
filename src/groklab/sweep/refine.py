"""The critical training size n* per group, located to a stated resolution by adaptive rounds of a
sweep (a spec's `refine:` section; science.md §4).

    groklab sweep sweeps/li2_fig5.yaml --out sweeps_out/li2_fig5     # grid = round 0, then refines

Round 0 is the spec's grid/runs. After each round, `scaling.critical_points` gives every group's
bracket [n_lo, n_hi]: n_hi = the smallest training size at which at least half the seeds reach
test accuracy 0.99, n_lo = the largest tested size below it (which does not). The next round adds,
for each group whose bracket is wider than the tolerance (n_hi > (1 + tol)·n_lo), `points` sizes
evenly spaced in log n strictly inside it (1 = bisection), each with every seed; all of a round's
members are one `execute` call, so they are packed into ensemble jobs and run on the sweep's
workers like any sweep. A group whose sizes all fail (all generalize) is expanded by `expand`.

State: `refine.json` in the sweep folder lists each round's sizes and is written before the round
runs, so a killed refinement resumes like a sweep: the same command re-runs the folder's last
round (finished jobs are skipped, a running job resumes from its checkpoint) and then goes on; the
next sizes depend only on finished results, so the rounds are the same as without the kill.

Python: `run_refine(spec, out)` -> `SweepResult` (fit.json's points carry the refined brackets).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from groklab.errors import GroklabError
from groklab.sweep.spec import RefineConfig, Spec, SweepResult, load_spec
from groklab.train import record

__all__ = ["run_refine", "next_sizes", "converged", "REFINE_FILE"]

REFINE_FILE = "refine.json"


def converged(lo: float | None, hi: float | None, tolerance: float) -> bool:
    """Whether a bracket is as fine as asked (or cannot get finer: adjacent integers)."""
    return lo is not None and hi is not None and (hi <= (1.0 + tolerance) * lo or hi - lo <= 1)


def next_sizes(point: dict, rc: RefineConfig, n_max: int) -> list[int]:
    """The training sizes to try next for one group, from its critical point (critical_points):
    `points` sizes evenly spaced in log n strictly inside [n_lo, n_hi]; below n_hi / expand when
    every size generalizes; above n_lo · expand (at most n_max) when none does; [] when done."""
    lo, hi = point["bracket"] or (None, None)
    if point["censored"] == "below":
        return [] if hi <= 1 else [max(1, int(math.floor(hi / rc.expand)))]
    if point["censored"] == "above":
        return [] if lo >= n_max else [min(n_max, int(math.ceil(lo * rc.expand)))]
    if converged(lo, hi, rc.tolerance):
        return []
    k = rc.points
    sizes = {int(round(math.exp(math.log(lo) + j / (k + 1) * (math.log(hi) - math.log(lo))))) for j in range(1, k + 1)}
    return sorted(n for n in sizes if lo < n < hi)


def _read_state(out: Path) -> dict:
    p = out / REFINE_FILE
    if not p.exists():
        return {"kind": "groklab.refine", "version": 1, "rounds": []}
    st = record.read_json(p, str(out))
    if not isinstance(st, dict) or st.get("kind") != "groklab.refine":
        raise GroklabError(f"{p}: not a groklab refinement state")
    return st


def _round_spec(sp: Spec, rounds: list[dict], seeds: tuple[int, ...]) -> Spec:
    """The spec plus one member per (group, size, seed) of every refinement round so far."""
    raw = dict(sp.raw)
    runs = list(raw.get("runs") or [])
    for r in rounds:
        for g, sizes in r["sizes"].items():
            runs += [{"group": g, "n_train": n, "frac": None, "crit_mult": None, "seed": s} for n in sizes for s in seeds]
    raw["runs"] = runs
    return load_spec(raw, source=sp.source)


def _status_points(index, rc: RefineConfig, groups: list[str]) -> dict[str, dict]:
    from groklab.sweep.scaling import critical_points

    pts = {p["group"]: p for p in critical_points(index)} if index.num_rows else {}
    return {g: pts[g] for g in groups if g in pts}


def run_refine(spec: str | Path | dict | Spec, out: str | Path | None = None, *, executor: str = "local",
               workers: int | None = None, quiet: bool = True, ray_address: str | None = None,
               on_round: Callable[[int, dict], None] | None = None) -> SweepResult:
    """Run the spec's grid (round 0), then refinement rounds until every group's bracket is
    within the tolerance or max_rounds; write index.parquet, fit.json, phase.png and refine.json.
    `on_round(r, sizes)` is called before round r >= 1 runs (tests stop a refinement there)."""
    from groklab.sweep.execute import execute
    from groklab.sweep.view import say
    from groklab.tasks import make_task, split_size

    sp = spec if isinstance(spec, Spec) else load_spec(spec)
    if sp.refine is None:
        raise GroklabError(f"{sp.source}: has no refine: section (e.g. refine: {{tolerance: 0.05}})")
    rc = sp.refine
    out = Path(out) if out is not None else Path("sweeps_out") / sp.name
    seeds = rc.seeds or tuple(sorted({m.seed for m in sp.members}))
    groups = list(rc.groups or dict.fromkeys(m.flat["group"] for m in sp.members))
    tasks = {g: make_task(g) for g in groups}
    t0 = time.perf_counter()
    state = _read_state(out)
    state.update(tolerance=rc.tolerance, points=rc.points, seeds=list(seeds), groups=groups)
    rounds: list[dict] = state["rounds"]
    start_missing = True
    while True:
        res = execute(_round_spec(sp, rounds, seeds), out, executor=executor, workers=workers, extend=True,
                      quiet=quiet, ray_address=ray_address, analyze=False)
        pts = _status_points(res.index, rc, groups)
        sizes: dict[str, list[int]] = {}
        for g in groups:
            task = tasks[g]
            if g not in pts:  # no member of this group yet: the start sizes
                if start_missing:
                    sizes[g] = sorted({split_size(task, crit_mult=m) for m in rc.start})
                continue
            new = next_sizes(pts[g], rc, task.n_pairs - 1)
            if new:
                sizes[g] = new
        start_missing = False
        state["brackets"] = {g: {"bracket": p["bracket"], "censored": p["censored"], "n_crit": p["n_crit"],
                                 "converged": converged(*(p["bracket"] or (None, None)), rc.tolerance),
                                 "sizes": p["sizes"], "p_generalized": p["p_generalized"], "monotone": p.get("monotone")}
                             for g, p in pts.items()}
        if not sizes or len(rounds) >= rc.max_rounds:
            state["finished"] = not sizes
            record.write_json(out / REFINE_FILE, state)
            break
        if on_round is not None:
            on_round(len(rounds) + 1, sizes)
        rounds.append({"round": len(rounds) + 1, "sizes": sizes, "started": record_now()})
        state["finished"] = False
        record.write_json(out / REFINE_FILE, state)  # before the round runs: a kill resumes this round
        if not quiet:
            say(f"refine round {len(rounds)}: " + "; ".join(f"{g} n = {', '.join(map(str, s))}" for g, s in sizes.items()))
    res = execute(_round_spec(sp, rounds, seeds), out, executor=executor, workers=workers, extend=True, quiet=quiet,
                  ray_address=ray_address, analyze=True)
    res.wall_s = time.perf_counter() - t0
    if not quiet:
        say(format_brackets(state))
    return res


def record_now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def format_brackets(state: dict) -> str:
    """One line per group: its bracket, relative width and whether it meets the tolerance."""
    lines = [f"refined critical sizes (tolerance {state['tolerance']:.0%}, {len(state['rounds'])} rounds, seeds {state['seeds']}):"]
    for g, b in (state.get("brackets") or {}).items():
        lo, hi = b["bracket"] or (None, None)
        width = f"{hi / lo - 1:.1%}" if lo and hi else "open"
        flag = "ok" if b["converged"] else ("censored " + b["censored"] if b["censored"] else "not yet within tolerance")
        mono = "" if b.get("monotone", True) else "  (a larger size failed: not monotone)"
        lines.append(f"  {g:>8}: n* in [{'' if lo is None else f'{lo:g}'}, {'' if hi is None else f'{hi:g}'}]  width {width}  {flag}{mono}")
    return "\n".join(lines)
