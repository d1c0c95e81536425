"""The comparison in numbers: final values per (arm, pool) with seed intervals, and the paired tests
of each paper's direction (RL minus SFT, seed by seed, from the same base and the same pool).

Two matchings. "final": after the same number of samples (the issue's matched compute). "matched
r0 gain": at the first evaluation where each member's held-out r0 accuracy has risen by half the
smallest final r0 gain of any arm in that pool (acc_r1 linearly interpolated to the crossing; the
weights measured at the first evaluation at or above it). Arms learn r0 at different speeds, so
only the second separates "forgets less" from "learned less" (Shenfeld et al. 2025, "RL's Razor",
compare forgetting at matched new-task performance for the same reason).

An interval is mean +- t_{0.975, n-1} * sd / sqrt(n) over seeds (n = number of seeds). A claim's
verdict is "holds" when the paired mean has the paper's sign and its interval excludes 0, "reversed"
when it has the other sign and the interval excludes 0, else "same sign, not significant" or
"opposite sign, not significant".
"""

from __future__ import annotations

import math

import numpy as np

from groklab.posttrain.config import PosttrainConfig
from groklab.posttrain.diagnostics import DIAGNOSTICS

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


# Student-t 0.975 quantiles for 1..30 degrees of freedom (scipy.stats.t.ppf, 10 decimals; a table,
# because importing scipy.stats costs seconds per process and this is all we need of it).
_T975 = (12.7062047362, 4.3026527297, 3.1824463053, 2.7764451052, 2.5705818356, 2.4469118511, 2.3646242516,
         2.3060041352, 2.2621571628, 2.2281388520, 2.2009851601, 2.1788128297, 2.1603686565, 2.1447866879,
         2.1314495456, 2.1199052992, 2.1098155778, 2.1009220402, 2.0930240544, 2.0859634473, 2.0796138447,
         2.0738730679, 2.0686576104, 2.0638985616, 2.0595385528, 2.0555294386, 2.0518305165, 2.0484071418,
         2.0452296421, 2.0422724563)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t: the table up to 30, then the Cornish-Fisher expansion
    z + (z^3 + z)/(4 df) + (5z^5 + 16z^3 + 3z)/(96 df^2) (Abramowitz & Stegun 26.7.5; < 1e-4 off)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def interval(x: np.ndarray) -> dict:
    """Mean and 95% t-interval half-width over seeds (NaN half-width for one seed)."""
    x = np.asarray(x, dtype=float)
    n = int(np.isfinite(x).sum())
    x = x[np.isfinite(x)]
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    if n == 1:
        return {"mean": float(x[0]), "ci95": None, "n": 1}
    half = float(t975(n - 1) * x.std(ddof=1) / math.sqrt(n))
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


MATCH_MIN_GAIN = 0.02  # below this common r0 gain there is nothing to match at


def _matched(cfg: PosttrainConfig, metrics: dict, weights: dict) -> tuple[dict, dict]:
    """Per member, the values at matched r0 gain (see the module docstring); and per pool the gain used."""
    m = {k: np.asarray(v) for k, v in metrics.items()}
    w = {k: np.asarray(v) for k, v in weights.items()}
    last = int(m["step"].max())
    out, gains = {}, {}
    for pool in cfg.pools:
        finals = []
        for arm in cfg.arms:
            d = [m["acc_r0"][(m["arm"] == arm) & (m["pool"] == pool) & (m["seed"] == s) & (m["step"] == last)][0]
                 - m["acc_r0"][(m["arm"] == arm) & (m["pool"] == pool) & (m["seed"] == s) & (m["step"] == 0)][0]
                 for s in cfg.seeds]
            finals.append(float(np.mean(d)))
        gain = 0.5 * min(finals)
        gains[pool] = gain
        for arm in cfg.arms:
            for seed in cfg.seeds:
                sel = (m["arm"] == arm) & (m["pool"] == pool) & (m["seed"] == seed)
                order = np.argsort(m["step"][sel])
                steps, r0, r1 = m["step"][sel][order], m["acc_r0"][sel][order], m["acc_r1"][sel][order]
                row = {"step": math.nan, "d_acc_r1": math.nan, **{k: math.nan for k in (*DIAGNOSTICS, "rot")}}
                hit = np.flatnonzero(r0 >= r0[0] + gain)
                if gain >= MATCH_MIN_GAIN and hit.size:
                    i = int(hit[0])
                    f = 1.0 if i == 0 else (r0[0] + gain - r0[i - 1]) / (r0[i] - r0[i - 1])
                    r1_at = r1[i - 1] + f * (r1[i] - r1[i - 1]) if i else r1[0]
                    row["step"], row["d_acc_r1"] = float(steps[i]), float(r1_at - r1[0])
                    sw = (w["arm"] == arm) & (w["pool"] == pool) & (w["seed"] == seed) & (w["step"] == steps[i])
                    for k in DIAGNOSTICS:
                        row[k] = float(np.nanmean(w[k][sw]))
                    row["rot"] = (row["rot_left"] + row["rot_right"]) / 2
                out[(arm, pool, seed)] = row
    return out, gains


def _claims(cfg: PosttrainConfig, arms: tuple[str, ...], vals: dict, matching: str) -> list[dict]:
    claims = []
    if "sft" not in arms:
        return claims
    for rl in (a for a in arms if a != "sft"):
        for pool in cfg.pools:
            for name, key, sign in CLAIMS:
                if key not in vals[("sft", pool, cfg.seeds[0])]:
                    continue
                diff = np.array([vals[(rl, pool, s)][key] - vals[("sft", pool, s)][key] for s in cfg.seeds])
                iv = interval(diff)
                if sign == 0 or iv["mean"] is None:
                    verdict = "context" if iv["mean"] is not None else "not measured"
                elif iv["mean"] == 0:
                    verdict = "no difference"
                else:
                    significant = iv["ci95"] is not None and abs(iv["mean"]) > iv["ci95"]
                    if np.sign(iv["mean"]) == sign:
                        verdict = "holds" if significant else "same sign, not significant"
                    else:
                        verdict = "reversed" if significant else "opposite sign, not significant"
                claims.append({"claim": name, "metric": key, "arm": rl, "pool": pool, "matching": matching,
                               "rl_minus_sft": iv, "verdict": verdict})
    return claims


def summarize(cfg: PosttrainConfig, metrics: dict, weights: dict, arms: tuple[str, ...]) -> dict:
    fin = _finals(cfg, metrics, weights)
    matched, gains = _matched(cfg, metrics, weights)
    keys = ("acc_r0", "acc_r1", "acc_pool", "d_acc_r0", "d_acc_r1", "d_acc_pool", "rot", *DIAGNOSTICS)
    groups = []
    for arm in arms:
        for pool in cfg.pools:
            vals = {k: interval(np.array([fin[(arm, pool, s)][k] for s in cfg.seeds])) for k in keys}
            groups.append({"arm": arm, "pool": pool, **vals})
    mkeys = ("step", "d_acc_r1", "rot", *DIAGNOSTICS)
    for g in groups:
        g["matched"] = {k: interval(np.array([matched[(g["arm"], g["pool"], s)][k] for s in cfg.seeds])) for k in mkeys}
        g["matched"]["r0_gain"] = gains[g["pool"]]
    claims = _claims(cfg, arms, fin, "final") + _claims(cfg, arms, matched, "matched r0 gain")
    return {"kind": "groklab.posttrain.summary", "final_step": int(max(metrics["step"])),
            "groups": groups, "claims": claims}
