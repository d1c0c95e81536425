"""The first layer's init and the critical size (README "First-layer init"; sweeps/init_scale.yaml).

Runs the sweep (or resumes it, or finds it done), then prints per (init_scale, group) the share
of seeds reaching test accuracy 0.99 at each training size, the measured n* (interpolated in
log n, as sweep.scaling) and its grid bracket, against Li2's n_c = 2.7482 · M ln M.

    python scripts/init_scale.py --out sweeps_out/init_scale
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq

from groklab.sweep import run_sweep
from groklab.sweep.scaling import critical_points

ROOT = Path(__file__).resolve().parents[1]


def table(out: Path) -> str:
    pts = critical_points(pq.read_table(out / "index.parquet"))
    lines = ["| init | group | Li2 n_c | share of seeds at test acc ≥ 0.99, by training size (pairs) | n* (interpolated) | bracket | n*/n_c |",
             "|---|---|---|---|---|---|---|"]
    for p in pts:
        init = (p["series"] or {}).get("init_scale", "joint")
        shares = ", ".join(f"{n:.0f}: {s:.2f}" for n, s in zip(p["sizes"], p["p_generalized"]))
        br = p["bracket"]
        if p["n_crit"] is None:
            ncrit, ratio = ("≤ " + f"{br[1]:.0f}", "") if p["censored"] == "below" else ("> " + f"{br[0]:.0f}", "")
        else:
            ncrit, ratio = f"{p['n_crit']:.0f}", f"{p['ratio_li2']:.2f}"
        brs = f"[{'' if br[0] is None else f'{br[0]:.0f}'}, {'' if br[1] is None else f'{br[1]:.0f}'}]"
        lines.append(f"| {init} | {p['group']} | {p['li2_n']:.0f} | {shares} | {ncrit} | {brs} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="sweeps_out/init_scale")
    ap.add_argument("--spec", default=str(ROOT / "sweeps" / "init_scale.yaml"))
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    run_sweep(args.spec, args.out, workers=args.workers, quiet=False)
    print(table(Path(args.out)))


if __name__ == "__main__":
    main()
