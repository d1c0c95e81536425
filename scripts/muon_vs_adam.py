"""Muon vs Adam with few hidden units (README "Muon vs Adam"; sweeps/muon_vs_adam.yaml).

Runs the sweep (or resumes it, or finds it done) with the Li2 analysis taken live for every member
(execution.analysis), then prints the README table: per group, width K, optimizer and lr, the
irreps (non-trivial real frequencies) covered at each member's last analysed step, the final test
accuracy and loss, and the step test accuracy first reached 0.99.

    python scripts/muon_vs_adam.py --out sweeps_out/muon_vs_adam              # the README table
    python scripts/muon_vs_adam.py --out DIR --seeds 0,1,2 --groups Z23       # a smaller cut (same table)
    python scripts/muon_vs_adam.py --out DIR --extend                         # then the rest of the spec
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from groklab import make_task
from groklab.sweep import run_sweep
from groklab.sweep.store import load_analysis
from groklab.theory.reps import irreps

ROOT = Path(__file__).resolve().parents[1]


def table(out: Path) -> str:
    """The markdown table of a finished (or partly finished) sweep folder."""
    import pyarrow.parquet as pq

    index = pq.read_table(out / "index.parquet").to_pandas()
    an = load_analysis(out).to_pandas()
    last = an.sort_values("step").groupby("member_id").tail(1).set_index("member_id")  # each member's last analysis
    index["irreps_covered"] = last.loc[index.member_id, "irreps_covered"].to_numpy()
    index["units_pure"] = last.loc[index.member_id, "units_pure"].to_numpy()
    lines = ["| group | K | optimizer | lr | irreps covered, mean [min–max] of | pure units, mean | test acc, mean [min–max] "
             "| test loss, mean | step test acc ≥ 0.99, median (grokked) |",
             "|---|---|---|---|---|---|---|---|---|"]
    n_irreps = {}
    for (g, K, opt, lr), d in index.groupby(["group", "width", "opt", "lr"], sort=False):
        if g not in n_irreps:
            n_irreps[g] = len(irreps(make_task(g).table).block_names) - 1  # the trivial block is no feature
        M = int(d.order.iloc[0])
        kname = f"{K} (2M − 2)" if K == 2 * M - 2 else (f"{K} (M − 1)" if K == M - 1 else str(K))
        ic, acc = d.irreps_covered.to_numpy(float), d.final_test_acc.to_numpy(float)
        sg = d.step_generalized.dropna().to_numpy(float)
        step = f"{np.median(sg):.0f} ({len(sg)}/{len(d)})" if len(sg) else f"never (0/{len(d)})"
        lines.append(f"| {g} | {kname} | {opt} | {lr:g} | {ic.mean():.1f} [{ic.min():.0f}–{ic.max():.0f}] of {n_irreps[g]} "
                     f"| {d.units_pure.mean():.1f} | {acc.mean():.3f} [{acc.min():.3f}–{acc.max():.3f}] "
                     f"| {d.final_test_loss.mean():.3f} | {step} |")
    seeds = sorted(index.seed.unique().tolist())
    lines.append(f"\n{len(index)} members, seeds {', '.join(map(str, seeds))}; irreps covered at each member's last analysed step.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="sweeps_out/muon_vs_adam")
    ap.add_argument("--spec", default=str(ROOT / "sweeps" / "muon_vs_adam.yaml"))
    ap.add_argument("--seeds", help="a cut of the spec's seeds, e.g. 0,1,2 (default: the spec's)")
    ap.add_argument("--groups", help="a cut of the spec's groups, e.g. Z23 (default: the spec's)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--extend", action="store_true", help="add this spec's new members to a folder made by a smaller cut")
    args = ap.parse_args()
    spec = yaml.safe_load(Path(args.spec).read_text())
    if args.seeds:
        spec["grid"]["seed"] = [int(s) for s in args.seeds.split(",")]
    if args.groups:
        spec["grid"]["group"] = args.groups.split(",")
        spec["exclude"] = [e for e in spec.get("exclude", []) if e.get("group") in spec["grid"]["group"]]
    run_sweep(spec, args.out, workers=args.workers, extend=args.extend, analyze=False, quiet=False)
    print(table(Path(args.out)))


if __name__ == "__main__":
    main()
