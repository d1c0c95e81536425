"""`groklab bench`: performance as ratios measured in one process (these machines are shared and noisy,
so absolute times mean little; a ratio of two things measured side by side does).

Figures (issue "groklab core"):
  1. Li2Net step time, Z97, K=512, sqr, MSE, Adam, 30% train: forward + backward + update, and the
     cost of one evaluation on all M² pairs.
  2. This machine's matmul throughput (square float32 GEMM, same process, same threads), the model's
     useful FLOPs per step, and achieved / peak.
     Useful FLOPs per training step = 6·M·K·n: the three GEMMs o = V f (2MKn), dV = dO fᵀ (2MKn),
     df = Vᵀ dO (2MKn). The gather, activation and optimizer are O(Kn) and not counted.
  3. The original code's loop (luckmatters cogo/modular_addition_simple2.py: one-hot matmul first
     layer, train and test evaluation every step, one model at a time) on the same task, and the
     speedup of groklab's loop at its default evaluation interval (10).
  4. Ensemble throughput: E = 8 seeds as one program vs the same 8 run one after another (Z47, K=256).
Further figures (sweep, transformer, analysis, report) are added by the modules that own them.
"""

from __future__ import annotations

import json
import time
from typing import Callable

import torch
from rich.console import Console
from rich.table import Table

from groklab.bench.timing import best_time, matmul_peak
from groklab.tasks import make_task
from groklab.train.config import RunConfig
from groklab.train.engine import (
    Data,
    evaluate,
    init_state,
    make_job,
    pick_device,
    train,
)


def engine_step_time(cfg: RunConfig, device, sync, steps: int) -> float:
    """Seconds per training step of groklab's loop (no evaluation in the timed window)."""
    cfg = cfg.replace(steps=steps, eval_every=10 ** 9, device=device.type)
    job = make_job(cfg, make_task(cfg.task.group))

    def go():
        train(job, device=device)

    return best_time(go, 2, sync) / steps  # includes one evaluation at step 0 and at the end


def eval_time(cfg: RunConfig, device, sync, repeat: int) -> float:
    job = make_job(cfg, make_task(cfg.task.group))
    state = init_state(job, device, torch.float32)
    data = Data(job, device, torch.float32)
    return best_time(lambda: evaluate(state, job, data), repeat, sync)


def reference_step_time(group: str, width: int, frac: float, device, sync, steps: int) -> float:
    """The original code's training loop, transcribed: per step, test_model on train and on test
    (one-hot embedding, two Linear layers, no_grad), then forward/backward/Adam on the train set."""
    task = make_task(group)
    M = task.order
    cfg = RunConfig.from_flat({"group": group, "frac": frac})
    idx = make_job(cfg, task).train_idx[0]
    import numpy as np

    test = np.setdiff1d(task.pairs(), idx)
    X_tr = torch.as_tensor(np.stack([idx // M, idx % M], 1), device=device)
    X_te = torch.as_tensor(np.stack([test // M, test % M], 1), device=device)
    y_tr = torch.as_tensor(task.table.reshape(-1)[idx], device=device)
    y_te = torch.as_tensor(task.table.reshape(-1)[test], device=device)
    torch.manual_seed(0)
    emb = torch.nn.Embedding(M, M).requires_grad_(False).to(device)
    emb.weight.data[:] = torch.eye(M, device=device)
    la, lb = torch.nn.Linear(M, width, bias=False).to(device), torch.nn.Linear(M, width, bias=False).to(device)
    lc = torch.nn.Linear(width, M, bias=False).to(device)
    params = [*la.parameters(), *lb.parameters(), *lc.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)

    def forward(X):
        return lc((la(emb(X[:, 0])) + lb(emb(X[:, 1]))).pow(2))

    def loss_fn(o, y):  # compute_loss(..., "mse") of the original code
        o0 = o - o.mean(dim=1, keepdim=True)
        return o0.pow(2).sum(dim=1).mean() - 2 * o0.gather(1, y[:, None]).mean() + 1 - 1.0 / o.shape[1]

    def one_step():
        with torch.no_grad():
            for X, y in ((X_tr, y_tr), (X_te, y_te)):
                o = forward(X)
                (o.argmax(1) == y).sum().item()
                loss_fn(o, y).item()
        opt.zero_grad()
        loss_fn(forward(X_tr), y_tr).backward()
        opt.step()

    def go():
        for _ in range(steps):
            one_step()

    return best_time(go, 2, sync) / steps


def ensemble_speedup(device, sync, E: int, steps: int) -> dict:
    base = RunConfig.from_flat({"group": "Z47", "width": 256, "frac": 0.3, "steps": steps, "eval_every": 10,
                                "device": device.type})
    task = make_task("Z47")
    ens_job = make_job(base.replace(seeds=tuple(range(E))), task)
    singles = [make_job(base.replace(seeds=(s,)), task) for s in range(E)]
    t_ens = best_time(lambda: train(ens_job, device=device), 2, sync)
    t_seq = best_time(lambda: [train(j, device=device) for j in singles], 2, sync)
    return {"ensemble_s": t_ens, "sequential_s": t_seq, "speedup": t_seq / t_ens}


def run_bench(quick: bool = False, device: str = "auto") -> dict:
    dev = pick_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    steps = 20 if quick else 100
    cfg = RunConfig.from_flat({"group": "Z97", "width": 512, "act": "sqr", "loss": "mse", "opt": "adam", "frac": 0.3})
    job = make_job(cfg, make_task("Z97"))
    M, K, n = 97, 512, len(job.train_idx[0])
    peak = matmul_peak(dev, sync, repeat=5 if quick else 20)
    step_s = engine_step_time(cfg, dev, sync, steps)
    ev_s = eval_time(cfg, dev, sync, 3 if quick else 10)
    flops = 6 * M * K * n
    ref_s = reference_step_time("Z97", K, 0.3, dev, sync, max(5, steps // 4))
    ours_default = step_s + ev_s / 10  # default eval_every = 10
    ens = ensemble_speedup(dev, sync, 8, 30 if quick else 200)
    return {
        "device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "li2_z97": {"M": M, "K": K, "n_train": n, "step_ms": step_s * 1e3, "eval_ms": ev_s * 1e3,
                    "useful_flops_per_step": flops, "achieved_gflops": flops / step_s / 1e9,
                    "peak_gflops": peak / 1e9, "ratio_to_peak": flops / step_s / peak},
        "reference_loop": {"step_ms": ref_s * 1e3, "groklab_ms_per_step_incl_eval": ours_default * 1e3,
                           "speedup": ref_s / ours_default},
        "ensemble_z47_k256_e8": ens,
    }


TARGETS = {"ratio_to_peak": 0.6, "speedup": 3.0, "ensemble": 4.0}


def print_bench(res: dict) -> None:
    t = Table(title=f"groklab bench ({res['device']}, {res['threads']} threads, torch {res['torch']})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    z = res["li2_z97"]
    t.add_row(f"Li2Net Z97 K=512 n={z['n_train']}: step (fwd+bwd+Adam)", f"{z['step_ms']:.2f} ms", "")
    t.add_row("  one evaluation on all 9409 pairs", f"{z['eval_ms']:.2f} ms", "")
    t.add_row("  useful FLOP/s (6·M·K·n per step)", f"{z['achieved_gflops']:.1f} GFLOP/s", "")
    t.add_row("  matmul peak, same process", f"{z['peak_gflops']:.1f} GFLOP/s", "")
    t.add_row("  achieved / peak", f"{z['ratio_to_peak']:.2f}", f"≥ {TARGETS['ratio_to_peak']}")
    r = res["reference_loop"]
    t.add_row("original-code loop (one-hot, eval every step)", f"{r['step_ms']:.2f} ms/step", "")
    t.add_row("  groklab speedup (eval every 10)", f"{r['speedup']:.1f}×", f"≥ {TARGETS['speedup']}×")
    e = res["ensemble_z47_k256_e8"]
    t.add_row("ensemble Z47 K=256: E=8 in one program vs 8 runs", f"{e['speedup']:.1f}×", f"≥ {TARGETS['ensemble']}×")
    for name, extra in res.get("extra", {}).items():
        t.add_row(name, str(extra.get("display", extra)), str(extra.get("target", "")))
    Console().print(t)


def main(json_path: str | None = None, quick: bool = False, device: str = "auto") -> int:
    res = run_bench(quick=quick, device=device)
    res["extra"] = {}
    for name, fn in _extra_benches():
        try:
            res["extra"][name] = fn(quick)
        except ImportError as e:  # a module that is not installed in this build
            res["extra"][name] = {"display": f"skipped ({e})"}
    print_bench(res)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(res, f, indent=2)
    return 0


def bench_analysis(quick: bool) -> dict:
    """Overhead of the Li2 analysis at its default interval, in one run: the time spent in the
    analysis hook (analysis.Analyzer.on_eval, the same hook run_with_analysis attaches) over the
    time of everything else in the run. One run of the default length (3000 steps; the analyses
    at steps 10, 20, 40 for log-scale plots weigh more in a shorter run). Timing a plain run against
    an analysed one instead would compare two separate 40-second runs on a shared machine, whose
    own difference is ±10%."""
    from groklab.analysis import Analyzer
    from groklab.train import api

    cfg = RunConfig.from_flat({"group": "Z97", "crit_mult": 2.0, "steps": 300 if quick else 3000, "device": "cpu"})
    job = api.prepare(cfg)
    an = Analyzer(job)
    spent = [0.0]

    def hook(st, m) -> None:
        t = time.perf_counter()
        an.on_eval(st, m)
        spent[0] += time.perf_counter() - t

    t = time.perf_counter()
    api.run(cfg, None, on_eval=hook)
    total = time.perf_counter() - t
    over = spent[0] / (total - spent[0])
    n = len(an.done)
    return {"run_s": total, "analysis_s": spent[0], "analyses": n, "overhead": over,
            "display": f"{over:+.1%} ({n} analyses in a {cfg.train.steps}-step Z97 K=512 run, every {an.every})",
            "target": "≤ +10%"}


def bench_report(quick: bool) -> dict:
    """Time to write the HTML + PNG report of a 3000-step run (301 evaluations)."""
    import tempfile

    from groklab.report import report
    from groklab.train import api

    steps = 600 if quick else 3000
    cfg = RunConfig.from_flat({"group": "Z23", "crit_mult": 2.0, "steps": steps, "width": 128, "seeds": (0, 1),
                               "device": "cpu"})
    with tempfile.TemporaryDirectory() as d:
        api.run(cfg, f"{d}/r")
        t = time.perf_counter()
        report([f"{d}/r"])
        dt = time.perf_counter() - t
    return {"steps": steps, "seconds": dt, "display": f"{dt:.2f} s ({steps} steps, 2 members)", "target": "< 5 s"}


def _extra_benches() -> list[tuple[str, Callable[[bool], dict]]]:
    """Benchmarks owned by other parts: sweep batching, the transformer, analysis, reports."""
    from groklab.bench.numerics import bench_numerics
    from groklab.bench.peers import bench_transformer
    from groklab.bench.sweep import bench_sweep

    return [("sweep: 16 members Z47 K=256 batched vs one after another", bench_sweep),
            ("transformer p=113, 30% data (Nanda)", bench_transformer),
            ("analysis overhead", bench_analysis),
            ("report of a run", bench_report),
            ("steps stay fast late in a run (subnormals flushed)", bench_numerics)]
