"""The peer-codebase models: Transformer (Nanda et al. 2023) and EmbedMLP (Gromov 2023)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from groklab.models import build_model
from groklab.models.embed_mlp import EmbedMLP
from groklab.models.transformer import Transformer
from groklab.train.config import ModelConfig
from groklab.train.losses import per_example_loss

TINY = ModelConfig(model="transformer", d_model=8, n_heads=2, d_mlp=16)


def _pairs(M: int) -> tuple[torch.Tensor, torch.Tensor]:
    flat = torch.arange(M * M)
    return flat // M, flat % M


def _nanda_reference(params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, M: int) -> torch.Tensor:
    """One member's forward pass transcribed from the reference (progress-measures-paper,
    transformers.py: Embed, PosEmbed, Attention with causal mask, MLP, Unembed), batch first,
    all three positions computed. Returns the last position's logits (n, M)."""
    W_E, W_pos = params["W_E"], params["W_pos"]
    W_K, W_Q, W_V, W_O = params["W_K"], params["W_Q"], params["W_V"], params["W_O"]
    x = torch.stack([a, b, torch.full_like(a, M)], dim=1)  # (batch, 3)
    x = torch.einsum("dbp -> bpd", W_E[:, x]) + W_pos[:3]
    k = torch.einsum("ihd,bpd->biph", W_K, x)
    q = torch.einsum("ihd,bpd->biph", W_Q, x)
    v = torch.einsum("ihd,bpd->biph", W_V, x)
    scores = torch.einsum("biph,biqh->biqp", k, q)
    mask = torch.tril(torch.ones(3, 3, dtype=x.dtype))
    scores = torch.tril(scores) - 1e10 * (1 - mask)
    attn = F.softmax(scores / math.sqrt(W_K.shape[1]), dim=-1)
    z = torch.einsum("biph,biqp->biqh", v, attn)
    z_flat = z.permute(0, 2, 1, 3).reshape(z.shape[0], 3, -1)  # 'b i q h -> b q (i h)'
    x = x + torch.einsum("df,bqf->bqd", W_O, z_flat)
    h = F.relu(torch.einsum("md,bpd->bpm", params["W_in"], x) + params["b_in"])
    x = x + torch.einsum("dm,bpm->bpd", params["W_out"], h) + params["b_out"]
    return (x @ params["W_U"])[:, -1]


@pytest.mark.parametrize("cls,cfg", [(Transformer, TINY), (EmbedMLP, ModelConfig(model="embed-mlp", width=12))])
def test_shapes_and_input_layouts(cls, cfg):
    M, E = 7, 3
    model = cls(M, cfg, seeds=[0, 1, 2])
    a, b = _pairs(M)
    out = model(a, b)
    assert out.shape == (E, M, M * M)
    # [E, n] inputs: each member may see its own pairs; identical rows give the shared result.
    out2 = model(a.expand(E, -1), b.expand(E, -1))
    torch.testing.assert_close(out2, out)
    perm = torch.stack([torch.randperm(M * M, generator=torch.Generator().manual_seed(e)) for e in range(E)])
    out3 = model(a[perm], b[perm])
    for e in range(E):
        torch.testing.assert_close(out3[e], out[e][:, perm[e]])
    assert {k: tuple(v.shape[1:]) for k, v in model.export().items()} == model.expected_shapes()


@pytest.mark.parametrize("cfg", [TINY, ModelConfig(model="embed-mlp", width=12, act="relu")])
def test_member_equals_single_run(cfg):
    M = 5
    ens = build_model(cfg, M, seeds=[3, 5, 7])
    single = build_model(cfg, M, seeds=[5])
    for (name, pe), (_, ps) in zip(ens.named_parameters(), single.named_parameters()):
        assert torch.equal(pe[1], ps[0]), name
    a, b = _pairs(M)
    torch.testing.assert_close(ens(a, b)[1], single(a, b)[0], rtol=1e-6, atol=1e-6)
    # Members are independent: member 1's loss moves only member 1's gradients.
    ens(a, b)[1].square().sum().backward()
    for name, p in ens.named_parameters():
        assert torch.all(p.grad[[0, 2]] == 0), name


def test_transformer_matches_reference_init_and_forward():
    """Init equals the reference's draws under torch.manual_seed(seed) (W_U minus its '=' column),
    and the ensemble forward equals the reference forward member by member."""
    M, d, H, m = 7, 8, 2, 16
    dh = d // H
    model = Transformer(M, TINY, seeds=[11, 12]).double()
    a, b = _pairs(M)
    out = model(a, b)
    for e, seed in enumerate([11, 12]):
        torch.manual_seed(seed)  # the reference draws from the global generator, in this order
        ref = {"W_E": torch.randn(d, M + 1) / math.sqrt(d), "W_pos": torch.randn(3, d) / math.sqrt(d),
               "W_K": torch.randn(H, dh, d) / math.sqrt(d), "W_Q": torch.randn(H, dh, d) / math.sqrt(d),
               "W_V": torch.randn(H, dh, d) / math.sqrt(d), "W_O": torch.randn(d, d) / math.sqrt(d),
               "W_in": torch.randn(m, d) / math.sqrt(d), "b_in": torch.zeros(m),
               "W_out": torch.randn(d, m) / math.sqrt(d), "b_out": torch.zeros(d),
               "W_U": torch.randn(d, M + 1) / math.sqrt(M + 1)}
        exported = model.export()
        for name, t in ref.items():
            want = t[:, :M] if name == "W_U" else t
            torch.testing.assert_close(exported[name][e].float(), want, rtol=0, atol=0, msg=name)
        mine = {k: v[e] for k, v in exported.items()}
        torch.testing.assert_close(out[e].T, _nanda_reference(mine, a, b, M), rtol=1e-12, atol=1e-12)


def test_transformer_hand_computed():
    """M = 2, d = 2, one head of 2, d_mlp = 2. W_Q = 0 makes attention uniform over [a, b, =];
    W_K = W_V = W_O = W_in = W_out = W_U = I, b_in = (-1/2, 0), b_out = 0. Embeddings: token 0 ->
    (1, 0), token 1 -> (0, 1), '=' -> (0, 0); positions 0. For (a, b) = (0, 1):
        r = x_= + (x_a + x_b + x_=)/3 = (1/3, 1/3);  ReLU(r + b_in) = (0, 1/3);
        r' = (1/3, 2/3);  logits = W_U^T r' = (1/3, 2/3)."""
    model = Transformer(2, ModelConfig(model="transformer", d_model=2, n_heads=1, d_mlp=2), seeds=[0]).double()
    eye = torch.eye(2, dtype=torch.float64)[None]
    with torch.no_grad():
        model.W_E.copy_(torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]))
        model.W_pos.zero_()
        model.W_Q.zero_()
        for p in (model.W_K, model.W_V, model.W_O, model.W_in, model.W_out, model.W_U):
            p.copy_(eye)
        model.b_out.zero_()
        model.b_in.copy_(torch.tensor([[-0.5, 0.0]]))
    out = model(torch.tensor([0]), torch.tensor([1]))
    torch.testing.assert_close(out[0, :, 0], torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))


def test_embed_mlp_hand_computed():
    """M = 2, N = 2, σ = x²: h = (W_a[:, a] + W_b[:, b]) / sqrt(4), o = V h² / 2.
    W_a = [[1, 2], [0, 1]], W_b = [[3, 0], [1, 1]], V = [[1, 0], [1, 1]]; (a, b) = (1, 0):
    h = ((2, 1) + (3, 1)) / 2 = (2.5, 1); h² = (6.25, 1); o = (6.25, 7.25) / 2 = (3.125, 3.625)."""
    model = EmbedMLP(2, ModelConfig(model="embed-mlp", width=2, act="sqr"), seeds=[0]).double()
    W = torch.tensor([[[1.0, 2.0, 3.0, 0.0], [0.0, 1.0, 1.0, 1.0]]], dtype=torch.float64)  # [W_a | W_b]
    model.load_exported({"W": W, "V": torch.tensor([[[1.0, 0.0], [1.0, 1.0]]], dtype=torch.float64)})
    out = model(torch.tensor([1]), torch.tensor([0]))
    torch.testing.assert_close(out[0, :, 0], torch.tensor([3.125, 3.625], dtype=torch.float64))


def test_embed_mlp_init_and_export():
    """N(0, 1) weights (mean-field: the scale is in the forward pass), exported raw as W [N, 2M], V."""
    M, N = 11, 400
    model = EmbedMLP(M, ModelConfig(model="embed-mlp", width=N), seeds=[0])
    W = model.export()["W"]
    assert W.shape == (1, N, 2 * M) and model.expected_shapes() == {"W": (N, 2 * M), "V": (M, N)}
    assert abs(W.std().item() - 1.0) < 0.03 and abs(model.V.std().item() - 1.0) < 0.03
    other = EmbedMLP(M, ModelConfig(model="embed-mlp", width=N), seeds=[1])
    other.load_exported(model.export())
    a, b = _pairs(M)
    torch.testing.assert_close(other(a, b), model(a, b))


def test_transformer_export_roundtrip_and_muon_params():
    model = Transformer(5, TINY, seeds=[0, 1])
    other = Transformer(5, TINY, seeds=[2, 3])
    other.load_exported(model.export())
    a, b = _pairs(5)
    torch.testing.assert_close(other(a, b), model(a, b))
    assert model.export()["W_Q"].shape == (2, 2, 4, 8)  # (E, heads, d_head, d): the reference layout
    mats = model.muon_params()
    assert len(mats) == 6 and all(p.dim() == 3 for p in mats)  # (E, rows, cols): 2-D per member
    assert not any(p is model.W_E or p is model.W_U for p in mats)
    norms = model.weight_norms()
    all_sq = sum(p.detach().square().flatten(1).sum(1) for p in model.parameters())
    torch.testing.assert_close(norms["w_norm"] ** 2 + norms["v_norm"] ** 2, all_sq)


def test_transformer_memorizes_small_training_set():
    """A small Nanda transformer on Z23 reaches train accuracy 1.0 with plain AdamW (full batch)."""
    torch.manual_seed(0)
    M = 23
    model = build_model(ModelConfig(model="transformer", d_model=64, n_heads=4, d_mlp=128), M, seeds=[0, 1])
    a, b = _pairs(M)
    y = (a + b) % M
    idx = torch.randperm(M * M, generator=torch.Generator().manual_seed(0))[:160]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))
    acc = torch.zeros(2)
    for _ in range(200):  # about 25 steps at this lr
        out = model(a[idx], b[idx])
        acc = (out.argmax(1) == y[idx]).double().mean(1)
        if bool((acc == 1.0).all()):
            break
        loss = per_example_loss("ce", out, y[idx]).mean(1).sum()  # sum over members: independent
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert acc.tolist() == [1.0, 1.0]
