"""Stage detection: where lazy learning, independent feature learning and interactive feature
learning begin and end in a run (Li2 §4–5.3; science.md §3).

Li2 characterises the three stages by the structure of the back-propagated gradient G_F:
(I) lazy: G_F is random (V is still random, so P₁^⊥(Y − FV)Vᵀ is a random projection of the
labels) while the top layer fits the random features; (II) independent: once V has fit and weight
decay acts, column k of G_F depends on unit k's own activation only, G_F ∝ ỸỸᵀF̃ up to a
per-unit scale (Li2 Eq. 3–4, Thm 1); (III) interactive: G_F = P_η ỸỸᵀF̃ B with non-diagonal
P_η, B: units repel and G_F turns to the features still missing (Thm 6–7).

Two events mark the boundaries. (I→II) the top layer has fit the training set: Li2 §4's lazy
stage ends when V reaches its (ridge) fit to the still-random features, which is when G_F's
label-carrying part stops growing (Eq. 3 → Eq. 4); measured as the first evaluation with train
accuracy ≥ science.MEMORIZED_ACC (summary.json's step_memorized). (II→III) the units start to
interact: G_F departs from the independent form. groklab measures that form at every analysed
step (analysis.py, column ``gf_indep_cos``):

    c(t) = Σ_k ⟨g_k, h_k⟩ / Σ_k ‖g_k‖‖h_k‖,   g_k = column k of G_F,  h_k = column k of ỸỸᵀF̃

(c = 1: every unit's gradient is its own independent-dynamics gradient, up to a per-unit scale;
c ≈ 0: unrelated). The rule, per member, with c* = max_t c(t) reached at step t*:

- lazy        [0, t₁):  t₁ = min(step_memorized, t*) (t* alone if the member never memorizes);
- independent [t₁, t₂): t₂ = first time after t* that c(t) < c*/2 (interpolated linearly between
  analysed steps, rounded to a whole step);
- interactive [t₂, end]; absent when c stays ≥ c*/2 to the end (the run stopped in stage II).

When c* < MIN_PEAK the gradient never took the independent form and no stages are reported for
that member (``stages: []`` with a note). Measured (Z23, sqr, mse, Adam lr 1e-3, K = 128, crit_mult 2,
every 50): c ≈ 0 at init, peaks at ≈ 0.8 at step 100 (= step_memorized), falls below 0.4 at step
≈ 190 as the test accuracy climbs, and the irreps are covered during stage III (steps 250–500), as
Thm 7 says (G_F points at the missing ones). A memorizing run (crit_mult 0.4) shows the same rise
and fall, ending on memorization features (purity stays at chance).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MIN_PEAK", "STAGE_RULE", "STAGES", "crossing", "detect_stages", "member_stages"]

STAGES = ("lazy", "independent", "interactive")
MIN_PEAK = 0.3  # below this peak alignment, stage II is not identified (groklab's choice)
STAGE_RULE = (
    "t1 (lazy -> independent) = min(step_memorized, t*); t2 (independent -> interactive) = first time after t* "
    "that c(t) < c*/2, where c(t) = Σ_k<g_k,h_k>/Σ_k|g_k||h_k| (column gf_indep_cos of analysis.parquet), g_k and "
    "h_k the columns of G_F = P1⊥(Y−FV)Vᵀ (Li2 Eq. 2) and of ỸỸᵀF̃ (the independent-dynamics gradient, Li2 Eq. 3, "
    "Thm 1), c* = max_t c(t) reached at t*, step_memorized = first evaluation with train accuracy >= 0.99. "
    "lazy = [0, t1), independent = [t1, t2), interactive = [t2, last step] (absent if c stays >= c*/2); "
    f"crossing interpolated linearly between analysed steps. No stages when c* < {MIN_PEAK}."
)


def crossing(s: np.ndarray, c: np.ndarray, i: int, level: float) -> float:
    """Step where c crosses `level` between analysed steps i−1 and i (linear interpolation)."""
    if i == 0 or c[i] == c[i - 1]:
        return float(s[i])
    f = (level - c[i - 1]) / (c[i] - c[i - 1])
    return float(s[i - 1] + min(max(f, 0.0), 1.0) * (s[i] - s[i - 1]))


def member_stages(steps: Any, c: Any, last_step: int | None = None, step_memorized: int | None = None) -> dict[str, Any]:
    """Stages of one member from its analysed steps, c(t) (`gf_indep_cos`) and step_memorized.

    Returns {"stages": [{"name", "start", "end"}, ...], "c_peak", "c_peak_step"} (+ "note").
    Stages are contiguous, ordered, and lie in [0, last_step] (default: the last analysed step).

    >>> member_stages([0, 10, 20, 30, 40], [0.0, 0.4, 0.8, 0.3, 0.1], step_memorized=15)["stages"]
    [{'name': 'lazy', 'start': 0, 'end': 15}, {'name': 'independent', 'start': 15, 'end': 28}, {'name': 'interactive', 'start': 28, 'end': 40}]
    """
    s = np.asarray(steps, dtype=float)
    c = np.asarray(c, dtype=float)
    order = np.argsort(s, kind="stable")
    s, c = s[order], c[order]
    ok = np.isfinite(c)
    s, c = s[ok], c[ok]
    if s.size == 0:
        return {"stages": [], "c_peak": None, "c_peak_step": None, "note": "no analysed steps"}
    end = int(last_step) if last_step is not None else int(s[-1])
    ip = int(np.argmax(c))
    peak = float(c[ip])
    out: dict[str, Any] = {"c_peak": round(peak, 6), "c_peak_step": int(s[ip])}
    if peak < MIN_PEAK:
        out.update(stages=[], note=f"G_F never took the independent form (peak c = {peak:.3f} < {MIN_PEAK})")
        return out
    t1 = int(s[ip]) if step_memorized is None else min(int(step_memorized), int(s[ip]))
    below = np.flatnonzero(c[ip + 1:] < peak / 2)
    stages = [{"name": "lazy", "start": 0, "end": t1}]
    if below.size:
        t2 = min(max(int(round(crossing(s, c, ip + 1 + int(below[0]), peak / 2))), t1), end)
        stages += [{"name": "independent", "start": t1, "end": t2}, {"name": "interactive", "start": t2, "end": end}]
    else:
        stages.append({"name": "independent", "start": t1, "end": end})
    out["stages"] = stages
    return out


def detect_stages(analysis: dict[str, Any], last_steps: dict[int, int] | None = None,
                  memorized: dict[int, int | None] | None = None) -> dict[str, Any]:
    """summary.json's ``stages`` from analysis.parquet's columns (a dict of arrays / lists):
    {"rule": STAGE_RULE, "members": [{"member", "seed", "stages": [...], "c_peak", "c_peak_step"}]}.
    ``last_steps``: member -> its last evaluated step (default: its last analysed step);
    ``memorized``: member -> step_memorized (None: never)."""
    step = np.asarray(analysis["step"])
    member = np.asarray(analysis["member"])
    seed = np.asarray(analysis.get("seed", member))
    c = np.asarray(analysis["gf_indep_cos"], dtype=float)
    members = []
    for e in np.unique(member):
        sel = member == e
        res = member_stages(step[sel], c[sel], (last_steps or {}).get(int(e)), (memorized or {}).get(int(e)))
        members.append({"member": int(e), "seed": int(seed[sel][0]), **res})
    return {"rule": STAGE_RULE, "members": members}
