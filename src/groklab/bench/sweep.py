"""Sweep throughput: 16 members of Z47 (K = 256) as one sweep vs the same 16 members trained one
after another (the engine alone, one member at a time: no files, no sweep machinery).

`ratio` compares the two on one thread (batching alone); `ratio_all_cores` lets the sweep use its
default local executor (one process per core), as `groklab sweep` does. The sweep side pays for
its files (results, index, checkpoints); the sequential side pays for nothing but training.

    python bench/bench_sweep.py [--quick]          # or `groklab bench`, which calls bench_sweep()

The target (>= 6x) assumed batching removes most of a single run's cost. On a CPU it does not:
one member of this size is already compute-bound (its (n, K) activations fit the L2 cache), so
a batched job does the same arithmetic per member and saves the per-step overhead only; the
measured ratio on a 2-core EPYC VM is ~1.5x on one core. On a GPU, where a small single run is
dominated by kernel-launch overhead, batching should pay far more (not measured: no GPU here).

The members: Z47, sqr, MSE, Adam lr 1e-3, wd 1e-4, training size = the Li2 critical size
(crit_mult 1, 497 pairs, each member its own split), seeds 0..15, evaluation every 10 steps.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _spec(steps: int, max_members: int) -> dict:
    return {"name": "bench_sweep",
            "base": {"group": "Z47", "width": 256, "crit_mult": 1.0, "steps": steps, "eval_every": 10},
            "grid": {"seed": list(range(16))},
            "execution": {"max_members": max_members, "threads": 1}}


def _sequential(steps: int) -> tuple[float, np.ndarray]:
    from groklab.tasks import make_task
    from groklab.train.config import RunConfig
    from groklab.train.engine import make_job, train

    task = make_task("Z47")
    t = time.perf_counter()
    acc = []
    for seed in range(16):
        cfg = RunConfig.from_flat({**_spec(steps, 1)["base"], "seeds": (seed,)})
        st = train(make_job(cfg, task))
        acc.append(st.rows["test_acc"][-1])
    return time.perf_counter() - t, np.array(acc)


def bench_sweep(quick: bool = False) -> dict:
    """Seconds for each way, the throughput ratios (sequential / sweep), members per minute, and
    the largest difference in final test accuracy between sweep and sequential (they agree up to
    float rounding)."""
    from groklab.sweep import run_sweep

    steps = 100 if quick else 400
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="groklab-bench-sweep-"))
    try:
        seq_s, seq_acc = _sequential(steps)
        times, jobs, diff = {}, {}, {}
        for name, workers in (("one_core", 1), ("all_cores", None)):
            t = time.perf_counter()
            res = run_sweep(_spec(steps, 64), root / name, workers=workers, analyze=False)
            times[name] = time.perf_counter() - t
            df = res.index.to_pandas().sort_values("seed")
            assert len(df) == 16
            jobs[name] = int(df.job.nunique())
            diff[name] = float(np.max(np.abs(df.final_test_acc.to_numpy() - seq_acc)))
    finally:
        torch.set_num_threads(old)
        shutil.rmtree(root, ignore_errors=True)
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"name": "sweep: 16 members of Z47 (K=256) as one sweep vs one after another", "steps": steps, "members": 16,
            "jobs": jobs["one_core"], "cores": cores, "sequential_s": round(seq_s, 2), "sweep_one_core_s": round(times["one_core"], 2),
            "sweep_all_cores_s": round(times["all_cores"], 2), "ratio": round(seq_s / times["one_core"], 2),
            "ratio_all_cores": round(seq_s / times["all_cores"], 2),
            "members_per_min_sequential": round(16 / seq_s * 60, 1), "members_per_min_sweep": round(16 / times["all_cores"] * 60, 1),
            "max_abs_diff_test_acc": max(diff.values()), "target_ratio": 6.0,
            "display": f"{seq_s / times['one_core']:.2f}x on 1 core, {seq_s / times['all_cores']:.2f}x on {cores} cores "
                       f"({16 / times['all_cores'] * 60:.0f} vs {16 / seq_s * 60:.0f} members/min)",
            "target": ">= 6x"}
