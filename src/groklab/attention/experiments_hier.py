"""JoMA multilayer experiment: train HierModel on HierData, per-layer attention entropy over training,
and Table 1's latent/hidden correlation at the end (against the same measure at initialisation,
the readout's control)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .hier import HierConfig, HierData, HierModel, attention_entropy, compute_corr
from .reference import WIKITEXT2_ENTROPY_3LAYER
from .runs import write_run

__all__ = ["train_hier", "latent_scores", "joma_hier_run"]


@torch.no_grad()
def latent_scores(model: HierModel, x: torch.Tensor, active: list[torch.Tensor]) -> list[float]:
    """Per layer l (bottom to top): mean over the latents of level l of the best |zero-mean correlation|
    of a hidden unit of transformer layer l (max-pooled over positions) with the latent's indicator."""
    _, hiddens, _ = model(x)
    out = []
    for l, gt in enumerate(active[:len(hiddens)]):
        hid = hiddens[l].max(dim=1).values                               # (B, d_hidden)
        c = compute_corr(gt, hid)                                        # (n_latent, d_hidden)
        out.append(float(c.max(dim=1).values.mean()))
    return out


def train_hier(cfg: HierConfig, seed: int, progress=None) -> dict:
    t0 = time.perf_counter()
    data = HierData(cfg, seed)
    model = HierModel(cfg, seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.wd)
    xe, ye, _ = data.generate(cfg.eval_batch)                            # fixed eval batch
    xt, _, act_t = data.generate(cfg.test_batch)                         # Table 1 test batch
    scores_init = latent_scores(model, xt, act_t)
    rows = []
    for t in range(cfg.niter + 1):
        if t % cfg.eval_every == 0 or t == cfg.niter:
            with torch.no_grad():
                logits, _, attns = model(xe)
                ev_loss = float(torch.nn.functional.cross_entropy(logits, ye))
                acc = float((logits.argmax(1) == ye).double().mean())
            row = {"iteration": t, "eval_loss": ev_loss, "eval_acc": acc}
            for l, a in enumerate(attns):
                row[f"entropy_{l}"], row[f"entropy_last_{l}"] = attention_entropy(a, xe, cfg.M - 1)
            rows.append(row)
            if progress is not None:
                progress(t, cfg.niter)
        if t == cfg.niter:
            break
        x, y, _ = data.generate(cfg.batchsize)
        opt.zero_grad()
        logits, _, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
    return {"rows": rows, "scores_init": scores_init, "scores_final": latent_scores(model, xt, act_t),
            "wall_s": time.perf_counter() - t0}


def _fall_rise(it: np.ndarray, e: np.ndarray) -> dict:
    i = int(np.argmin(e))
    return {"start": float(e[0]), "min": float(e[i]), "min_iter": int(it[i]), "end": float(e[-1]),
            "rise_after_min": float(e[-1] - e[i])}


def joma_hier_run(out: Path, cfg: HierConfig = HierConfig(), argv=None, progress=None) -> dict:
    cols: dict[str, list] = {}
    per_seed = []
    wall = 0.0
    for s in cfg.seeds:
        r = train_hier(cfg, s, progress)
        wall += r["wall_s"]
        for row in r["rows"]:
            cols.setdefault("seed", []).append(s)
            for k, v in row.items():
                cols.setdefault(k, []).append(v)
        per_seed.append({"seed": s, "scores_init": r["scores_init"], "scores_final": r["scores_final"],
                         "final_eval_acc": r["rows"][-1]["eval_acc"], "wall_s": r["wall_s"]})
    metrics = {k: np.asarray(v) for k, v in cols.items()}
    its = np.unique(metrics["iteration"])
    layers = {}
    for l in range(cfg.nlayer):
        for key in (f"entropy_{l}", f"entropy_last_{l}"):
            mean_curve = np.array([metrics[key][metrics["iteration"] == t].mean() for t in its])
            layers[key] = _fall_rise(its, mean_curve)
    headline = {
        "per_layer_entropy": {f"layer {l}": layers[f"entropy_{l}"] for l in range(cfg.nlayer)},
        "latent_corr_final": np.mean([p["scores_final"] for p in per_seed], axis=0).round(4).tolist(),
        "latent_corr_init": np.mean([p["scores_init"] for p in per_seed], axis=0).round(4).tolist(),
        "final_eval_acc": float(np.mean([p["final_eval_acc"] for p in per_seed])),
        "wall_s": round(wall, 1),
    }
    summary = {"headline": headline, "curves": layers, "per_seed": per_seed,
               "wikitext2_context_3layer": WIKITEXT2_ENTROPY_3LAYER}
    write_run(out, "joma.hier", cfg.to_dict(), metrics, summary, {"iterations": its}, argv)
    return summary
