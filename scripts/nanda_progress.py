"""Nanda et al. 2023 reproduction with progress measures (docs/reproductions.md).

Trains the one-layer transformer on (a + b) mod p with the paper's recipe (30% of the pairs, AdamW
lr 1e-3, wd 1, betas (0.9, 0.98), 10-step lr warm-up, full batch) with groklab's analysis hook
attached: every `--pm-every` steps Nanda's progress measures (key frequencies, restricted and
excluded loss, Gini, Σw²) go to <out>/analysis.parquet and the dated phases (memorization,
circuit formation, cleanup) to <out>/summary.json, which `groklab report <out>` draws.

    python scripts/nanda_progress.py --p 113 --steps 16000 --out runs/nanda_p113    # ~19 min on 2 CPU cores
"""

from __future__ import annotations

import argparse

from groklab import RunConfig
from groklab.analysis import run_with_analysis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--steps", type=int, default=16000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--pm-every", type=int, default=200, help="steps between progress measures (a multiple of --eval-every)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    cfg = RunConfig.from_flat({"group": f"Z{args.p}", "model": "transformer", "loss": "ce", "opt": "adamw", "lr": 1e-3,
                               "wd": 1.0, "beta1": 0.9, "beta2": 0.98, "frac": 0.3, "steps": args.steps,
                               "eval_every": args.eval_every, "ckpt_every": 1000, "warmup": args.warmup,
                               "seeds": (args.seed,)})
    r = run_with_analysis(cfg, args.out, every=args.pm_every)
    member = r.summary["members"][0]
    phases = r.summary["stages"]["members"][0]
    print(f"memorized at {member['step_memorized']}, generalized at {member['step_generalized']}; phases: "
          + ", ".join(f"{s['name']} {s['start']}-{s['end']}" for s in phases["stages"])
          + f"; key frequencies at the end: {r.summary['analysis']['final_key_freqs'][0]}")
    print(f"report: groklab report {args.out}")


if __name__ == "__main__":
    main()
