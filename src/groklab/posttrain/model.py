"""A small causal transformer over [rule, operands..., answers...], ensemble-first (E members).

groklab's Nanda transformer reads one answer at the '=' of [a, b, =]; here prompts are 3-4 tokens
and answers are 1-2 tokens written one after another, so the room has its own model of the same
family: learned token and position embeddings, n_layers of (causal multi-head attention + ReLU MLP)
on a residual stream, no LayerNorm, untied unembedding to the M group elements (rule tokens are
never an answer). As in Nanda et al. 2023 (science.md §7) every matrix starts N(0, 1/d).

    x_t   = W_E[tok_t] + W_pos[t]                                       (E, B, T, d)
    x    += W_O concat_h softmax_causal(q_h k_h^T / sqrt(dh)) v_h         per layer
    x    += W_out ReLU(W_in x + b_in) + b_out
    logits = x W_U^T                                                    (E, B, T, M)

Parameters carry a leading axis E (members: arms x pools x seeds), so one tensor program trains
them all; a member's loss depends only on its own slice, so summing the members' losses gives
each member its own gradient. Matrix names (W_E, L0_W_Q, ...) key the weight diagnostics.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ChainTransformer", "MATRICES"]

# The 2-D weight matrices the diagnostics look at, per layer l: L{l}_W_Q, ... (biases are 1-D).
LAYER_MATRICES = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out")


def MATRICES(n_layers: int) -> list[str]:
    return ["W_E", "W_pos"] + [f"L{l}_{m}" for l in range(n_layers) for m in LAYER_MATRICES] + ["W_U"]


class ChainTransformer(nn.Module):
    def __init__(self, vocab: int, n_out: int, seq_len: int, d_model: int, n_heads: int, d_mlp: int,
                 n_layers: int, seeds: list[int], dtype: torch.dtype = torch.float32):
        super().__init__()
        self.vocab, self.n_out, self.seq_len = vocab, n_out, seq_len
        self.d, self.H, self.m, self.n_layers = d_model, n_heads, d_mlp, n_layers
        d, m = d_model, d_mlp
        shapes = {"W_E": (vocab, d), "W_pos": (seq_len, d)}
        for l in range(n_layers):
            shapes.update({f"L{l}_W_Q": (d, d), f"L{l}_W_K": (d, d), f"L{l}_W_V": (d, d), f"L{l}_W_O": (d, d),
                           f"L{l}_W_in": (m, d), f"L{l}_W_out": (d, m)})
        shapes["W_U"] = (n_out, d)
        draws: dict[str, list[Tensor]] = {k: [] for k in shapes}
        for s in seeds:  # each member from its own generator, in a fixed order
            g = torch.Generator().manual_seed(int(s))
            for k, shp in shapes.items():
                draws[k].append(torch.randn(*shp, generator=g, dtype=torch.float64) / math.sqrt(d))
        self.p = nn.ParameterDict({k: nn.Parameter(torch.stack(v).to(dtype)) for k, v in draws.items()})
        E = len(seeds)
        for l in range(n_layers):
            self.p[f"L{l}_b_in"] = nn.Parameter(torch.zeros(E, m, dtype=dtype))
            self.p[f"L{l}_b_out"] = nn.Parameter(torch.zeros(E, d, dtype=dtype))

    @property
    def n_members(self) -> int:
        return self.p["W_E"].shape[0]

    def forward(self, tok: Tensor) -> Tensor:
        """tok (E, B, T') int64 with T' <= seq_len -> logits (E, B, T', M): position t predicts token t+1."""
        E, B, T = tok.shape
        H, dh = self.H, self.d // self.H
        W_E = self.p["W_E"]  # (E, V, d)
        flat = (tok + torch.arange(E, device=tok.device)[:, None, None] * self.vocab).reshape(-1)
        x = W_E.reshape(E * self.vocab, self.d).index_select(0, flat).view(E, B, T, self.d)
        x = x + self.p["W_pos"][:, None, :T, :]  # (E, B, T, d)
        causal = torch.ones(T, T, dtype=torch.bool, device=tok.device).tril()
        for l in range(self.n_layers):
            P = lambda n: self.p[f"L{l}_{n}"]  # noqa: E731
            q = torch.einsum("ebtd,ekd->ebtk", x, P("W_Q")).view(E, B, T, H, dh)
            k = torch.einsum("ebtd,ekd->ebtk", x, P("W_K")).view(E, B, T, H, dh)
            v = torch.einsum("ebtd,ekd->ebtk", x, P("W_V")).view(E, B, T, H, dh)
            scores = torch.einsum("ebqhc,ebkhc->ebhqk", q, k) / math.sqrt(dh)  # (E, B, H, T, T)
            attn = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            z = torch.einsum("ebhqk,ebkhc->ebqhc", attn, v).reshape(E, B, T, self.d)
            x = x + torch.einsum("ebtk,edk->ebtd", z, P("W_O"))
            pre = torch.einsum("ebtd,emd->ebtm", x, P("W_in")) + P("b_in")[:, None, None, :]
            x = x + torch.einsum("ebtm,edm->ebtd", torch.relu(pre), P("W_out")) + P("b_out")[:, None, None, :]
        return torch.einsum("ebtd,eod->ebto", x, self.p["W_U"])

    def matrices(self) -> dict[str, Tensor]:
        """The 2-D weight matrices, (E, rows, cols) each, detached."""
        return {k: self.p[k].detach() for k in MATRICES(self.n_layers)}

    @torch.no_grad()
    def load_members(self, tensors: dict[str, Tensor], index: Tensor) -> None:
        """Set every member e to member index[e] of `tensors` (e.g. one base per seed -> arms x pools x seeds)."""
        for k, p in self.p.items():
            p.copy_(tensors[k][index].to(p.dtype))

    def state(self) -> dict[str, Tensor]:
        return {k: p.detach().clone() for k, p in self.p.items()}
