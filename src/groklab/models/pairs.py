"""The first layer of every one-hot pair network, fused: f = σ(s · (W_a[:, a] + W_b[:, b])).

Because the input is one-hot, W x is a gather of two rows of a (2M, K) table - one embedding_bag
pass - never a one-hot matmul (O(K n) instead of O(K M n)). Forward and backward are written by
hand so a step makes few passes over the (n, K) activations: the forward keeps only h; the
backward forms dh = s · σ'(h) ⊙ df once and scatters it with two index_add_ calls.

The table is laid out (E, 2M, K): rows 0..M-1 act on the first operand, M..2M-1 on the second,
one table per ensemble member. Members are flattened into one (E·2M, K) table so the whole
ensemble is one gather.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

ACT = {
    "sqr": lambda h: h * h,
    "relu": torch.relu,
    "silu": F.silu,
    "relusqr": lambda h: torch.relu(h).square(),
}


ACT_INPLACE = {  # same functions, overwriting h (no second (n, K) buffer during evaluation)
    "sqr": lambda h: h.mul_(h),
    "relu": torch.relu_,
    "silu": lambda h: F.silu(h, inplace=True),
    "relusqr": lambda h: torch.relu_(h).square_(),
}


def act_grad(name: str, h: Tensor) -> Tensor:
    """σ'(h) for each activation."""
    if name == "sqr":
        return 2.0 * h
    if name == "relu":
        return (h > 0).to(h.dtype)
    if name == "relusqr":
        return 2.0 * torch.relu(h)
    s = torch.sigmoid(h)  # silu(h) = h σ(h); d/dh = σ(h) (1 + h (1 - σ(h)))
    return s * (1.0 + h * (1.0 - s))


def bag_indices(a: Tensor, b: Tensor, E: int, M: int) -> Tensor:
    """Row indices into the flattened (E·2M, K) table: for member e and pair i, the two rows
    e·2M + a_i and e·2M + M + b_i, interleaved. a, b: (n,) shared or (E, n). Returns (E·n·2,)."""
    if a.dim() == 1:
        a, b = a.expand(E, -1), b.expand(E, -1)
    base = torch.arange(E, device=a.device)[:, None] * (2 * M)
    return torch.stack([base + a, base + M + b], dim=2).reshape(-1)


class _PairFeatures(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, idx: Tensor, act: str, scale: float) -> Tensor:
        # table (E·2M, K); idx (E·n·2,) -> h, f (E·n, K)
        offsets = torch.arange(0, idx.numel(), 2, device=idx.device)
        h = F.embedding_bag(idx, table, offsets, mode="sum")
        if scale != 1.0:
            h.mul_(scale)
        ctx.save_for_backward(h, idx)
        ctx.act, ctx.scale, ctx.rows = act, scale, table.shape[0]
        return ACT[act](h)

    @staticmethod
    def backward(ctx, grad_f: Tensor):
        h, idx = ctx.saved_tensors
        if ctx.act == "sqr":  # σ'(h) = 2h: one pass, the 2 (and the scale) ride on index_add_'s alpha
            gh, alpha = grad_f * h, 2.0 * ctx.scale  # (E·n, K)
        else:
            gh, alpha = grad_f * act_grad(ctx.act, h), ctx.scale
        grad = torch.zeros(ctx.rows, h.shape[1], dtype=h.dtype, device=h.device)
        grad.index_add_(0, idx[0::2], gh, alpha=alpha)  # first operand rows
        grad.index_add_(0, idx[1::2], gh, alpha=alpha)  # second operand rows
        return grad, None, None, None


def pair_features(W: Tensor, a: Tensor, b: Tensor, act: str, scale: float = 1.0) -> Tensor:
    """f = σ(scale · (W[e, a_i] + W[e, M + b_i])) for every member e and pair i.
    W (E, 2M, K); a, b (n,) or (E, n). Returns (E, n, K)."""
    E, twoM, K = W.shape
    idx = bag_indices(a, b, E, twoM // 2)
    if not (torch.is_grad_enabled() and W.requires_grad):  # evaluation: σ in place, nothing saved
        h = F.embedding_bag(idx, W.reshape(E * twoM, K), torch.arange(0, idx.numel(), 2, device=idx.device), mode="sum")
        if scale != 1.0:
            h.mul_(scale)
        return ACT_INPLACE[act](h).view(E, -1, K)
    return _PairFeatures.apply(W.reshape(E * twoM, K), idx, act, scale).view(E, -1, K)
