"""The attention room's experiments as functions that write run folders (the CLI calls these).

    snap_fig4(out)          Scan & Snap Fig. 4: the run of scan_snap/figure_4.log, loss vs the log, c_n(t)
    snap_grid(out, ...)     Scan & Snap Fig. 6: num_last x eta_Z x eta_Y/eta_Z x seeds, entropy table vs
                            scan_snap/figure_6_data.pkl, the snap time of every member, and the snap
                            times against the paper's Theorem 4 (snap_theory: t0 = c K ln M / eta_Y, c fitted)
    joma_toy_run(out, cfg)  JoMA Fig. 4: entropy falls then rises
    joma_linear_run(out, cfg, seeds)   JoMA Figs. 2-3: z vs its prediction from W
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .joma import LinearConfig, ToyConfig, joma_linear, joma_toy
from .reference import FIG4_LOSS, FIG6_ENTROPY
from .runs import write_run
from .scan_snap import FIG4, SnapConfig, fig6_config, train_snap
from .snap_theory import PAPER_C, compare, transition_time

__all__ = ["snap_fig4", "snap_grid", "joma_toy_run", "joma_linear_run", "spearman"]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def _std(x) -> float | None:
    """Spread over seeds (torch's unbiased std, as the entropy column); None with fewer than 2 values."""
    return float(x.std()) if x.numel() > 1 else None


def _member_columns(r: dict, cfg: SnapConfig) -> dict[str, np.ndarray]:
    T, E = r["loss"].shape
    mem = np.array(r["members"], dtype=float)               # (E, 3) seed, lr_z, ratio
    cols = {"iteration": np.repeat(np.arange(T), E), "member": np.tile(np.arange(E), T),
            "num_last": np.full(T * E, cfg.data.num_last), "seed": np.tile(mem[:, 0].astype(np.int64), T),
            "lr_z": np.tile(mem[:, 1], T), "lr_y_multi_on_z": np.tile(mem[:, 2], T)}
    for k in ("loss", "entropy", "entropy_distinct", "dz", "dy"):
        cols[k] = r[k].numpy().reshape(-1)
    return cols


def snap_fig4(out: Path, cfg: SnapConfig = FIG4, argv=None, progress=None) -> dict:
    r = train_snap(cfg, progress)
    loss = r["loss"][:, 0].numpy()
    vs_log = {str(t): {"groklab": float(loss[t]), "log": v, "rel_err": float(abs(loss[t] - v) / v)}
              for t, v in FIG4_LOSS.items() if t < cfg.niter}
    f = r["facts"]
    c = r["c"][:, 0].numpy()                                 # (T+1, N, K) for the one member
    nc = f.num_common
    p0 = f.probs[0].double().numpy()
    summary = {
        "loss_vs_log": vs_log,
        "max_rel_err_it_le_20": max(v["rel_err"] for k, v in vs_log.items() if int(k) <= 20),
        "common_mass": {"t0": float(c[0, :, :nc].sum(-1).mean()), "final": float(c[-1, :, :nc].sum(-1).mean())},
        "distinct_rank_corr_with_P_final": float(np.mean([spearman(c[-1, n, nc:], f.probs[n, nc:].numpy())
                                                          for n in range(c.shape[1])])),
        "entropy_all": {"t0": float(r["entropy"][0, 0]), "final": float(r["entropy_final"][0])},
        "entropy_distinct": {"t0": float(r["entropy_distinct"][0, 0]), "final": float(r["entropy_distinct_final"][0])},
        "snap_iteration": int(r["snap"][0]), "freeze_iteration": int(r["freeze"][0]), "snap_frac": cfg.snap_frac,
        "M": f.M, "wall_s": r["wall_s"],
    }
    write_run(out, "snap.fig4", cfg.to_dict(), _member_columns(r, cfg), summary,
              {"c": c, "Z": r["Z"][0].numpy(), "Y": r["Y"][0].numpy(), "probs": f.probs.numpy(),
               "tokens": f.tokens.numpy(), "p_common_first": p0}, argv)
    return summary


def snap_grid(out: Path, num_lasts=(1, 3, 5, 10), seeds=tuple(range(1, 11)), lr_z=(0.5, 1.0, 2.0, 3.0),
              ratios=(1.0, 2.0, 5.0, 10.0), niter: int = 100, snap_frac: float = 0.05, argv=None, progress=None) -> dict:
    cfgs = [SnapConfig(**{**fig6_config(nl, seeds, lr_z, ratios).__dict__, "niter": niter, "snap_frac": snap_frac})
            for nl in num_lasts]                               # validated before anything runs
    rows, cols, wall = [], {}, 0.0
    final_entropy, KM = {}, {}
    for cfg in cfgs:
        r = train_snap(cfg, progress)
        wall += r["wall_s"]
        for k, v in _member_columns(r, cfg).items():
            cols.setdefault(k, []).append(v)
        S, G1, G2 = len(cfg.seeds), len(cfg.lr_z), len(cfg.lr_y_multi_on_z)
        ent = r["entropy_distinct_final"].view(S, G1, G2)
        ent_all = r["entropy_final"].view(S, G1, G2)
        snap = r["snap"].view(S, G1, G2).double()
        freeze = r["freeze"].view(S, G1, G2).double()
        final_entropy[cfg.data.num_last] = ent.numpy()
        KM[cfg.data.num_last] = (int(r["facts"].probs.shape[0]), int(r["facts"].M))  # paper's K (next tokens), M
        for i, lz in enumerate(cfg.lr_z):
            for j, rt in enumerate(cfg.lr_y_multi_on_z):
                paper = FIG6_ENTROPY.get((cfg.data.num_last, lz, int(rt)) if float(rt).is_integer() else None)
                e = ent[:, i, j]
                rows.append({"num_last": cfg.data.num_last, "lr_z": lz, "lr_y_multi_on_z": rt,
                             "entropy": float(e.mean()), "entropy_std": float(e.std()) if S > 1 else 0.0,
                             "paper": paper[0] if paper and S == 10 and niter == 100 else None,
                             "paper_std": paper[1] if paper and S == 10 and niter == 100 else None,
                             "entropy_all_tokens": float(ent_all[:, i, j].mean()),
                             "snap_mean": float(snap[:, i, j][snap[:, i, j] >= 0].mean()) if (snap[:, i, j] >= 0).any() else None,
                             "snap_std": _std(snap[:, i, j][snap[:, i, j] >= 0]),
                             "snap_never": int((snap[:, i, j] < 0).sum()),
                             "freeze_mean": float(freeze[:, i, j].mean()), "freeze_std": _std(freeze[:, i, j])})
    diffs = [abs(r["entropy"] - r["paper"]) for r in rows if r["paper"] is not None]
    # Theorem 4 of the paper (Sec. 6, Eq. 14): t0 ~ c K ln M / eta_Y; only c is fitted (see snap_theory)
    theory = {"all": compare(rows, KM), "ratio_ge_5": compare(rows, KM, min_ratio=5.0),
              "K_M": {str(k): list(v) for k, v in KM.items()}}
    c_fit = theory["all"]["fit"]["c"] if "fit" in theory["all"] else None
    for r in rows:
        K, M = KM[r["num_last"]]
        lr_y = r["lr_z"] * r["lr_y_multi_on_z"]
        r["snap_t0_paper"] = float(transition_time(lr_y, K, M, PAPER_C))
        r["snap_pred"] = float(transition_time(lr_y, K, M, c_fit)) if c_fit is not None else None
    summary = {"table": rows, "compared_with_paper": len(diffs), "max_abs_diff_vs_paper": max(diffs) if diffs else None,
               "snap_theory": theory, "snap_frac": snap_frac, "wall_s": wall}
    metrics = {k: np.concatenate(v) for k, v in cols.items()}
    arrays = {f"entropy_final_num_last_{k}": v for k, v in final_entropy.items()}
    config = {"num_lasts": list(num_lasts), "seeds": list(seeds), "lr_z": list(lr_z), "ratios": list(ratios),
              "niter": niter, "snap_frac": snap_frac, "panels": [c.to_dict() for c in cfgs]}
    write_run(out, "snap.grid", config, metrics, summary, arrays, argv)
    return summary


def joma_toy_run(out: Path, cfg: ToyConfig = ToyConfig(), argv=None) -> dict:
    r = joma_toy(cfg)
    summary = {"entropy_t0": float(r["entropy"][0]), "min_entropy": r["min_entropy"], "min_iter": r["min_iter"],
               "final_entropy": r["final_entropy"], "mu": r["mu"].tolist()}
    write_run(out, "joma.toy", cfg.to_dict(), {"iteration": np.arange(cfg.niter), "entropy": r["entropy"].numpy()},
              summary, {"v": r["v"].numpy(), "mu": r["mu"].numpy()}, argv)
    return summary


def joma_linear_run(out: Path, cfg: LinearConfig = LinearConfig(), seeds=(0,), argv=None) -> dict:
    cols: dict[str, list] = {}
    per_seed, first = [], None
    for s in seeds:
        r = joma_linear(LinearConfig(**{**cfg.to_dict(), "seed": s}))
        first = first or r
        T = cfg.niter
        for k, v in (("seed", np.full(T, s)), ("iteration", np.arange(T)), ("corr", r["corr"].numpy()),
                     ("corr1", r["corr1"].numpy()), ("corr2", r["corr2"].numpy())):
            cols.setdefault(k, []).append(v)
        per_seed.append({"seed": s, "corr_min": float(r["corr"].min()), "corr_final": float(r["corr"][-1]),
                         "corr1_t0": float(r["corr1"][0]), "corr1_final": float(r["corr1"][-1]),
                         "final_loss": r["final_loss"]})
    summary = {"per_seed": per_seed,
               "corr_final_mean": float(np.mean([p["corr_final"] for p in per_seed])),
               "corr_min_over_seeds": float(min(p["corr_min"] for p in per_seed)),
               "corr1_t0_mean": float(np.mean([p["corr1_t0"] for p in per_seed])),
               "corr1_final_mean": float(np.mean([p["corr1_final"] for p in per_seed]))}
    write_run(out, "joma.linear", {**cfg.to_dict(), "seeds": list(seeds)}, {k: np.concatenate(v) for k, v in cols.items()},
              summary, {"X": first["X"].numpy(), "V_init": first["V_init"].numpy(), "V_final": first["V_final"].numpy(),
                        "v0": first["v0"].numpy()}, argv)
    return summary
