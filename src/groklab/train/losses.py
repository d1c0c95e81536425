"""Per-example losses on ensemble outputs laid out (E, C, n): class axis 1, examples last.

Every function returns (E, n) so the engine can weight examples per member (different training
sets, padding) and keep members independent: the total loss is a sum over members, so each
member's gradient is exactly its own.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def mse(o: Tensor, y: Tensor) -> Tensor:
    """The original code's MSE (science.md §2): o0 = o - mean_c o, ỹ = e_y - 1/M,
    loss = ||o0 - ỹ||^2 per example (no 1/2), computed without materialising one-hot targets:
    ||o0||^2 - 2 o0[y] + (1 - 1/M), since o0 sums to zero over classes.
    o (E, M, n); y (E, n) int64. Returns (E, n)."""
    M = o.shape[1]
    o0 = o - o.mean(dim=1, keepdim=True)
    picked = o0.gather(1, y[:, None, :]).squeeze(1)  # (E, n)
    return o0.square().sum(dim=1) - 2.0 * picked + (1.0 - 1.0 / M)


def cross_entropy(o: Tensor, y: Tensor) -> Tensor:
    """Softmax cross-entropy with o as logits (the original code's `nll`). Returns (E, n)."""
    return F.cross_entropy(o, y, reduction="none")


def stablemax_probs(o: Tensor, dim: int = 1) -> Tensor:
    """StableMax (Prieto et al. 2025, Eq. 6): s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0;
    p_i = s(o_i) / sum_j s(o_j). Grows linearly instead of exponentially, so it cannot collapse."""
    s = torch.where(o >= 0, o + 1.0, 1.0 / (1.0 - torch.clamp(o, max=0.0)))
    return s / s.sum(dim=dim, keepdim=True)


def stablemax_cross_entropy(o: Tensor, y: Tensor) -> Tensor:
    """-log StableMax(o)[y] (Prieto et al. 2025). Returns (E, n)."""
    p = stablemax_probs(o, dim=1).gather(1, y[:, None, :]).squeeze(1)
    return -torch.log(p)


LOSSES = {"mse": mse, "ce": cross_entropy, "stablemax": stablemax_cross_entropy}


def per_example_loss(kind: str, o: Tensor, y: Tensor) -> Tensor:
    """Dispatch by name; y may be (n,) (shared by all members) or (E, n)."""
    if y.dim() == 1:
        y = y.expand(o.shape[0], -1)
    return LOSSES[kind](o, y)
