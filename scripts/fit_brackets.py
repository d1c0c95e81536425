"""Scaling fits from measured brackets: n* = c·M ln M and n* = c·M^α ln M, intervals that include
the brackets (groklab.sweep.scaling), and the exact laws through every bracket.

For brackets that come from different sweeps (e.g. a grid for some groups and a refinement for
others) where one `groklab sweep --analyze A B` cannot take them (a group in both folders):

    python scripts/fit_brackets.py Z23=198:248 Z31=293:366 Z59=865:905 ...

Each argument is GROUP=N_LO:N_HI (N_LO fails, N_HI generalizes); abelian groups Z_M only.
"""

from __future__ import annotations

import math
import sys

from groklab.errors import GroklabError
from groklab.sweep.scaling import fit_mlogm, fit_power_logm
from groklab.tasks import critical_size, make_task


def parse(arg: str) -> tuple[str, int, float, float]:
    try:
        g, br = arg.split("=")
        lo, hi = (float(x) for x in br.split(":"))
    except ValueError:
        raise GroklabError(f"bracket {arg!r}: expected GROUP=N_LO:N_HI, e.g. Z59=865:905") from None
    task = make_task(g)
    if not task.is_abelian:
        raise GroklabError(f"bracket {arg!r}: the fits are for abelian groups (n_c carries no d_max correction)")
    if not 0 < lo < hi:
        raise GroklabError(f"bracket {arg!r}: need 0 < N_LO < N_HI")
    return g, task.order, lo, hi


def main(argv: list[str]) -> int:
    rows = sorted((parse(a) for a in argv), key=lambda r: r[1])
    if len(rows) < 2:
        raise GroklabError("give at least two brackets (GROUP=N_LO:N_HI)")
    print(f"{'group':>6} {'M':>4} {'bracket':>14} {'width':>6} {'bracket / Li2 n_c':>18}")
    for g, M, lo, hi in rows:
        nc = critical_size(make_task(g))
        print(f"{g:>6} {M:>4} {f'[{lo:g}, {hi:g}]':>14} {hi / lo - 1:>6.1%} {f'[{lo / nc:.2f}, {hi / nc:.2f}]':>18}")
    M = [r[1] for r in rows]
    lo, hi = [r[2] for r in rows], [r[3] for r in rows]
    mid = [math.sqrt(a * b) for a, b in zip(lo, hi)]  # the fit's centre; the intervals resample the brackets
    ml, pl = fit_mlogm(M, mid, lo, hi), fit_power_logm(M, mid, lo, hi)
    f = lambda ci: "none" if ci is None else f"[{ci[0]:.3g}, {ci[1]:.3g}]"  # noqa: E731
    print(f"n* = c·M ln M:    c = {ml['c']:.3g}, 95% {f(ml['c_ci95'])} with the brackets; exact laws: c in {f(ml.get('c_range'))}")
    print(f"n* = c·M^α ln M:  α = {pl['alpha']:.3g}, 95% {f(pl['alpha_ci95'])} with the brackets; exact laws: α in "
          f"{f(pl.get('alpha_range'))}; c = {pl['c']:.3g} {f(pl['c_ci95'])}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except GroklabError as e:
        print(f"fit_brackets: error: {e}", file=sys.stderr)
        raise SystemExit(2)
