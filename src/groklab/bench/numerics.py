"""Benchmarks that catch a run slowing down with training time (issue 12).

A fresh step says nothing about step 4000: weight decay drives dead units into subnormal floats,
which x86 computes in microcode. Two figures, each a ratio measured in one process:
- one step on a late-training state (a share of the weights and Adam moments subnormal, as the
  units weight decay killed) over one step on a fresh state of the same shapes; and the same
  ratio in a child process with the flush turned off (GROKLAB_FLUSH_DENORMAL=0), to show what the
  flush saves on this machine;
- steps/s over the first 10% of a run over steps/s over its last 10% (anything that grows with
  training time — subnormals, Python-side lists — shows up here).
Target for both: ≤ 1.2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

from groklab.tasks import make_task
from groklab.train.config import RunConfig
from groklab.train.engine import init_state, make_job, train
from groklab.train.numerics import ENV, numerics_state

__all__ = ["late_step_ratio", "run_flatness", "bench_numerics", "TARGET"]

TARGET = 1.2
DEAD_SHARE = 0.46  # issue 12's checkpoint: 46% of W subnormal (30% of V, 54% of Adam's first moment)


def _subnormal_share(tensors) -> float:
    """Share of float32 entries that are subnormal, read from the bits (DAZ would make a float
    comparison see them as 0): exponent field 0, mantissa not 0."""
    n = sum(t.numel() for t in tensors)
    sub = 0
    for t in tensors:
        bits = t.detach().view(torch.int32)
        sub += int((((bits & 0x7F800000) == 0) & ((bits & 0x7FFFFF) != 0)).sum())
    return sub / n


def late_step_ratio(steps: int = 10, width: int = 1024) -> dict:
    """Seconds per step on a state whose dead units hold subnormal weights and moments, over a fresh
    state's (Z97 at the Li2 critical size, Adam lr 5e-4, wd 2e-4: issue 12's recipe). The two states
    take single steps in turn and each keeps its fastest: the least disturbed by other load."""
    base = RunConfig.from_flat({"group": "Z97", "crit_mult": 1.0, "width": width, "lr": 5e-4, "wd": 2e-4,
                                "eval_every": 10 ** 9, "device": "cpu"})
    task = make_task("Z97")
    warm = 3  # Adam's moments exist after the first step
    jobs = {s: make_job(base.replace(steps=s), task) for s in range(warm, warm + steps + 2)}

    def make(kill: bool):
        state = init_state(jobs[warm], torch.device("cpu"), torch.float32)
        train(jobs[warm], state)
        tensors = [p.data for p in state.model.parameters()]
        tensors += [v for o in state.opt.parts for st in o.state for v in st.values()]
        if kill:  # a fixed share of every weight and moment entry becomes subnormal (|x| < 1.18e-38)
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for t in tensors:
                    dead = torch.rand(t.shape, generator=g) < DEAD_SHARE
                    # Written as bits (sign kept, exponent 0, mantissa 0x1000 → |x| ≈ 5.7e-42), as a
                    # checkpoint saved without the flush holds them: no float arithmetic, so the flush
                    # cannot turn them into zeros here; with it on, DAZ reads them as 0.
                    bits = t.view(torch.int32)
                    bits[dead] = (bits[dead] & -0x80000000) | 0x1000
        share = _subnormal_share(tensors)
        train(jobs[warm + 1], state)  # one untimed step
        return state, share

    (fresh, _), (late, share) = make(False), make(True)
    best = {"fresh": float("inf"), "late": float("inf")}
    for s in range(warm + 2, warm + steps + 2):
        for name, state in (("fresh", fresh), ("late", late)):
            t0 = time.perf_counter()
            train(jobs[s], state)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {"fresh_ms": best["fresh"] * 1e3, "late_ms": best["late"] * 1e3, "ratio": best["late"] / best["fresh"],
            "subnormal_share_after_kill": share, **numerics_state()}


def run_flatness(steps: int = 1500) -> dict:
    """steps/s over the first 10% of a run / steps/s over its last 10% (the demo's grok run: Z47 at
    2.5× the critical size, K = 512, 3 seeds, Li2 defaults; evaluations included in both windows)."""
    cfg = RunConfig.from_flat({"group": "Z47", "crit_mult": 2.5, "steps": steps, "seeds": (0, 1, 2), "device": "cpu"})
    stamps: list[tuple[int, float]] = []
    job = make_job(cfg, make_task("Z47"))
    train(job, on_eval=lambda st, m: stamps.append((st.step, time.perf_counter())))
    tenth = steps // 10

    def rate(lo: int, hi: int) -> float:
        (s0, t0), (s1, t1) = min(stamps, key=lambda x: abs(x[0] - lo)), min(stamps, key=lambda x: abs(x[0] - hi))
        return (s1 - s0) / (t1 - t0)

    first, last = rate(0, tenth), rate(steps - tenth, steps)
    return {"steps": steps, "first_steps_per_s": first, "last_steps_per_s": last, "ratio": first / last}


def _late_without_flush(steps: int, width: int) -> dict | None:
    """The late/fresh ratio in a child process with the flush off (what the flush saves here)."""
    code = ("import json; from groklab.bench.numerics import late_step_ratio; "
            f"print(json.dumps(late_step_ratio({steps}, {width})))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                             env={**os.environ, ENV: "0"})
    except subprocess.TimeoutExpired:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def bench_numerics(quick: bool) -> dict:
    steps, width = (4, 512) if quick else (10, 1024)
    on = late_step_ratio(steps, width)
    off = _late_without_flush(steps, width)
    flat = run_flatness(300 if quick else 1500)
    off_txt = f"{off['ratio']:.1f} without the flush" if off else "without the flush: not measured"
    return {"late_step": on, "late_step_without_flush": off, "run_flatness": flat, "target": f"≤ {TARGET}",
            "display": f"late/fresh step {on['ratio']:.2f} ({off_txt}); first/last 10% of a run {flat['ratio']:.2f}"}
