"""Files and the figure of `groklab landscape` (analysis.landscape): the two peak heights and the basin
shares against n / n_c — the picture of Li2's claim "with little data only the memorization peak exists;
with more data the generalization peak rises and the memorization peak sinks; once it is a little higher,
everything rushes over to it"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from groklab.report.common import PALETTE, esc, page, plotly_div, png_bytes, write_atomic

__all__ = ["write_landscape", "landscape_png", "landscape_html"]

_COLOR = {"generalizing": PALETTE[2], "memorizing": PALETTE[1], "mixed": PALETTE[7]}


def _series(res: dict[str, Any], col: str, stat: str = "mean") -> np.ndarray:
    return np.array([np.nan if s[col][stat] is None else s[col][stat] for s in res["sizes"]], dtype=float)


def _title(res: dict[str, Any]) -> str:
    return (f"{res['group']}: Li2 one-unit energy landscape on training subsets (σ = {res['act']}, "
            f"{res['config']['subsets']} subsets per size)")


def _marks(res: dict[str, Any]) -> list[tuple[str, float | None, float | None, str]]:
    """(label, lo, hi, colour) spans in units of n_c: the crossing bracket and the measured n*."""
    nc = res["n_c"]
    x = res["crossing"]["bracket"]
    out = [("landscape crossing n×", None if x[0] is None else x[0] / nc, None if x[1] is None else x[1] / nc, "#2ca02c")]
    if res.get("n_star"):
        out.append(("measured n* (trained net)", res["n_star"][0] / nc, res["n_star"][1] / nc, "#1f77b4"))
    return out


def landscape_png(res: dict[str, Any]) -> bytes:
    from matplotlib.figure import Figure

    x = np.array([s["n_over_nc"] for s in res["sizes"]])
    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    for k in ("generalizing", "memorizing", "mixed"):
        y = _series(res, f"E_max_{k}")
        if np.isfinite(y).any():
            lo, hi = _series(res, f"E_max_{k}", "min"), _series(res, f"E_max_{k}", "max")
            ax1.plot(x, y, "o-", color=_COLOR[k], label=f"highest E, {k}")
            ax1.fill_between(x, lo, hi, color=_COLOR[k], alpha=0.15, linewidth=0)
        ax2.plot(x, _series(res, f"share_{k}"), "o-", color=_COLOR[k], label=f"{k}")
    for ax in (ax1, ax2):
        ax.axvline(1.0, color="k", linestyle=":", linewidth=1)
        for label, lo, hi, c in _marks(res):
            if lo is not None and hi is not None:
                ax.axvspan(lo, hi, color=c, alpha=0.12, label=label if ax is ax1 else None)
        ax.set_xlabel("training pairs n / n_c  (n_c = Li2 critical size, dotted)")
    ax1.set_ylabel("E at the maximum (‖w‖ = 1)")
    ax1.set_title("peak heights (band: min–max over subsets)", fontsize=10)
    ax2.set_ylabel("share of random starts ending there")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_title("basins of the random starts", fontsize=10)
    ax1.legend(fontsize=8, loc="best")
    ax2.legend(fontsize=8, loc="best")
    fig.suptitle(_title(res), fontsize=11)
    fig.tight_layout()
    return png_bytes(fig)


def landscape_html(res: dict[str, Any]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = [s["n_over_nc"] for s in res["sizes"]]
    n = [s["n"] for s in res["sizes"]]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("peak heights (highest E per kind; mean over subsets)",
                                                        "share of random starts per basin"))
    for k in ("generalizing", "memorizing", "mixed"):
        y = _series(res, f"E_max_{k}")
        if np.isfinite(y).any():
            err_hi = _series(res, f"E_max_{k}", "max") - y
            err_lo = y - _series(res, f"E_max_{k}", "min")
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"E {k}", line=dict(color=_COLOR[k]),
                                     customdata=n, hovertemplate="n=%{customdata}<br>E=%{y:.4g}",
                                     error_y=dict(type="data", array=err_hi, arrayminus=err_lo, visible=True)),
                          row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=_series(res, f"share_{k}"), mode="lines+markers", name=f"share {k}",
                                 line=dict(color=_COLOR[k], dash="dot"), customdata=n,
                                 hovertemplate="n=%{customdata}<br>share=%{y:.2f}"), row=1, col=2)
    for label, lo, hi, c in _marks(res):
        if lo is not None and hi is not None:
            for col in (1, 2):
                fig.add_vrect(x0=lo, x1=hi, fillcolor=c, opacity=0.12, line_width=0, row=1, col=col)
    for col in (1, 2):
        fig.add_vline(x=1.0, line_dash="dot", line_color="black", row=1, col=col)
        fig.update_xaxes(title_text="n / n_c", row=1, col=col)
    fig.update_layout(height=430, title=_title(res))
    cross = res["crossing"]
    rel = res.get("crossing_vs_n_star")
    lines = [
        f"n_c = {res['n_c']:.1f} pairs (Li2 critical size, groklab.science.critical_size).",
        f"Crossing n× (generalization peak above the memorization peak from here on), over all subsets: "
        f"{_fmt_bracket(cross['bracket'])} pairs = {_fmt_bracket(cross['bracket_over_nc'], 2)} × n_c; "
        f"per subset {', '.join(_fmt_bracket(b) for b in cross['per_subset'])}.",
        f"Generalization peak the highest of all (mixed maxima included): "
        f"{_fmt_bracket(res['crossing_highest']['bracket'])}. "
        f"Memorization maxima gone (from no start): {_fmt_bracket(res['memorization_vanishes']['bracket'])}; "
        f"most random starts generalize: {_fmt_bracket(res['basin_crossing']['bracket'])}.",
    ]
    if res.get("n_star"):
        lines.append(f"Measured n* of the trained network (given): {_fmt_bracket(res['n_star'])}; "
                     f"the crossing bracket relative to it: <b>{esc(rel)}</b>.")
    body = "<p>" + "<br>".join(lines) + "</p>" + plotly_div(fig, "landscape")
    return page(_title(res), f"groklab landscape, {res['wall_s']:.1f} s", body)


def _fmt_bracket(b: list, digits: int = 0) -> str:
    f = (lambda v: "?" if v is None else f"{v:.{digits}f}")
    return f"[{f(b[0])}, {f(b[1])}]"


def write_landscape(res: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """landscape.json (all but the per-start rows), maxima.parquet (one row per start), landscape.png,
    landscape.html. Each file is written atomically (temp file + rename); the folder may exist."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    meta = {k: v for k, v in res.items() if k != "rows"}
    buf = io.BytesIO()
    pq.write_table(pa.table(res["rows"]), buf)
    files = {out / "landscape.json": json.dumps(meta, indent=2) + "\n", out / "maxima.parquet": buf.getvalue(),
             out / "landscape.png": landscape_png(res), out / "landscape.html": landscape_html(res)}
    write_atomic(files)
    return {p.suffix.lstrip("."): p for p in files}
