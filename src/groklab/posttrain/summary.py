"""The comparison in numbers: final values per (arm, pool) with seed intervals, and the paired tests
of each paper's direction (RL minus SFT, seed by seed, from the same base and the same pool).

An interval is mean +- t_{0.975, n-1} * sd / sqrt(n) over seeds (n = number of seeds). A claim's
verdict is "holds" when the paired mean has the paper's sign and its interval excludes 0,
"same sign, not significant" when only the sign agrees, and "opposite" otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from .config import PosttrainConfig
from .diagnostics import DIAGNOSTICS

__all__ = ["summarize", "interval", "CLAIMS"]

# (name, metric, sign RL - SFT should have, source). rot = mean of rot_left and rot_right.
CLAIMS = (
    ("r1 kept better by RL (Chu et al. 2501.17161)", "d_acc_r1", +1),
    ("r0 gained (RL vs SFT; no claim, for context)", "d_acc_r0", 0),
    ("less principal-subspace rotation under RL (Zhu et al. 2511.08567)", "rot", -1),
    ("less top-k singular-value drift under RL (2511.08567)", "sv_drift", -1),
    ("smaller share of the update in the base's principal block under RL (2511.08567)", "topk_share", -1),
    ("more entries unchanged in bf16 under RL (2511.08567, Gate III)", "bf16_same", +1),
    ("smaller relative update under RL (2511.08567, Gate I)", "dW_rel", -1),
)


def interval(x: np.ndarray) -> dict:
    """Mean and 95% t-interval half-width over seeds (NaN half-width for one seed)."""
    x = np.asarray(x, dtype=float)
    n = int(np.isfinite(x).sum())
    x = x[np.isfinite(x)]
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    if n == 1:
        return {"mean": float(x[0]), "ci95": None, "n": 1}
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return {"mean": float(x.mean()), "ci95": half, "n": n}


def _finals(cfg: PosttrainConfig, metrics: dict, weights: dict) -> dict[tuple[str, int, int], dict]:
    """Per member (arm, pool, seed): final accuracies, their change from step 0, and the final
    diagnostics averaged over the matrices (each matrix counts once)."""
    m = {k: np.asarray(v) for k, v in metrics.items()}
    w = {k: np.asarray(v) for k, v in weights.items()}
    last = int(m["step"].max())
    out = {}
    for arm, pool, seed in cfg.members():
        sel = (m["arm"] == arm) & (m["pool"] == pool) & (m["seed"] == seed)
        f, s0 = sel & (m["step"] == last), sel & (m["step"] == 0)
        row = {k: float(m[k][f][0]) for k in ("acc_r0", "acc_r1", "acc_pool")}
        row.update({f"d_{k}": float(m[k][f][0] - m[k][s0][0]) for k in ("acc_r0", "acc_r1", "acc_pool")})
        sw = (w["arm"] == arm) & (w["pool"] == pool) & (w["seed"] == seed) & (w["step"] == last)
        for k in DIAGNOSTICS:
            row[k] = float(np.nanmean(w[k][sw]))
        row["rot"] = (row["rot_left"] + row["rot_right"]) / 2
        out[(arm, pool, seed)] = row
    return out


def summarize(cfg: PosttrainConfig, metrics: dict, weights: dict, arms: tuple[str, ...]) -> dict:
    fin = _finals(cfg, metrics, weights)
    keys = ("acc_r0", "acc_r1", "acc_pool", "d_acc_r0", "d_acc_r1", "d_acc_pool", "rot", *DIAGNOSTICS)
    groups = []
    for arm in arms:
        for pool in cfg.pools:
            vals = {k: interval(np.array([fin[(arm, pool, s)][k] for s in cfg.seeds])) for k in keys}
            groups.append({"arm": arm, "pool": pool, **vals})
    claims = []
    if "sft" in arms:
        for rl in (a for a in arms if a != "sft"):
            for pool in cfg.pools:
                for name, key, sign in CLAIMS:
                    diff = np.array([fin[(rl, pool, s)][key] - fin[("sft", pool, s)][key] for s in cfg.seeds])
                    iv = interval(diff)
                    if sign == 0 or iv["mean"] is None:
                        verdict = "context"
                    elif np.sign(iv["mean"]) != sign:
                        verdict = "opposite"
                    elif iv["ci95"] is not None and abs(iv["mean"]) > iv["ci95"]:
                        verdict = "holds"
                    else:
                        verdict = "same sign, not significant"
                    claims.append({"claim": name, "metric": key, "arm": rl, "pool": pool,
                                   "rl_minus_sft": iv, "verdict": verdict})
    return {"kind": "groklab.posttrain.summary", "final_step": int(max(metrics["step"])),
            "groups": groups, "claims": claims}
