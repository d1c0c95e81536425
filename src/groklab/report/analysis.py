"""The analysis part of a run report: stage bands, feature purity, irreps covered, the irrep
(Fourier) spectrum of the hidden units over time, and the final per-unit feature map.

analysis.parquet is written by `groklab analyze` (groklab.analysis: one row per analysed step and
member, scalar measures, and ``spectrum_<block>`` columns; summary.json gets ``stages`` and
``analysis.blocks``). This module reads what it finds, so it also takes a list column
``spectrum`` and optional per-unit rows (a ``unit`` column). The final per-unit feature map is
computed from weights.safetensors (science.md §5: a unit's share of ‖w‖² per irrep block; on Z_M
the blocks are frequencies and a DFT gives them directly), so it shows even before the analysis.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from groklab.report.common import (
    PALETTE,
    XLABEL,
    esc,
    lean_log_axes,
    log_scale,
    note,
    plotly_div,
    png_bytes,
    xstep,
)
from groklab.report.run import Run, add_curves, band_shapes, stage_spans

# Drawn first, in this order (groklab.analysis writes these and ~15 more; the rest follow in a
# second figure). The first four are what the features verdict and the stages are read from
# (analysis/stages.py): E climbing, whether the climb transfers to all pairs, purity, irreps held.
KNOWN = ("energy_weighted", "energy_transfer", "purity_weighted", "irreps_covered", "gf_indep_cos", "gf_missing_share",
         "units_active", "gf_norm")
NOT_CURVES = {"step", "member", "seed", "unit"}
PREFIXED = re.compile(r"^(spectrum|block_energy|irrep_energy)_(.+)$")
MAX_PANELS = 8


def analysis_section(run: Run) -> tuple[str, dict[str, bytes]]:
    """HTML of the analysis section and its PNGs ({"analysis": bytes} or {"features": bytes})."""
    parts: list[str] = []
    a = run.analysis
    fmap = feature_map(run)
    if a is None:
        parts.append(note(f"analysis not run yet: <code>groklab analyze {esc(run.path)}</code> "
                          "(stages, feature purity, irreps covered and the spectrum over time appear here then)",
                          "missing"))
    else:
        rows = _step_rows(a)
        names = curve_columns(rows)
        spans = stage_spans(run)
        parts += stage_notes(run, spans)
        if names:
            parts.append(plotly_div(curves_fig(rows, names[:MAX_PANELS], spans), "fig-analysis"))
        else:
            parts.append(note("analysis.parquet has no per-step measures to plot", "missing"))
        if len(names) > MAX_PANELS:
            parts.append(plotly_div(curves_fig(rows, names[MAX_PANELS:], spans, "more measures"), "fig-analysis-more"))
        spec = spectrum(rows, run)
        if spec is not None:
            parts.append(plotly_div(spectrum_fig(*spec), "fig-spectrum"))
        else:
            parts.append(note("no per-block spectrum in analysis.parquet (expected a list column "
                              "<code>spectrum</code> or columns <code>spectrum_&lt;block&gt;</code>)", "missing"))
    if fmap is not None:
        parts.append(plotly_div(feature_fig(*fmap), "fig-features"))
    elif a is not None or run.weights is not None:
        parts.append(note("no per-unit feature map: needs final weights (Li2 W [E, K, 2M]) of a group task", "missing"))
    pngs: dict[str, bytes] = {}
    if a is not None or fmap is not None:
        pngs["analysis" if a is not None else "features"] = analysis_png(run, fmap)
    return "\n".join(parts), pngs


def stage_notes(run: Run, spans: list) -> list[str]:
    """The stage spans as text, the rule they come from, and why a member has none."""
    raw = (run.summary or {}).get("stages")
    rule = raw.get("rule") if isinstance(raw, dict) else None
    out = []
    if spans:
        out.append("<p>Stages (median over members): " + ", ".join(
            f'<span class="stage" data-stage="{esc(n)}">{esc(n)} {a:.0f}–{b:.0f}</span>' for n, a, b in spans) + "</p>")
    else:
        out.append(note("stages: none in summary.json (or in a shape this report does not read)", "missing"))
    members = raw.get("members") if isinstance(raw, dict) else None
    for m in members if isinstance(members, list) else []:
        if isinstance(m, dict) and (m.get("features") or m.get("note")):
            feat = f"features <b>{esc(m['features'])}</b>" if m.get("features") else ""
            text = "; ".join(x for x in (feat, esc(m.get("note") or "")) if x)
            who = f"member {esc(m.get('member'))}" + (f" (seed {esc(m['seed'])})" if m.get("seed") is not None else "")
            out.append(note(f"{who}: {text}", "info"))
    if rule:
        out.append(f'<p class="sub">stage rule: {esc(rule)}</p>')
    return out


def _step_rows(a: dict) -> dict:
    """Rows that describe a member at a step (not one hidden unit)."""
    if "unit" not in a:
        return a
    keep = ~np.isfinite(np.asarray(a["unit"], dtype=float))
    return _take(a, keep)


def _take(a: dict, keep: np.ndarray) -> dict:
    return {k: (v[keep] if isinstance(v, np.ndarray) else [x for x, k_ in zip(v, keep) if k_]) for k, v in a.items()}


def curve_columns(a: dict) -> list[str]:
    other = [k for k, v in a.items() if isinstance(v, np.ndarray) and k not in NOT_CURVES and k not in KNOWN
             and not PREFIXED.match(k) and np.isfinite(v.astype(float)).any()]
    return [k for k in KNOWN if k in a and np.isfinite(np.asarray(a[k], float)).any()] + other


def curves_fig(a: dict, names: list[str], spans: list, title: str = "analysis over training") -> Any:
    from plotly.subplots import make_subplots

    nrow = (len(names) + 1) // 2
    fig = make_subplots(rows=nrow, cols=2, subplot_titles=names, vertical_spacing=min(0.3 / nrow, 0.12))
    shapes: list[dict] = []
    layout: dict[str, Any] = {}
    for i, name in enumerate(names):
        r, c = i // 2 + 1, i % 2 + 1
        v = np.asarray(a[name], dtype=float)
        fin = v[np.isfinite(v)]
        if len(fin) and fin.min() > 0 and fin.max() / fin.min() > 100:  # spans decades: log y
            layout[fig.get_subplot(r, c).yaxis.plotly_name] = dict(type="log")
        shapes += band_shapes(fig, spans, r, c, legend=i == 0, labels=i < 2)
        add_curves(fig, a, name, name, PALETTE[i % len(PALETTE)], r, c, legend=False)
    fig.update_xaxes(type="log", title_text=XLABEL)
    fig.update_layout(height=300 * nrow + 90, title=f"{title} (members thin, mean bold)", shapes=shapes,
                      margin=dict(t=90), **layout)
    return fig


# ---------------------------------------------------------------------------------------------
# spectra


def _block_labels(run: Run, n: int, fallback: list[str] | None = None) -> list[str]:
    s = run.summary or {}
    for cand in (s.get("blocks"), (s.get("analysis") or {}).get("blocks") if isinstance(s.get("analysis"), dict) else None,
                 s.get("irreps")):
        if isinstance(cand, list) and len(cand) == n:
            return [str(c.get("name", c)) if isinstance(c, dict) else str(c) for c in cand]
    return fallback if fallback and len(fallback) == n else [f"block {k}" for k in range(n)]


def _spectrum_columns(a: dict) -> tuple[np.ndarray, list[str] | None] | None:
    """[rows, B] per-block values from a list column or from prefixed scalar columns."""
    lists = [k for k, v in a.items() if "spectrum" in k and isinstance(v, list)]
    for k in sorted(lists, key=lambda k: (k != "spectrum", k)):
        vals = a[k]
        lens = {len(x) for x in vals if x is not None}
        if len(lens) == 1 and lens != {0}:
            B = lens.pop()
            return np.array([x if x is not None else [np.nan] * B for x in vals], dtype=float), None
    pref = [k for k in a if PREFIXED.match(k) and isinstance(a[k], np.ndarray)]
    if pref:
        return np.stack([np.asarray(a[k], float) for k in pref], axis=1), [PREFIXED.match(k).group(2) for k in pref]
    return None


def spectrum(a: dict, run: Run) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    """(steps [S], block labels [B], share [B, S]): mean over members, each step normalised."""
    got = _spectrum_columns(a)
    if got is None:
        return None
    mat, names = got
    steps = np.unique(a["step"])
    idx = np.searchsorted(steps, a["step"])
    tot = np.zeros((len(steps), mat.shape[1]))
    cnt = np.zeros((len(steps), 1))
    ok = np.isfinite(mat).all(axis=1)
    np.add.at(tot, idx[ok], mat[ok])
    np.add.at(cnt, idx[ok], 1)
    mean = tot / np.maximum(cnt, 1)
    if (mean >= 0).all():
        mean = mean / np.maximum(mean.sum(axis=1, keepdims=True), 1e-300)
    mean[cnt[:, 0] == 0] = np.nan
    return steps, _block_labels(run, mat.shape[1], names), mean.T


def spectrum_fig(steps: np.ndarray, labels: list[str], z: np.ndarray) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(x=xstep(steps), y=labels, z=z, colorscale="Viridis", colorbar=dict(title="share"),
                               hovertemplate="step+1 %{x:.0f}<br>%{y}: %{z:.3f}<extra></extra>"))
    fig.update_xaxes(type="log", title_text=XLABEL)
    fig.update_yaxes(title_text="irrep block", type="category")
    fig.update_layout(height=max(320, 14 * len(labels) + 120),
                      title="irrep (Fourier) spectrum of the hidden units over time (share of weight energy, mean over members)")
    return fig


def feature_map(run: Run) -> tuple[np.ndarray, list[str], str] | None:
    """(share [B, K] with units sorted by their feature, block labels, source note) or None."""
    a = run.analysis
    if a is not None and "unit" in a:
        unit = np.asarray(a["unit"], float)
        rows = np.isfinite(unit)
        if rows.any():
            last = np.max(np.asarray(a["step"])[rows])
            mem = np.asarray(a.get("member", np.zeros(len(unit))))
            first = np.min(mem[rows])
            sub = _take(a, rows & (np.asarray(a["step"]) == last) & (mem == first))
            got = _spectrum_columns(sub)
            if got is not None:
                mat, names = got
                order = np.argsort(np.asarray(sub["unit"]))
                return _sorted_units(mat[order]), _block_labels(run, mat.shape[1], names), \
                    f"from analysis.parquet, member {first:.0f} at step {last:.0f}"
    return _features_from_weights(run)


def _features_from_weights(run: Run) -> tuple[np.ndarray, list[str], str] | None:
    """Block shares of each unit of member 0's first layer (mean over both operands). Z_M uses a
    DFT (instant); other groups groklab.theory.reps, whose irreps take ~1 s for M near 100."""
    group = str((run.summary or {}).get("group") or (run.config.get("task") or {}).get("group") or "")
    W = (run.weights or {}).get("W")
    if not group or W is None or W.ndim != 3 or W.shape[2] % 2:
        return None
    m = re.fullmatch(r"Z(\d+)", group)
    if m is None:
        return _features_from_reps(group, np.asarray(W[0], dtype=float))
    M = int(m.group(1))
    if W.shape[2] != 2 * M:
        return None
    W0 = np.asarray(W[0], dtype=float)  # [K, 2M], member 0
    power = np.abs(np.fft.rfft(W0[:, :M], axis=1)) ** 2 + np.abs(np.fft.rfft(W0[:, M:], axis=1)) ** 2  # [K, M//2+1]
    power[:, 1:(M + 1) // 2] *= 2  # k and -k form one real 2-d block (science.md §5)
    share = power / np.maximum(power.sum(axis=1, keepdims=True), 1e-300)
    labels = [f"k={k}" for k in range(share.shape[1])]
    return _sorted_units(share), labels, "from weights.safetensors (DFT of member 0's first layer over Z_M, both operands)"


def _features_from_reps(group: str, W0: np.ndarray) -> tuple[np.ndarray, list[str], str] | None:
    from groklab.errors import GroklabError

    try:
        from groklab.tasks import make_task
        from groklab.theory.reps import irreps, unit_features

        task = make_task(group)
        if not task.is_group or W0.shape[1] != 2 * task.table.shape[0]:
            return None
        uf = unit_features(irreps(task.table), W0)  # fractions [K, 2, n_blocks]
    except (GroklabError, ImportError, OSError, ValueError):
        return None
    share = uf.fractions.mean(axis=1)
    return _sorted_units(share), list(uf.names), "from weights.safetensors (member 0, irreps of groklab.theory.reps, both operands)"


def _sorted_units(share: np.ndarray) -> np.ndarray:
    """[K, B] -> [B, K], units ordered by dominant block, then by purity (descending)."""
    top = np.nanargmax(np.nan_to_num(share, nan=-1), axis=1)
    purity = np.nanmax(share, axis=1)
    order = np.lexsort((-purity, top))
    return share[order].T


def feature_fig(z: np.ndarray, labels: list[str], source: str) -> Any:
    import plotly.graph_objects as go

    purity = np.nanmax(z, axis=0)
    fig = go.Figure(go.Heatmap(z=z, y=labels, x=np.arange(z.shape[1]), colorscale="Magma", colorbar=dict(title="share"),
                               hovertemplate="unit #%{x} (sorted)<br>%{y}: %{z:.3f}<extra></extra>"))
    fig.update_xaxes(title_text=f"hidden unit (sorted by feature); mean purity {np.nanmean(purity):.2f}")
    fig.update_yaxes(title_text="irrep block", type="category")
    fig.update_layout(height=max(320, 12 * len(labels) + 120), title=f"final per-unit feature map — {source}")
    return fig


def analysis_png(run: Run, fmap: tuple | None) -> bytes:
    from matplotlib.figure import Figure

    a = run.analysis
    rows = _step_rows(a) if a is not None else None
    names = curve_columns(rows)[:4] if rows is not None else []
    spec = spectrum(rows, run) if rows is not None else None
    n = len(names) + (spec is not None) + (fmap is not None)
    ncol = min(max(n, 1), 3)
    nrow = -(-max(n, 1) // ncol)
    fig = Figure(figsize=(4.4 * ncol, 3.4 * nrow + 0.5))
    fig.subplots_adjust(left=0.5 / ncol / 4.4 * 3, right=0.98, bottom=0.5 / nrow / 3.4 * 2, top=1 - 0.7 / (3.4 * nrow + 0.5),
                        wspace=0.3, hspace=0.45)
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    from groklab.report.run import grid, joined, nanmean_rows

    spans = stage_spans(run) if a is not None else []
    for ax, name in zip(axes, names):
        steps, members, vals = grid(rows, name)
        ax.plot(*joined(steps, members, vals)[:2], lw=0.6, alpha=0.3, color="#555")
        ax.plot(xstep(steps), nanmean_rows(vals), lw=2, color="#d62728")
        for s, a_, b in spans:
            ax.axvspan(a_ + 1, b + 1, alpha=0.2, lw=0, color={"lazy": "#9ecae1", "independent": "#fdae6b"}.get(s, "#a1d99b"))
        log_scale(ax)
        ax.set_title(name, y=1.01)
        ax.set_xlabel("step + 1 (log)")
    i = len(names)
    if spec is not None:
        steps, labels, z = spec
        ax = axes[i]
        ax.imshow(z, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis")
        ticks = np.unique(np.linspace(0, len(steps) - 1, 5).astype(int))
        ax.set_xticks(ticks, [str(int(steps[t])) for t in ticks])
        ax.set_xlabel("step")
        ax.set_ylabel("irrep block")
        ax.set_title("spectrum over time", y=1.01)
        i += 1
    if fmap is not None:
        ax = axes[i]
        ax.imshow(fmap[0], aspect="auto", origin="lower", interpolation="nearest", cmap="magma")
        ax.set_xlabel("hidden unit (sorted)")
        ax.set_ylabel("irrep block")
        ax.set_title("final per-unit features", y=1.01)
    lean_log_axes(*axes)
    fig.suptitle(f"{run.label}: analysis")
    return png_bytes(fig)
