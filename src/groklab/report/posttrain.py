"""The report page of a `groklab posttrain` folder: accuracy curves (r0, r1) for SFT vs RL, the
r1-vs-r0 frontier, the weight diagnostics per matrix side by side, and the verdict on each paper's
direction (seed intervals). HTML via report_common (Plotly inline, offline) plus PNGs via matplotlib.

Reads only the folder's files (config.json, summary.json, <arm>/metrics.parquet,
<arm>/weights.parquet); every problem with them is a one-line GroklabError naming the path, before
anything is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groklab.errors import GroklabError
from groklab.report.common import PALETTE, cell, esc, fmt, kv_table, note, page, plotly_div, png_bytes, read_json, read_parquet, require_columns, table, write_atomic

__all__ = ["report_posttrain"]

DIAG_PANELS = (("rot", "top-k subspace rotation (deg, mean of left/right max angle)"),
               ("sv_drift", "relative top-k singular-value drift"),
               ("topk_share", "share of ||dW||^2 in base top-k block (black ticks: chance)"),
               ("bf16_same", "entries unchanged in bf16"),
               ("dW_rel", "||dW|| / ||W0||"))
ARM_COLORS = {"sft": PALETTE[1], "rl": PALETTE[0], "rl_kl": PALETTE[2]}


def _load(folder: Path) -> tuple[dict, dict, dict[str, dict], dict[str, dict]]:
    meta = read_json(folder / "config.json")
    if not (isinstance(meta, dict) and meta.get("kind") == "groklab.posttrain"):
        raise GroklabError(f"{folder}: not a groklab posttrain folder (config.json without kind groklab.posttrain)")
    summary = read_json(folder / "summary.json")
    metrics, weights = {}, {}
    for arm in meta["config"]["arms"]:
        metrics[arm] = read_parquet(folder / arm / "metrics.parquet")
        require_columns(metrics[arm], ("step", "pool", "seed", "acc_r0", "acc_r1", "acc_pool"), folder / arm / "metrics.parquet")
        weights[arm] = read_parquet(folder / arm / "weights.parquet")
        require_columns(weights[arm], ("step", "pool", "seed", "matrix", "chance_share", "rot_left", "rot_right"), folder / arm / "weights.parquet")
        w = weights[arm]
        w["rot"] = (w["rot_left"] + w["rot_right"]) / 2
    return meta, summary, metrics, weights


def _curve(m: dict, pool: int, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """steps, mean, min, max over seeds of metric `key` for one pool."""
    sel = m["pool"] == pool
    steps = np.unique(m["step"][sel])
    vals = np.array([[m[key][sel & (m["step"] == s) & (m["seed"] == sd)][0] for sd in np.unique(m["seed"][sel])] for s in steps])
    return steps, vals.mean(1), vals.min(1), vals.max(1)


def _final_per_matrix(w: dict, pool: int, key: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    sel = (w["pool"] == pool) & (w["step"] == w["step"].max())
    names = list(dict.fromkeys(np.asarray(w["matrix"], dtype=object)[sel].tolist()))
    mats = np.asarray(w["matrix"], dtype=object)
    vals = np.array([w[key][sel & (mats == n)] for n in names])  # (matrices, seeds)
    return names, vals.mean(1), vals.std(1)


def _accuracy_png(cfg: dict, metrics: dict) -> bytes:
    from matplotlib.figure import Figure

    pools = cfg["pools"]
    fig = Figure(figsize=(5.2 * len(pools), 7.4), layout="constrained")
    for j, pool in enumerate(pools):
        ax = fig.add_subplot(2, len(pools), len(pools) + j + 1)  # the frontier: r1 against r0 along training
        for arm, m in metrics.items():
            _, r0, _, _ = _curve(m, pool, "acc_r0")
            _, r1, _, _ = _curve(m, pool, "acc_r1")
            ax.plot(r0, r1, ".-", color=ARM_COLORS[arm], label=arm)
            ax.plot(r0[:1], r1[:1], "ko", ms=4)
        ax.set_xlabel("held-out r0 accuracy (mean over seeds)")
        ax.set_ylabel("held-out r1 accuracy")
        ax.set_title(f"forgetting vs learning, pool {pool} (black: base)", fontsize=9)
        ax.legend(fontsize=7)
        ax = fig.add_subplot(2, len(pools), j + 1)
        for arm, m in metrics.items():
            for key, ls in (("acc_r0", "-"), ("acc_r1", "--")):
                s, mu, lo, hi = _curve(m, pool, key)
                ax.plot(s, mu, ls, color=ARM_COLORS[arm], label=f"{arm} {key[4:]}")
                ax.fill_between(s, lo, hi, color=ARM_COLORS[arm], alpha=0.12, lw=0)
        ax.set_title(f"pool {'all r0 train prompts' if pool == 0 else pool}")
        ax.set_xlabel("post-training step (same samples per step for every arm)")
        ax.set_ylabel("held-out accuracy (solid r0, dashed r1)")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, ncol=2)
    return png_bytes(fig)


def _diagnostics_png(cfg: dict, weights: dict) -> bytes:
    from matplotlib.figure import Figure

    pools = cfg["pools"]
    fig = Figure(figsize=(5.5 * len(pools), 2.4 * len(DIAG_PANELS)), layout="constrained")
    arms = list(weights)
    for i, (key, label) in enumerate(DIAG_PANELS):
        for j, pool in enumerate(pools):
            ax = fig.add_subplot(len(DIAG_PANELS), len(pools), i * len(pools) + j + 1)
            for a, arm in enumerate(arms):
                names, mu, sd = _final_per_matrix(weights[arm], pool, key)
                x = np.arange(len(names)) + (a - (len(arms) - 1) / 2) * 0.8 / len(arms)
                ax.bar(x, mu, width=0.8 / len(arms), yerr=sd, color=ARM_COLORS[arm], label=arm)
            if key == "topk_share":
                names, ch, _ = _final_per_matrix(weights[arms[0]], pool, "chance_share")
                ax.scatter(np.arange(len(names)), ch, marker="_", color="k", s=200, label="chance")
            ax.set_xticks(np.arange(len(names)), names, rotation=45, fontsize=7)
            ax.set_title(f"{label} · pool {pool}", fontsize=8)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    return png_bytes(fig)


def _accuracy_plotly(cfg: dict, metrics: dict) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pools = cfg["pools"]
    fig = make_subplots(rows=1, cols=len(pools), subplot_titles=[f"pool {p}" for p in pools])
    for j, pool in enumerate(pools):
        for arm, m in metrics.items():
            for key, dash in (("acc_r0", "solid"), ("acc_r1", "dash"), ("acc_pool", "dot")):
                s, mu, _, _ = _curve(m, pool, key)
                fig.add_trace(go.Scatter(x=s, y=mu, name=f"{arm} {key}", line=dict(color=ARM_COLORS[arm], dash=dash),
                                         legendgroup=arm, showlegend=j == 0), row=1, col=j + 1)
    fig.update_yaxes(range=[0, 1.02], title_text="accuracy (mean over seeds)")
    fig.update_xaxes(title_text="post-training step")
    fig.update_layout(height=420, title="r0 (solid, held-out), r1 (dashed, held-out), r0 pool (dotted)")
    return plotly_div(fig, "accuracy")


def _frontier_plotly(cfg: dict, metrics: dict) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pools = cfg["pools"]
    fig = make_subplots(rows=1, cols=len(pools), subplot_titles=[f"pool {p}" for p in pools])
    for j, pool in enumerate(pools):
        for arm, m in metrics.items():
            _, r0, _, _ = _curve(m, pool, "acc_r0")
            _, r1, _, _ = _curve(m, pool, "acc_r1")
            fig.add_trace(go.Scatter(x=r0, y=r1, mode="lines+markers", name=arm, line=dict(color=ARM_COLORS[arm]),
                                     showlegend=j == 0), row=1, col=j + 1)
    fig.update_xaxes(title_text="held-out r0 accuracy")
    fig.update_yaxes(title_text="held-out r1 accuracy")
    fig.update_layout(height=400, title="forgetting vs learning: r1 against r0 along post-training (mean over seeds)")
    return plotly_div(fig, "frontier")


def _iv(d: dict | None) -> str:
    if not d or d.get("mean") is None:
        return "—"
    return fmt(d["mean"]) + (f" ± {fmt(d['ci95'])}" if d.get("ci95") is not None else "")


def report_posttrain(folder: Path) -> Path:
    """Write folder/report.html, accuracy.png and diagnostics.png; return the HTML path."""
    folder = Path(folder)
    meta, summary, metrics, weights = _load(folder)
    cfg = meta["config"]
    claims_rows = []
    for i, c in enumerate(summary["claims"]):
        kind = c["verdict"]
        claims_rows.append([f"<td>{esc(c['matching'])}</td>", f"<td>{esc(c['arm'])}</td>", cell(c["pool"]),
                            f"<td>{esc(c['claim'])}</td>", f"<td>{esc(c['metric'])}</td>",
                            cell(c["rl_minus_sft"]["mean"], f"claim-{i}-mean"), f"<td>{esc(_iv(c['rl_minus_sft']))}</td>",
                            f"<td>{esc(kind)}</td>"])
    keys = ("acc_r0", "acc_r1", "acc_pool", "d_acc_r0", "d_acc_r1", "rot", "sv_drift", "topk_share", "bf16_same", "dW_rel")
    group_rows = [[f"<td>{esc(g['arm'])}</td>", cell(g["pool"])] + [f"<td>{esc(_iv(g[k]))}</td>" for k in keys]
                  + [f"<td>{esc(_iv(g['matched']['d_acc_r1']))}</td>", f"<td>{esc(_iv(g['matched']['step']))}</td>"]
                  for g in summary["groups"]]
    pngs = {folder / "accuracy.png": _accuracy_png(cfg, metrics), folder / "diagnostics.png": _diagnostics_png(cfg, weights)}
    base = summary.get("base", {})
    body = (
        "<h2>Verdicts (RL minus SFT, paired by seed; mean ± 95% t-interval)</h2>"
        + note("“holds”: the paper's sign with an interval excluding 0. “final”: after the same number of "
               "samples; “matched r0 gain”: where each member's held-out r0 accuracy first rose by the same amount "
               "(half the smallest final gain of any arm in that pool).")
        + table(["matching", "arm", "pool", "claim", "metric", "mean", "mean ± ci95", "verdict"], claims_rows, cls="sortable", ident="claims")
        + "<h2>Accuracy over post-training</h2>" + _accuracy_plotly(cfg, metrics)
        + '<p><img src="accuracy.png" alt="accuracy curves" style="max-width:100%"></p>'
        + _frontier_plotly(cfg, metrics)
        + "<h2>Weight-space diagnostics per matrix (final, mean ± sd over seeds)</h2>"
        + '<p><img src="diagnostics.png" alt="weight diagnostics" style="max-width:100%"></p>'
        + "<h2>Final values per arm and pool (mean ± 95% interval over seeds)</h2>"
        + table(["arm", "pool", *keys, "matched d_acc_r1", "matched step"], group_rows, cls="sortable", ident="groups")
        + "<h2>Base</h2>" + kv_table({k: v for k, v in base.items()})
        + "<h2>Configuration</h2>" + kv_table({**cfg, "task": meta.get("task", {}), "argv": " ".join(meta.get("argv", []))})
    )
    sub = (f"{esc(folder)} · {esc(cfg['group'])}, r0 = {esc(cfg['r0'])}, {cfg['hops']}-step answers · "
           f"arms {esc(', '.join(cfg['arms']))} · pools {esc(cfg['pools'])} · seeds {esc(cfg['seeds'])} · "
           f"wall {fmt(summary.get('wall_s'))} s")
    html_path = folder / "report.html"
    write_atomic({**pngs, html_path: page(f"groklab posttrain: {folder.name}", sub, body)})
    return html_path
