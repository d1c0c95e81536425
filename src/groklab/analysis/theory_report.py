"""Li2's predictions for one task as plain data (what `groklab theory` prints, `--json` included):
critical sizes, irreps and their energy maxima, and where independent feature learning ends."""

from __future__ import annotations

from typing import Any

import numpy as np

from groklab.errors import GroklabError, check

__all__ = ["theory_report"]


def theory_report(group: str, *, n_train: int | None = None, frac: float | None = None,
                  crit_mult: float | None = None, act: str = "sqr", units: int = 64, steps: int = 400,
                  seed: int = 0) -> dict[str, Any]:
    """Li2's predictions for `group` as plain data (what `groklab theory --json` prints)."""
    from groklab.tasks import make_split, make_task
    from groklab.theory.li2 import (
        ACTIVATIONS,
        critical_size_report,
        independent_dynamics,
        max_energy,
    )
    from groklab.theory.reps import irreps

    check(act in ACTIVATIONS, "act", act, "expected one of " + ", ".join(ACTIVATIONS))
    check(isinstance(units, int) and units >= 1, "units", units, "must be >= 1")
    check(isinstance(steps, int) and steps >= 0, "steps", steps, "must be >= 0")
    task = make_task(group)
    if not task.is_group:
        raise GroklabError(f"--group {group!r}: not a group (Li2's irreps and energy maxima are defined for groups)",
                           "group")
    ir = irreps(task.table)
    crit = critical_size_report(task.table)
    M = ir.order
    idx = None
    if n_train is not None or frac is not None or crit_mult is not None:
        idx = make_split(task, seed, frac=frac, n_train=n_train, crit_mult=crit_mult)
    n = M * M if idx is None else len(idx)
    dyn = independent_dynamics(task.table, act=act, n_units=units, steps=steps, seed=seed, train_idx=idx)
    energy = {}
    for i, name in enumerate(dyn.names):
        sel = dyn.feature == i
        if sel.any():
            energy[name] = float(np.mean(dyn.energy[sel]))
    e_star = max_energy(task.table)  # E at the block's maxima, σ = x², all pairs (science.md §3)
    blocks = [{"name": b.name, "kind": b.kind, "d": b.d, "dim": b.dim, "irreps": list(b.irreps),
               "energy_max_theory": e_star.get(b.name)} for b in ir.blocks]
    return {
        "kind": "groklab.theory", "version": 1, "group": task.name, "order": M, "is_abelian": ir.is_abelian,
        "is_cyclic": ir.is_cyclic, "dims": list(ir.dims), "sum_dim_squared": int(sum(d * d for d in ir.dims)),
        "indicators": list(ir.indicators), "n_classes": len(ir.classes), "blocks": blocks,
        "critical_n": crit.critical_n, "critical_fraction": crit.critical_fraction, "critical_rule": crit.rule,
        "n_features": crit.n_features, "k_sufficient": crit.k_sufficient,
        "dynamics": {"act": act, "units": units, "steps": steps, "seed": seed, "n_pairs": n,
                     "all_pairs": idx is None, "counts": dict(dyn.counts),
                     "unassigned": int((dyn.feature < 0).sum()), "energy_mean": energy,
                     "purity_mean": float(dyn.purity.mean())},
    }
