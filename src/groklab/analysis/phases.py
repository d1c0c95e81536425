"""Nanda et al.'s progress measures as a run analysis, for the peer models (transformer, embed-mlp)
on Z_M addition: what `groklab analyze RUN` measures when the run is not a Li2 network.

The measures themselves are groklab.progress (key frequencies, restricted / excluded loss, Gini,
Σw²; science.md §7). Here they are taken at the analysed steps of a run (the same replay and the
same steps as the Li2 analysis, analysis.Analyzer) and written to analysis.parquet:

    step, member, seed, restricted_loss, excluded_loss, gini, sum_sq_weights, n_key_freqs,
    spectrum_freq <k> (k = 1..M//2: share of the token embeddings' Fourier norm in frequency k)

and the three phases of Nanda et al. §5 are dated per member into summary.json's ``stages``
(same shape as the Li2 stages, so reports draw them as bands):

- memorization      [0, t_mem):  t_mem = step_memorized (first evaluation with train acc >= 0.99);
- circuit formation [t_mem, t_circ): the key-frequency circuit grows while test accuracy stays low;
  t_circ = first analysed step where the restricted loss (logits restricted to the key
  frequencies, on all pairs) has fallen to CIRCUIT_FRAC x its step-0 value (interpolated between
  analysed steps): the circuit alone then does the task;
- cleanup           [t_circ, t_gen]: weight decay removes the memorizing components and test
  accuracy jumps; t_gen = step_generalized (test acc >= 0.99), or the last step if never;
- generalized       [t_gen, last step], when the run continues after it.

Measured on Nanda's setup at p = 59 (docs/reproductions.md): the restricted loss is 4.1 at step 0
and falls below 0.41 between steps 9k and 11k, when test accuracy is 0.27-0.55; cleanup then runs
to the jump at ~14k.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from groklab.analysis.progress import KEY_FACTOR, is_modular_addition, progress_measures
from groklab.analysis.stages import crossing
from groklab.errors import GroklabError

__all__ = ["CIRCUIT_FRAC", "PHASE_RULE", "PHASES", "ProgressProbe", "detect_phases", "member_phases"]

PHASES = ("memorization", "circuit formation", "cleanup", "generalized")
CIRCUIT_FRAC = 0.1  # the circuit "does the task" once the restricted loss is 10% of its initial value
PHASE_RULE = (
    "memorization = [0, step_memorized); circuit formation = [step_memorized, t_circ), t_circ = first analysed step "
    f"where restricted_loss <= {CIRCUIT_FRAC} x its step-0 value (interpolated); cleanup = [t_circ, step_generalized] "
    "(or to the last step if never); generalized = [step_generalized, last step]. Nanda et al. 2023 §5; "
    "restricted loss: logits restricted to the key frequencies (groklab.progress)."
)
SCALARS = ("restricted_loss", "excluded_loss", "gini", "sum_sq_weights", "n_key_freqs")


class ProgressProbe:
    """What the progress measures need from a Job: the Z_M addition table, each member's training
    pairs and the loss. Raises GroklabError (one line) when the task is not Z_M addition."""

    def __init__(self, job):
        cfg, task = job.cfg, job.task
        M = task.order
        if not is_modular_addition(task.table):
            raise GroklabError(f"analyze: --group {cfg.task.group}: the {cfg.model.model} analysis is Nanda et al.'s "
                               f"progress measures, defined for (a + b) mod M tables (Z<M>); the irrep analysis of "
                               "other groups needs --model li2")
        self.table, self.train_idx, self.loss, self.M = task.table, list(job.train_idx), cfg.model.loss, M
        self.block_names = tuple(f"freq {k}" for k in range(1, M // 2 + 1))
        self.final_keys: list[list[int]] = []

    def measure(self, model) -> dict[str, np.ndarray]:
        """{name: (E,) array} for SCALARS, plus "spectrum" (E, M//2) frequency shares."""
        pm = progress_measures(model, self.table, self.train_idx, loss=self.loss)
        self.final_keys = [list(map(int, k)) for k in pm["key_freqs"]]
        out = {k: np.asarray(pm[k], float) for k in SCALARS[:-1]}
        out["n_key_freqs"] = np.array([len(k) for k in pm["key_freqs"]], float)
        out["spectrum"] = np.asarray(pm["freq_share"], float)
        return out

    def meta(self, every: int) -> dict[str, Any]:
        return {"file": "analysis.parquet", "kind": "progress", "every": every, "blocks": list(self.block_names),
                "key_factor": KEY_FACTOR, "final_key_freqs": self.final_keys}


def member_phases(steps, restricted, last_step: int, step_memorized: int | None,
                  step_generalized: int | None) -> dict[str, Any]:
    """Phases of one member (see the module docstring): {"stages": [{"name", "start", "end"}], ...}.

    >>> member_phases([0, 100, 200, 300, 400], [4.0, 3.0, 1.0, 0.2, 0.1], 500, 50, 450)["stages"]
    [{'name': 'memorization', 'start': 0, 'end': 50}, {'name': 'circuit formation', 'start': 50, 'end': 275}, {'name': 'cleanup', 'start': 275, 'end': 450}, {'name': 'generalized', 'start': 450, 'end': 500}]
    """
    s = np.asarray(steps, float)
    r = np.asarray(restricted, float)
    order = np.argsort(s, kind="stable")
    s, r = s[order], r[order]
    ok = np.isfinite(r)
    s, r = s[ok], r[ok]
    if step_memorized is None:
        return {"stages": [], "note": "never memorized (train accuracy stayed below 0.99): no phases"}
    if s.size == 0 or s[0] != 0:
        return {"stages": [], "note": "no analysis at step 0: the restricted loss has no reference value"}
    level = CIRCUIT_FRAC * r[0]
    t_mem = int(step_memorized)
    end = int(last_step)
    below = np.flatnonzero(r <= level)
    t_circ = None if below.size == 0 else int(round(crossing(s, r, int(below[0]), level)))
    out: dict[str, Any] = {"restricted_loss_0": round(float(r[0]), 6), "t_circuit": t_circ}
    cuts = [("memorization", 0), ("circuit formation", t_mem)]
    if t_circ is not None:
        cuts.append(("cleanup", max(t_circ, t_mem)))
        if step_generalized is not None and int(step_generalized) < end:
            cuts.append(("generalized", max(int(step_generalized), t_circ, t_mem)))
    stages = []
    for i, (name, start) in enumerate(cuts):
        stop = cuts[i + 1][1] if i + 1 < len(cuts) else end
        if stop > start:
            stages.append({"name": name, "start": int(start), "end": int(stop)})
    out["stages"] = stages
    return out


def detect_phases(analysis: dict[str, Any], last_steps: dict[int, int], memorized: dict[int, int | None],
                  generalized: dict[int, int | None]) -> dict[str, Any]:
    """summary.json's ``stages`` for a progress analysis: {"rule", "kind", "members": [...]}; the dicts map
    member -> its last evaluated step, step_memorized, step_generalized."""
    step = np.asarray(analysis["step"])
    member = np.asarray(analysis["member"])
    seed = np.asarray(analysis["seed"])
    r = np.asarray(analysis["restricted_loss"], float)
    members = []
    for e in np.unique(member):
        sel = member == e
        res = member_phases(step[sel], r[sel], last_steps.get(int(e), int(step[sel].max())),
                            memorized.get(int(e)), generalized.get(int(e)))
        members.append({"member": int(e), "seed": int(seed[sel][0]), **res})
    return {"rule": PHASE_RULE, "kind": "progress", "members": members}
