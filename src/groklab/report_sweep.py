"""The sweep report: phase diagram, critical data sizes against the Li2 prediction, fit, members.

A sweep folder holds ``spec.yaml`` and ``index.parquet`` (one row per finished member: config
fields such as group, order, crit_mult, frac, n_train, seed; final_test_acc, step_generalized,
wall_s), perhaps ``fit.json`` and per-member run folders. The sweep format is still being
settled, so everything here reads columns by name, tolerates extra ones, and says what it lacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GroklabError
from .report_common import cell, esc, kv_table, lean_log_axes, note, plotly_div, png_bytes, read_json, read_parquet, rel_link, table
from .science import CRITICAL_CONST, CRITICAL_RULE, GENERALIZED_ACC, critical_size

X_CANDIDATES = ("crit_mult", "frac", "train_frac", "n_train")
FIRST_COLUMNS = ("group", "order", "crit_mult", "frac", "train_frac", "n_train", "seed", "final_train_acc",
                 "final_test_acc", "step_memorized", "step_generalized", "wall_s")
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
    """Per group: Li2's predicted critical size and the measured one (the smallest training size
    at which at least half of the seeds reach final test accuracy >= GENERALIZED_ACC)."""
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
                        corr_assumed=assumed, **{f"measured_{xname}": measured_x}, measured_n=measured_n,
                        measured_frac=measured_n / (M * M) if measured_n is not None and M > 0 else None,
                        ratio=measured_n / n_c if measured_n is not None and n_c else None))
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


def _fit_params(fit: Any) -> tuple[float, float] | None:
    if not isinstance(fit, dict):
        return None
    for key in ("const", "c", "constant", "coef", "slope"):
        if isinstance(fit.get(key), (int, float)):
            exp = next((fit[k] for k in ("exponent", "alpha", "power") if isinstance(fit.get(k), (int, float))), 1.0)
            return float(fit[key]), float(exp)
    return None


def _fit_points(fit: Any, crit: list[dict]) -> list[tuple[str, int, float]]:
    """(group, M, measured critical n): fit.json's own points when it lists them, else ours."""
    pts = fit.get("points") if isinstance(fit, dict) else None
    out = []
    if isinstance(pts, list):
        for p in pts:
            if isinstance(p, dict) and p.get("order"):
                n = next((p[k] for k in ("n_crit", "critical_n", "n_c", "n") if isinstance(p.get(k), (int, float))), None)
                if n is not None:
                    out.append((str(p.get("group", p["order"])), int(p["order"]), float(n)))
    return out or [(r["group"], r["order"], r["measured_n"]) for r in crit if r["measured_n"] is not None and r["order"] >= 2]


def scaling_fig(crit: list[dict], fit: Any) -> Any:
    import plotly.graph_objects as go

    pts = _fit_points(fit, crit)
    Ms = [r["order"] for r in crit if r["order"] >= 2] + [p[1] for p in pts]
    if not Ms:
        return None
    xs = np.geomspace(min(Ms) * math.log(min(Ms)) * 0.8, max(Ms) * math.log(max(Ms)) * 1.25, 50)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=CRITICAL_CONST * xs, mode="lines", line=dict(color="#555", dash="dash"),
                             name=f"Li2: n = {CRITICAL_CONST} · M ln M (abelian)"))
    pred = [r for r in crit if r["order"] >= 2 and not r["corr_assumed"]]
    if pred:
        fig.add_trace(go.Scatter(x=[r["order"] * math.log(r["order"]) for r in pred], y=[r["n_c_li2"] for r in pred],
                                 mode="markers", marker=dict(symbol="circle-open", size=10, color="#555"),
                                 name="Li2 prediction per group", text=[r["group"] for r in pred]))
    fp = _fit_params(fit)
    if fp is not None:
        c, a = fp
        fig.add_trace(go.Scatter(x=xs, y=c * xs ** a, mode="lines", line=dict(color="#d62728"),
                                 name=f"fit: n = {c:.4g} · (M ln M)^{a:.3g}"))
    if pts:
        fig.add_trace(go.Scatter(x=[M * math.log(M) for _, M, _ in pts], y=[n for *_, n in pts], mode="markers",
                                 marker=dict(size=10, color="#d62728"), name="measured critical n", text=[g for g, *_ in pts],
                                 hovertemplate="%{text}: n = %{y:.0f} at M ln M = %{x:.0f}<extra></extra>"))
    fig.update_xaxes(type="log", title_text="M ln M")
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
    pts = _fit_points(s.fit, crit)
    if pts:
        x = np.array([M * math.log(M) for _, M, _ in pts])
        xs_ = np.geomspace(x.min() * 0.8, x.max() * 1.25, 20)
        ax2.loglog(xs_, CRITICAL_CONST * xs_, "k--", label=f"Li2 {CRITICAL_CONST}·M ln M")
        fp = _fit_params(s.fit)
        if fp is not None:
            ax2.loglog(xs_, fp[0] * xs_ ** fp[1], "r-", label=f"fit {fp[0]:.3g}·(M ln M)^{fp[1]:.3g}")
        ax2.loglog(x, [n for *_, n in pts], "ro", label="measured")
        ax2.set_xlabel("M ln M")
        ax2.set_ylabel("critical n")
        ax2.legend(fontsize=8)
    ax2.set_title("critical data size", y=1.01)
    if pts:
        from matplotlib.ticker import LogLocator

        lean_log_axes(ax2)
        for axis in (ax2.xaxis, ax2.yaxis):  # the range spans about a decade: label 1, 2, 5 x 10^k
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    fig.suptitle(f"sweep {s.path.name}: {s.n} members")
    return png_bytes(fig)


# ---------------------------------------------------------------------------------------------
# tables and the page body


def critical_table(crit: list[dict], xname: str) -> str:
    rows = [[cell(r["group"], f"crit-{r['group']}-group"), cell(r["order"]), cell(r["seeds"]),
             cell(r["n_c_li2"], f"crit-{r['group']}-n_c_li2"), cell(r["frac_li2"]),
             cell(r[f"measured_{xname}"], f"crit-{r['group']}-measured_{xname}"), cell(r["measured_n"]),
             cell(r["measured_frac"]), cell(r["ratio"])] for r in crit]
    heads = ["group", "M", "members", "Li2 n_c", "Li2 fraction", f"measured {xname}", "measured n", "measured fraction",
             "measured / Li2"]
    assumed = any(r["corr_assumed"] for r in crit)
    foot = (f"<p class=\"sub\">Li2 rule: {esc(CRITICAL_RULE)}." + (" index.parquet has no critical_size column, so corr = 1 "
            "(abelian) is assumed." if assumed else "") + f" Measured: the smallest size at which at least half of the seeds "
            f"reach final test accuracy ≥ {GENERALIZED_ACC}; — when none does.</p>")
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


def members_table(s: Sweep) -> str:
    cols = [c for c in FIRST_COLUMNS if c in s.index] + [c for c in s.index if c not in FIRST_COLUMNS]
    n = min(s.n, MAX_ROWS)
    link = any(_member_link(s, i) != "<td></td>" for i in range(min(n, 50)))
    # Integer columns with nulls arrive as floats; show them as integers again.
    ints = {c for c in cols if isinstance(s.index[c], np.ndarray) and s.index[c].dtype.kind == "f"
            and np.all(np.mod(s.index[c][np.isfinite(s.index[c])], 1) == 0)}
    rows = []
    for i in range(n):
        r = [cell(_py(s.index[c][i], c in ints), f"member-{i}-{c}" if c in ("final_test_acc", "step_generalized") else None)
             for c in cols]
        rows.append(r + ([_member_link(s, i)] if link else []))
    more = note(f"showing the first {MAX_ROWS} of {s.n} members", "info") if s.n > MAX_ROWS else ""
    return table(cols + (["run"] if link else []), rows, cls="sortable", ident="members") + more


def _py(v: Any, as_int: bool = False) -> Any:
    v = v.item() if isinstance(v, np.generic) else v
    if isinstance(v, float) and math.isnan(v):
        return None
    return int(v) if as_int and isinstance(v, float) else v


def sweep_body(s: Sweep) -> tuple[str, dict[str, bytes]]:
    parts = []
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
        parts.append(critical_table(crit, x_variable(s) or "x"))
    if isinstance(s.fit, dict):
        scal = {k: v for k, v in s.fit.items() if not isinstance(v, (list, dict))}
        parts.append("<h3>fit.json</h3>" + kv_table(scal, ident="fit"))
        if isinstance(s.fit.get("points"), list) and s.fit["points"] and all(isinstance(p, dict) for p in s.fit["points"]):
            keys = list(dict.fromkeys(k for p in s.fit["points"] for k in p))
            parts.append(table(keys, [[cell(p.get(k)) for k in keys] for p in s.fit["points"]], cls="sortable"))
    parts.append(f"<h2>Members ({s.n})</h2><p class=\"sub\">click a column header to sort</p>")
    parts.append(members_table(s) if s.n else "")
    if s.spec_text is not None:
        parts.append(f"<h2>spec.yaml</h2><pre id=\"spec\">{esc(s.spec_text)}</pre>")
    return "\n".join(parts), {"phase": phase_png(s, pt, crit)} if s.n else {}
