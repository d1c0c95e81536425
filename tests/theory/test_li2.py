"""groklab.theory.li2: E, ∇E, G_F and the ridge limit against autograd (float64); the independent
dynamics on Z_M and small non-abelian groups; E* at the maxima; critical-size report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from groklab.errors import GroklabError
from groklab.science import critical_size
from groklab.tasks import make_task
from groklab.theory import li2
from groklab.theory.li2 import (
    backprop_gradient,
    centred_labels,
    critical_size_report,
    energy,
    energy_grad,
    gf_ridge_limit,
    independent_dynamics,
    max_energy,
    pair_inputs,
    ridge_top_layer,
)
from groklab.theory.reps import irreps

f64 = torch.float64


def table(name: str) -> np.ndarray:
    return make_task(name).table


def data(name: str, n: int | None = None, seed: int = 0):
    t = table(name)
    M = len(t)
    idx = np.arange(M * M) if n is None else np.sort(np.random.default_rng(seed).choice(M * M, n, replace=False))
    return t, idx, pair_inputs(M, idx), centred_labels(t, idx)


def test_pair_inputs_and_centred_labels():
    t, idx, X, Yc = data("Z5", n=12)
    assert X.shape == (12, 10) and Yc.shape == (12, 5) and X.dtype == Yc.dtype == f64
    assert torch.equal(X.sum(1), torch.full((12,), 2.0, dtype=f64))
    assert torch.equal(X[:, :5].argmax(1), torch.as_tensor(idx // 5))
    assert torch.equal(X[:, 5:].argmax(1), torch.as_tensor(idx % 5))
    assert torch.allclose(Yc.sum(0), torch.zeros(5, dtype=f64), atol=1e-12)  # centred over samples
    assert torch.equal((Yc.argmax(1)), torch.as_tensor(t.reshape(-1)[idx]))
    _, _, _, full = data("Z5")
    assert torch.allclose(full, torch.eye(5, dtype=f64)[t.reshape(-1)] - 0.2)  # all pairs: = onehot − 1/M


@pytest.mark.parametrize("act", li2.ACTIVATIONS)
def test_energy_gradient_matches_autograd(act):
    _, idx, X, Yc = data("D5", n=60)
    w = torch.randn(7, 20, dtype=f64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    E = energy(w, X, Yc, act)  # batched [K]
    assert E.shape == (7,)
    assert torch.allclose(E[2], energy(w[2], X, Yc, act))  # single w [2M] -> scalar
    (auto,) = torch.autograd.grad(E.sum(), w)
    assert torch.allclose(energy_grad(w.detach(), X, Yc, act), auto, rtol=1e-10, atol=1e-12)
    assert torch.allclose(energy_grad(w.detach()[3], X, Yc, act), auto[3], rtol=1e-10, atol=1e-12)
    # The numpy gather form used by independent_dynamics agrees with the dense torch one.
    c = table("D5").reshape(-1)[idx]
    E2, g2 = li2._PairEnergy(10, idx // 10, idx % 10, c, act, 7)(w.detach().numpy())
    assert np.allclose(E2, E.detach().numpy(), rtol=1e-12) and np.allclose(g2, auto.numpy(), rtol=1e-10, atol=1e-12)


def test_backprop_gradient_matches_autograd():
    g = torch.Generator().manual_seed(2)
    n, K, M = 30, 8, 6
    F = torch.randn(n, K, dtype=f64, generator=g, requires_grad=True)
    V = torch.randn(K, M, dtype=f64, generator=g)
    Y = torch.eye(M, dtype=f64)[torch.randint(0, M, (n,), generator=g)]
    P = torch.eye(n, dtype=f64) - 1.0 / n  # P₁^⊥
    J = 0.5 * (P @ (Y - F @ V)).pow(2).sum()  # the paper's loss
    (dJ,) = torch.autograd.grad(J, F)
    assert torch.allclose(backprop_gradient(F.detach(), V, Y), -dJ, rtol=1e-12, atol=1e-12)


def test_ridge_limit_is_exact_for_the_centred_ridge_solution():
    # Li2 Eq. 4: with V = V_η = (F̃ᵀF̃ + ηI)⁻¹F̃ᵀỸ, G_F = P₁^⊥(Y − FV)Vᵀ equals
    # η(F̃F̃ᵀ + ηI)⁻¹ỸỸᵀF̃(F̃ᵀF̃ + ηI)⁻¹ exactly, and equals −dJ_η/dF (envelope theorem).
    g = torch.Generator().manual_seed(3)
    n, K, M, eta = 40, 12, 7, 0.3
    F = torch.randn(n, K, dtype=f64, generator=g) ** 2 + 0.5  # uncentred, like σ = x² features
    Y = torch.eye(M, dtype=f64)[torch.randint(0, M, (n,), generator=g)]
    Ft, Yt = F - F.mean(0), Y - Y.mean(0)
    V = ridge_top_layer(Ft, Yt, eta)
    assert V.shape == (K, M)
    assert torch.allclose(V, torch.linalg.inv(Ft.T @ Ft + eta * torch.eye(K, dtype=f64)) @ Ft.T @ Yt)
    limit = gf_ridge_limit(F, Y, eta)
    assert limit.shape == (n, K)
    assert torch.allclose(backprop_gradient(F, V, Y), limit, rtol=1e-10, atol=1e-13)

    Fg = F.clone().requires_grad_(True)
    Fc = Fg - Fg.mean(0)
    Vs = ridge_top_layer(Fc, Yt, eta)  # differentiate through the solve
    J_eta = 0.5 * (Yt - Fc @ Vs).pow(2).sum() + 0.5 * eta * Vs.pow(2).sum()
    (dJ,) = torch.autograd.grad(J_eta, Fg)
    assert torch.allclose(-dJ, limit, rtol=1e-9, atol=1e-12)

    # The original code's ridge (uncentred F, labels onehot − 1/M) is not the paper's V_η:
    V_code = ridge_top_layer(F, Y - 1.0 / M, eta)
    gap = (backprop_gradient(F, V_code, Y) - limit).abs().max() / limit.abs().max()
    assert gap > 1e-3


def test_ridge_limit_grows_with_weight_decay_from_zero():
    # η → 0 kills the feature-learning signal (science.md §3 stage 1) when the ridge fit is exact.
    g = torch.Generator().manual_seed(4)
    F = torch.randn(10, 30, dtype=f64, generator=g)  # K > n: the top layer can fit anything
    Y = torch.eye(4, dtype=f64)[torch.randint(0, 4, (10,), generator=g)]
    norms = [gf_ridge_limit(F, Y, eta).norm().item() for eta in (1e-8, 1e-4, 1e-1)]
    assert norms[0] < 1e-6 and norms[0] < norms[1] < norms[2]


def test_energy_at_a_fourier_feature_is_M_over_4_for_any_phases():
    # u = cos(2πka/M + φ)/√M, v = cos(2πkb/M + ψ)/√M: ‖w‖ = 1 and E = M/4, whatever φ and ψ
    # (so the maxima are not only v = ±Pu).
    M = 11
    _, _, X, Yc = data(f"Z{M}")
    m = np.arange(M)
    for k, phi, psi in [(1, 0.0, 0.0), (3, 0.4, -1.3), (5, 2.0, 0.7)]:
        w = np.concatenate([np.cos(2 * np.pi * k * m / M + phi), np.cos(2 * np.pi * k * m / M + psi)]) / np.sqrt(M)
        w = torch.as_tensor(w)
        assert w.norm().item() == pytest.approx(1.0)
        assert energy(w, X, Yc).item() == pytest.approx(M / 4, rel=1e-12)
    # Tilting the norm split away from ‖u‖ = ‖v‖ lowers E: E = A²B²M³/4 with (A² + B²)M/2 = 1.
    u = np.cos(2 * np.pi * 2 * m / M)
    w = torch.as_tensor(np.concatenate([0.8 * u, 0.6 * u]) / np.linalg.norm(u))
    assert energy(w, X, Yc).item() == pytest.approx(M / 4 * 4 * 0.64 * 0.36, rel=1e-12)


@pytest.mark.parametrize("M", [11, 13])
def test_cyclic_odd_every_ascent_ends_on_one_frequency(M):
    r = independent_dynamics(table(f"Z{M}"), n_units=32, steps=400, seed=M)
    assert r.w.shape == (32, 2 * M) and r.purity.shape == (32, 2) and r.history.shape == (401, 32)
    assert np.allclose(np.linalg.norm(r.w, axis=1), 1.0)
    assert r.purity.min() >= 0.95  # measured: > 0.999
    assert (r.feature >= 1).all() and sum(r.counts.values()) == 32 and r.counts["k=0"] == 0
    assert np.allclose(r.energy, M / 4, rtol=1e-3)  # E* = M/4 (science.md §3)
    assert len([k for k, v in r.counts.items() if v]) >= 4  # different starts find different frequencies
    assert (np.diff(r.history, axis=0) >= -1e-12).all()  # small-step ascent never lowers E


@pytest.mark.parametrize("name", ["Z12", "D5", "Q8", "S4"])
def test_maxima_energies(name):
    # E* = M/(2d) real type, M/(4d) complex pair or quaternionic (science.md §3; quaternionic measured).
    t = table(name)
    r = independent_dynamics(t, n_units=24, steps=600, seed=0)
    expect = max_energy(t)
    assert (r.feature >= 1).all()
    for unit in range(24):
        assert r.energy[unit] == pytest.approx(expect[r.names[r.feature[unit]]], rel=2e-3)
    assert (np.diff(r.history, axis=0) >= -1e-9).all()


def test_max_energy_table():
    M = 12
    assert max_energy(table("Z12")) == {**{f"k={k}": M / 4 for k in range(1, 6)}, "k=6": M / 2}
    s4 = max_energy(table("S4"))
    assert list(s4.values()) == [12.0, 6.0, 4.0, 4.0]  # d = 1, 2, 3, 3, all real type
    assert list(max_energy(table("Q8")).values()) == [4.0, 4.0, 4.0, 1.0]  # quaternionic d = 2: M/8


def test_other_activations_and_train_subsets_run():
    t = table("Z7")
    sub = np.random.default_rng(0).choice(49, 30, replace=False)
    for act in ("relu", "silu", "relusqr"):
        r = independent_dynamics(t, act=act, n_units=4, steps=20, train_idx=sub, seed=1)
        assert np.isfinite(r.energy).all() and r.fractions.shape == (4, 2, 4)
    with pytest.raises(GroklabError, match="--act 'tanh'"):
        independent_dynamics(t, act="tanh", steps=1)
    with pytest.raises(GroklabError, match="train-idx"):
        independent_dynamics(t, train_idx=[0, 49], steps=1)


@pytest.mark.parametrize("act", ["relu", "silu"])
def test_relu_silu_ascent_finds_frequencies_on_all_pairs_and_none_on_few(act):
    """Beyond finiteness: on all pairs of Z11 the independent ascent climbs E (≥ 5× its start) to
    single-frequency units (SiLU: every unit, purity ≥ 0.99, E never falls; ReLU, which is not
    smooth and may dip: most units ≥ 0.9); on 20 random pairs (memorization regime, Li2 Thm 5)
    it still climbs but no unit ends on a frequency. Measured (seed 1, 16 units, 600 steps):
    SiLU all units purity 1.000; ReLU median 0.915, 12 of 16 pure; 20 pairs: median ≤ 0.35, none pure."""
    t = table("Z11")
    r = independent_dynamics(t, act=act, n_units=16, steps=600, seed=1)
    h = r.history
    assert (h[-1] >= 3 * h[0]).all() and h[-1].mean() >= 5 * h[0].mean()
    if act == "silu":
        assert r.purity.min() >= 0.99 and (r.feature >= 1).all()
        assert np.allclose(h[-1], h[-1][0], rtol=1e-6)  # every frequency's maximum has the same E* (measured 0.1644)
        assert (np.diff(h, axis=0) >= -1e-12).all()
        assert np.abs(h[-1] - h[-50]).max() < 1e-6  # arrived: a stationary point of E on the sphere
    else:
        assert np.median(r.purity.min(1)) >= 0.9 and (r.feature >= 1).sum() >= 10
    sub = np.random.default_rng(0).choice(121, 20, replace=False)
    m = independent_dynamics(t, act=act, n_units=16, steps=600, seed=1, train_idx=sub)
    assert (m.history[-1] >= 2 * m.history[0]).all()
    assert (m.feature >= 1).sum() == 0 and np.median(m.purity.min(1)) < 0.5


def test_critical_size_report():
    z = critical_size_report(table("Z13"))
    assert z.critical_n == pytest.approx(critical_size(13)) == pytest.approx(2.7482 * 13 * math.log(13))
    assert z.critical_fraction == pytest.approx(z.critical_n / 169)
    assert (z.n_features, z.k_sufficient, z.is_abelian) == (6, 24, True)
    assert z.feature_blocks == tuple(f"k={k}" for k in range(1, 7))
    s = critical_size_report(table("S4"))
    assert (s.is_abelian, s.d_max, s.n_features, s.k_sufficient) == (False, 3, 4, None)
    assert s.critical_n == pytest.approx(1.5 * critical_size(24))
    assert critical_size_report(table("Z2xZ6")).n_features == len(irreps(table("Z2xZ6")).blocks) - 1 == 7
