"""Transformer: the one-layer transformer of Nanda et al. 2023 (science.md §7), ensemble-first.

Reference: "Progress measures for grokking via mechanistic interpretability", and its code
(mechanistic-interpretability-grokking/progress-measures-paper, transformers.py). The input is the
token sequence [a, b, =] with '=' the token id M (vocabulary M + 1); the answer is read at the
last position:

    x_p   = W_E[:, tok_p] + W_pos[p]                                   (d)      p = 0, 1, 2
    attn  = softmax_p( (W_K^h x_p) . (W_Q^h x_2) / sqrt(d_head) )      (heads, 3)
    r     = x_2 + W_O [ sum_p attn_hp W_V^h x_p ]_h                     (d)
    r'    = r + W_out ReLU(W_in r + b_in) + b_out                      (d)
    logits = W_U^T r'                                                  (M)

No LayerNorm, no attention biases, learned positional embeddings, untied unembedding: as in the
reference (use_ln=False, num_layers=1, act ReLU). Only the last position's output is used, so
only its query is computed; the causal mask never applies to it (it sees all three positions).

Init is the reference's, drawn in the reference's order from each member's own generator:
W_E ~ N(0, 1/d) (d x (M+1)), W_pos ~ N(0, 1/d), W_K, W_Q, W_V ~ N(0, 1/d) (heads x d_head x d),
W_O ~ N(0, 1/d), W_in ~ N(0, 1/d), b_in = 0, W_out ~ N(0, 1/d), b_out = 0, W_U ~ N(0, 1/(M+1)).
So a member's initial weights equal those of the reference's Transformer built after
torch.manual_seed(seed) on the CPU.

One deviation: the reference unembeds to all M + 1 tokens (it trains a cross-entropy over M + 1
classes, '=' included) and drops the '=' logit only for its metrics. groklab's output contract has
C = M classes, so W_U keeps only the first M columns of the reference's draw (d x M).

Parameters carry a leading ensemble axis E and the forward pass is batched matmuls over it.
W_Q, W_K, W_V are stored as (E, heads*d_head, d) matrices (so Muon sees 2-D matrices per member)
and exported in the reference's (E, heads, d_head, d) layout under the reference's names.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from groklab.models.config import ModelConfig
from groklab.models.li2 import member_generator

N_CTX = 3  # [a, b, =]


class Transformer(nn.Module):
    """E one-layer transformers on [a, b, =]; outputs (E, M, n)."""

    kind = "transformer"

    def __init__(self, order: int, cfg: ModelConfig, seeds: Sequence[int]):
        super().__init__()
        M, d, H, m = order, cfg.d_model, cfg.n_heads, cfg.d_mlp
        dh = d // H
        V = M + 1  # vocabulary: 0..M-1 and '=' = M
        self.order, self.d_model, self.n_heads, self.d_head, self.d_mlp = M, d, H, dh, m
        draws: dict[str, list[Tensor]] = {k: [] for k in ("W_E", "W_pos", "W_K", "W_Q", "W_V", "W_O", "W_in", "W_out", "W_U")}
        for s in seeds:
            g = member_generator(s)
            # The reference's order: Embed, PosEmbed, Attention (K, Q, V, O), MLP (in, out), Unembed.
            draws["W_E"].append(torch.randn(d, V, generator=g) / math.sqrt(d))
            draws["W_pos"].append(torch.randn(N_CTX, d, generator=g) / math.sqrt(d))
            for name in ("W_K", "W_Q", "W_V"):
                draws[name].append((torch.randn(H, dh, d, generator=g) / math.sqrt(d)).reshape(H * dh, d))
            draws["W_O"].append(torch.randn(d, H * dh, generator=g) / math.sqrt(d))
            draws["W_in"].append(torch.randn(m, d, generator=g) / math.sqrt(d))
            draws["W_out"].append(torch.randn(d, m, generator=g) / math.sqrt(d))
            draws["W_U"].append((torch.randn(d, V, generator=g) / math.sqrt(V))[:, :M])  # drop '='
        E = len(seeds)
        self.W_E = nn.Parameter(torch.stack(draws["W_E"]))  # (E, d, M+1)
        self.W_pos = nn.Parameter(torch.stack(draws["W_pos"]))  # (E, 3, d)
        self.W_K = nn.Parameter(torch.stack(draws["W_K"]))  # (E, H*dh, d)
        self.W_Q = nn.Parameter(torch.stack(draws["W_Q"]))  # (E, H*dh, d)
        self.W_V = nn.Parameter(torch.stack(draws["W_V"]))  # (E, H*dh, d)
        self.W_O = nn.Parameter(torch.stack(draws["W_O"]))  # (E, d, H*dh)
        self.W_in = nn.Parameter(torch.stack(draws["W_in"]))  # (E, d_mlp, d)
        self.b_in = nn.Parameter(torch.zeros(E, m))  # (E, d_mlp)
        self.W_out = nn.Parameter(torch.stack(draws["W_out"]))  # (E, d, d_mlp)
        self.b_out = nn.Parameter(torch.zeros(E, d))  # (E, d)
        self.W_U = nn.Parameter(torch.stack(draws["W_U"]))  # (E, d, M)

    @property
    def n_members(self) -> int:
        return self.W_E.shape[0]

    def _embed(self, tok: Tensor) -> Tensor:
        """Token embeddings W_E[:, tok] for tok [n] (shared) or [E, n]. Returns (E, n, d)."""
        if tok.dim() == 1:
            return self.W_E.index_select(2, tok).mT
        E, d, n = self.W_E.shape[0], self.W_E.shape[1], tok.shape[1]
        return self.W_E.gather(2, tok[:, None, :].expand(E, d, n)).mT

    def forward(self, a: Tensor, b: Tensor, cache: dict[str, Tensor] | None = None) -> Tensor:
        """Logits at the '=' position, laid out (E, M, n). Pass a dict as `cache` to receive the
        activations (attention pattern, residual stream, MLP pre/post) for analysis."""
        E, H, dh = self.W_E.shape[0], self.n_heads, self.d_head
        x_a = self._embed(a) + self.W_pos[:, None, 0]  # (E, n, d)
        x_b = self._embed(b) + self.W_pos[:, None, 1]  # (E, n, d)
        x_eq = (self.W_E[:, :, self.order] + self.W_pos[:, 2])[:, None, :]  # (E, 1, d): same for every pair
        X = torch.stack([x_a, x_b, x_eq.expand_as(x_a)], dim=2)  # (E, n, 3, d)
        n = X.shape[1]
        # Plain batched matmuls over E (x @ W^T), elementwise products for the 3-position attention.
        # The query is read at '=' only, and in one layer the '=' input is the same for every pair.
        q = (x_eq @ self.W_Q.mT).view(E, 1, 1, H, dh)  # (E, 1, 1, H, dh)
        Xf = X.reshape(E, n * N_CTX, -1)  # (E, 3n, d): one bmm per weight, not n small ones
        k = torch.bmm(Xf, self.W_K.mT).view(E, n, N_CTX, H, dh)  # (E, n, 3, H, dh)
        v = torch.bmm(Xf, self.W_V.mT).view(E, n, N_CTX, H, dh)  # (E, n, 3, H, dh)
        scores = (k * q).sum(-1) / math.sqrt(dh)  # (E, n, 3, H)
        attn = scores.softmax(dim=2)  # over key positions
        z = (attn[..., None] * v).sum(2).reshape(E, n, H * dh)  # heads side by side, as the reference
        resid_mid = x_eq + z @ self.W_O.mT  # (E, n, d)
        pre = resid_mid @ self.W_in.mT + self.b_in[:, None, :]  # (E, n, d_mlp)
        post = torch.relu(pre)
        resid_post = resid_mid + post @ self.W_out.mT + self.b_out[:, None, :]  # (E, n, d)
        logits = torch.bmm(self.W_U.mT, resid_post.mT)  # (E, M, d) @ (E, d, n) -> (E, M, n)
        if cache is not None:
            cache.update(attn=attn.detach(), resid_mid=resid_mid.detach(), mlp_pre=pre.detach(),
                         mlp_post=post.detach(), resid_post=resid_post.detach())
        return logits

    def muon_params(self) -> list[nn.Parameter]:
        """The hidden matrices (attention and MLP); embeddings, unembedding and biases get Adam."""
        return [self.W_Q, self.W_K, self.W_V, self.W_O, self.W_in, self.W_out]

    def weight_norms(self) -> dict[str, Tensor]:
        """Per-member Frobenius norms, (E,) each: w_norm over every parameter except the
        unembedding (embeddings, attention, MLP, biases), v_norm of the unembedding W_U."""
        w = sum(p.square().flatten(1).sum(1) for name, p in self.named_parameters() if name != "W_U")
        return {"w_norm": w.sqrt(), "v_norm": self.W_U.square().sum((1, 2)).sqrt()}

    def export(self) -> dict[str, Tensor]:
        """Tensors for weights.safetensors, named and shaped as the reference's parameters (with a
        leading E): W_Q/W_K/W_V (E, heads, d_head, d); W_U (E, d, M) lacks the reference's '=' column."""
        E, H, dh = self.n_members, self.n_heads, self.d_head
        out = {name: p.detach() for name, p in self.named_parameters()}
        for name in ("W_Q", "W_K", "W_V"):
            out[name] = out[name].reshape(E, H, dh, -1)
        return out

    @torch.no_grad()
    def load_exported(self, tensors: dict[str, Tensor]) -> None:
        for name, p in self.named_parameters():
            p.copy_(tensors[name].reshape(p.shape))

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of one member's exported tensors (for --init checks)."""
        M, d, H, dh, m = self.order, self.d_model, self.n_heads, self.d_head, self.d_mlp
        return {"W_E": (d, M + 1), "W_pos": (N_CTX, d), "W_K": (H, dh, d), "W_Q": (H, dh, d),
                "W_V": (H, dh, d), "W_O": (d, H * dh), "W_in": (m, d), "b_in": (m,),
                "W_out": (d, m), "b_out": (d,), "W_U": (d, M)}
