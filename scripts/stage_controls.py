"""The runs behind the thresholds of the features verdict (docs/formats.md, "The features verdict
and the stages"): trains each configuration with the Li2 analysis attached and prints, per member,
test accuracy, step_memorized / step_generalized, the verdict, its evidence and the stages.

    PYTHONPATH=src OMP_NUM_THREADS=1 python scripts/stage_controls.py [name ...]    # all by default

Single-threaded; about 10 min on a 2-core machine shared with other work (the K = 512 runs are
most of it). Seeds 0, 1, 2 everywhere; Li2 defaults (sqr, MSE, Adam lr 1e-3, wd 1e-4) unless listed.
"""

from __future__ import annotations

import re
import sys
import time

import torch

from groklab import RunConfig
from groklab.analysis import Analyzer
from groklab.analysis.stages import detect_stages
from groklab.train import record
from groklab.train.api import prepare
from groklab.train.engine import train

S = (0, 1, 2)
CONFIGS = {
    "Z23 2x K128": {"group": "Z23", "crit_mult": 2.0, "steps": 800, "width": 128, "seeds": S},
    "Z47 2x K128": {"group": "Z47", "crit_mult": 2.0, "steps": 600, "width": 128, "seeds": S},
    "Z23 0.4x K128": {"group": "Z23", "crit_mult": 0.4, "steps": 800, "width": 128, "seeds": S},
    "Z23 2x K128 lr1e-9": {"group": "Z23", "crit_mult": 2.0, "steps": 200, "width": 128, "lr": 1e-9, "seeds": S},
    "Z47 0.5x K512": {"group": "Z47", "crit_mult": 0.5, "steps": 1500, "seeds": S},
    "Z23 2x K128 relu": {"group": "Z23", "crit_mult": 2.0, "steps": 1000, "width": 128, "act": "relu", "seeds": S},
    "Z23 0.4x K128 relu": {"group": "Z23", "crit_mult": 0.4, "steps": 1000, "width": 128, "act": "relu", "seeds": S},
    "Z23 2x K128 silu": {"group": "Z23", "crit_mult": 2.0, "steps": 1000, "width": 128, "act": "silu", "seeds": S},
    "Z23 2x K512": {"group": "Z23", "crit_mult": 2.0, "steps": 800, "seeds": S},
    "Z47 2x K512": {"group": "Z47", "crit_mult": 2.0, "steps": 1500, "seeds": S},
    "x^2+y^2 mod 23, 50%": {"group": "expr:x**2+y**2 mod 23", "frac": 0.5, "steps": 800, "width": 128, "seeds": S},
}


def thm7_check(t: dict, member: int, M: int) -> str:
    """Li2 Thm 7 says that once some irreps are learned, G_F points at the missing ones. On Z_M (M odd,
    every non-trivial block 2-d) the share of ‖W‖-space in missing blocks is 2·(missing)/M; compare it
    with gf_missing_share (the share of G_F's first-layer gradient there) while 0 < irreps_covered < all."""
    out = []
    n_feat = (M - 1) // 2
    for s, e, c, g in zip(t["step"], t["member"], t["irreps_covered"], t["gf_missing_share"]):
        if e == member and 0 < c < n_feat:
            out.append(f"step {s}: {g:.3f} vs {2 * (n_feat - c) / M:.3f}")
    return "Thm 7 (gf_missing_share vs the missing blocks' share of dimensions): " + ("; ".join(out) or "-")


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    for name in names or list(CONFIGS):
        t0 = time.time()
        job = prepare(RunConfig.from_flat(CONFIGS[name]))
        an = Analyzer(job)
        st = train(job, device=torch.device("cpu"), on_eval=an.on_eval)
        members = record.summarize(st, job, "done")["members"]
        t = an.table().to_pydict()
        res = detect_stages(t, {m["member"]: m["last_step"] for m in members})
        print(f"== {name} ({time.time() - t0:.0f} s)")
        for m, r in zip(members, res["members"]):
            spans = " · ".join(f"{x['name']} {x['start']}–{x['end']}" for x in r["stages"]) or "-"
            print(f"  seed {m['seed']}: test {m['final_test_acc']:.3f}, memorized {m['step_memorized']}, generalized "
                  f"{m['step_generalized']} | {r['features']} | {r['evidence']} | {spans} | {r.get('note', '')}")
            if r["features"] == "generalizing" and re.fullmatch(r"Z\d+", job.task.name) and job.task.order % 2:
                print("    " + thm7_check(t, m["member"], job.task.order))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
