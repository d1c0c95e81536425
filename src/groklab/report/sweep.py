"""The sweep report: phase diagram, critical data sizes against the Li2 prediction, fit, members.

A sweep folder holds ``spec.yaml`` and ``index.parquet`` (one row per finished member: config
fields such as group, order, crit_mult, frac, n_train, seed; final_test_acc, step_generalized,
wall_s), perhaps ``fit.json`` and per-member run folders. The sweep format is still being
settled, so everything here reads columns by name, tolerates extra ones, and says what it lacks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groklab.errors import GroklabError
from groklab.report.common import (
    cell,
    esc,
    kv_table,
    lean_log_axes,
    note,
    plotly_div,
    png_bytes,
    read_json,
    read_parquet,
    rel_link,
    table,
)
from groklab.science import (
    CRITICAL_CONST,
    CRITICAL_RULE,
    GENERALIZED_ACC,
    critical_size,
)

X_CANDIDATES = ("crit_mult", "frac", "train_frac", "n_train")
FIRST_COLUMNS = ("group", "order", "crit_mult", "frac", "train_frac", "n_train", "seed", "final_train_acc",
                 "final_test_acc", "step_memorized", "step_generalized", "wall_s")
ALWAYS = ("group", "order", "seed", "final_train_acc", "final_test_acc", "step_memorized", "step_generalized")
LINK_COLUMNS = ("run_dir", "dir", "path", "run", "out")
MAX_ROWS = 5000


@dataclass
class Sweep:
    path: Path
    spec_text: str | None
    index: dict
    fit: Any
    missing: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(next(iter(self.index.values()))) if self.index else 0


def is_sweep(path: Path) -> bool:
    return (path / "index.parquet").exists() or (path / "spec.yaml").exists()


def load_sweep(path: Path) -> Sweep:
    missing: list[str] = []
    spec_text = None
    if (path / "spec.yaml").is_file():
        import yaml

        try:
            spec_text = (path / "spec.yaml").read_text(encoding="utf-8")
            yaml.safe_load(spec_text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise GroklabError(f"{path / 'spec.yaml'}: not valid YAML ({str(e).splitlines()[0][:150]})") from None
    else:
        missing.append("spec.yaml")
    if not (path / "index.parquet").is_file():
        raise GroklabError(f"{path}: sweep folder without index.parquet (no member has finished yet?)")
    index = read_parquet(path / "index.parquet")
    fit = read_json(path / "fit.json") if (path / "fit.json").is_file() else None
    if fit is None:
        missing.append("fit.json")
    return Sweep(path, spec_text, index, fit, missing)


# ---------------------------------------------------------------------------------------------
# aggregation


def _col(s: Sweep, name: str) -> np.ndarray | None:
    v = s.index.get(name)
    if v is None:
        return None
    return np.asarray(v, dtype=float) if isinstance(v, np.ndarray) else np.asarray(v, dtype=object)


def _groups(s: Sweep) -> tuple[list[str], dict[str, int], np.ndarray] | None:
    """Group labels sorted by order, order per label, label per row."""
    g = s.index.get("group")
    order = _col(s, "order")
    if g is None and order is None:
        return None
    labels = np.asarray([str(x) for x in (g if g is not None else [f"M={o:.0f}" for o in order])], dtype=object)
    orders: dict[str, int] = {}
    for lab, o in zip(labels, order if order is not None else [np.nan] * len(labels)):
        orders.setdefault(lab, int(o) if np.isfinite(o) else -1)
    return sorted(orders, key=lambda k: (orders[k], k)), orders, labels


def x_variable(s: Sweep) -> str | None:
    present = [c for c in X_CANDIDATES if c in s.index and isinstance(s.index[c], np.ndarray)]
    varied = [c for c in present if len(np.unique(s.index[c])) > 1]
    return (varied or present or [None])[0]


def phase_table(s: Sweep) -> tuple[str, list[str], list[float], np.ndarray, np.ndarray] | None:
    """(x name, group labels, x values, mean final test acc [G, X], member count [G, X])."""
    xname, gr, acc = x_variable(s), _groups(s), _col(s, "final_test_acc")
    if xname is None or gr is None or acc is None:
        return None
    names, _, labels = gr
    x = _col(s, xname)
    xs = sorted(set(np.round(x[np.isfinite(x)], 10).tolist()))
    z = np.full((len(names), len(xs)), np.nan)
    cnt = np.zeros_like(z)
    xi = {v: i for i, v in enumerate(xs)}
    gi = {v: i for i, v in enumerate(names)}
    tot = np.zeros_like(z)
    for lab, xv, a in zip(labels, x, acc):
        if np.isfinite(xv) and np.isfinite(a):
            i, j = gi[lab], xi[round(float(xv), 10)]
            tot[i, j] += a
            cnt[i, j] += 1
    z = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
    return xname, names, xs, z, cnt


def critical_rows(s: Sweep) -> list[dict]:
    """Per group: Li2's critical size and the measured one. From fit.json's points when it has
    them (groklab.scaling: interpolated in log n, censored groups marked), else computed here."""
    pts = s.fit.get("points") if isinstance(s.fit, dict) else None
    if isinstance(pts, list) and pts and all(isinstance(p, dict) and p.get("order") for p in pts):
        return [_fit_row(p) for p in pts]
    return _index_rows(s)


CENSORED = {"above": "no size reached the quorum (n* above the largest)", "below": "already at the smallest size"}


def _fit_row(p: dict) -> dict:
    seeds = p.get("seeds")
    note_ = CENSORED.get(p.get("censored"), p.get("censored") or "")
    if p.get("bracket"):
        note_ = (note_ + "; " if note_ else "") + "bracket " + ", ".join("—" if b is None else f"{b:g}" for b in p["bracket"])
    if p.get("series"):
        note_ = f"series {json.dumps(p['series'])}; " + note_
    return dict(group=str(p.get("group", p["order"])), order=int(p["order"]), seeds=sum(seeds) if isinstance(seeds, list) else seeds,
                n_c_li2=p.get("li2_n"), frac_li2=p.get("li2_frac"), measured_n=p.get("n_crit"), measured_frac=p.get("frac_crit"),
                ratio=p.get("ratio_li2"), note=note_, corr_assumed=False)


def _index_rows(s: Sweep) -> list[dict]:
    """The smallest grid point at which at least half of the seeds reach final test accuracy >=
    GENERALIZED_ACC (no interpolation)."""
    xname, gr, acc = x_variable(s), _groups(s), _col(s, "final_test_acc")
    if xname is None or gr is None or acc is None:
        return []
    names, orders, labels = gr
    x, n_train, crit = _col(s, xname), _col(s, "n_train"), _col(s, "critical_size")
    out = []
    for g in names:
        M = orders[g]
        rows = labels == g
        assumed = crit is None or not np.isfinite(crit[rows]).any()
        n_c = critical_size(M) if assumed and M >= 2 else (float(np.nanmean(crit[rows])) if not assumed else math.nan)
        measured_x = measured_n = None
        for xv in sorted(set(x[rows][np.isfinite(x[rows])].tolist())):
            at = rows & (x == xv)
            if np.mean(acc[at] >= GENERALIZED_ACC) >= 0.5:
                measured_x = xv
                if n_train is not None:
                    measured_n = float(np.nanmean(n_train[at]))
                elif xname in ("frac", "train_frac"):
                    measured_n = xv * M * M
                elif xname == "crit_mult":
                    measured_n = xv * n_c
                break
        out.append(dict(group=g, order=M, seeds=int(rows.sum()), n_c_li2=n_c, frac_li2=n_c / (M * M) if M > 0 else None,
                        corr_assumed=assumed, measured_x=measured_x, measured_n=measured_n,
                        measured_frac=measured_n / (M * M) if measured_n is not None and M > 0 else None,
                        ratio=measured_n / n_c if measured_n is not None and n_c else None,
                        note="" if measured_x is not None else "no size reached the quorum"))
    return out


# ---------------------------------------------------------------------------------------------
# figures


def phase_fig(pt: tuple) -> Any:
    import plotly.graph_objects as go

    xname, names, xs, z, cnt = pt
    fig = go.Figure(go.Heatmap(
        x=[f"{v:g}" for v in xs], y=names, z=z, zmin=0, zmax=1, colorscale="RdYlGn", customdata=cnt,
        colorbar=dict(title="test acc"),
        hovertemplate=f"%{{y}}, {xname} %{{x}}<br>mean final test acc %{{z:.3f}} over %{{customdata:.0f}} members<extra></extra>"))
    fig.update_xaxes(title_text=xname + (" (multiple of the Li2 critical size)" if xname == "crit_mult" else ""), type="category")
    fig.update_yaxes(title_text="group (sorted by order M)", type="category")
    fig.update_layout(height=max(360, 28 * len(names) + 160), title="phase diagram: mean final test accuracy over seeds")
    return fig


def fit_curves(fit: Any, M: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(label, n(M)) of the fits in fit.json (groklab.scaling): n = c·M ln M and the power law
    n = c·M^α·(ln M)^β."""
    if not isinstance(fit, dict):
        return []
    out = []
    ml = fit.get("mlogm") if isinstance(fit.get("mlogm"), dict) else {}
    c = ml.get("c", fit.get("c"))
    if isinstance(c, (int, float)):
        ci = ml.get("c_ci95", fit.get("c_ci95"))
        ci_txt = f" (95% CI {ci[0]:.3g}–{ci[1]:.3g})" if isinstance(ci, list) and len(ci) == 2 and None not in ci else ""
        out.append((f"fit: n = {c:.4g} · M ln M{ci_txt}", c * M * np.log(M)))
    pw = fit.get("power_law")
    if isinstance(pw, dict) and all(isinstance(pw.get(k), (int, float)) for k in ("c", "alpha", "beta")):
        out.append((f"fit: n = {pw['c']:.3g} · M^{pw['alpha']:.2f} · (ln M)^{pw['beta']:.2f}",
                    pw["c"] * M ** pw["alpha"] * np.log(M) ** pw["beta"]))
    return out


def scaling_fig(crit: list[dict], fit: Any) -> Any:
    """Measured critical sizes against M ln M, with the Li2 line and the fits, on log-log axes."""
    import plotly.graph_objects as go

    rows = [r for r in crit if r["order"] >= 2]
    if not rows:
        return None
    Ms = np.array([r["order"] for r in rows], float)
    M = np.geomspace(Ms.min() * 0.9, Ms.max() * 1.1, 60)
    x = M * np.log(M)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=CRITICAL_CONST * x, mode="lines", line=dict(color="#555", dash="dash"),
                             name=f"Li2 (code): n = {CRITICAL_CONST} · M ln M"))
    pred = [r for r in rows if not r["corr_assumed"] and r["n_c_li2"] is not None]
    if pred:
        fig.add_trace(go.Scatter(x=[r["order"] * math.log(r["order"]) for r in pred], y=[r["n_c_li2"] for r in pred],
                                 mode="markers", marker=dict(symbol="circle-open", size=10, color="#555"),
                                 name="Li2 n_c per group (with corr)", text=[r["group"] for r in pred],
                                 hovertemplate="%{text}: Li2 n_c = %{y:.0f}<extra></extra>"))
    for (label, n), color, dash in zip(fit_curves(fit, M), ("#d62728", "#1f77b4"), ("solid", "dot")):
        fig.add_trace(go.Scatter(x=x, y=n, mode="lines", line=dict(color=color, dash=dash), name=label))
    got = [r for r in rows if r["measured_n"] is not None]
    if got:
        fig.add_trace(go.Scatter(x=[r["order"] * math.log(r["order"]) for r in got], y=[r["measured_n"] for r in got],
                                 mode="markers", marker=dict(size=10, color="#d62728"), name="measured n*",
                                 text=[r["group"] for r in got], hovertemplate="%{text}: n* = %{y:.0f}<extra></extra>"))
    fig.update_xaxes(type="log", title_text="M ln M (M = group order)")
    fig.update_yaxes(type="log", title_text="critical number of training pairs n")
    fig.update_layout(height=460, title="critical data size: measured against the Li2 prediction")
    return fig


def phase_png(s: Sweep, pt: tuple | None, crit: list[dict]) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8))
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.15, top=0.88, wspace=0.35)
    ax1, ax2 = fig.subplots(1, 2)
    if pt is not None:
        xname, names, xs, z, _ = pt
        im = ax1.imshow(z, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="RdYlGn", interpolation="nearest")
        ax1.set_xticks(range(len(xs)), [f"{v:g}" for v in xs], rotation=45 if len(xs) > 8 else 0)
        ax1.set_yticks(range(len(names)), names)
        ax1.set_xlabel(xname)
        ax1.set_ylabel("group (by order M)")
        fig.colorbar(im, ax=ax1, label="mean final test acc")
    ax1.set_title("phase diagram", y=1.01)
    rows = [r for r in crit if r["order"] >= 2]
    if rows:
        Ms = np.array([r["order"] for r in rows], float)
        M = np.geomspace(Ms.min() * 0.9, Ms.max() * 1.1, 30)
        ax2.loglog(M * np.log(M), CRITICAL_CONST * M * np.log(M), "k--", label=f"Li2 {CRITICAL_CONST}·M ln M")
        for (label, n), style in zip(fit_curves(s.fit, M), ("r-", "b:")):
            ax2.loglog(M * np.log(M), n, style, label=label.replace("fit: ", "fit "))
        got = [r for r in rows if r["measured_n"] is not None]
        if got:
            ax2.loglog([r["order"] * math.log(r["order"]) for r in got], [r["measured_n"] for r in got], "ro", label="measured n*")
        ax2.set_xlabel("M ln M")
        ax2.set_ylabel("critical n")
        ax2.legend(fontsize=7)
    ax2.set_title("critical data size", y=1.01)
    if rows:
        from matplotlib.ticker import LogLocator

        lean_log_axes(ax2)
        for axis in (ax2.xaxis, ax2.yaxis):  # the range spans about a decade: label 1, 2, 5 x 10^k
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    fig.suptitle(f"sweep {s.path.name}: {s.n} members")
    return png_bytes(fig)


# ---------------------------------------------------------------------------------------------
# tables and the page body


def critical_table(crit: list[dict], xname: str | None, from_fit: bool) -> str:
    own = not from_fit and xname is not None
    rows = []
    for r in crit:
        g = r["group"]
        rows.append([cell(g), cell(r["order"]), cell(r["seeds"]), cell(r["n_c_li2"], f"crit-{g}-n_c_li2"), cell(r["frac_li2"])]
                    + ([cell(r["measured_x"], f"crit-{g}-measured_{xname}")] if own else [])
                    + [cell(r["measured_n"], f"crit-{g}-measured_n"), cell(r["measured_frac"], f"crit-{g}-measured_frac"),
                       cell(r["ratio"]), cell(r["note"])])
    heads = ["group", "M", "members", "Li2 n_c", "Li2 fraction"] + ([f"measured {xname}"] if own else []) + [
        "measured n*", "measured fraction", "n* / Li2", "note"]
    assumed = any(r["corr_assumed"] for r in crit)
    how = ("from fit.json (groklab.scaling: the size at which half of the seeds generalize, interpolated in log n)" if from_fit
           else f"computed here: the smallest grid point at which at least half of the seeds reach final test accuracy "
                f"≥ {GENERALIZED_ACC}")
    foot = (f"<p class=\"sub\">Measured n*: {esc(how)}. Li2 rule: {esc(CRITICAL_RULE)}."
            + (" index.parquet has no critical_size column, so corr = 1 (abelian) is assumed." if assumed else "") + "</p>")
    return table(heads, rows, cls="sortable", ident="critical") + foot


def _member_link(s: Sweep, i: int) -> str:
    for c in LINK_COLUMNS + ("id", "run_id", "name"):
        v = s.index.get(c)
        if not isinstance(v, list) or not isinstance(v[i], str) or not v[i]:
            continue
        cands = [Path(v[i])] if c in LINK_COLUMNS else [Path("runs") / v[i], Path(v[i])]
        for p in cands:
            d = p if p.is_absolute() else s.path / p
            if (d / "config.json").is_file():
                target = d / "report.html" if (d / "report.html").is_file() else d
                text = "report" if target.name == "report.html" else "run folder"
                return f'<td><a href="{esc(rel_link(target, s.path))}">{text}</a></td>'
    return "<td></td>"


def _constant(v: Any) -> bool:
    vals = v.tolist() if isinstance(v, np.ndarray) else v
    return len({json.dumps(_py(x), default=str) for x in vals}) <= 1


def members_table(s: Sweep) -> str:
    """Columns that differ between members (a sweep index holds every config field); the rest in
    a small table of what all members share."""
    same = [c for c in s.index if c not in ALWAYS and _constant(s.index[c])] if s.n > 1 else []
    cols = [c for c in FIRST_COLUMNS if c in s.index and c not in same] + [c for c in s.index if c not in FIRST_COLUMNS
                                                                           and c not in same]
    n = min(s.n, MAX_ROWS)
    link = any(_member_link(s, i) != "<td></td>" for i in range(min(n, 50)))
    ints = getattr(s.index, "ints", frozenset())  # integer columns with nulls arrive as floats
    rows = []
    for i in range(n):
        r = [cell(_py(s.index[c][i], c in ints), f"member-{i}-{c}" if c in ("final_test_acc", "step_generalized") else None)
             for c in cols]
        rows.append(r + ([_member_link(s, i)] if link else []))
    more = note(f"showing the first {MAX_ROWS} of {s.n} members", "info") if s.n > MAX_ROWS else ""
    shared = ("<h3>Same for every member</h3>" + kv_table({c: _py(s.index[c][0], c in ints) for c in same}, ident="shared")) if same else ""
    return table(cols + (["run"] if link else []), rows, cls="sortable", ident="members") + more + shared


def _py(v: Any, as_int: bool = False) -> Any:
    v = v.item() if isinstance(v, np.generic) else v
    if isinstance(v, float) and math.isnan(v):
        return None
    return int(v) if as_int and isinstance(v, float) else v  # NaN was handled above


def sweep_body(s: Sweep, where: Path) -> tuple[str, dict[str, bytes]]:
    """The page body and its PNG; ``where`` is the folder the HTML goes to (for links)."""
    parts = []
    if (s.path / "phase.png").is_file():
        parts.append(f'<p class="sub">phase diagram and fits as drawn by <code>groklab sweep</code>: '
                     f'<a href="{esc(rel_link(s.path / "phase.png", where))}">phase.png</a></p>')
    if s.missing:
        parts.append(note("missing: " + ", ".join(f"<code>{esc(m)}</code>" for m in s.missing), "missing"))
    if s.n == 0:
        parts.append(note("index.parquet has no members yet", "missing"))
    pt = phase_table(s) if s.n else None
    crit = critical_rows(s) if s.n else []
    parts.append("<h2>Phase diagram</h2>")
    if pt is not None:
        parts.append(plotly_div(phase_fig(pt), "fig-phase"))
    else:
        parts.append(note("needs columns group or order, final_test_acc, and one of " + ", ".join(X_CANDIDATES), "missing"))
    parts.append("<h2>Critical data size</h2>")
    if crit:
        fig = scaling_fig(crit, s.fit)
        if fig is not None:
            parts.append(plotly_div(fig, "fig-scaling"))
        from_fit = isinstance(s.fit, dict) and bool(s.fit.get("points"))
        parts.append(critical_table(crit, x_variable(s), from_fit))
    if isinstance(s.fit, dict):
        rest = {k: v for k, v in s.fit.items() if k not in ("points", "series")}
        parts.append("<h3>fit.json</h3>" + kv_table(rest, ident="fit"))
        if isinstance(s.fit.get("series"), list):
            parts.append(note(f"fit.json has {len(s.fit['series'])} series (a config field other than the size varies); "
                              "the table and plot show the first", "info"))
    parts.append(f"<h2>Members ({s.n})</h2><p class=\"sub\">click a column header to sort</p>")
    parts.append(members_table(s) if s.n else "")
    if s.spec_text is not None:
        parts.append(f"<h2>spec.yaml</h2><pre id=\"spec\">{esc(s.spec_text)}</pre>")
    # Not phase.png: groklab sweep writes that one (groklab.scaling), and the report never clobbers it.
    return "\n".join(parts), {"phase_report": phase_png(s, pt, crit)} if s.n else {}
