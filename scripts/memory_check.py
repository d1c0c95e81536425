"""Measure the peak RSS of a few training steps and compare it with groklab.train.memory's estimate.

    PYTHONPATH=src python scripts/memory_check.py '{"group": "Z97", "frac": 0.5, "width": 4096, "steps": 3}'

Prints one JSON line: estimate, measured peak growth over the RSS before training (the resident
interpreter is not part of the estimate; /proc/self/clear_refs resets the high-water mark), ratio.
Linux only. tests/train/test_memory.py runs it on a few shapes.
"""

import json
import sys

import torch


def rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def main(flat: dict, analysis: bool = False) -> dict:
    torch.set_num_threads(1)
    from groklab.train import api, memory
    from groklab.train.config import RunConfig
    from groklab.train.engine import train

    cfg = RunConfig.from_flat({"eval_every": 1, **flat})
    job = api.prepare(cfg)
    est = memory.estimate_job(job, analysis=analysis)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = rss("VmRSS")
    if analysis:
        from groklab.analysis.replay import Analyzer

        an = Analyzer(job, "eval")
        train(job, device=torch.device("cpu"), on_eval=an.on_eval)
    else:
        train(job, device=torch.device("cpu"))
    peak = rss("VmHWM") - before
    return {"config": flat, "analysis": analysis, "estimate": est.total, "measured": peak,
            "ratio": round(est.total / max(peak, 1), 2), "parts": est.parts}


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(json.loads(args[0]), analysis="--analysis" in args)))
