"""Scan & Snap synthetic data: `Dataset2` of the official code, with its exact random stream.

Source: facebookresearch/luckmatters, ssl/real-dataset/decoder_only.py (class Dataset2, `main`),
config/decoder_only.yaml (section dataset2). Each *fact* n is a sequence class: a query ("last")
token m = psi(n), a next token n, and a conditional distribution P(l | n) over contextual tokens
(common tokens with unnormalized weight 1, then `num_unique_per_next` distinct tokens with weights
linspace(0.1, 1, 10)). A sample is L - 1 contextual tokens drawn i.i.d. from P(l | n), then m; the
label is n.

Token layout (as in the code): [common | common-per-last | distinct, 10 per next token | last
tokens | next tokens], so M = num_common + num_common_per_last * num_last
+ num_unique_per_next * num_next + num_last + num_next.

`code_stream` reproduces the code's random numbers, not only their distribution: the script calls
`common_utils.set_all_seeds(seed)` (random.seed(seed), torch.manual_seed(seed + 2)), then builds
Model2, whose two nn.Linear(M, M) initialisations draw 2 * M * M uniforms from the torch stream,
then per sample `random.choice(facts)` and `torch.multinomial(probs, L - 1, replacement=True)`.
Here those come from a private `random.Random` and `torch.Generator`, never global state.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import torch

from groklab.errors import check

__all__ = ["DataConfig", "Facts", "build_facts", "code_stream", "linear_init"]


@dataclass(frozen=True)
class DataConfig:
    """dataset2 of config/decoder_only.yaml; defaults are the yaml's except where the paper's runs
    override them (num_common_per_last=0 in both figure_4.log and figure_6.log)."""

    num_last: int = 2
    num_next_per_last: int = 2
    num_common: int = 10
    num_common_per_last: int = 0
    num_unique_per_next: int = 10
    common_unnormalized_prob: float = 1.0
    unique_unnormalized_min: float = 0.1
    unique_unnormalized_max: float = 1.0
    L: int = 128  # sequence length including the query token

    def __post_init__(self):
        for f in ("num_last", "num_next_per_last", "num_unique_per_next"):
            v = getattr(self, f)
            check(isinstance(v, int) and v >= 1, f, v, "must be an integer >= 1")
        for f in ("num_common", "num_common_per_last"):
            v = getattr(self, f)
            check(isinstance(v, int) and v >= 0, f, v, "must be an integer >= 0")
        check(isinstance(self.L, int) and self.L >= 2, "L", self.L, "must be an integer >= 2 (context + query)")
        check(self.common_unnormalized_prob > 0, "common_unnormalized_prob", self.common_unnormalized_prob, "must be > 0")
        check(0 < self.unique_unnormalized_min <= self.unique_unnormalized_max, "unique_unnormalized_min",
              self.unique_unnormalized_min, f"must be in (0, unique_unnormalized_max={self.unique_unnormalized_max}]")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Facts:
    """The sequence classes. N facts, K contextual tokens with P(l|n) > 0 per fact (same K for all)."""

    probs: torch.Tensor   # (N, K) float32, P(l | n) over `tokens`, rows sum to 1
    tokens: torch.Tensor  # (N, K) long, the contextual token ids of each fact
    last: torch.Tensor    # (N,) long, query token m = psi(n)
    nxt: torch.Tensor     # (N,) long, next token n (the label)
    M: int                # vocabulary size
    num_common: int       # tokens 0..num_common-1 are the common tokens
    num_distinct: int     # the last num_distinct entries of each row of `tokens` are its distinct tokens

    def p_full(self) -> torch.Tensor:
        """(N, M) float64: P(l | n) on the whole vocabulary (zero off the fact's tokens)."""
        p = torch.zeros(self.probs.shape[0], self.M, dtype=torch.float64)
        return p.scatter_(1, self.tokens, self.probs.double())


def build_facts(cfg: DataConfig) -> Facts:
    """Dataset2.__init__, transcribed (float32 probabilities exactly as the code computes them)."""
    num_next = cfg.num_last * cfg.num_next_per_last
    cpl_offset = cfg.num_common
    unique_offset = cpl_offset + cfg.num_common_per_last * cfg.num_last
    last_offset = unique_offset + cfg.num_unique_per_next * num_next
    next_offset = last_offset + cfg.num_last
    probs, tokens, last, nxt = [], [], [], []
    unique_idx = 0
    for m in range(cfg.num_last):
        cpl_start = cpl_offset + m * cfg.num_common_per_last
        for _ in range(cfg.num_next_per_last):
            unique_probs = torch.linspace(cfg.unique_unnormalized_min, cfg.unique_unnormalized_max, cfg.num_unique_per_next)
            u_start = unique_offset + cfg.num_unique_per_next * unique_idx
            p = torch.cat([torch.ones(cfg.num_common) * cfg.common_unnormalized_prob,
                           torch.ones(cfg.num_common_per_last) * cfg.common_unnormalized_prob, unique_probs])
            probs.append(p / p.sum())
            tokens.append(list(range(cfg.num_common)) + list(range(cpl_start, cpl_start + cfg.num_common_per_last))
                          + list(range(u_start, u_start + cfg.num_unique_per_next)))
            last.append(last_offset + m)
            nxt.append(next_offset + unique_idx)
            unique_idx += 1
    return Facts(torch.stack(probs), torch.tensor(tokens), torch.tensor(last), torch.tensor(nxt),
                 next_offset + num_next, cfg.num_common, cfg.num_unique_per_next)


def linear_init(M: int, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """(M, M) weight of nn.Linear(M, M, bias=False) as reset_parameters draws it:
    kaiming_uniform_(w, a=sqrt(5)) -> uniform(-bound, bound), bound = sqrt(3) * gain / sqrt(fan_in)."""
    gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
    bound = math.sqrt(3.0) * (gain / math.sqrt(M))
    return torch.empty(M, M).uniform_(-bound, bound, generator=gen).to(dtype)


def code_stream(facts: Facts, L: int, seed: int, batchsize: int, niter: int):
    """The code's init and data for one seed.

    Returns (K1_init, K2_init, ctx, query, label): K1/K2 (M, M) float32 as nn.Linear draws them (used
    when zero_init is false); ctx (niter, B, L-1) long context tokens, query (niter, B) and label
    (niter, B) long. Order of draws = set_all_seeds, Model2.__init__ (K1 then K2), then per iteration
    per sample random.choice(facts) and torch.multinomial (decoder_only.py, main and Dataset2.generate).
    """
    rng = random.Random(seed)                      # random.seed(seed)
    gen = torch.Generator().manual_seed(seed + 2)  # torch.manual_seed(seed + 2)
    K1 = linear_init(facts.M, gen)
    K2 = linear_init(facts.M, gen)
    n_facts = facts.probs.shape[0]
    ctx = torch.empty(niter, batchsize, L - 1, dtype=torch.long)
    fact_idx = torch.empty(niter, batchsize, dtype=torch.long)
    # random.choice(seq) is seq[rng._randbelow(len(seq))]; choosing an index draws the same numbers.
    for t in range(niter):
        for i in range(batchsize):
            f = rng.choice(range(n_facts))
            fact_idx[t, i] = f
            idx = torch.multinomial(facts.probs[f], L - 1, replacement=True, generator=gen)
            ctx[t, i] = facts.tokens[f][idx]
    return K1, K2, ctx, facts.last[fact_idx], facts.nxt[fact_idx]
