"""The grid bracket of reported critical sizes, and the scaling fits with bracket-aware intervals.

A sweep's n* is interpolated between two grid sizes; only the bracket [n_lo, n_hi] (the grid
neighbours around it) was measured. Given a spec and the n* values it reported, this prints each
group's bracket and the fits n* = c·M ln M and c·M^α ln M with intervals that propagate the
brackets (groklab.sweep.scaling), beside the residual-only (OLS) intervals. A sweep run by this
groklab writes the same into its fit.json; this script re-derives it from published numbers.

    python scripts/grid_brackets.py sweeps/li2_scaling.yaml Z23=222 Z31=328 Z41=468 Z47=556 \\
        Z59=905 Z71=1441 Z83=1746 Z97=2112
"""

from __future__ import annotations

import sys

from groklab.sweep.scaling import fit_mlogm, fit_power_logm
from groklab.sweep.spec import load_spec
from groklab.tasks import critical_size, make_task


def main(argv: list[str]) -> int:
    sp = load_spec(argv[0])
    measured = {k: float(v) for k, v in (a.split("=") for a in argv[1:])}
    sizes: dict[str, set] = {}
    orders: dict[str, int] = {}
    for m in sp.members:
        sizes.setdefault(m.flat["group"], set()).add(m.n_train)
        orders[m.flat["group"]] = m.order
    rows = []
    print(f"{'group':>6} {'M':>4} {'n* (interp.)':>12} {'grid bracket':>14} {'width':>6} {'bracket / Li2 n_c':>18}")
    for g, n in measured.items():
        s = sorted(sizes[g])
        lo = max(x for x in s if x <= n)
        hi = min(x for x in s if x >= n)
        nc = critical_size(make_task(g))
        rows.append((orders[g], n, lo, hi))
        print(f"{g:>6} {orders[g]:>4} {n:>12g} {f'[{lo}, {hi}]':>14} {hi / lo - 1:>6.0%} {f'[{lo / nc:.2f}, {hi / nc:.2f}]':>18}")
    abelian = [r for g, r in zip(measured, rows) if make_task(g).is_abelian]
    if len(abelian) >= 3:
        M, n, lo, hi = (list(x) for x in zip(*abelian))
        ml, pl = fit_mlogm(M, n, lo, hi), fit_power_logm(M, n, lo, hi)
        f = lambda ci: "none (no residual dof)" if ci is None else f"[{ci[0]:.3g}, {ci[1]:.3g}]"  # noqa: E731
        print(f"n* = c·M ln M:    c = {ml['c']:.3g}, 95% {f(ml['c_ci95'])} with the brackets, {f(ml['c_ci95_ols'])} residuals only")
        print(f"n* = c·M^α ln M:  α = {pl['alpha']:.3g}, 95% {f(pl['alpha_ci95'])} with the brackets, {f(pl['alpha_ci95_ols'])} residuals only;"
              f" c = {pl['c']:.3g} {f(pl['c_ci95'])}")
        g = lambda r: "none" if r is None else f"[{r[0]:.3g}, {r[1]:.3g}]"  # noqa: E731
        print(f"exact laws through every bracket: c·M ln M with c in {g(ml['c_range'])}; c·M^α ln M with α in {g(pl['alpha_range'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
