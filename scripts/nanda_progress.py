"""Nanda et al. 2023 reproduction with progress measures (docs/reproductions.md).

Trains the one-layer transformer on (a + b) mod p with the paper's recipe (30% of the pairs, AdamW
lr 1e-3, wd 1, betas (0.9, 0.98), 10-step lr warm-up, full batch) through groklab's API, and every
`--pm-every` steps records Nanda's progress measures (key frequencies, restricted and excluded
loss, Gini, Σw²) next to the run's accuracy. Writes the run folder and <out>/progress.json.

    python scripts/nanda_progress.py --p 113 --steps 16000 --out runs/nanda_p113
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from groklab import RunConfig, run
from groklab.engine import make_job
from groklab.progress import progress_measures
from groklab.tasks import make_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--steps", type=int, default=16000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--pm-every", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    p = args.p
    cfg = RunConfig.from_flat({"group": f"Z{p}", "model": "transformer", "loss": "ce", "opt": "adamw", "lr": 1e-3,
                               "wd": 1.0, "beta1": 0.9, "beta2": 0.98, "frac": 0.3, "steps": args.steps,
                               "eval_every": args.eval_every, "ckpt_every": 1000, "warmup": args.warmup,
                               "seeds": (args.seed,)})
    train_idx = make_job(cfg, make_task(cfg.task.group)).train_idx  # the split run() will draw
    table = np.add.outer(np.arange(p), np.arange(p)) % p
    rows: list[dict] = []
    t0 = time.perf_counter()

    def on_eval(state, metrics) -> None:
        if state.step % args.pm_every and state.step != args.steps:
            return
        pm = progress_measures(state.model, table, train_idx, loss="ce")
        rows.append({"step": state.step, "wall_s": round(time.perf_counter() - t0, 1),
                     "train_acc": float(metrics["train_acc"][0]), "test_acc": float(metrics["test_acc"][0]),
                     "train_loss": float(metrics["train_loss"][0]), "test_loss": float(metrics["test_loss"][0]),
                     **{k: float(pm[k][0]) for k in ("restricted_loss", "excluded_loss", "gini", "sum_sq_weights")},
                     "key_freqs": [int(k) for k in pm["key_freqs"][0]]})
        print(json.dumps(rows[-1]), flush=True)

    r = run(cfg, args.out, on_eval=on_eval)
    (Path(args.out) / "progress.json").write_text(json.dumps({"config": cfg.flat(), "rows": rows,
                                                              "summary": r.summary}, indent=1, default=list))


if __name__ == "__main__":
    main()
