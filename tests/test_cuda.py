"""The CUDA path (`--device cuda`): the same engine, models, tricks and analysis on a GPU.

Skipped where no CUDA device is present (CI and the project's CPU machines). On a GPU machine:
`python -m pytest -q tests/test_cuda.py`. Float64 runs on both devices agree to rounding; a float32
run is not compared bit for bit (different kernels, different summation order).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groklab import RunConfig, run
from groklab.analysis import analyze_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here; run tests/test_cuda.py on a GPU machine")


def _metrics(device: str, **flat):
    cfg = RunConfig.from_flat({"group": "Z11", "frac": 0.5, "width": 32, "steps": 60, "eval_every": 10,
                               "seeds": (0, 1), "dtype": "float64", "lr": 1e-2, "device": device, **flat})
    return run(cfg, None).metrics_df().sort_values(["step", "member"]).reset_index(drop=True)


@pytest.mark.parametrize("flat", [{}, {"opt": "muon"}, {"model": "embed-mlp", "loss": "ce", "grokfast": "ema"},
                                  {"model": "transformer", "d_model": 16, "n_heads": 2, "d_mlp": 32, "loss": "ce",
                                   "opt": "adamw", "wd": 1.0}])
def test_cuda_run_matches_cpu_in_float64(flat):
    cpu, gpu = _metrics("cpu", **flat), _metrics("cuda", **flat)
    assert list(cpu.step) == list(gpu.step) and list(cpu.member) == list(gpu.member)
    for k in ("train_loss", "test_loss", "train_acc", "test_acc"):
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-8, atol=1e-10, err_msg=k)


def test_cuda_run_is_deterministic_and_analysis_replays_exactly(tmp_path):
    cfg = RunConfig.from_flat({"group": "Z23", "crit_mult": 2.0, "width": 64, "steps": 200, "seeds": (0, 1, 2),
                               "device": "cuda"})
    a, b = run(cfg, tmp_path / "a"), run(cfg, tmp_path / "b")
    assert a.metrics.equals(b.metrics)
    res = analyze_run(tmp_path / "a")
    assert res.replay in ("exact", "approximate") and res.analysis.num_rows > 0


def test_cuda_bench_figures_are_consistent():
    from groklab.bench import li2 as bench

    r = bench.run_bench(quick=True, device="cuda")
    z = r["li2_z97"]
    assert r["device"].startswith("cuda") and 0 < z["ratio_to_peak"] < 3
    assert z["achieved_gflops"] == pytest.approx(z["useful_flops_per_step"] / z["step_ms"] / 1e6)
