"""The `snap` verb: Scan & Snap (Model2 + Dataset2 of the official code). Thin: parse, run, print.

    groklab snap fig4 --out runs/snap-fig4             # Scan & Snap Fig. 4 (seconds)
    groklab snap grid --out runs/snap-fig6             # Fig. 6: 4 x 4 x 4 settings x 10 seeds (~1-3 min, 1 core)
    groklab snap grid --num-last 1 --ratios 1,2,5,10,20,50 --out runs/snap-ratio
"""

from __future__ import annotations

import argparse
from pathlib import Path

from groklab.errors import bad_value

__all__ = ["add_parser", "cmd", "parse_list", "parse_seeds"]


def parse_list(field: str, text: str, typ=float) -> tuple:
    try:
        vals = tuple(typ(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise bad_value(field, text, f"must be a comma-separated list of {typ.__name__} values, e.g. 1,2,5") from None
    if not vals:
        raise bad_value(field, text, "needs at least one value")
    return vals


def parse_seeds(text: str) -> tuple[int, ...]:
    """'1-10' or '1,2,3'."""
    if "-" in text and "," not in text:
        a, _, b = text.partition("-")
        try:
            lo, hi = int(a), int(b)
        except ValueError:
            raise bad_value("seeds", text, "must be A-B or a comma-separated list of integers") from None
        if lo < 0 or hi < lo:
            raise bad_value("seeds", text, "A-B needs 0 <= A <= B")
        return tuple(range(lo, hi + 1))
    return parse_list("seeds", text, int)


def add_parser(sub, parser_class=None) -> None:
    """Add the verb to groklab's subparsers (whose parser_class already reports errors in one line)."""
    s = sub.add_parser("snap", help="Scan & Snap (1-layer transformer, Model2 + Dataset2 of the official code): "
                                    "fig4 (loss and c_n over time) or grid (Fig. 6 entropy table and snap times)")
    s.add_argument("what", choices=("fig4", "grid"))
    s.add_argument("--out", required=True, help="run folder; must be new or empty")
    s.add_argument("--num-last", default="1,3,5,10", help="grid: query tokens (default 1,3,5,10)")
    s.add_argument("--lr-z", default="0.5,1,2,3", help="grid: eta_Z values (default 0.5,1,2,3)")
    s.add_argument("--ratios", default="1,2,5,10", help="grid: eta_Y/eta_Z values (default 1,2,5,10)")
    s.add_argument("--seeds", default="1-10", help="grid: seeds, A-B or a list (default 1-10, as the paper)")
    s.add_argument("--niter", type=int, default=100, help="grid: iterations (default 100)")
    s.add_argument("--snap-frac", type=float, default=0.05,
                   help="snap = first step after the peak with |dZ| < this fraction of the peak (default 0.05)")


def cmd(ns: argparse.Namespace, argv: list[str]) -> int:
    from groklab.attention.experiments import snap_fig4, snap_grid

    if ns.what == "fig4":
        s = snap_fig4(Path(ns.out), argv=argv)
        print(f"Fig. 4 run (M={s['M']}, {s['wall_s']:.1f} s): loss vs figure_4.log")
        for t, v in s["loss_vs_log"].items():
            print(f"  iter {t:>3}: groklab {v['groklab']:.6g}  log {v['log']:.6g}  rel err {v['rel_err']:.1e}")
        print(f"  common-token mass of c_n: {s['common_mass']['t0']:.3f} -> {s['common_mass']['final']:.3f}; "
              f"rank corr of distinct c_n with P(l|n) at the end: {s['distinct_rank_corr_with_P_final']:.3f}")
    else:
        s = snap_grid(Path(ns.out), num_lasts=parse_list("num_last", ns.num_last, int), seeds=parse_seeds(ns.seeds),
                      lr_z=parse_list("lr_z", ns.lr_z), ratios=parse_list("ratios", ns.ratios), niter=ns.niter,
                      snap_frac=ns.snap_frac, argv=argv)
        print(f"Fig. 6 grid ({s['wall_s']:.0f} s): mean entropy of c_n over distinct tokens at the end")
        print("  num_last  eta_Z  eta_Y/eta_Z   groklab        paper          snap iter  snap pred  freeze iter")
        for r in s["table"]:
            paper = f"{r['paper']:.3f}±{r['paper_std']:.3f}" if r["paper"] is not None else "-"
            snap = f"{r['snap_mean']:.1f}" if r["snap_mean"] is not None else "never"
            pred = f"{r['snap_pred']:.1f}" if r["snap_pred"] is not None else "-"
            print(f"  {r['num_last']:>8}  {r['lr_z']:>5g}  {r['lr_y_multi_on_z']:>11g}   "
                  f"{r['entropy']:.3f}±{r['entropy_std']:.3f}  {paper:>13}  {snap:>9}  {pred:>9}  {r['freeze_mean']:>11.1f}")
        if s["max_abs_diff_vs_paper"] is not None:
            print(f"  max |groklab - paper| over {s['compared_with_paper']} settings: {s['max_abs_diff_vs_paper']:.4f}")
        for name, th in s["snap_theory"].items():
            if name == "K_M" or "fit" not in th:
                continue
            f = th["fit"]
            slopes = ", ".join(f"{k}: {v:.2f}" for k, v in th["loglog_slope_vs_eta_y"].items())
            corr = f"{th['corr_log_pred_log_measured']:.3f}" if th["corr_log_pred_log_measured"] is not None else "-"
            print(f"  snap vs Theorem 4 (t0 = c K ln M / eta_Y, paper c = {th['paper_c']:g}), eta_Y/eta_Z >= "
                  f"{th['min_ratio']:g}, {th['n']} settings: fitted c = {f['c']:.3f} (x/÷ {f['spread_factor']:.2f}, "
                  f"range {f['c_min']:.3f}-{f['c_max']:.3f}); corr(ln pred, ln meas) = {corr}; "
                  f"slope of ln snap vs ln eta_Y per num_last (paper -1): {slopes}")
    print(f"run folder: {ns.out}")
    return 0
