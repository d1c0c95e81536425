"""Gradient filters (Grokfast EMA / MA, ⊥Grad) and softmax-collapse diagnostics; StableMax."""

from __future__ import annotations

import io
import math

import pytest
import torch

from groklab.train.config import TrainConfig
from groklab.train.losses import stablemax_cross_entropy, stablemax_probs
from groklab.train.tricks import (
    GrokfastEMA,
    GrokfastMA,
    make_grad_filter,
    orthogonal_grad,
    softmax_collapse_fraction,
    zero_loss_fraction,
)

SHAPES = [(3, 4, 5), (3, 7)]  # two ensemble parameters, E = 3


def _params(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in SHAPES]


def _set_grads(params, step: int):
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def test_ema_matches_reference_recurrence_bit_for_bit():
    """ironjr/grokfast gradfilter_ema: μ starts as the first g, then μ = μ α + g (1 − α), g += μ λ."""
    alpha, lamb = 0.9, 2.0
    params, filt, mu = _params(torch.float32), GrokfastEMA(alpha, lamb), None
    for step in range(5):
        _set_grads(params, step)
        raw = [p.grad.clone() for p in params]
        filt.apply(params)
        mu = [g.clone() for g in raw] if mu is None else mu
        mu = [m * alpha + g * (1 - alpha) for m, g in zip(mu, raw)]
        for p, g, m in zip(params, raw, mu):
            assert torch.equal(p.grad, g + m * lamb)


def test_ema_inactive_member_keeps_gradient_and_state():
    params, filt = _params(), GrokfastEMA(0.5, 1.0)
    _set_grads(params, 0)
    filt.apply(params)
    mu_before = [m.clone() for m in filt.mu]
    _set_grads(params, 1)
    raw = [p.grad.clone() for p in params]
    active = torch.tensor([True, False, True])
    filt.apply(params, active)
    for p, g, m0, m1 in zip(params, raw, mu_before, filt.mu):
        assert torch.equal(p.grad[1], g[1]) and torch.equal(m1[1], m0[1])
        torch.testing.assert_close(m1[0], 0.5 * m0[0] + 0.5 * g[0])
        torch.testing.assert_close(p.grad[0], g[0] + m1[0])


def test_ma_hand_computation():
    """Scalar gradients 1, 2, 3, 4 with window 3, λ 2. With warmup (the reference's default) the
    filter waits for a full window: 1, 2, 3 + 2·mean(1,2,3) = 7, 4 + 2·mean(2,3,4) = 10.
    Without warmup: 1 + 2·1 = 3, 2 + 2·1.5 = 5, then 7, 10."""
    for warmup, want in ((True, [1.0, 2.0, 7.0, 10.0]), (False, [3.0, 5.0, 7.0, 10.0])):
        p = torch.zeros(2, 1, dtype=torch.float64, requires_grad=True)  # E = 2, same gradients
        filt = GrokfastMA(window=3, lamb=2.0, warmup=warmup)
        got = []
        for t in range(1, 5):
            p.grad = torch.full((2, 1), float(t), dtype=torch.float64)
            filt.apply([p])
            got.append(p.grad[0, 0].item())
            assert p.grad[1, 0].item() == got[-1]
        assert got == want


def test_ma_inactive_member_history_is_frozen():
    """Member 1 is stopped at step 2: its history is 1, 3, 4 when it sees step 4 → 4 + 2·8/3."""
    p = torch.zeros(2, 1, dtype=torch.float64, requires_grad=True)
    filt = GrokfastMA(window=3, lamb=2.0)
    for t in range(1, 5):
        p.grad = torch.full((2, 1), float(t), dtype=torch.float64)
        filt.apply([p], torch.tensor([True, t != 2]))
    assert p.grad[0, 0].item() == pytest.approx(4 + 2 * 3.0)
    assert p.grad[1, 0].item() == pytest.approx(4 + 2 * 8 / 3)


@pytest.mark.parametrize("make", [lambda: GrokfastEMA(0.98, 2.0), lambda: GrokfastMA(window=3, lamb=5.0)])
def test_filter_state_round_trips_bit_exactly(make):
    """Checkpoint after 3 steps (through torch.save), resume in a fresh filter: same gradients."""
    pa, pb = _params(torch.float32), _params(torch.float32)
    fa = make()
    for step in range(3):
        _set_grads(pa, step)
        fa.apply(pa)
    buf = io.BytesIO()
    torch.save(fa.state_dict(), buf)
    buf.seek(0)
    fb = make()
    fb.load_state_dict(torch.load(buf))
    for step in range(3, 7):
        _set_grads(pa, step)
        _set_grads(pb, step)
        active = torch.tensor([True, step != 4, True])
        fa.apply(pa, active)
        fb.apply(pb, active)
        for x, y in zip(pa, pb):
            assert torch.equal(x.grad, y.grad)


def test_make_grad_filter_from_config():
    assert make_grad_filter(TrainConfig()) is None
    ema = make_grad_filter(TrainConfig(grokfast="ema", grokfast_alpha=0.9, grokfast_lamb=3.0))
    assert isinstance(ema, GrokfastEMA) and (ema.alpha, ema.lamb) == (0.9, 3.0)
    ma = make_grad_filter(TrainConfig(grokfast="ma", grokfast_window=7))
    assert isinstance(ma, GrokfastMA) and ma.window == 7


@pytest.mark.parametrize("keep_norm", [True, False])
def test_orthogonal_grad_is_orthogonal_per_member_and_parameter(keep_norm):
    params = _params(torch.float64)
    _set_grads(params, 0)
    raw = [p.grad.clone() for p in params]
    orthogonal_grad(params, keep_norm=keep_norm)
    for p, g in zip(params, raw):
        for e in range(p.shape[0]):
            w, gn, g0 = p[e].detach().flatten(), p.grad[e].flatten(), g[e].flatten()
            assert abs(torch.dot(w, gn).item()) < 1e-12 * w.norm().item() * g0.norm().item()
            g_perp = g0 - torch.dot(w, g0) / torch.dot(w, w) * w  # Prieto et al.'s ∇⊥L
            want = g_perp * (g0.norm() / g_perp.norm()) if keep_norm else g_perp
            torch.testing.assert_close(gn, want, rtol=1e-12, atol=1e-14)


def test_orthogonal_grad_leaves_zero_weights_alone():
    p = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    p.grad = torch.ones(2, 3, dtype=torch.float64)
    orthogonal_grad([p])
    assert torch.equal(p.grad, torch.ones(2, 3, dtype=torch.float64))


def test_softmax_collapse_fraction_is_float32_absorption():
    """Margin 20: exp(−20) ≈ 2e-9 is absorbed by 1 in float32 (ulp 1.2e-7), not in float64.
    Margin 1 never collapses. Member 0: [20-margin, 1-margin]; member 1: two 1-margin examples."""
    logits = torch.zeros(2, 3, 2)
    logits[0, 0, 0], logits[0, 0, 1] = 20.0, 1.0
    logits[1, 0, :] = 1.0
    torch.testing.assert_close(softmax_collapse_fraction(logits), torch.tensor([0.5, 0.0], dtype=torch.float64))
    assert softmax_collapse_fraction(logits, dtype=torch.float64).tolist() == [0.0, 0.0]
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert softmax_collapse_fraction(logits, mask).tolist() == [1.0, 0.0]
    y = torch.tensor([0, 0])
    assert zero_loss_fraction(logits * 10, y).tolist() == [0.5, 0.0]  # margin 200: loss exactly 0


def test_stablemax_matches_its_formula_and_sums_to_one():
    """Prieto et al. Eq. 6: s(x) = x + 1 (x ≥ 0), 1/(1 − x) (x < 0); p = s / Σ s.
    o = (0, 1, −1): s = (1, 2, 0.5), p = (1, 2, 0.5) / 3.5."""
    o = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64).view(1, 3, 1)
    p = stablemax_probs(o)
    torch.testing.assert_close(p.flatten(), torch.tensor([1, 2, 0.5], dtype=torch.float64) / 3.5)
    loss = stablemax_cross_entropy(o, torch.tensor([[1]]))
    assert loss.item() == pytest.approx(-math.log(2 / 3.5))
    big = torch.randn(4, 9, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 30
    torch.testing.assert_close(stablemax_probs(big).sum(1), torch.ones(4, 50, dtype=torch.float64))
    assert (stablemax_probs(big.float()) > 0).all()  # linear growth: no probability underflows to 0
