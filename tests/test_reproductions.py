"""Reproduction specs (sweeps/*.yaml of docs/reproductions.md) and one small end-to-end check per
peer trick through the real engine: Grokfast, ⊥Grad, StableMax, the transformer via the CLI, and
the transformer bench figure."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.numpy import load_file

from groklab import RunConfig, run
from groklab.sweep import load_spec
from groklab.tasks import make_task
from groklab.train.engine import init_state, make_job, train

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "groklab.cli"]

# The published setups (science.md §7) each spec must keep: bare config fields -> value.
SPECS = {
    "nanda_p113": {"group": "Z113", "model": "transformer", "d_model": 128, "n_heads": 4, "d_mlp": 512, "loss": "ce",
                   "opt": "adamw", "lr": 1e-3, "wd": 1.0, "beta1": 0.9, "beta2": 0.98, "frac": 0.3, "batch_size": None, "warmup": 10},
    "nanda_p59": {"group": "Z59", "model": "transformer", "d_model": 128, "loss": "ce", "opt": "adamw", "lr": 1e-3,
                  "wd": 1.0, "beta2": 0.98, "frac": 0.3, "batch_size": None},
    "gromov_p97": {"group": "Z97", "width": 500, "act": "sqr", "loss": "mse", "opt": "adamw", "lr": 1e-2, "wd": 5.0,
                   "frac": 0.5, "eval_every": 1, "batch_size": None},
    "grokfast": {"grokfast_alpha": 0.98, "grokfast_lamb": 2.0, "opt": "adam", "lr": 1e-3, "beta2": 0.98, "frac": 0.5},
    "grokfast_p31": {"grokfast_alpha": 0.98, "grokfast_lamb": 2.0, "opt": "adam", "lr": 1e-3, "beta2": 0.98, "frac": 0.5},
    "stablemax": {"wd": 0.0},
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_loads_and_keeps_the_published_setup(name):
    spec = load_spec(ROOT / "sweeps" / f"{name}.yaml")
    assert spec.members, name
    for m in spec.members:
        for key, want in SPECS[name].items():
            got = m.flat[key]
            assert got == want or (isinstance(want, float) and math.isclose(got, want)), (name, key, got, want)


@pytest.mark.parametrize("name", ["grokfast", "grokfast_p31"])
def test_grokfast_spec_pairs_every_filtered_member_with_a_plain_one(name):
    """The speed-up is a ratio over the same task and seeds: each grokfast member has a twin
    without the filter that differs in nothing else."""
    spec = load_spec(ROOT / "sweeps" / f"{name}.yaml")
    plain = {json.dumps({k: v for k, v in m.flat.items() if k != "grokfast"}, sort_keys=True)
             for m in spec.members if m.flat["grokfast"] == "none"}
    filtered = [m for m in spec.members if m.flat["grokfast"] == "ema"]
    assert filtered
    for m in filtered:
        assert json.dumps({k: v for k, v in m.flat.items() if k != "grokfast"}, sort_keys=True) in plain


def test_stablemax_spec_has_the_collapse_baseline_and_both_fixes():
    spec = load_spec(ROOT / "sweeps" / "stablemax.yaml")
    kinds = {(m.flat["loss"], m.flat["orth_grad"]) for m in spec.members}
    assert {("ce", False), ("stablemax", False), ("ce", True)} <= kinds
    assert all(m.flat["wd"] == 0.0 for m in spec.members)


# ---- one step of SGD shows exactly what a gradient trick did to the gradient ----------------------
def _one_sgd_step(**flat) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Parameters before and after one plain-SGD step (momentum 0, wd 0, float64) of the engine."""
    cfg = RunConfig.from_flat({"group": "Z7", "frac": 0.6, "width": 16, "opt": "sgd", "momentum": 0.0, "wd": 0.0,
                               "lr": 0.1, "steps": 1, "dtype": "float64", "device": "cpu", "seeds": (0, 1), **flat})
    job = make_job(cfg, make_task("Z7"))
    before = [p.detach().clone() for p in init_state(job, torch.device("cpu"), torch.float64).model.parameters()]
    after = [p.detach().clone() for p in train(job, device=torch.device("cpu")).model.parameters()]
    return before, after


@pytest.mark.parametrize("model", ["li2", "embed-mlp"])
def test_grokfast_ema_amplifies_the_first_gradient_by_one_plus_lambda(model):
    """μ starts as the first gradient, so the first filtered gradient is (1 + λ) g: one SGD step of
    the filtered run moves (1 + λ) times as far as the plain run, in the same direction."""
    p0, plain = _one_sgd_step(model=model, loss="ce")
    _, fast = _one_sgd_step(model=model, loss="ce", grokfast="ema", grokfast_alpha=0.98, grokfast_lamb=2.0)
    for a, b, c in zip(p0, plain, fast):
        assert (b - a).abs().max() > 0
        torch.testing.assert_close(c - a, 3.0 * (b - a), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("model", ["li2", "embed-mlp"])
def test_orth_grad_step_is_orthogonal_to_the_weights(model):
    """⊥Grad: every parameter tensor of every member moves orthogonally to itself, by as much as
    the plain step (the reference rescales to ‖g‖); the plain step is not orthogonal."""
    p0, plain = _one_sgd_step(model=model, loss="ce")
    _, orth = _one_sgd_step(model=model, loss="ce", orth_grad=True)
    for w, b, c in zip(p0, plain, orth):
        E = w.shape[0]
        w, d_plain, d_orth = w.reshape(E, -1), (b - w).reshape(E, -1), (c - w).reshape(E, -1)
        cos_plain = (w * d_plain).sum(1) / (w.norm(dim=1) * d_plain.norm(dim=1))
        cos_orth = (w * d_orth).sum(1) / (w.norm(dim=1) * d_orth.norm(dim=1))
        assert (cos_plain.abs() > 1e-3).all()
        assert (cos_orth.abs() < 1e-12).all()
        torch.testing.assert_close(d_orth.norm(dim=1), d_plain.norm(dim=1), rtol=1e-10, atol=0)


def test_without_weight_decay_ce_collapses_the_softmax_and_orth_grad_prevents_it():
    """Prieto et al.'s mechanism on a tiny task (Z11, x², lr 3e-2, wd 0, float32): after 500 steps
    a third or more of each member's training pairs are in softmax collapse under plain
    cross-entropy; ⊥Grad removes the weight-scaling direction of the gradient and none collapse."""
    from groklab.train.tricks import softmax_collapse_fraction

    def collapse(**extra) -> list[float]:
        cfg = RunConfig.from_flat({"group": "Z11", "frac": 0.6, "width": 64, "loss": "ce", "wd": 0.0, "lr": 3e-2,
                                   "steps": 500, "eval_every": 500, "device": "cpu", "seeds": (0, 1, 2), **extra})
        job = make_job(cfg, make_task("Z11"))
        model = train(job, device=torch.device("cpu")).model
        out = []
        for e, idx in enumerate(job.train_idx):
            i = torch.as_tensor(idx)
            out.append(float(softmax_collapse_fraction(model(i // 11, i % 11)[e:e + 1])[0]))
        return out

    assert min(collapse()) > 0.25
    assert max(collapse(orth_grad=True)) == 0.0


def test_stablemax_run_records_the_stablemax_loss_and_trains(tmp_path):
    """The recorded step-0 train loss is −log StableMax (computed here by hand from the init), and
    the run fits its training set."""
    cfg = RunConfig.from_flat({"group": "Z11", "frac": 0.6, "width": 64, "loss": "stablemax", "lr": 1e-2,
                               "wd": 0.0, "steps": 150, "eval_every": 50, "device": "cpu"})
    r = run(cfg, tmp_path / "sm")
    job = make_job(cfg, make_task("Z11"))
    model = init_state(job, torch.device("cpu"), torch.float32).model
    idx = torch.as_tensor(job.train_idx[0])
    o = model(idx // 11, idx % 11)[0].double()  # (M, n)
    s = torch.where(o >= 0, o + 1, 1 / (1 - o))
    y = torch.as_tensor(job.task.table.reshape(-1)[job.train_idx[0]])
    want = -(s[y, torch.arange(len(y))] / s.sum(0)).log().mean().item()
    df = r.metrics_df()
    first, last = df[df.step == 0].iloc[0], df[df.step == 150].iloc[0]
    assert first.train_loss == pytest.approx(want, rel=1e-5)
    assert last.train_acc == 1.0 and last.train_loss < 0.1 * first.train_loss


def test_transformer_with_every_trick_through_the_cli_writes_a_complete_run_folder(tmp_path):
    out = tmp_path / "tr"
    args = ["run", "--model", "transformer", "--group", "Z7", "--frac", "0.6", "--d-model", "16", "--n-heads", "2",
            "--d-mlp", "32", "--loss", "stablemax", "--opt", "adamw", "--wd", "1", "--beta2", "0.98", "--lr", "1e-2",
            "--grokfast", "ema", "--orth-grad", "true", "--steps", "40", "--eval-every", "10", "--seeds", "0,1",
            "--quiet", "--out", str(out)]
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in out.iterdir()) == ["config.json", "metrics.parquet", "split.npz", "summary.json",
                                                     "weights.safetensors"]
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["model"]["model"] == "transformer" and cfg["model"]["loss"] == "stablemax"
    assert cfg["train"]["grokfast"] == "ema" and cfg["train"]["orth_grad"] is True and cfg["train"]["opt"] == "adamw"
    w = load_file(str(out / "weights.safetensors"))
    assert w["W_E"].shape == (2, 16, 8) and w["W_U"].shape == (2, 16, 7) and w["W_Q"].shape == (2, 2, 8, 16)
    m = pq.read_table(out / "metrics.parquet").to_pandas()
    assert sorted(m.step.unique()) == [0, 10, 20, 30, 40] and sorted(m.member.unique()) == [0, 1]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "complete" and [x["status"] for x in s["members"]] == ["complete", "complete"]
    assert all(np.isfinite(m.train_loss)) and (m[m.step == 40].train_acc.to_numpy() > m[m.step == 0].train_acc.to_numpy()).all()


def test_bench_transformer_figures_are_consistent():
    from groklab.bench.peers import bench_transformer, transformer_useful_flops

    torch.set_num_threads(1)
    r = bench_transformer(quick=True, device="cpu")
    assert r["n_train"] == 3831 and r["p"] == 113  # round(0.3 * 113²)
    assert r["useful_flops_per_step"] == transformer_useful_flops(3831, 128, 512, 113) == 5_981_508_864
    assert r["step_ms"] > 0 and r["epochs_per_s"] == pytest.approx(1e3 / r["step_ms"])
    assert r["achieved_gflops"] == pytest.approx(r["useful_flops_per_step"] / r["step_ms"] / 1e6)
    assert r["ratio_to_peak"] == pytest.approx(r["achieved_gflops"] / r["peak_gflops"])
    assert 0 < r["ratio_to_peak"] < 3
    assert isinstance(r["display"], str) and r["target"] == ">= 0.4 of peak"
