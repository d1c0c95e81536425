"""Nanda et al.'s progress measures on networks built from known frequencies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from groklab.analysis.progress import (
    excluded_logits,
    fourier_basis,
    frequency_norms,
    gini,
    key_frequencies,
    progress_measures,
    restricted_logits,
    sum_directions,
    token_embeddings,
)
from groklab.errors import GroklabError
from groklab.models import Li2Net
from groklab.models.embed_mlp import EmbedMLP
from groklab.models.transformer import Transformer
from groklab.train.config import ModelConfig

P = 23
KEYS = (3, 7)
TABLE = (np.arange(P)[:, None] + np.arange(P)[None, :]) % P


def test_gini_one_hot_and_flat():
    n = 11
    one_hot = torch.zeros(n)
    one_hot[4] = 5.0
    assert gini(one_hot).item() == pytest.approx((n - 1) / n)  # the maximum for n values
    assert gini(torch.full((n,), 2.0)).item() == pytest.approx(0.0, abs=1e-15)
    x = torch.tensor([1.0, 2.0, 4.0])  # Σ|xi − xj| / (2 n Σ x) = 2·(1 + 3 + 2) / (2·3·7)
    assert gini(x).item() == pytest.approx(12 / 42)


@pytest.mark.parametrize("M", [7, 8])
def test_fourier_bases_are_orthonormal(M):
    B, names = fourier_basis(M)
    assert B.shape == (M, M) and names[:3] == ["const", "cos 1", "sin 1"]
    torch.testing.assert_close(B @ B.T, torch.eye(M, dtype=torch.float64))
    U, freqs = sum_directions(M)
    torch.testing.assert_close(U @ U.T, torch.eye(U.shape[0], dtype=torch.float64))
    assert freqs.tolist() == sorted(freqs.tolist()) and freqs.max().item() == M // 2


def test_transformer_embeddings_with_known_frequencies():
    """W_E = cos/sin of frequencies 3 and 7 over the 23 tokens (random mixing into d_model), plus
    small noise and an arbitrary '=' column: the key frequencies are exactly {3, 7}, per member."""
    model = Transformer(P, ModelConfig(model="transformer", d_model=32, n_heads=4, d_mlp=64), seeds=[0, 1])
    x = torch.arange(P, dtype=torch.float64)
    waves = torch.stack([f(2 * math.pi * k * x / P) for k in KEYS for f in (torch.cos, torch.sin)])  # (4, P)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for e in range(2):
            mix = torch.randn(32, 4, generator=g, dtype=torch.float64)
            model.W_E[e, :, :P] = (mix @ waves + 0.01 * torch.randn(32, P, generator=g, dtype=torch.float64)).float()
    emb = token_embeddings(model)
    assert emb.shape == (2, 32, P)
    norms = frequency_norms(emb)
    assert key_frequencies(norms) == [list(KEYS), list(KEYS)]
    # Parseval: the frequencies plus the constant component hold the whole squared norm.
    const = (emb.double().sum(2) ** 2).sum(1) / P
    torch.testing.assert_close(norms.sum(1) + const, emb.double().square().sum((1, 2)))


def _gromov_solution(model, scale: float) -> None:
    """Gromov's analytic solution for a + b with σ = x², on frequencies KEYS: unit (f, j, l) has
    W_a[:, a] = cos(w a + φ_j), W_b[:, b] = cos(w b + ψ_l), V[c] = scale·cos(w c + φ_j + ψ_l), with
    phases on a 3-grid. Summed over the grid, o_c ∝ Σ_f cos(w_f (a + b − c)) exactly: every other
    term of (cos A + cos B)² cancels (Σ_j cos(θ + 2πj/3) = 0 and Σ_j cos(θ + 4πj/3) = 0)."""
    x = torch.arange(P, dtype=torch.float64)
    phases = [2 * math.pi * j / 3 for j in range(3)]
    wa, wb, v = [], [], []
    for f in KEYS:
        w = 2 * math.pi * f / P
        for phi in phases:
            for psi in phases:
                wa.append(torch.cos(w * x + phi))
                wb.append(torch.cos(w * x + psi))
                v.append(scale * torch.cos(w * x + phi + psi))
    W = torch.cat([torch.stack(wa), torch.stack(wb)], dim=1)[None]  # (1, K, 2M)
    model.load_exported({"W": W.to(model.V.dtype), "V": torch.stack(v, dim=1)[None].to(model.V.dtype)})


@pytest.mark.parametrize("cls", ["li2", "embed-mlp"])
def test_progress_measures_on_gromov_solution(cls):
    """The constructed network's logits live in the key-frequency directions only: the measures
    find {3, 7}, the restricted loss equals the full loss, the excluded loss is that of constant
    logits (log M), and accuracy is perfect."""
    K = 2 * 9
    if cls == "li2":
        model, scale = Li2Net(P, K, "sqr", seeds=[0]).double(), 1.0
    else:  # mean-field constants: o = V (h / sqrt(2M))² / K, so scale V up to the same logits
        model, scale = EmbedMLP(P, ModelConfig(model="embed-mlp", width=K), seeds=[0]).double(), 2 * P * K
    _gromov_solution(model, scale)
    train = np.random.default_rng(0).choice(P * P, size=200, replace=False)
    pm = progress_measures(model, TABLE, train)
    assert pm["key_freqs"] == [list(KEYS)]
    share = pm["freq_share"][0]
    assert share[[k - 1 for k in KEYS]].sum() == pytest.approx(1.0)
    assert pm["gini"][0] == pytest.approx(18 / 22)  # two equal frequencies among 11
    assert pm["restricted_loss"][0] == pytest.approx((pm["train_loss"][0] * 200 + pm["test_loss"][0] * 329) / 529, rel=1e-9)
    assert pm["excluded_loss"][0] == pytest.approx(math.log(P), rel=1e-9)
    assert pm["train_loss"][0] < 0.5 * math.log(P)
    flat = torch.arange(P * P)
    assert (model(flat // P, flat % P).argmax(1)[0] == torch.as_tensor(TABLE.reshape(-1))).all()
    # Given wrong key frequencies, the restricted loss is that of constant logits.
    wrong = progress_measures(model, TABLE, train, key_freqs=[1, 2])
    assert wrong["restricted_loss"][0] == pytest.approx(math.log(P), rel=1e-9)
    total = sum(p.detach().square().sum().item() for p in model.parameters())
    assert pm["sum_sq_weights"][0] == pytest.approx(total)


def test_restricted_and_excluded_logits_split_the_components():
    """L = key part + per-class bias + non-key part: restricted keeps key + bias, excluded keeps
    bias + non-key (neither direction set has a mean over the grid)."""
    U, freqs = sum_directions(P)
    g = torch.Generator().manual_seed(0)
    E, C = 2, P
    coef = torch.randn(E, C, U.shape[0], generator=g, dtype=torch.float64)
    is_key = torch.isin(freqs, torch.tensor(KEYS))
    key_part = torch.einsum("eck,kn->ecn", coef * is_key, U)
    other = torch.einsum("eck,kn->ecn", coef * ~is_key, U)
    bias = torch.randn(E, C, 1, generator=g, dtype=torch.float64)
    L = key_part + other + bias
    keys = [list(KEYS)] * E
    torch.testing.assert_close(restricted_logits(L, keys), key_part + bias)
    torch.testing.assert_close(excluded_logits(L, keys), other + bias)


def test_per_member_train_sets_and_errors():
    model = Transformer(P, ModelConfig(model="transformer", d_model=16, n_heads=2, d_mlp=32), seeds=[0, 1])
    rng = np.random.default_rng(0)
    idx = np.stack([rng.choice(P * P, 100, replace=False) for _ in range(2)])
    pm = progress_measures(model, TABLE, idx, key_freqs=[[1], [2, 3]])
    assert pm["key_freqs"] == [[1], [2, 3]] and pm["excluded_loss"].shape == (2,)
    mask = np.zeros((2, P * P), bool)
    mask[0, idx[0]] = mask[1, idx[1]] = True
    pm2 = progress_measures(model, TABLE, mask, key_freqs=[[1], [2, 3]])
    np.testing.assert_allclose(pm2["train_loss"], pm["train_loss"])
    with pytest.raises(GroklabError, match="Z_23 addition"):
        progress_measures(model, (TABLE * 2) % P, idx)
