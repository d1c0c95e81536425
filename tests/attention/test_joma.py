"""JoMA: the toy of joma/draw_figure_4.py, the linear invariant of draw_figure_2_3.py, and the
hierarchical generator / model of decoder_only_hier.py (facebookresearch/luckmatters)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from groklab.attention.hier import HierConfig, HierData, attention_entropy, compute_corr
from groklab.attention.experiments_hier import train_hier
from groklab.attention.joma import LinearConfig, ToyConfig, joma_linear, joma_toy
from groklab.cli.main import main
from groklab.errors import GroklabError


def _script_toy():
    """draw_figure_4.py, verbatim apart from plotting (global seed inside fork_rng)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        wstar, _ = (torch.rand(10) * 3 + 1).sort()
        w = torch.ones(10) * 0.05
        entropies = torch.zeros(5000)
        for i in range(5000):
            sa = (w.pow(2) / 3).exp()
            sa = sa / sa.sum()
            entropies[i] = -(sa * (sa.log() + 1e-8)).sum()
            dw = (wstar - w) * sa
            w = w + 0.02 * dw
    return wstar, entropies


def test_toy_equals_the_script_and_its_entropy_falls_then_rises():
    mu, ent = _script_toy()
    r = joma_toy()
    assert torch.equal(r["mu"], mu) and torch.equal(r["entropy"], ent)
    assert abs(float(ent[0]) - math.log(10)) < 1e-6
    assert r["min_iter"] == 669 and abs(r["min_entropy"] - 0.94157) < 1e-4
    assert r["final_entropy"] > r["min_entropy"] + 0.5          # rises again


def test_toy_control_without_selectivity_does_not_fall():
    r = joma_toy(ToyConfig(T=1e6))                              # softmax(v^2/T) ~ uniform: no attention to learn
    assert r["min_entropy"] > math.log(10) - 1e-3


def test_linear_invariant_holds_and_the_first_term_takes_over():
    r = joma_linear(LinearConfig(seed=1, niter=800))  # 800 of the 2000 steps keep the test short
    assert float(r["corr"].min()) > 0.95                        # NC(z, z_hat) stays near 1
    assert abs(float(r["corr1"][0])) < 0.5 and float(r["corr1"][-1]) > 0.9
    assert abs(float(r["corr2"][-1])) < 0.3                     # control: xbar-term alone does not track z


def test_config_errors():
    with pytest.raises(GroklabError, match="--T 0: must be > 0"):
        ToyConfig(T=0)
    with pytest.raises(GroklabError, match="--num-combinations"):
        HierConfig(num_combinations=(2, 2))


def test_hier_generator_is_the_latent_tree():
    cfg = HierConfig()
    data = HierData(cfg, 1)
    assert [len(l) for l in data.hier_tokens] == [10, 20, 20]
    for l, layer in enumerate(data.hier_tokens):
        assert len({tuple(c) for c in layer}) == len(layer)     # distinct combinations
        assert all(c == sorted(c) and len(c) == 2 for c in layer)
    x, label, active = data.generate(64)
    pad = cfg.M - 1
    for i in range(64):
        assert active[2][i].nonzero().flatten().tolist() == [int(label[i])]
        for l in (2, 1):
            below = set().union(*[data.hier_tokens[l][k] for k in active[l][i].nonzero().flatten().tolist()])
            assert below == set(active[l - 1][i].nonzero().flatten().tolist())
        obs = set().union(*[data.hier_tokens[0][k] for k in active[0][i].nonzero().flatten().tolist()])
        tokens = x[i][x[i] != pad].tolist()
        assert set(tokens) == obs and len(tokens) == len(obs) and (x[i, :cfg.L - len(obs)] == pad).all()


def test_compute_corr_and_attention_entropy():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 3, generator=g), torch.randn(50, 4, generator=g)
    ref = np.corrcoef(a.numpy().T, b.numpy().T)[:3, 3:]
    assert np.allclose(compute_corr(a, b).numpy(), ref, atol=1e-5)
    L = 5
    attn = torch.tril(torch.ones(L, L))
    attn = (attn / attn.sum(1, keepdim=True)).unsqueeze(0)      # uniform causal attention
    x = torch.tensor([[9, 9, 1, 2, 3]])
    real, last = attention_entropy(attn, x, pad=9)
    assert abs(last - math.log(5)) < 1e-6
    assert abs(real - (math.log(3) + math.log(4) + math.log(5)) / 3) < 1e-6


def test_hier_training_learns_and_scores_are_correlations():
    cfg = HierConfig(d=16, niter=60, eval_every=30, batchsize=32, eval_batch=64, test_batch=128)
    r = train_hier(cfg, 1)
    assert r["rows"][-1]["eval_loss"] < r["rows"][0]["eval_loss"] - 0.5
    assert all(0 <= s <= 1 for s in r["scores_final"] + r["scores_init"])
    assert [row["iteration"] for row in r["rows"]] == [0, 30, 60]


def test_cli_joma_toy_and_errors(tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["joma", "toy", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["min_iter"] == 669 and s["status"] == "complete"
    bad = tmp_path / "bad"
    assert main(["joma", "toy", "--seeds", "1", "--out", str(bad)]) == 2
    assert "not options of `joma toy`" in capsys.readouterr().err and not bad.exists()
