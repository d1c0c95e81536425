"""The Li2 scaling law measured from a sweep (science.md §4): critical training sizes, fits, the
phase diagram.

For each group, the measured critical size n* is the smallest training size at which at least
half of the seeds generalize (final test accuracy >= GENERALIZED_ACC), interpolated in log n
between the last grid point below that quorum and the first one at or above it. A group whose
first grid point already generalizes (n* <= smallest size) or whose last does not (n* > largest)
is censored and left out of the fits.

Fits, by least squares in log space with 95% confidence intervals (Student t, from the residuals):
    n* = c · M · ln M                 (Li2's form; the original code's c = 2.7482)
    n* = c · M^α · ln M               (a free exponent on M: α = 1 is Li2's law)
    n* = c · M^α · (ln M)^β           (both free; over a short range of M, ln M and ln ln M are
                                       nearly collinear, so α and β are barely separable - the
                                       intervals and corr(α, β) show it)
Each n* is only known to lie in its bracket [n_lo, n_hi] (a grid's neighbours, or a refinement's
final bracket), so the fits' reported 95% intervals include that resolution: the bracket is
propagated by resampling (`_bracket_draws`: every draw puts each group's log n* uniformly in its
bracket, fits, and adds the fit's own Student-t sampling error; the interval is the draws' 2.5-97.5%
quantiles). The residual-only intervals are kept as `*_ci95_ols`. For the one- and two-parameter
fits, `*_range` is the range of the coefficient over the exact laws that pass through every
bracket (None: no exact law does).
`analyze(index, out)` writes fit.json and phase.png into a sweep folder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from groklab import science

__all__ = ["critical_points", "fit_mlogm", "fit_power", "fit_power_logm", "fit_scaling", "analyze", "analyze_joint",
           "format_fit", "phase_figure"]

QUORUM = 0.5  # share of seeds that must generalize at a training size
_NON_SERIES = {"group", "seed", "frac", "n_train", "crit_mult", "split_seed", "ckpt_every", "device"}


def _columns(index) -> dict[str, np.ndarray]:
    """index.parquet as {column: numpy array} (a pyarrow Table, a pandas DataFrame or a dict)."""
    if hasattr(index, "column_names"):
        return {c: np.asarray(index.column(c).to_pylist(), dtype=object) for c in index.column_names}
    if hasattr(index, "columns"):
        return {c: np.asarray(index[c].tolist(), dtype=object) for c in index.columns}
    return {c: np.asarray(list(v), dtype=object) for c, v in index.items()}


def _f(a: np.ndarray) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in a], dtype=float)


def series_of(cols: dict[str, np.ndarray]) -> tuple[list[str], list[tuple]]:
    """Config fields other than group / seed / training size that vary: each combination of their
    values is a series with its own critical sizes and fit (e.g. a sweep over lr)."""
    from groklab.sweep.spec import FIELD_KINDS

    varied = [k for k in FIELD_KINDS if k in cols and k not in _NON_SERIES
              and len({repr(v) for v in cols[k]}) > 1]
    keys = [tuple(cols[k][i] for k in varied) for i in range(len(cols["member_id"]))] if varied else [()] * len(cols["member_id"])
    return varied, keys


def critical_points(index, *, threshold: float = science.GENERALIZED_ACC, quorum: float = QUORUM) -> list[dict]:
    """Per (series, group): the measured critical size n* and the Li2 prediction."""
    cols = _columns(index)
    if not len(cols.get("member_id", [])):
        return []
    varied, skeys = series_of(cols)
    n = _f(cols["n_train"])
    acc = _f(cols["final_test_acc"])
    ok = np.where(np.isfinite(acc), acc >= threshold, False)
    order = _f(cols["order"])
    crit = _f(cols["critical_size"])
    x = np.round(n, 6)  # one grid point = one training size
    out = []
    seen = list(dict.fromkeys(zip(skeys, cols["group"])))
    first_row = {g: i for i, g in reversed(list(enumerate(cols["group"])))}
    for skey, g in sorted(seen, key=lambda sg: (_sortable(sg[0]), order[first_row[sg[1]]], sg[1])):
        rows = np.array([k == skey and gg == g for k, gg in zip(skeys, cols["group"])])
        sizes = np.unique(x[rows])
        p = np.array([ok[rows & (x == s)].mean() for s in sizes])
        seeds = [int((rows & (x == s)).sum()) for s in sizes]
        M = int(order[rows][0])
        li2 = float(np.nanmean(crit[rows]))
        hit = np.flatnonzero(p >= quorum)
        pt: dict[str, Any] = {"series": dict(zip(varied, skey)) if varied else None, "group": str(g), "order": M,
                              "li2_n": li2, "li2_frac": li2 / M**2, "sizes": sizes.tolist(), "p_generalized": p.tolist(),
                              "seeds": seeds, "n_crit": None, "bracket": None, "censored": None}
        if hit.size == 0:
            pt.update(censored="above", bracket=[float(sizes[-1]), None])
        elif hit[0] == 0:
            pt.update(censored="below", bracket=[None, float(sizes[0])])
        else:
            i = hit[0]
            lo, hi = sizes[i - 1], sizes[i]
            t = (quorum - p[i - 1]) / (p[i] - p[i - 1])
            pt.update(n_crit=float(math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))), bracket=[float(lo), float(hi)])
        # monotone: no size above n_hi falls below the quorum again (else the bracket is the first crossing)
        pt["monotone"] = bool(hit.size == 0 or (p[hit[0]:] >= quorum).all())
        if pt["n_crit"] is not None:
            pt["frac_crit"] = pt["n_crit"] / M**2
            pt["ratio_li2"] = pt["n_crit"] / li2
        else:
            pt["frac_crit"] = pt["ratio_li2"] = None
        out.append(pt)
    return out


def _sortable(values: tuple) -> tuple:
    """Series keys in natural order (numbers by value, then everything else by text)."""
    return tuple((0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v)) for v in values)


def _t95(dof: int) -> float:
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, dof))
    except ImportError:  # scipy is optional: a table for small dof, the normal quantile beyond
        table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
        return table.get(dof, 2.0 if dof <= 30 else 1.96)


def _ols(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float, int]:
    """Least squares y ~ X b; returns b, its covariance (None without residual dof), RSS, dof."""
    b, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ b
    dof = len(y) - X.shape[1]
    rss = float(r @ r)
    cov = rss / dof * np.linalg.pinv(X.T @ X) if dof > 0 else None
    return b, cov, rss, dof


BRACKET_DRAWS = 4000  # resamples of the brackets per fit (seeded: the intervals are reproducible)


def _bracket_draws(X: np.ndarray, lo: np.ndarray, hi: np.ndarray, offset: np.ndarray, seed: int = 0,
                   draws: int = BRACKET_DRAWS) -> np.ndarray:
    """Coefficient draws [draws, P] of the fit log n* − offset ~ X b (X [G, P]) when log n* is only
    known to lie in [log lo, log hi]: uniform in each bracket (independent across groups), least
    squares, plus the fit's own error as a multivariate Student-t draw, scale s²(XᵀX)⁻¹ (dof = G − P;
    none when dof = 0, where the interval is the brackets' alone)."""
    rng = np.random.default_rng(seed)
    G, P = X.shape
    Y = np.log(lo) + rng.random((draws, G)) * (np.log(hi) - np.log(lo)) - offset  # [draws, G]
    B = Y @ np.linalg.pinv(X).T  # [draws, P]
    dof = G - P
    if dof > 0:
        s2 = ((Y - B @ X.T) ** 2).sum(axis=1) / dof  # [draws]
        L = np.linalg.cholesky(np.linalg.pinv(X.T @ X) + 1e-15 * np.eye(P))
        z = rng.standard_normal((draws, P)) @ L.T
        B = B + z * np.sqrt(s2 / (rng.chisquare(dof, draws) / dof))[:, None]
    return B


def bracket_range(X: np.ndarray, lo, hi, offset: np.ndarray, j: int) -> list[float] | None:
    """The range of coefficient j over every exact law log n = offset + X b that passes through
    all brackets (lo <= n <= hi for each group): two linear programs. None when no such law
    exists (the brackets do not line up: the law holds only up to scatter)."""
    from scipy.optimize import linprog

    A = np.concatenate([X, -X])
    ub = np.concatenate([np.log(np.asarray(hi, float)) - offset, offset - np.log(np.asarray(lo, float))])
    vals = []
    for sign in (1.0, -1.0):
        cost = np.zeros(X.shape[1])
        cost[j] = sign
        r = linprog(cost, A_ub=A, b_ub=ub, bounds=[(None, None)] * X.shape[1], method="highs")
        if r.status != 0:
            return None
        vals.append(float(r.x[j]))
    return vals


def _with_brackets(out: dict, X: np.ndarray, lo, hi, offset: np.ndarray, names: tuple[str, ...]) -> dict:
    """Replace the fit's *_ci95 by bracket-propagated intervals (the OLS ones move to *_ci95_ols)."""
    if lo is None or hi is None:
        return out
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    B = _bracket_draws(X, lo, hi, offset)
    for j, name in enumerate(names):
        q = np.quantile(B[:, j], [0.025, 0.975])
        out[f"{name}_ci95_ols"] = out.get(f"{name}_ci95")
        out[f"{name}_ci95"] = [float(math.exp(q[0])), float(math.exp(q[1]))] if name == "c" else [float(q[0]), float(q[1])]
        if X.shape[1] <= 2:  # the exact-law range: which values every bracket allows at once
            r = bracket_range(X, lo, hi, offset, j)
            out[f"{name}_range"] = None if r is None else ([math.exp(r[0]), math.exp(r[1])] if name == "c" else r)
    out["intervals"] = "95%, bracket-resampled (n* uniform in log within its bracket) + fit error"
    return out


def fit_mlogm(M, n, lo=None, hi=None) -> dict | None:
    """n = c · M · ln M: log c = mean of log n − log(M ln M); 95% CI from the spread (and, given
    each n*'s bracket lo..hi, from the brackets too)."""
    M, n = np.asarray(M, float), np.asarray(n, float)
    if len(M) < 1:
        return None
    y = np.log(n) - np.log(M * np.log(M))
    b, cov, rss, dof = _ols(np.ones((len(y), 1)), y)
    c = float(math.exp(b[0]))
    out = {"form": "n = c * M * ln(M)", "c": c, "c_ci95": None, "points": int(len(M)), "dof": dof,
           "rms_log_residual": math.sqrt(rss / len(y))}
    if cov is not None:
        half = _t95(dof) * math.sqrt(cov[0, 0])
        out["c_ci95"] = [math.exp(b[0] - half), math.exp(b[0] + half)]
    return _with_brackets(out, np.ones((len(M), 1)), lo, hi, np.log(M * np.log(M)), ("c",))


def fit_power(M, n, lo=None, hi=None) -> dict | None:
    """n = c · M^α · (ln M)^β: log n = log c + α log M + β log ln M, with 95% CIs."""
    M, n = np.asarray(M, float), np.asarray(n, float)
    if len(M) < 3:
        return None
    X = np.stack([np.ones_like(M), np.log(M), np.log(np.log(M))], axis=1)
    b, cov, rss, dof = _ols(X, np.log(n))
    out = {"form": "n = c * M^alpha * ln(M)^beta", "c": float(math.exp(b[0])), "alpha": float(b[1]), "beta": float(b[2]),
           "c_ci95": None, "alpha_ci95": None, "beta_ci95": None, "corr_alpha_beta": None, "points": int(len(M)), "dof": dof,
           "rms_log_residual": math.sqrt(rss / len(M))}
    if cov is not None:
        t = _t95(dof)
        se = np.sqrt(np.diag(cov))
        out.update(c_ci95=[math.exp(b[0] - t * se[0]), math.exp(b[0] + t * se[0])],
                   alpha_ci95=[float(b[1] - t * se[1]), float(b[1] + t * se[1])],
                   beta_ci95=[float(b[2] - t * se[2]), float(b[2] + t * se[2])],
                   corr_alpha_beta=float(cov[1, 2] / (se[1] * se[2])) if se[1] * se[2] > 0 else None)
    return _with_brackets(out, X, lo, hi, np.zeros(len(M)), ("c", "alpha", "beta"))


def fit_power_logm(M, n, lo=None, hi=None) -> dict | None:
    """n = c · M^α · ln M (β fixed at Li2's 1): log(n / ln M) = log c + α log M, with 95% CIs.
    Well conditioned where the free (α, β) fit is not; α = 1 is Li2's law."""
    M, n = np.asarray(M, float), np.asarray(n, float)
    if len(M) < 2:
        return None
    X = np.stack([np.ones_like(M), np.log(M)], axis=1)
    b, cov, rss, dof = _ols(X, np.log(n) - np.log(np.log(M)))
    out = {"form": "n = c * M^alpha * ln(M)", "c": float(math.exp(b[0])), "alpha": float(b[1]), "c_ci95": None,
           "alpha_ci95": None, "points": int(len(M)), "dof": dof, "rms_log_residual": math.sqrt(rss / len(M))}
    if cov is not None:
        t, se = _t95(dof), np.sqrt(np.diag(cov))
        out.update(c_ci95=[math.exp(b[0] - t * se[0]), math.exp(b[0] + t * se[0])],
                   alpha_ci95=[float(b[1] - t * se[1]), float(b[1] + t * se[1])])
    return _with_brackets(out, X, lo, hi, np.log(np.log(M)), ("c", "alpha"))


def fit_scaling(points: list[dict]) -> dict:
    """The fits over the uncensored points (one series)."""
    use = [p for p in points if p["n_crit"] is not None and p["order"] >= 3]
    M = [p["order"] for p in use]
    n = [p["n_crit"] for p in use]
    lo = [p["bracket"][0] for p in use]
    hi = [p["bracket"][1] for p in use]
    return {"mlogm": fit_mlogm(M, n, lo, hi) if use else None, "power_logm": fit_power_logm(M, n, lo, hi),
            "power_law": fit_power(M, n, lo, hi)}


def analyze(index, out: str | Path | None = None, *, threshold: float = science.GENERALIZED_ACC) -> dict:
    """Critical sizes and fits of a sweep's index; with `out`, write fit.json and phase.png there.

    fit.json: {"c", "c_ci95"} of n = c·M ln M (top level, as the report reads it), "li2_c",
    "mlogm" and "power_law" fits, "points" (per group: n_crit, bracket, censored, frac_crit, li2_n,
    ratio_li2), "series" (one entry per series when a config field other than the size varies)."""
    pts = critical_points(index, threshold=threshold)
    keys = list(dict.fromkeys(repr(p["series"]) for p in pts))
    series = []
    for k in keys:
        sp = [p for p in pts if repr(p["series"]) == k]
        series.append({"series": sp[0]["series"], "points": sp, **fit_scaling(sp)})
    first = series[0] if series else {"points": [], "mlogm": None, "power_logm": None, "power_law": None, "series": None}
    fit = _fit_doc(first, threshold, series if len(series) > 1 else None)
    if out is not None:
        _write(Path(out), fit, index)
    return fit


def _fit_doc(fits: dict, threshold: float, series: list | None) -> dict:
    """fit.json's content: the header, c at the top level (as the report reads it), the fits and points."""
    ml = fits["mlogm"] or {}
    return {"kind": "groklab.fit", "version": 1, "rule": science.CRITICAL_RULE, "threshold": threshold, "quorum": QUORUM,
            "li2_c": science.CRITICAL_CONST, "c": ml.get("c"), "c_ci95": ml.get("c_ci95"),
            "mlogm": fits["mlogm"], "power_logm": fits["power_logm"], "power_law": fits["power_law"],
            "points": fits["points"], "series": series}


def _write(out: Path, fit: dict, index) -> None:
    """fit.json and phase.png into `out`, each atomically."""
    from groklab.train import record

    out.mkdir(parents=True, exist_ok=True)
    record.write_json(out / "fit.json", _clean(fit))
    fig = phase_figure(index, fit)
    record.atomic_write(out / "phase.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def recipe_of(index) -> dict[str, Any]:
    """The config fields that define a sweep's recipe (not group, seed, size) with their values
    over the index: {field: value} where all members agree, {field: [values]} where they vary."""
    from groklab.sweep.spec import FIELD_KINDS

    cols = _columns(index)
    out: dict[str, Any] = {}
    for k in FIELD_KINDS:
        if k in cols and k not in _NON_SERIES:
            vals = list(dict.fromkeys(repr(v) for v in cols[k]))
            out[k] = cols[k][0] if len(vals) == 1 else sorted(vals)
    return out


def analyze_joint(indices: dict[str, Any], out: str | Path | None = None, *,
                  threshold: float = science.GENERALIZED_ACC) -> dict:
    """One scaling fit over the groups of several sweep folders run with the same recipe (e.g. a
    refinement extended by new groups in a folder of its own). indices: {folder name: index}
    (pyarrow Tables when `out` is given: then fit.json and phase.png are written there).

    Refuses (GroklabError) when a group is in two folders or a recipe field recorded by two folders
    differs, or varies inside one (a fit mixes one recipe). A field recorded by only some folders
    (an older groklab wrote no such column) is listed in fit["unrecorded"], not guessed."""
    from groklab.errors import GroklabError

    recipes = {name: recipe_of(ix) for name, ix in indices.items()}
    fields = sorted({k for r in recipes.values() for k in r})
    unrecorded = {}
    for k in fields:
        have = {name: r[k] for name, r in recipes.items() if k in r}
        for name, v in have.items():
            if isinstance(v, list):
                raise GroklabError(f"{name}: field {k} varies inside the sweep ({', '.join(v)}); a joint fit takes one recipe")
        if len({repr(v) for v in have.values()}) > 1:
            shown = ", ".join(f"{n}: {v!r}" for n, v in have.items())
            raise GroklabError(f"field {k} differs between the sweeps ({shown}); a joint fit takes one recipe")
        if len(have) < len(recipes):
            unrecorded[k] = {"value": next(iter(have.values())), "recorded_by": sorted(have),
                             "not_recorded_by": sorted(set(recipes) - set(have))}
    points, source = [], {}
    for name, ix in indices.items():
        for p in critical_points(ix, threshold=threshold):
            if p["group"] in source:
                raise GroklabError(f"group {p['group']} is in two sweeps ({source[p['group']]}, {name}); give each group once")
            source[p["group"]] = name
            points.append({**p, "sweep": name})
    points.sort(key=lambda p: (p["order"], p["group"]))
    fit = {**_fit_doc({**fit_scaling(points), "points": points}, threshold, None), "sweeps": list(indices),
           "recipe": {k: v for r in recipes.values() for k, v in r.items()}, "unrecorded": unrecorded}
    if out is not None:
        import pyarrow as pa

        # one index for the figure; a field only some folders record would split it into series
        tables = [t.drop_columns([c for c in unrecorded if c in t.column_names]) for t in indices.values()]
        _write(Path(out), fit, pa.concat_tables(tables, promote_options="default"))
    return fit


def _clean(o: Any) -> Any:
    """JSON-safe: NaN / inf become null, numpy scalars become Python numbers."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _ci(ci) -> str:
    return "" if not ci else f" [{ci[0]:.3g}, {ci[1]:.3g}]"


def format_fit(fit: dict) -> str:
    """The critical-size table and both fits, as printed at the end of a sweep."""
    lines = [f"critical training size n*: smallest size at which >= {QUORUM:.0%} of the seeds reach test accuracy "
             f">= {fit['threshold']} (interpolated in log n)",
             "(the bracket [n_lo, n_hi] is what was measured: n_lo fails, n_hi generalizes; n* interpolates between them)",
             f"{'group':>10} {'M':>4} {'bracket':>16} {'width':>6} {'n*':>8} {'n*/M^2':>8} {'Li2 n_c':>8} {'Li2 frac':>8} {'n*/n_c':>7}"]
    for p in fit["points"]:
        br = p["bracket"] or [None, None]
        brs = f"[{'' if br[0] is None else f'{br[0]:.0f}'}, {'' if br[1] is None else f'{br[1]:.0f}'}]"
        if p["n_crit"] is None:
            ncrit = "<=" + f"{br[1]:.0f}" if p["censored"] == "below" else ">" + f"{br[0]:.0f}"
            lines.append(f"{p['group']:>10} {p['order']:>4} {brs:>16} {'open':>6} {ncrit:>8} {'':>8} {p['li2_n']:>8.1f} {p['li2_frac']:>8.3f} {'':>7}")
        else:
            lines.append(f"{p['group']:>10} {p['order']:>4} {brs:>16} {br[1] / br[0] - 1:>6.1%} {p['n_crit']:>8.1f} {p['frac_crit']:>8.3f} "
                         f"{p['li2_n']:>8.1f} {p['li2_frac']:>8.3f} {p['ratio_li2']:>7.2f}")
    ml, pw = fit.get("mlogm"), fit.get("power_law")
    if ml:
        lines.append(f"fit n* = c·M·ln M:          c = {ml['c']:.4g}{_ci(ml['c_ci95'])} (95% CI{' incl. brackets' if ml.get('intervals') else ''}, {ml['points']} groups)"
                     f"   Li2 code: c = {fit['li2_c']}")
    else:
        lines.append("fit n* = c·M·ln M: no group has an uncensored critical size")
    pl = fit.get("power_logm")
    if pl:
        lines.append(f"fit n* = c·M^α·ln M:        c = {pl['c']:.3g}{_ci(pl['c_ci95'])}, α = {pl['alpha']:.3f}{_ci(pl['alpha_ci95'])}"
                     "   Li2: α = 1")
    for name, f in (("c", ml), ("α", pl)):
        key = "c_range" if name == "c" else "alpha_range"
        if f and key in f:
            form = "c·M·ln M" if f is ml else "c·M^α·ln M"
            lines.append(f"  exact laws n* = {form} through every bracket: " + (f"{name} in{_ci(f[key])}" if f[key] else "none"))
    if pw:
        lines.append(f"fit n* = c·M^α·(ln M)^β:    c = {pw['c']:.3g}{_ci(pw['c_ci95'])}, α = {pw['alpha']:.3f}{_ci(pw['alpha_ci95'])}, "
                     f"β = {pw['beta']:.3f}{_ci(pw['beta_ci95'])}" + (f" (corr(α, β) = {pw['corr_alpha_beta']:.2f})" if pw.get("corr_alpha_beta") is not None else ""))
    else:
        lines.append("fit n* = c·M^α·(ln M)^β: needs 3 or more groups with an uncensored critical size")
    if fit.get("series"):
        lines.append(f"({len(fit['series'])} series; the table shows the first: {fit['points'][0]['series'] if fit['points'] else ''})")
    return "\n".join(lines)


def phase_figure(index, fit: dict):
    """Left: the phase diagram, group (rows, by order M) against training fraction (log), colour =
    final test accuracy averaged over seeds, the Li2 critical fraction n_c/M² drawn over it and the
    measured n*/M². Right: n* against M with the Li2 line and both fits. Matplotlib, no display."""
    import matplotlib
    from matplotlib import cm
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    cols = _columns(index)
    pts = fit["points"]
    first = pts[0]["series"] if pts else None
    fig = Figure(figsize=(13, 5.2))
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.18, top=0.88, wspace=0.28)
    ax, ax2 = fig.subplots(1, 2)
    cmap, norm = matplotlib.colormaps["RdYlGn"], Normalize(0, 1)
    _, skeys = series_of(cols) if len(cols.get("member_id", [])) else ([], [])
    acc = _f(cols.get("final_test_acc", np.array([])))
    frac = _f(cols["train_frac"]) if "train_frac" in cols else _f(cols["n_train"]) / _f(cols["order"]) ** 2
    fmin, fmax = np.inf, 0.0
    for r, p in enumerate(pts):
        rows = np.array([gg == p["group"] and (first is None or k == tuple(first.values())) for gg, k in zip(cols["group"], skeys)])
        fr = np.round(frac[rows], 9)
        xs = np.unique(fr)
        means = np.array([np.nanmean(np.where(np.isfinite(acc[rows][fr == v]), acc[rows][fr == v], 0.0)) for v in xs])
        lx = np.log(xs)
        edges = np.concatenate([[lx[0] - (lx[1] - lx[0]) / 2 if len(lx) > 1 else lx[0] - 0.1],
                                (lx[1:] + lx[:-1]) / 2, [lx[-1] + (lx[-1] - lx[-2]) / 2 if len(lx) > 1 else lx[-1] + 0.1]])
        for j, mval in enumerate(means):
            lo, hi = math.exp(edges[j]), math.exp(edges[j + 1])
            ax.add_patch(Rectangle((lo, r - 0.45), hi - lo, 0.9, color=cmap(norm(mval)), lw=0))
        fmin, fmax = min(fmin, math.exp(edges[0])), max(fmax, math.exp(edges[-1]))
    if pts:
        rows_y = np.arange(len(pts))
        ax.plot([p["li2_frac"] for p in pts], rows_y, "k--", marker="|", ms=14, lw=1.5, label=f"Li2: n_c/M² ({science.CRITICAL_CONST}·M ln M)")
        meas = [(p["frac_crit"], r) for r, p in enumerate(pts) if p["frac_crit"] is not None]
        if meas:
            ax.plot(*zip(*meas), "o", mfc="white", mec="black", ms=7, label="measured n*/M²")
        ax.set_xscale("log")
        ax.set_xlim(fmin, fmax)
        ax.set_ylim(-0.5, len(pts) - 0.5)
        ax.set_yticks(rows_y, [f"{p['group']} (M={p['order']})" for p in pts])
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
    ax.set_xlabel("training fraction n / M²", labelpad=1)
    ax.set_title("phase diagram: final test accuracy, mean over seeds")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="test accuracy")

    good = [p for p in pts if p["n_crit"] is not None]
    if pts:
        Ms = np.array([p["order"] for p in pts], float)
        grid = np.geomspace(Ms.min() * 0.9, Ms.max() * 1.1, 60)
        ax2.loglog(grid, science.CRITICAL_CONST * grid * np.log(grid), "k--", label=f"Li2: {science.CRITICAL_CONST}·M ln M")
        ml = fit.get("mlogm")
        if ml:
            ax2.loglog(grid, ml["c"] * grid * np.log(grid), "C3-", label=f"fit: {ml['c']:.3g}·M ln M")
        pl = fit.get("power_logm")
        if pl:
            ax2.loglog(grid, pl["c"] * grid ** pl["alpha"] * np.log(grid), "C0:",
                       label=f"fit: {pl['c']:.3g}·M^{pl['alpha']:.2f}·ln M")
        if good:
            Mg = np.array([p["order"] for p in good], float)
            ng = np.array([p["n_crit"] for p in good])
            lo = ng - np.array([p["bracket"][0] for p in good])
            hi = np.array([p["bracket"][1] for p in good]) - ng
            ax2.errorbar(Mg, ng, yerr=[lo, hi], fmt="o", color="C3", capsize=3, label="measured n* (bar: grid bracket)")
        for p in pts:
            if p["censored"] == "above":
                ax2.plot(p["order"], p["bracket"][0], "^", color="gray")
            elif p["censored"] == "below":
                ax2.plot(p["order"], p["bracket"][1], "v", color="gray")
        ax2.legend(fontsize=8)
    if pts:
        from matplotlib.ticker import FixedLocator, NullLocator

        ticks = sorted({p["order"] for p in pts})
        ax2.xaxis.set_major_locator(FixedLocator(ticks))
        ax2.xaxis.set_minor_locator(NullLocator())
        ax2.set_xticklabels([str(t) for t in ticks])
    ax2.set_xlabel("group order M")
    ax2.set_ylabel("critical number of training pairs n*")
    ax2.set_title("critical data size against the Li2 prediction")
    fig.suptitle("groklab sweep: memorization vs generalization" + (f" ({first})" if first else ""))
    return fig
