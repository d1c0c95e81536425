"""JoMA multilayer: a hierarchical latent generator and a small decoder-only transformer.

Source: facebookresearch/luckmatters ssl/real-dataset/decoder_only_hier.py (+ config/decoder_only_hier.yaml
and the README command for Table 1 of JoMA, arXiv 2310.00535). The script itself does not run (it
imports `decoder_wiki_yz3`, which is not in the repository); `Dataset`, `SABlock`, `Model` and
`compute_corr` are rebuilt here from its code:

- Generator: latent layer l has num_tokens[l] tokens, each a random combination (sorted, distinct)
  of num_combinations[l] tokens of the layer below (layer 0 combines the M - 1 observed tokens; token
  M - 1 is padding). A sample draws a class at the top, expands it top-down into the set of active
  latents of every layer, and writes the observed tokens at the end of a pre-padded sequence.
- Model: embedding (M, d); per block: single-head causal self-attention (Wk, Wq, Wv, no bias,
  softmax((QK^T + mask) / sqrt(d))), residual, LayerNorm, ReLU FFN (d -> d_hidden -> d), residual,
  LayerNorm; a linear head on the last position predicts the class.
- Table 1's measure: per layer, the FFN hidden units max-pooled over positions, correlated with the
  0/1 indicators of the active latents of the same level (compute_corr, zero mean).

Randomness: Python `random.Random(seed)` for the combinations (the script's `random.shuffle`), a
torch.Generator for labels, and the modules are initialised inside `torch.random.fork_rng` so no
global state leaks.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from groklab.errors import check

__all__ = ["HierConfig", "HierData", "HierModel", "compute_corr", "attention_entropy"]


@dataclass(frozen=True)
class HierConfig:
    """Defaults: the README's Table 1 generator (num_class 20, M 100, L 30, num_tokens [10, 20, null],
    num_combinations [2, 2, 2], 3 layers, Adam, weight decay 1e-4, hidden_multi_type M), made
    CPU-sized: d 64 instead of 1024, d_hidden = 1 x M instead of 4 x M, batch 64 instead of 128,
    lr 1e-3 instead of 1e-5 (1e-4 barely moves the entropies back up within 1500 steps), 1500
    iterations instead of 10000."""

    M: int = 100
    L: int = 30
    num_class: int = 20
    num_tokens: tuple[int, ...] = (10, 20)        # the last layer is num_class (the yaml's null)
    num_combinations: tuple[int, ...] = (2, 2, 2)
    nlayer: int = 3
    d: int = 64
    hidden_multi: int = 1                         # d_hidden = hidden_multi * M (hidden_multi_type "M")
    batchsize: int = 64
    niter: int = 1500
    lr: float = 1e-3
    wd: float = 1e-4
    eval_every: int = 25
    eval_batch: int = 256
    test_batch: int = 1280                        # decoder_only_hier.py's test_batchsize
    seeds: tuple[int, ...] = (1,)

    def __post_init__(self):
        object.__setattr__(self, "num_tokens", tuple(self.num_tokens))
        object.__setattr__(self, "num_combinations", tuple(self.num_combinations))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        check(len(self.num_combinations) == len(self.num_tokens) + 1, "num_combinations", self.num_combinations,
              f"needs one entry per latent layer: len(num_tokens) + 1 = {len(self.num_tokens) + 1}")
        check(self.M >= 3, "M", self.M, "must be >= 3")
        check(self.nlayer >= 1, "nlayer", self.nlayer, "must be >= 1")
        check(self.d >= 1 and self.hidden_multi >= 1, "d", self.d, "must be >= 1")
        check(self.niter >= 1 and self.eval_every >= 1, "niter", self.niter, "must be >= 1")
        check(self.lr > 0, "lr", self.lr, "must be > 0")
        check(self.wd >= 0, "wd", self.wd, "must be >= 0")
        check(len(self.seeds) >= 1, "seeds", self.seeds, "needs at least one seed")
        sizes = (self.M - 1,) + self.num_tokens + (self.num_class,)
        for l, p in enumerate(self.num_combinations):
            check(1 <= p <= sizes[l] and math.comb(sizes[l], p) >= sizes[l + 1], "num_combinations", self.num_combinations,
                  f"layer {l}: needs 1 <= p <= {sizes[l]} and C({sizes[l]}, p) >= {sizes[l + 1]} distinct combinations")
        n_obs = math.prod(self.num_combinations)
        check(n_obs <= self.L, "L", self.L, f"must hold the up to {n_obs} observed tokens of a sample")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return self.num_tokens + (self.num_class,)


class HierData:
    """decoder_only_hier.py `Dataset`: hier_tokens[l][i] = the combination of layer-(l-1) tokens
    (observed tokens for l = 0) that makes latent i of layer l."""

    def __init__(self, cfg: HierConfig, seed: int):
        rng = random.Random(seed)
        self.cfg = cfg
        self.sizes = cfg.layer_sizes
        self.hier_tokens: list[list[list[int]]] = []
        below = cfg.M - 1
        for l, p in enumerate(cfg.num_combinations):
            indices = list(range(below))
            seen: set[tuple[int, ...]] = set()
            layer = []
            for _ in range(self.sizes[l]):
                while True:   # rejection sampling of a new combination, as the script
                    rng.shuffle(indices)
                    comb = sorted(indices[:p])
                    if tuple(comb) not in seen:
                        seen.add(tuple(comb))
                        break
                layer.append(comb)
            self.hier_tokens.append(layer)
            below = self.sizes[l]
        self.gen = torch.Generator().manual_seed(seed + 2)

    def generate(self, batchsize: int):
        """x (B, L) long pre-padded with M - 1, label (B,), active: list per layer of (B, size_l) 0/1."""
        cfg = self.cfg
        x = torch.full((batchsize, cfg.L), cfg.M - 1, dtype=torch.long)
        label = torch.randint(0, self.sizes[-1], (batchsize,), generator=self.gen)
        active = [torch.zeros(batchsize, s) for s in self.sizes]
        for i in range(batchsize):
            cur = {int(label[i])}
            for l in reversed(range(len(self.sizes))):
                for k in cur:
                    active[l][i, k] = 1
                cur = set().union(*[self.hier_tokens[l][k] for k in cur])
            x[i, -len(cur):] = torch.tensor(list(cur))   # list(set) order, as the script
        return x, label, active


class _Block(nn.Module):
    def __init__(self, d: int, d_hidden: int):
        super().__init__()
        self.Wk = nn.Linear(d, d, bias=False)
        self.Wq = nn.Linear(d, d, bias=False)
        self.Wv = nn.Linear(d, d, bias=False)
        self.w1 = nn.Linear(d, d_hidden)
        self.w2 = nn.Linear(d_hidden, d)
        self.ln = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.d = d

    def forward(self, h: torch.Tensor, mask: torch.Tensor):
        # h: (B, L, d); mask: (L, L) 0 / -inf above the diagonal
        scores = torch.bmm(self.Wq(h), self.Wk(h).transpose(1, 2)) + mask
        attn = torch.softmax(scores / math.sqrt(self.d), dim=2)          # (B, L, L), rows = queries
        out = self.ln(torch.bmm(attn, self.Wv(h)) + h)
        hidden = F.relu(self.w1(out))                                    # (B, L, d_hidden)
        return self.ln2(self.w2(hidden) + out), hidden, attn


class HierModel(nn.Module):
    def __init__(self, cfg: HierConfig, seed: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 2)
            self.embed = nn.Embedding(cfg.M, cfg.d)
            self.final_W = nn.Linear(cfg.d, cfg.num_class)
            self.blocks = nn.ModuleList([_Block(cfg.d, cfg.hidden_multi * cfg.M) for _ in range(cfg.nlayer)])
        self.register_buffer("mask", torch.triu(torch.full((cfg.L, cfg.L), float("-inf")), diagonal=1))

    def forward(self, x: torch.Tensor):
        """logits (B, num_class) at the last position, hiddens and attentions per layer."""
        h = self.embed(x)
        hiddens, attns = [], []
        for b in self.blocks:
            h, hid, a = b(h, self.mask)
            hiddens.append(hid)
            attns.append(a)
        return self.final_W(h[:, -1]), hiddens, attns


def compute_corr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """decoder_only_hier.py compute_corr(zero_mean=True): (n, a) and (n, b) -> (a, b) correlations."""
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    return x.t() @ y / (x.norm(dim=0) + 1e-9)[:, None] / (y.norm(dim=0) + 1e-9)[None, :]


def attention_entropy(attn: torch.Tensor, x: torch.Tensor, pad: int) -> tuple[float, float]:
    """Entropy -sum a log(a + 1e-8) of each query row (as joma/draw_figure_6.py), averaged over the
    rows whose query is an observed token (padding rows attend uniformly to identical pads), and
    the entropy of the last row (the position that predicts). attn: (B, L, L); x: (B, L)."""
    h = -(attn * (attn + 1e-8).log()).sum(-1)                            # (B, L)
    real = x != pad
    return float(h[real].mean()), float(h[:, -1].mean())
