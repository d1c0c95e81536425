"""A small GPT-2 (the official runs use HF GPT2LMHeadModel, 2 layers, 8 heads, width 768, vocab 40;
``configs/symbol-2layer-8head-768dim.json``) and the Coconut forward pass.

GPT-2 shape: learned token + position embeddings, pre-LayerNorm blocks (attention, MLP 4x with
tanh-GELU), a final LayerNorm, the LM head tied to the token embedding. Dropout is left out
(the official config has 0.1; at this scale every example is fresh, see data.py).

Coconut (official ``coconut.py``): the hidden state after the final LayerNorm at the position
before a latent slot is written into that slot as its input embedding (position embedding added
as for any token), one slot per forward pass, and gradients flow through the whole chain. The
prefix's keys and values are cached between passes, as in the official code, and keep their
gradients (a test checks the result against recomputing everything with the thoughts spliced in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from groklab.errors import check

__all__ = ["GPTConfig", "GPT", "coconut_forward"]


@dataclass(frozen=True)
class GPTConfig:
    vocab: int
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    n_pos: int = 128
    init_std: float = 0.02  # GPT-2 initializer_range

    def __post_init__(self) -> None:
        check(self.n_layer >= 1, "n_layer", self.n_layer, "must be >= 1")
        check(self.d_model % self.n_head == 0, "d_model", self.d_model, f"must be a multiple of n_head = {self.n_head}")
        check(self.n_pos >= 8, "n_pos", self.n_pos, "must be >= 8")


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d = cfg.d_model
        self.n_head = cfg.n_head
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, past, keep_attn: bool):
        """x (B, t, d) new positions; past = (k, v) (B, H, Tp, hd) of earlier positions or None;
        mask (B, t, Tp + t) bool. Returns x, (k, v) of all Tp + t positions, attention or None."""
        B, t, d = x.shape
        H = self.n_head
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(B, t, H, d // H).transpose(1, 2) for z in (q, k, v))  # (B, H, t, hd)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // H)  # (B, H, t, Tp + t)
        att = att.masked_fill(~mask[:, None], float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, t, d)
        x = x + self.proj(y)
        x = x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))
        return x, (k, v), (att if keep_attn else None)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab, cfg.d_model)
        self.wpe = nn.Embedding(cfg.n_pos, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # GPT-2 init: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif "ln" in name:
                    p.fill_(1.0)
                else:
                    std = cfg.init_std / (math.sqrt(2 * cfg.n_layer) if name.endswith(("proj.weight", "out.weight")) else 1)
                    p.copy_(torch.randn(p.shape, generator=g) * std)

    def step(self, emb: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor, past=None, keep_attn: bool = False):
        """Run new positions. emb (B, t, d) input embeddings (tokens or thoughts) and pos (B, t) of
        positions Tp..Tp+t-1; pad (B, Tp + t) bool left padding of every position so far; past:
        per-layer (k, v) of the first Tp positions (a KV cache that keeps its gradients).
        Returns (final-LayerNorm hidden (B, t, d), new past, [attention (B, H, t, Tp+t)] or None)."""
        B, t, _ = emb.shape
        Tp = 0 if past is None else past[0][0].shape[2]
        q_idx = torch.arange(Tp, Tp + t)[:, None]
        k_idx = torch.arange(Tp + t)[None]
        # causal; never attend to left padding; a padded query attends to itself (no empty row)
        mask = ((k_idx <= q_idx)[None] & ~pad[:, None, :]) | (k_idx == q_idx)[None]
        x = emb + self.wpe(pos)
        new, maps = [], []
        for i, blk in enumerate(self.blocks):
            x, kv, a = blk(x, mask, None if past is None else past[i], keep_attn)
            new.append(kv)
            maps.append(a)
        return self.ln_f(x), new, (maps if keep_attn else None)

    def hidden(self, emb: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor, keep_attn: bool = False):
        """The whole sequence at once: (hidden (B, T, d), attention maps or None)."""
        h, _, maps = self.step(emb, pos, pad, None, keep_attn)
        return h, maps

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.wte.weight.T  # tied LM head


def coconut_forward(model: GPT, tokens: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor,
                    first_latent: int, n_latent: int, keep: bool = False):
    """Fill the latent slots first_latent .. first_latent+n_latent-1 one pass at a time (the hidden
    state at slot-1 becomes the slot's input embedding), then run the rest of the sequence.
    Returns (hidden (B, T, d), thoughts (B, n_latent, d), per pass the attention maps (list over
    layers of (B, H, t, Tp+t)) if ``keep``; pass p's last query row is the position making thought p+1)."""
    L, T = first_latent, tokens.shape[1]
    emb = model.wte(tokens)
    h, past, maps = model.step(emb[:, :L], pos[:, :L], pad[:, :L], None, keep)
    hs, thoughts, passes = [h], [h[:, -1]], [maps]
    for p in range(1, n_latent):  # feed thought p (at slot L+p-1) to make thought p+1
        i = L + p - 1
        h, past, maps = model.step(thoughts[-1][:, None], pos[:, i:i + 1], pad[:, :i + 1], past, keep)
        hs.append(h)
        thoughts.append(h[:, -1])
        passes.append(maps)
    start = L + n_latent - 1 if n_latent else L
    rest = emb[:, start:]
    if n_latent:
        rest = torch.cat([thoughts[-1][:, None], rest[:, 1:]], 1)
    if rest.shape[1]:
        h, past, maps = model.step(rest, pos[:, start:], pad, past, keep)
        hs.append(h)
        passes.append(maps)
    th = torch.stack(thoughts[:n_latent], 1) if n_latent else emb[:, :0]
    return torch.cat(hs, 1), th, (passes if keep else None)
