"""Reading a run folder for the report, and the training-curve figures (HTML and PNG).

A run folder is read whole before anything is drawn (`load_run`); a missing optional part
(summary, metrics, weights, analysis) becomes a note on the page, a damaged one a `GroklabError`.
The format is docs/formats.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groklab.errors import GroklabError
from groklab.report.common import (
    PALETTE,
    TEST_COLOR,
    TRAIN_COLOR,
    XLABEL,
    esc,
    read_json,
    read_parquet,
    require_columns,
    xstep,
)

METRIC_COLUMNS = ("step", "member", "train_acc", "test_acc")
MEMBER_FIELDS = (
    "seed", "status", "final_train_acc", "final_test_acc", "final_train_loss", "final_test_loss",
    "step_memorized", "step_generalized", "diverged_step",
)


@dataclass
class Run:
    """Everything the report needs from one run folder, already validated."""

    path: Path
    meta: dict  # config.json as a whole
    summary: dict | None
    metrics: dict | None  # column -> array, rows after a member's divergence dropped
    analysis: dict | None
    weights: dict | None
    incomplete: bool
    missing: list[str] = field(default_factory=list)  # optional files not there

    @property
    def config(self) -> dict:
        return self.meta.get("config") or {}

    @property
    def members(self) -> list[dict]:
        return list((self.summary or {}).get("members") or [])

    @property
    def label(self) -> str:
        task = self.config.get("task") or {}
        group = (self.summary or {}).get("group") or task.get("group") or task.get("name") or "?"
        return f"{self.path.name} ({group})"


def is_run(path: Path) -> bool:
    return (path / "config.json").is_file()


def load_run(path: Path) -> Run:
    """Read and check one run folder. Raises `GroklabError` (one line, naming the path)."""
    path = Path(path)
    if not path.exists():
        raise GroklabError(f"{path}: no such folder")
    if not path.is_dir():
        raise GroklabError(f"{path}: not a folder (expected a groklab run or sweep folder)")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise GroklabError(f"{path}: not a groklab run or sweep folder (no config.json, no index.parquet)")
    meta = read_json(cfg_path)
    if not isinstance(meta, dict) or meta.get("kind") != "groklab.run":
        kind = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
        raise GroklabError(f"{cfg_path}: kind {kind!r} is not 'groklab.run'; not a groklab run folder")
    if not isinstance(meta.get("config", {}), dict):
        raise GroklabError(f"{cfg_path}: 'config' must be an object with task, model, train")

    missing: list[str] = []
    summary = None
    if (path / "summary.json").is_file():
        summary = read_json(path / "summary.json")
        if not isinstance(summary, dict) or not isinstance(summary.get("members", []), list):
            raise GroklabError(f"{path / 'summary.json'}: not a groklab summary (expected an object with 'members')")
    else:
        missing.append("summary.json")

    metrics = None
    if (path / "metrics.parquet").is_file():
        metrics = read_parquet(path / "metrics.parquet")
        require_columns(metrics, METRIC_COLUMNS, path / "metrics.parquet")
        metrics = _drop_after_divergence(metrics, summary)
    else:
        missing.append("metrics.parquet")

    analysis = None
    if (path / "analysis.parquet").is_file():
        analysis = read_parquet(path / "analysis.parquet")
        require_columns(analysis, ("step",), path / "analysis.parquet")

    weights = None
    if (path / "weights.safetensors").is_file():
        try:
            from safetensors.numpy import load_file

            weights = load_file(str(path / "weights.safetensors"))
        except Exception as e:
            raise GroklabError(f"{path / 'weights.safetensors'}: not a readable safetensors file ({str(e)[:120]})") from None
    else:
        missing.append("weights.safetensors")
    return Run(path, meta, summary, metrics, analysis, weights, (path / "INCOMPLETE").exists(), missing)


def _drop_after_divergence(m: dict, summary: dict | None) -> dict:
    """Metrics of a diverged member after its divergence are not results (formats.md)."""
    keep = np.ones(len(m["step"]), dtype=bool)
    for mem in (summary or {}).get("members") or []:
        d = mem.get("diverged_step") if isinstance(mem, dict) else None
        if d is not None:
            keep &= ~((m["member"] == mem.get("member")) & (m["step"] > d))
    if keep.all():
        return m
    return {k: (v[keep] if isinstance(v, np.ndarray) else [x for x, k_ in zip(v, keep) if k_]) for k, v in m.items()}


# ---------------------------------------------------------------------------------------------
# member matrices


def grid(cols: dict, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps [S], members [E], values [E, S]) of one column, NaN where a member has no row;
    non-finite values (a loss gone to inf) become NaN so they leave a gap, not a spike."""
    steps = np.unique(cols["step"])
    member = np.asarray(cols["member"]) if "member" in cols else np.zeros(len(cols["step"]))
    members = np.unique(member)
    vals = np.full((len(members), len(steps)), np.nan)
    si = np.searchsorted(steps, cols["step"])
    mi = np.searchsorted(members, member)
    v = np.asarray(cols[name], dtype=float)
    vals[mi, si] = np.where(np.isfinite(v), v, np.nan)
    return steps, members, vals


def nanmean_rows(vals: np.ndarray) -> np.ndarray:
    ok = np.isfinite(vals)
    n = ok.sum(axis=0)
    s = np.where(ok, vals, 0.0).sum(axis=0)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def joined(steps: np.ndarray, members: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All members as one line trace broken by NaN: one trace draws E members quickly."""
    E, S = vals.shape
    x = np.full((E, S + 1), np.nan)
    y = np.full((E, S + 1), np.nan)
    c = np.zeros((E, S + 1))
    x[:, :S] = xstep(steps)
    y[:, :S] = vals
    c[:] = members[:, None]
    return x.ravel(), y.ravel(), c.ravel()


# ---------------------------------------------------------------------------------------------
# training curves (plotly)


def add_curves(fig: Any, cols: dict, name: str, label: str, color: str, row: int, col: int,
               dash: str = "solid", legend: bool = True, group: str | None = None) -> None:
    """Members as thin lines (when E > 1) and their mean in bold."""
    import plotly.graph_objects as go

    steps, members, vals = grid(cols, name)
    group = group or label
    if len(members) > 1:
        x, y, c = joined(steps, members, vals)
        fig.add_trace(go.Scattergl(
            x=x, y=y, customdata=c, mode="lines", line=dict(width=0.8, color=color, dash=dash), opacity=0.35,
            name=f"{label} (members)", legendgroup=group, showlegend=False,
            hovertemplate=f"{esc(label)} member %{{customdata:.0f}}<br>step %{{x:.0f}}-1: %{{y:.4g}}<extra></extra>",
        ), row=row, col=col)
    mean_label = f"{label} (mean of {len(members)})" if len(members) > 1 else label
    fig.add_trace(go.Scatter(
        x=xstep(steps), y=nanmean_rows(vals), mode="lines", line=dict(width=2.5, color=color, dash=dash),
        name=mean_label, legendgroup=group, showlegend=legend,
        hovertemplate=f"{esc(mean_label)}<br>step+1 %{{x:.0f}}: %{{y:.4g}}<extra></extra>",
    ), row=row, col=col)


def add_events(fig: Any, run: Run, row: int, col: int, color_mem: str = TRAIN_COLOR,
               color_gen: str = TEST_COLOR, prefix: str = "") -> None:
    """Markers at each member's step_memorized / step_generalized / diverged_step (y = 0.99 / 0)."""
    import plotly.graph_objects as go

    kinds = (("step_memorized", "memorized", "triangle-up", color_mem, 0.99),
             ("step_generalized", "generalized", "star", color_gen, 0.99),
             ("diverged_step", "diverged", "x", "#000000", 0.0))
    for key, word, symbol, color, y in kinds:
        pts = [(m[key], m.get("member")) for m in run.members if isinstance(m, dict) and m.get(key) is not None]
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[p[0] + 1 for p in pts], y=[y] * len(pts), mode="markers",
            marker=dict(symbol=symbol, size=11, color=color, line=dict(width=1, color="#333")),
            name=f"{prefix}{key}",
            text=[f"{prefix}member {m}: {word} at step {s}" for s, m in pts], hovertemplate="%{text}<extra></extra>",
        ), row=row, col=col)
        if key != "diverged_step":  # a dotted line at the members' median
            med = float(np.median([p[0] for p in pts])) + 1
            fig.add_trace(go.Scatter(
                x=[med, med], y=[0, 1.02], mode="lines", line=dict(width=1, dash="dot", color=color),
                showlegend=False, hoverinfo="skip",
            ), row=row, col=col)


def band_shapes(fig: Any, spans: list[tuple[str, float, float]], row: int, col: int, legend: bool = True,
                labels: bool = False) -> list[dict]:
    """Stage bands as layout shapes over the full height of subplot (row, col), to be set on the
    figure in one `update_layout(shapes=...)` (one trace or add_shape each costs ~10 ms). Shapes
    take data values on a log axis (plotly.js#6194; only annotations want log10 units)."""
    sp = fig.get_subplot(row, col)
    xref, yref = sp.xaxis.plotly_name.replace("axis", ""), sp.yaxis.plotly_name.replace("axis", "") + " domain"
    return [dict(type="rect", xref=xref, yref=yref, x0=a + 1, x1=b + 1, y0=0, y1=1,
                 fillcolor=STAGE_COLORS.get(name, "#cccccc"), opacity=0.2, line_width=0, layer="below",
                 name=f"stage: {name} ({a:.0f}–{b:.0f})", legendgroup=f"stage {name}", showlegend=legend,
                 label=dict(text=name, textposition="top center", font=dict(size=10, color="#666")) if labels else None)
            for name, a, b in spans if b >= a]


STAGE_COLORS = {"lazy": "#9ecae1", "independent": "#fdae6b", "interactive": "#a1d99b"}


def curves_figure(runs: list[Run], title: str) -> Any:
    """Accuracy (wide), loss and weight norms on a log step axis; several runs share the axes."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, specs=[[{"colspan": 2}, None], [{}, {}]], vertical_spacing=0.12,
                        subplot_titles=("accuracy", "loss", "weight norms (Frobenius)"))
    many = len(runs) > 1
    for i, run in enumerate(runs):
        m = run.metrics
        if m is None:
            continue
        p = f"{run.path.name}: " if many else ""
        c_tr, c_te = (PALETTE[i % len(PALETTE)],) * 2 if many else (TRAIN_COLOR, TEST_COLOR)
        add_curves(fig, m, "train_acc", f"{p}train acc", c_tr, 1, 1, dash="dash" if many else "solid")
        add_curves(fig, m, "test_acc", f"{p}test acc", c_te, 1, 1)
        for j, (name, dash) in enumerate((("train_loss", "dash"), ("test_loss", "solid"))):
            if name in m:
                add_curves(fig, m, name, f"{p}{name.replace('_', ' ')}", c_tr if j == 0 else c_te, 2, 1,
                           dash=dash if many else "solid", legend=False)
        for name, color, dash in (("w_norm", "#2ca02c", "solid"), ("v_norm", "#9467bd", "dash")):
            if name in m:
                add_curves(fig, m, name, f"{p}{name} ({'first' if name == 'w_norm' else 'top'} layer)",
                           PALETTE[i % len(PALETTE)] if many else color, 2, 2, dash=dash if many else "solid")
        add_events(fig, run, 1, 1, c_tr, c_te, prefix=p)
        if not many:
            fig.update_layout(shapes=band_shapes(fig, stage_spans(run), 1, 1, labels=True))
    fig.update_xaxes(type="log", title_text=XLABEL)
    fig.update_yaxes(title_text="accuracy", range=[-0.02, 1.04], row=1, col=1)
    fig.update_yaxes(type="log", title_text="loss", row=2, col=1)
    fig.update_yaxes(title_text="‖W‖, ‖V‖", row=2, col=2)
    fig.update_layout(height=760, title=title, hovermode="closest", legend=dict(font=dict(size=11)))
    return fig


def curves_png(runs: list[Run], title: str) -> bytes:
    """The same curves for papers and terminals (matplotlib, Agg, no pyplot)."""
    from matplotlib.figure import Figure

    from groklab.report.common import lean_log_axes, log_scale, png_bytes

    fig = Figure(figsize=(13, 4))
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.14, top=0.86, wspace=0.22)
    axes = fig.subplots(1, 3)
    many = len(runs) > 1
    for i, run in enumerate(runs):
        m = run.metrics
        if m is None:
            continue
        p = f"{run.path.name}: " if many else ""
        pairs = [(0, "train_acc", TRAIN_COLOR, "--"), (0, "test_acc", TEST_COLOR, "-"), (1, "train_loss", TRAIN_COLOR, "--"),
                 (1, "test_loss", TEST_COLOR, "-"), (2, "w_norm", "#2ca02c", "-"), (2, "v_norm", "#9467bd", "--")]
        for ax_i, name, color, ls in pairs:
            if name not in m:
                continue
            color = PALETTE[i % len(PALETTE)] if many else color
            steps, members, vals = grid(m, name)
            ax = axes[ax_i]
            if len(members) > 1:  # one Line2D for all members (NaN-separated): far fewer artists
                x, y, _ = joined(steps, members, vals)
                ax.plot(x, y, color=color, lw=0.6, alpha=0.3, ls=ls)
            ax.plot(xstep(steps), nanmean_rows(vals), color=color, lw=2, ls=ls, label=p + name.replace("_", " "))
        for key, color in (("step_memorized", TRAIN_COLOR), ("step_generalized", TEST_COLOR)):
            for mem in run.members:
                if isinstance(mem, dict) and mem.get(key) is not None:
                    axes[0].axvline(mem[key] + 1, color=PALETTE[i % len(PALETTE)] if many else color, lw=0.8, ls=":")
        if not many:
            for name, a, b in stage_spans(run):
                axes[0].axvspan(a + 1, b + 1, color=STAGE_COLORS.get(name, "#ccc"), alpha=0.25, lw=0)
    for ax, t in zip(axes, ("accuracy", "loss", "weight norms")):
        log_scale(ax, x=True, y=t == "loss")
        ax.set_xlabel("step + 1 (log)")
        ax.set_title(t, y=1.01)  # a fixed y skips matplotlib's slow title auto-placement
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_ylim(-0.02, 1.04)
    lean_log_axes(*axes)
    fig.suptitle(title)
    return png_bytes(fig)


# ---------------------------------------------------------------------------------------------
# stages (summary["stages"], written by `groklab analyze`): read several plausible shapes


def stage_spans(run: Run) -> list[tuple[str, float, float]]:
    """(name, first step, last step) per stage, medians over members; [] when unknown."""
    last = float(np.max(run.metrics["step"])) if run.metrics is not None and len(run.metrics["step"]) else None
    raw = (run.summary or {}).get("stages")
    spans = median_stage_spans(raw, last) if raw else []
    if not spans and run.analysis is not None and "stage" in run.analysis:
        spans = _stages_from_column(run.analysis)
    return spans


def member_features(raw: Any) -> list[str]:
    """Each member's features verdict (generalizing / memorizing / none / undetermined) from
    summary.json's ``stages`` (analysis.stages), in member order; [] when absent."""
    members = raw.get("members") if isinstance(raw, dict) else None
    return [str(m.get("features")) for m in members or [] if isinstance(m, dict) and m.get("features")]


def median_stage_spans(raw: Any, last: float | None) -> list[tuple[str, float, float]]:
    """(name, median start, median end) per stage over members, from summary.json's ``stages``."""
    per: dict[str, list[tuple[float, float]]] = {}
    try:
        items = _stage_items(raw, last)
    except (TypeError, ValueError, KeyError, AttributeError):
        return []
    for name, a, b in items:
        per.setdefault(str(name), []).append((float(a), float(b)))
    return [(n, float(np.median([s[0] for s in v])), float(np.median([s[1] for s in v]))) for n, v in per.items()]


def _stage_items(raw: Any, last: float | None) -> list[tuple[str, float, float]]:
    if isinstance(raw, dict) and isinstance(raw.get("members"), list):
        raw = raw["members"]
    if isinstance(raw, list):
        out = []
        for it in raw:
            if isinstance(it, dict) and "stages" in it:
                out += _stage_items(it["stages"], last)
            elif isinstance(it, dict):
                name = it.get("stage", it.get("name"))
                a = _first(it, ("start", "from", "begin", "step_start", "start_step"))
                b = _first(it, ("end", "to", "stop", "step_end", "end_step"))
                if name is not None and a is not None:
                    out.append((name, a, b if b is not None else last if last is not None else a))
        return out
    if isinstance(raw, dict):
        vals = {k: v for k, v in raw.items() if v is not None}
        if all(isinstance(v, (int, float)) for v in vals.values()):  # name -> start step
            order = sorted(vals.items(), key=lambda kv: kv[1])
            ends = [b for _, b in order[1:]] + [last if last is not None else order[-1][1]]
            return [(n, a, b) for (n, a), b in zip(order, ends)]
        out = []
        for name, v in vals.items():
            if isinstance(v, (list, tuple)) and len(v) == 2:
                out.append((name, v[0], v[1] if v[1] is not None else last))
            elif isinstance(v, dict):
                out.append((name, _first(v, ("start", "from", "begin")), _first(v, ("end", "to", "stop")) or last))
        return [o for o in out if o[1] is not None and o[2] is not None]
    return []


def _first(d: dict, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


def _stages_from_column(a: dict) -> list[tuple[str, float, float]]:
    """Per step, the stage most members are in; consecutive steps merge into spans."""
    steps = np.asarray(a["step"])
    labels = a["stage"]
    by_step: dict[float, dict[str, int]] = {}
    for s, lab in zip(steps, labels):
        if lab is not None:
            by_step.setdefault(float(s), {}).setdefault(str(lab), 0)
            by_step[float(s)][str(lab)] += 1
    spans: list[list] = []
    for s in sorted(by_step):
        lab = max(by_step[s].items(), key=lambda kv: kv[1])[0]
        if spans and spans[-1][0] == lab:
            spans[-1][2] = s
        else:
            if spans:
                spans[-1][2] = s
            spans.append([lab, s, s])
    return [(a_, b_, c_) for a_, b_, c_ in spans]
