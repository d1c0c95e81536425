"""Stage detection and the features verdict: what the hidden units climbed to, and when the lazy,
independent and interactive stages of Li2 (§4–5.3; science.md §3) begin and end in a run.

Everything is dated from Li2's own quantities, measured at every analysed step (analysis.parquet,
measures.py), per member:

- E(t) = ``energy_weighted``: the Li2 energy E(ŵ) = ½‖Ỹᵀσ(Xŵ)‖² of each unit direction on the
  training pairs, ‖w‖²-weighted over units. Stage II is gradient ascent on E (Li2 Thm 1).
- T(t) = ``energy_transfer`` = (E on all pairs / P²) / (E on the training pairs / n²): whether the
  maxima the units climb are maxima of the population energy (generalizing, Thm 2/4) or of the
  training pairs only (memorization maxima, Thm 5). T falls when units fit training pairs.
- p(t) = ``purity_weighted`` and c(t) = ``irreps_covered``: how much of ‖W‖² sits in a unit's own
  irrep, and how many distinct irreps are held by pure units (purity ≥ 0.9, both operands).
- Δw(t) = ``w_rel_change`` = ‖W(t) − W(0)‖/‖W(0)‖.

The rule (thresholds below; docs/formats.md explains them):

1. features = "none" when the units did not move (Δw at the end < MOVED) or did not climb E
   (E_end < CLIMB · E_0). Stages: lazy over the whole run.
2. E must climb coherently: the sum of E's falls between analysed steps ≤ COHERENT × the sum of
   its rises, and there must be ≥ MIN_STEPS analysed steps. Otherwise the detector declines
   (features "undetermined", no stages): a real climb of E is near-monotone, noise is not.
3. features = "generalizing" when irrep-pure units hold the end state: c_end ≥ 1 and c stays ≥ 1
   from its first non-zero step on, purity lift (p_end − p_0)/(1 − p_0) ≥ PURITY_LIFT, and the
   climb transferred (T_end ≥ T_0). "memorizing" when the climb did not transfer
   (T_end ≤ MEM_TRANSFER · T_0) and no irrep is held (c_end = 0, or no irreps: not a group).
   Anything else: "undetermined" (e.g. semi-grokking with few irreps and falling T), no stages.
4. Stages. t₁ (lazy → independent) = the first time E has made ONSET of its climb,
   E(t) ≥ E_0 + ONSET·(E_max − E_0), interpolated between analysed steps: before it the top layer
   fits the (still random) features and G_F builds up (Li2 §4); after it the units climb E.
   For "generalizing", t₂ (independent → interactive) = the first analysed step at which a unit
   holds an irrep (c ≥ 1): from then on the learned set S is non-empty and G_F's pull points at
   the missing irreps (Li2 §5.3, Thm 7), which get filled. "memorizing": lazy, then independent
   to the end (the units climb memorization maxima; there are no irreps to fill, so no
   interactive stage is identified).

Measured (scripts/stage_controls.py, seeds 0-2, K = 128; tests/analysis/test_stages.py): Z23 and Z47
at 2× n_c → generalizing (T_end/T_0 1.28–2.44; 10–11 of 11, 23 of 23 irreps held); Z23 at 0.4× n_c → memorizing
(T falls to 0.34–0.36 of its start, no irrep); lr 1e-9 → none; random series declined in 99–100%.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CLIMB", "COHERENT", "FEATURES", "MEM_TRANSFER", "MIN_STEPS", "MOVED", "ONSET", "PURITY_LIFT",
           "STAGES", "STAGE_COLUMNS", "STAGE_RULE", "crossing", "detect_stages", "member_stages"]

STAGES = ("lazy", "independent", "interactive")
FEATURES = ("generalizing", "memorizing", "none", "undetermined")
STAGE_COLUMNS = ("w_rel_change", "energy_weighted", "energy_transfer", "purity_weighted", "irreps_covered")

# Thresholds (groklab's choices; the measured values they separate are in docs/formats.md).
MOVED = 0.05  # Δw at the end below this: the units did not move (lr 1e-9: 1e-6; any learning run: > 0.5)
CLIMB = 1.2  # E_end / E_0 below this: the units did not climb E (climbing runs: 1.3 (SiLU) to 7)
COHERENT = 0.25  # Σ falls / Σ rises of E(t) above this: not a climb (runs: < 0.05; iid noise: ~1)
MIN_STEPS = 4  # fewer analysed steps than this: nothing to date
ONSET = 0.1  # share of E's climb that ends the lazy stage
PURITY_LIFT = 0.2  # (p_end − p_0)/(1 − p_0) at least this for "generalizing" (grokked: 0.7–0.9; memorizing: ≈ 0)
MEM_TRANSFER = 0.7  # T_end / T_0 at most this for "memorizing" (memorizing: 0.2–0.45; grokked: 1.2–8)

STAGE_RULE = (
    "Per member, from analysis.parquet: E = energy_weighted (Li2 energy of the unit directions on the training "
    "pairs), T = energy_transfer ((E on all pairs/P²)/(E on training pairs/n²)), p = purity_weighted, "
    "c = irreps_covered, dw = w_rel_change. features = none if dw_end < {MOVED} or E_end < {CLIMB}·E_0; "
    "declined (undetermined, no stages) if fewer than {MIN_STEPS} analysed steps or Σ falls of E > {COHERENT}·Σ rises; "
    "generalizing if c_end >= 1 (and c stays >= 1 once non-zero), (p_end−p_0)/(1−p_0) >= {PURITY_LIFT} and "
    "T_end >= T_0; memorizing if T_end <= {MEM_TRANSFER}·T_0 and c_end = 0 (or no irreps); else undetermined. "
    "Stages: none -> lazy [0, end]; t1 = first time E >= E_0 + {ONSET}·(E_max − E_0) (interpolated); memorizing -> "
    "lazy [0, t1), independent [t1, end]; generalizing -> lazy [0, t1), independent [t1, t2), interactive [t2, end] "
    "with t2 = first analysed step with c >= 1 (a unit holds an irrep: Li2 Thm 7's learned set is non-empty)."
).format(MOVED=MOVED, CLIMB=CLIMB, MIN_STEPS=MIN_STEPS, COHERENT=COHERENT, PURITY_LIFT=PURITY_LIFT,
         MEM_TRANSFER=MEM_TRANSFER, ONSET=ONSET)


def crossing(s: np.ndarray, c: np.ndarray, i: int, level: float) -> float:
    """Step where c crosses `level` between analysed steps i−1 and i (linear interpolation)."""
    if i == 0 or c[i] == c[i - 1]:
        return float(s[i])
    f = (level - c[i - 1]) / (c[i] - c[i - 1])
    return float(s[i - 1] + min(max(f, 0.0), 1.0) * (s[i] - s[i - 1]))


def _r(x: float | None) -> float | None:
    """4 significant digits (Δw of a frozen run is ~1e-6: not 0); + 0.0 turns -0.0 into 0.0."""
    return None if x is None or not np.isfinite(x) else float(f"{float(x):.4g}") + 0.0


def member_stages(steps: Any, series: dict[str, Any], last_step: int | None = None) -> dict[str, Any]:
    """The features verdict and stages of one member from its analysed steps and the series of
    STAGE_COLUMNS (purity_weighted / irreps_covered absent or None for tasks that are not groups).

    Returns {"features", "evidence": {...}, "stages": [{"name", "start", "end"}, ...], "note"}.
    Stages are contiguous, ordered, and lie in [0, last_step] (default: the last analysed step).

    >>> r = member_stages([0, 10, 20, 40, 80], {"w_rel_change": [0, .2, .4, .8, 1], "energy_weighted": [.4, .5, .9, 1.5, 2],
    ...     "energy_transfer": [.7, .6, .7, .8, .9], "purity_weighted": [.28, .28, .35, .6, .8], "irreps_covered": [0, 0, 0, 4, 11]})
    >>> r["features"], r["stages"]
    ('generalizing', [{'name': 'lazy', 'start': 0, 'end': 12}, {'name': 'independent', 'start': 12, 'end': 40}, {'name': 'interactive', 'start': 40, 'end': 80}])
    """
    s = np.asarray(steps, dtype=float)
    order = np.argsort(s, kind="stable")
    s = s[order]
    col = {}
    for k in STAGE_COLUMNS:
        v = series.get(k)
        col[k] = None if v is None else np.asarray(v, dtype=float)[order]
    end = int(last_step) if last_step is not None else (int(s[-1]) if s.size else 0)
    E, T, dw = col["energy_weighted"], col["energy_transfer"], col["w_rel_change"]
    ok = np.isfinite(E) & np.isfinite(T) & np.isfinite(dw)
    if s.size < MIN_STEPS or not ok.all():
        return {"features": "undetermined", "evidence": {}, "stages": [],
                "note": f"declined: {int(ok.sum())} usable analysed steps (need {MIN_STEPS}, all finite)"}
    dE = np.diff(E)
    rises, falls = float(dE[dE > 0].sum()), float(-dE[dE < 0].sum())
    ev: dict[str, Any] = {"w_moved": _r(dw[-1]), "energy_climb": _r(E[-1] / E[0]) if E[0] > 0 else None,
                          "energy_falls_per_rise": _r(falls / rises) if rises > 0 else None,
                          "transfer_change": _r(T[-1] / T[0]) if T[0] > 0 else None}
    p, c = col["purity_weighted"], col["irreps_covered"]
    group = p is not None and c is not None and np.isfinite(p).all() and np.isfinite(c).all()
    if group:
        ev["purity_lift"] = _r((p[-1] - p[0]) / (1 - p[0])) if p[0] < 1 else None
        ev["irreps_covered"] = int(c[-1])
    out: dict[str, Any] = {"evidence": ev}
    lazy_all = [{"name": "lazy", "start": 0, "end": end}]
    if dw[-1] < MOVED or E[-1] < CLIMB * E[0]:
        why = (f"the units did not move (w_rel_change {dw[-1]:.2g} < {MOVED})" if dw[-1] < MOVED else
               f"the units did not climb E (E_end/E_0 = {E[-1] / E[0]:.3g} < {CLIMB})")
        return {**out, "features": "none", "stages": lazy_all, "note": why}
    if falls > COHERENT * rises:
        return {**out, "features": "undetermined", "stages": [],
                "note": f"declined: E did not climb coherently (falls {falls:.3g} > {COHERENT} × rises {rises:.3g})"}
    # lazy -> independent: E has made ONSET of its climb
    level = E[0] + ONSET * (E.max() - E[0])
    i1 = int(np.flatnonzero(E >= level)[0])
    t1 = min(max(int(round(crossing(s, E, i1, level))), 0), end)
    tr = T[-1] / T[0] if T[0] > 0 else np.inf
    if group:
        first = np.flatnonzero(c >= 1)
        held = first.size > 0 and bool((c[first[0]:] >= 1).all())
        lift = (p[-1] - p[0]) / (1 - p[0]) if p[0] < 1 else 0.0
        if c[-1] >= 1 and held and lift >= PURITY_LIFT and tr >= 1.0:
            t2 = min(max(int(s[first[0]]), t1), end)
            return {**out, "features": "generalizing", "note": f"{int(c[-1])} irreps held by pure units at the end",
                    "stages": [{"name": "lazy", "start": 0, "end": t1}, {"name": "independent", "start": t1, "end": t2},
                               {"name": "interactive", "start": t2, "end": end}]}
    if tr <= MEM_TRANSFER and (not group or c[-1] == 0):
        return {**out, "features": "memorizing", "note": f"E climbed on the training pairs only (T fell to {tr:.2f}× "
                "its start)" + (", no irrep held" if group else ""),
                "stages": [{"name": "lazy", "start": 0, "end": t1}, {"name": "independent", "start": t1, "end": end}]}
    why = "the climb neither transferred with irrep-pure units nor stayed on the training pairs"
    if not group and tr > MEM_TRANSFER:
        why = "not a group: generalizing features (irreps) are not identified, and the climb transferred"
    return {**out, "features": "undetermined", "stages": [], "note": f"declined: {why} (T_end/T_0 = {tr:.2f})"}


def detect_stages(analysis: dict[str, Any], last_steps: dict[int, int] | None = None) -> dict[str, Any]:
    """summary.json's ``stages`` from analysis.parquet's columns (a dict of arrays / lists):
    {"rule": STAGE_RULE, "members": [{"member", "seed", "features", "evidence", "stages", "note"}]}.
    ``last_steps``: member -> its last evaluated step (default: its last analysed step)."""
    step = np.asarray(analysis["step"])
    member = np.asarray(analysis["member"])
    seed = np.asarray(analysis.get("seed", member))
    members = []
    for e in np.unique(member):
        sel = member == e
        series = {k: (np.asarray(analysis[k], dtype=float)[sel] if analysis.get(k) is not None else None)
                  for k in STAGE_COLUMNS}
        res = member_stages(step[sel], series, (last_steps or {}).get(int(e)))
        members.append({"member": int(e), "seed": int(seed[sel][0]), **res})
    return {"rule": STAGE_RULE, "members": members}
