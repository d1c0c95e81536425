"""`groklab landscape`: the Li2 one-unit energy landscape on training subsets as data grows — the two
peaks (generalizing vs memorizing maxima), their heights, their basins, and where they cross
(science.md §3–4; Li2 Thm 4–5). The math is theory.landscape; this module draws the training sets as
a run would (tasks.make_split with --crit-mult and the subset's seed), aggregates and writes files.

    res = landscape("Z23")                      # sizes 0.25–3 × n_c, 3 subsets, σ = x²
    res["crossing"]["bracket"]                  # [n_lo, n_hi] over all subsets
    report.landscape.write_landscape(res, "out/z23")   # landscape.json, maxima.parquet, PNG + HTML
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from groklab.errors import GroklabError, check
from groklab.science import VERSION

__all__ = ["DEFAULT_MULTS", "landscape", "parse_bracket"]

DEFAULT_MULTS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)


def parse_bracket(text: str | None) -> tuple[float, float] | None:
    """'198,248' (or '198:248') -> (198.0, 248.0); None passes through."""
    if text is None:
        return None
    parts = text.replace(":", ",").split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise GroklabError(f"--n-star {text!r}: must be two numbers of pairs LO,HI (the measured bracket)", "n_star") from None
    check(0 < lo <= hi, "n_star", text, "must satisfy 0 < LO ≤ HI")
    return lo, hi


def _bracket_over(per_subset: list[tuple[float | None, float | None]]) -> dict[str, Any]:
    """Union of per-subset brackets: lo = the smallest lo, hi = the largest hi (None = open end)."""
    los = [b[0] for b in per_subset]
    his = [b[1] for b in per_subset]
    lo = None if any(v is None for v in los) else min(los)
    hi = None if any(v is None for v in his) else max(his)
    return {"bracket": [lo, hi], "per_subset": [list(b) for b in per_subset]}


def _relation(x: list, star: tuple[float, float] | None) -> str | None:
    """Where the landscape's crossing bracket x sits against the measured n* bracket: "before" (it ends
    at or below n*'s low end), "after" (it starts at or above n*'s high end) or "overlaps"."""
    if star is None or x[0] is None and x[1] is None:
        return None
    lo, hi = (x[0] if x[0] is not None else -math.inf), (x[1] if x[1] is not None else math.inf)
    if hi <= star[0]:
        return "before"
    if lo >= star[1]:
        return "after"
    return "overlaps"


def landscape(group: str, *, mults: Sequence[float] | None = None, subsets: int = 3, act: str = "sqr",
              n_random: int = 48, per_block: int = 2, n_memo: int = 8, steps: int = 800, seed: int = 0,
              n_star: tuple[float, float] | None = None) -> dict[str, Any]:
    """The landscape of `group` at training sizes mults × n_c (Li2 critical size), `subsets` random
    training sets per size (seeds 0..subsets−1, drawn as `groklab run --crit-mult C --seed s` draws
    them). Returns plain data: config, one row per start ("rows", columns), per-size summaries
    (mean / min / max over subsets), the crossing brackets and the comparison with n_c and n*."""
    from groklab.tasks import critical_size, make_split, make_task
    from groklab.theory.landscape import KINDS, crossing_bracket, find_maxima
    from groklab.theory.li2 import ACTIVATIONS, max_energy

    check(act in ACTIVATIONS, "act", act, "expected one of " + ", ".join(ACTIVATIONS))
    check(isinstance(subsets, int) and subsets >= 1, "subsets", subsets, "must be a whole number ≥ 1")
    check(isinstance(steps, int) and steps >= 1, "steps", steps, "must be a whole number ≥ 1")
    task = make_task(group)
    if not task.is_group:
        raise GroklabError(f"--group {group!r}: not a group (the irrep features are defined for groups)", "group")
    M, P = task.order, task.n_pairs
    n_c = critical_size(task)
    mults = tuple(DEFAULT_MULTS if mults is None else mults)
    for m in mults:
        check(isinstance(m, (int, float)) and m > 0, "sizes", m, "must be positive multiples of n_c")
    keep = sorted({float(m) for m in mults if round(m * n_c) < P})
    if not keep:
        raise GroklabError(f"--sizes {','.join(map(str, mults))}: every size is ≥ all {P} pairs of {task.name} "
                           f"(n_c = {n_c:.0f}); give multiples below {P / n_c:.3g}", "sizes")
    dropped = [float(m) for m in mults if round(m * n_c) >= P]

    t0 = time.perf_counter()
    rows: dict[str, list] = {k: [] for k in ("mult", "n", "subset", "start", "start_block", "E", "residual",
                                             "kind", "block", "block_name", "purity", "ipr_a", "ipr_b", "n_eff",
                                             "focused")}
    per: list[dict[str, Any]] = []  # one per (size, subset)
    for m in keep:
        for s in range(subsets):
            idx = make_split(task, s, crit_mult=m)
            r = find_maxima(task.table, idx, act=act, n_random=n_random, per_block=per_block, n_memo=n_memo,
                            steps=steps, seed=seed * 1_000_003 + s)
            K = len(r.E)
            rows["mult"] += [m] * K
            rows["n"] += [int(idx.size)] * K
            rows["subset"] += [s] * K
            rows["start"] += r.start.tolist()
            rows["start_block"] += r.start_block.tolist()
            rows["E"] += r.E.tolist()
            rows["residual"] += r.residual.tolist()
            rows["kind"] += r.kind.tolist()
            rows["block"] += r.block.tolist()
            rows["block_name"] += [r.names[b] if b >= 0 else None for b in r.block]
            rows["purity"] += r.purity.tolist()
            rows["ipr_a"] += r.ipr[:, 0].tolist()
            rows["ipr_b"] += r.ipr[:, 1].tolist()
            rows["n_eff"] += r.n_eff.tolist()
            rows["focused"] += r.focused.tolist()
            per.append({"mult": m, "n": int(idx.size), "subset": s, "steps": r.steps,
                        **r.summary(even=(act == "sqr"))})

    sizes = []
    for m in keep:
        group_rows = [p for p in per if p["mult"] == m]
        agg: dict[str, Any] = {"mult": m, "n": group_rows[0]["n"], "n_over_nc": group_rows[0]["n"] / n_c}
        for k in KINDS:
            for col in (f"E_max_{k}", f"n_distinct_{k}", f"share_{k}"):
                vals = np.array([np.nan if p[col] is None else p[col] for p in group_rows], dtype=float)
                fin = vals[np.isfinite(vals)]
                agg[col] = {"mean": float(fin.mean()) if fin.size else None,
                            "min": float(fin.min()) if fin.size else None,
                            "max": float(fin.max()) if fin.size else None, "found_in": int(fin.size)}
        agg["unconverged"] = int(sum(p["unconverged"] for p in group_rows))
        sizes.append(agg)

    ns = [float(a["n"]) for a in sizes]
    x_per, xall_per, vanish_per, basin_per = [], [], [], []
    for s in range(subsets):
        ps = [next(p for p in per if p["mult"] == m and p["subset"] == s) for m in keep]
        nan = float("nan")
        eg = [nan if p["E_max_generalizing"] is None else p["E_max_generalizing"] for p in ps]
        em = [nan if p["E_max_memorizing"] is None else p["E_max_memorizing"] for p in ps]
        x_per.append(crossing_bracket(ns, eg, em))
        # the stricter reading: the generalization peak is the highest of all (mixed maxima included)
        emx = [nan if p["E_max_mixed"] is None else p["E_max_mixed"] for p in ps]
        xall_per.append(crossing_bracket(ns, eg, np.fmax(em, emx)))
        # memorization peaks vanish: no memorizing maximum from any start (E_mem = NaN) from here on
        vanish_per.append(crossing_bracket(ns, [1.0] * len(ps), [nan if math.isnan(e) else 2.0 for e in em]))
        # the basins: the share of random starts ending generalizing passes 1/2
        basin_per.append(crossing_bracket(ns, [p["share_generalizing"] for p in ps], [0.5] * len(ps)))
    crossing = _bracket_over(x_per)
    crossing["bracket_over_nc"] = [None if v is None else v / n_c for v in crossing["bracket"]]
    crossing_all = _bracket_over(xall_per)
    crossing_all["bracket_over_nc"] = [None if v is None else v / n_c for v in crossing_all["bracket"]]
    vanish = _bracket_over(vanish_per)
    basin = _bracket_over(basin_per)

    full_E = max(max_energy(task.table).values()) if act == "sqr" else None
    return {
        "kind": "groklab.landscape", "version": 1, "groklab": VERSION, "group": task.name, "order": M,
        "n_pairs": P, "act": act, "n_c": n_c,
        "config": {"mults": list(keep), "dropped_mults": dropped, "subsets": subsets, "n_random": n_random,
                   "per_block": per_block, "n_memo": n_memo, "steps": steps, "seed": seed},
        "energy_star_full_data": full_E,
        "sizes": sizes, "per_subset": per,
        "crossing": crossing, "crossing_highest": crossing_all, "memorization_vanishes": vanish,
        "basin_crossing": basin,
        "n_star": None if n_star is None else list(n_star),
        "crossing_vs_n_star": _relation(crossing["bracket"], n_star),
        "crossing_highest_vs_n_star": _relation(crossing_all["bracket"], n_star),
        "wall_s": time.perf_counter() - t0,
        "rows": rows,
    }
