"""The page of a superposition run folder: accuracy per arm over training, and the paper's probes
of the Coconut thoughts (inner products by node group, layer-2 attention by edge group), trained
against the same network at initialisation. Reads only the run folder (config.json,
metrics.parquet, and summary.json / probes.json when present: a folder cut short is drawn from what
its finished arms left, under a warning); writes report.html and report.png beside them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groklab.errors import GroklabError
from groklab.report.common import PALETTE, cell, esc, kv_table, note, page, plotly_div, png_bytes, read_json, read_parquet, table, write_atomic

__all__ = ["write_report"]

ARM_NAMES = {"coconut": "Coconut (continuous thoughts)", "cot": "discrete CoT", "nocot": "no CoT"}
NODE_GROUPS = ("optimal", "frontier_not_optimal", "frontier", "reachable", "reachable_not_root", "not_reachable")
EDGE_GROUPS = ("optimal", "frontier", "reachable", "not_reachable")


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _probe_table(steps: list[dict], groups, label: str) -> str:
    heads = ["group"] + [f"{label} {i}" for i in range(len(steps))]
    rows = []
    for g in groups:
        rows.append([cell(g)] + [cell(f"{_fmt(s[g]['mean'])} ± {_fmt(s[g]['std'])} (n={s[g]['n']})") for s in steps])
    return table(heads, rows)


def _contrast_table(probes: dict) -> str:
    rows = []
    for when in ("trained", "init"):
        for c in probes[when]["contrast"][0]:
            rows.append([cell(when), cell(c.replace("_vs_", " − ").replace("_", " "))]
                        + [cell("–" if s[c]["mean"] is None else f"{s[c]['mean']:+.3f} ± {s[c]['std']:.3f}, "
                                f"> 0 in {s[c]['positive']:.0%} of {s[c]['graphs']}") for s in probes[when]["contrast"]])
    return table(["network", "contrast"] + [f"thought {i + 1}" for i in range(len(probes["trained"]["contrast"]))], rows)


def write_report(run: Path) -> list[Path]:
    run = Path(run)
    head = read_json(run / "config.json")
    if head.get("kind") != "superposition-train":
        raise GroklabError(f"{run}/config.json: kind {head.get('kind')!r} is not 'superposition-train'")
    config = head["config"]
    m = read_parquet(run / "metrics.parquet")
    warn = ""
    if (run / "summary.json").exists():
        summary = read_json(run / "summary.json")
    else:  # cut short (INCOMPLETE): what the finished arms left in metrics.parquet
        arms_done = list(dict.fromkeys(m["arm"]))
        last = {a: int(np.nonzero(np.array(m["arm"]) == a)[0][-1]) for a in arms_done}
        summary = dict(final_acc={a: float(m["acc"][i]) for a, i in last.items()},
                       best_acc={a: float(m["acc"][np.array(m["arm"]) == a].max()) for a in arms_done},
                       seconds={a: float(m["seconds"][i]) for a, i in last.items()})
        warn = note(esc(f"INCOMPLETE run: it stopped before the end (no summary.json). Arms asked: "
                        f"{', '.join(config['arms'])}; rows present for: {', '.join(arms_done)}; the last arm may "
                        "be cut mid-training (its 'final' is its last evaluation)."), "warn")
    probes = read_json(run / "probes.json") if (run / "probes.json").exists() else {}
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    arms = list(dict.fromkeys(m["arm"]))
    arm_col = np.array(m["arm"])
    fig = go.Figure()
    mfig = Figure(figsize=(13, 3.6))
    axes = mfig.subplots(1, 3)
    for k, arm in enumerate(arms):
        sel = arm_col == arm
        fig.add_trace(go.Scatter(x=m["step"][sel], y=m["acc"][sel], name=ARM_NAMES.get(arm, arm),
                                 line=dict(color=PALETTE[k])))
        axes[0].plot(m["step"][sel], m["acc"][sel], color=PALETTE[k], label=ARM_NAMES.get(arm, arm))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance between the two candidates")
    fig.update_layout(title="answer accuracy on held-out graphs", xaxis_title="step", yaxis_title="accuracy",
                      yaxis_range=[0, 1.02], height=380)
    axes[0].axhline(0.5, ls=":", color="gray")
    axes[0].set(title="answer accuracy", xlabel="step", ylim=(0, 1.02))
    axes[0].legend(fontsize=8)
    body = warn + "<h2>Accuracy</h2>" + plotly_div(fig, "acc")
    body += table(["arm", "final accuracy", "best accuracy", "seconds"],
                  [[cell(ARM_NAMES.get(a, a)), cell(f"{summary['final_acc'][a]:.3f}"), cell(f"{summary['best_acc'][a]:.3f}"),
                    cell(f"{summary['seconds'][a]:.0f}")] for a in summary["final_acc"]])
    body += note("Paper (2 layers, width 768, ProsQA, 300 epochs): Coconut ≈ 98%, CoT ≈ 75%, no CoT ≈ 75%. "
                 "Accuracy counts the exact answer token (a wrong node counts as wrong), so an untrained model "
                 "sits near 0, not 0.5.")
    if probes:
        for j, (key, groups, label, title) in enumerate((("thought", NODE_GROUPS, "thought", "⟨thought i, node embedding⟩"),
                                                         ("edge_attention", EDGE_GROUPS, "step", "last-layer attention mass on edge (s, t, ⟨e⟩)"))):
            tr, ini = probes["trained"][key], probes["init"][key]
            groups = [g for g in groups if g in tr[0]]  # folders from before a group was added lack it
            f2 = go.Figure()
            for k, g in enumerate(groups):
                ys = [s[g]["mean"] for s in tr]
                xs = list(range(1, len(tr) + 1)) if key == "thought" else list(range(len(tr)))
                f2.add_trace(go.Scatter(x=xs, y=ys, name=g, mode="lines+markers", line=dict(color=PALETTE[k])))
                f2.add_trace(go.Scatter(x=xs, y=[s[g]["mean"] for s in ini], name=g + " (init)", mode="lines",
                                        line=dict(color=PALETTE[k], dash="dot"), showlegend=False))
                axes[j + 1].plot(xs, [np.nan if y is None else y for y in ys], "o-", color=PALETTE[k], label=g)
                axes[j + 1].plot(xs, [np.nan if s[g]["mean"] is None else s[g]["mean"] for s in ini], ":", color=PALETTE[k])
            f2.update_layout(title=title + " (dotted: same network at init)", xaxis_title=label, height=380)
            axes[j + 1].set(title=title, xlabel=label)
            axes[j + 1].legend(fontsize=7)
            body += f"<h2>{esc(title)}</h2>" + plotly_div(f2, key)
            body += "<p>trained</p>" + _probe_table(tr, groups, label) + "<p>at initialisation (control)</p>" + _probe_table(ini, groups, label)
        if "contrast" in probes["trained"]:  # folders from before the within-graph contrasts lack them
            body += "<h2>Within-graph contrasts of ⟨thought i, node⟩</h2>" + _contrast_table(probes)
            body += note("Per graph: the difference of two group means, then its mean ± spread over the graphs that "
                         "have both groups, and the share of graphs where it is positive. Pooled group means mix "
                         "graphs of different thought norms; these do not (on the exact construction optimal − "
                         "frontier-not-optimal is 0 in every graph).")
    else:
        for ax in axes[1:]:
            ax.text(0.5, 0.5, "no probes.json: the run stopped before\nthe probes were written", ha="center", va="center", fontsize=9)
            ax.set_axis_off()
        body += note("No probes.json: the run stopped before the probes of the Coconut thoughts were written.", "missing")
    body += "<h2>Configuration</h2>" + kv_table(config)
    mfig.tight_layout()
    files = {run / "report.html": page("Reasoning by superposition: Coconut vs CoT vs no CoT",
                                       esc(str(run)), body),
             run / "report.png": png_bytes(mfig)}
    write_atomic(files)
    return list(files)
