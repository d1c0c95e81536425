"""Model2 of the Scan & Snap code, for E models at once, with its gradient written out.

Source: facebookresearch/luckmatters, ssl/real-dataset/decoder_only.py, class Model2 (the paper's
Y/Z reparameterisation, arXiv 2305.16380 Sec. 3-4). For one sample with query token q, contextual
tokens x_1..x_{L-1} (the query is not a key: attn_include_base_token=false) and label n:

    s_l = Z[q, x_l]                    K2.weight: the attention logit of key token x_l for query q
    a   = softmax(s)                   over the L-1 context positions
    u   = sum_l a_l e_{x_l} (+ e_q if residual)          (M,)
    f   = u / ||u||                    model2.normalize = true
    o   = Y f                          K1.weight: the decoder, logits over M tokens
    loss = CE(o, n), averaged over the batch

The backward pass below is the chain rule of those lines; tests/test_attention_snap.py checks it
against autograd in float64. Writing it out lets E members (seeds x learning rates) share one
batched program without building the (B, L, M) one-hot tensor the reference code builds.
"""

from __future__ import annotations

import torch

__all__ = ["forward_backward", "c_attention", "c_entropy", "c_entropy_distinct"]


def forward_backward(Y: torch.Tensor, Z: torch.Tensor, ctx: torch.Tensor, query: torch.Tensor, label: torch.Tensor,
                     normalize: bool = True, residual: bool = False, need_grad: bool = True):
    """Loss and gradients of Model2 for E members.

    Y, Z: (E, M, M). ctx: (E, B, L-1) long; query, label: (E, B) long (members may share a batch
    through .expand). Returns loss (E,), dY (E, M, M), dZ (E, M, M) (None, None if not need_grad).
    """
    E, M, _ = Y.shape
    B = ctx.shape[1]
    Zq = torch.gather(Z, 1, query.unsqueeze(-1).expand(E, B, M))          # (E, B, M) rows Z[q]
    s = torch.gather(Zq, 2, ctx)                                          # (E, B, L-1)
    a = torch.softmax(s, dim=2)
    u = torch.zeros(E, B, M, dtype=Y.dtype).scatter_add_(2, ctx, a)       # (E, B, M)
    if residual:
        u = u.scatter_add(2, query.unsqueeze(-1), torch.ones(E, B, 1, dtype=Y.dtype))
    n = u.norm(dim=2, keepdim=True) if normalize else torch.ones(E, B, 1, dtype=Y.dtype)
    f = u / n
    o = torch.bmm(f, Y.transpose(1, 2))                                   # (E, B, M) logits
    logp = torch.log_softmax(o, dim=2)
    loss = -torch.gather(logp, 2, label.unsqueeze(-1)).squeeze(-1).mean(1)
    if not need_grad:
        return loss, None, None
    go = logp.exp()
    go.scatter_add_(2, label.unsqueeze(-1), -torch.ones(E, B, 1, dtype=Y.dtype))
    go /= B                                                               # dloss/do
    dY = torch.bmm(go.transpose(1, 2), f)                                 # (E, M, M)
    gf = torch.bmm(go, Y)                                                 # (E, B, M)
    if normalize:
        gu = (gf - f * (f * gf).sum(2, keepdim=True)) / n                 # d(u/|u|) projects out f
    else:
        gu = gf
    ga = torch.gather(gu, 2, ctx)                                         # (E, B, L-1)
    gs = a * (ga - (a * ga).sum(2, keepdim=True))                         # softmax backward
    gZq = torch.zeros(E, B, M, dtype=Y.dtype).scatter_add_(2, ctx, gs)    # (E, B, M)
    onehot_q = torch.zeros(E, B, M, dtype=Y.dtype).scatter_(2, query.unsqueeze(-1), 1.0)
    dZ = torch.bmm(onehot_q.transpose(1, 2), gZq)                         # rows q collect their grads
    return loss, dY, dZ


def c_attention(Z: torch.Tensor, probs: torch.Tensor, tokens: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """c_n(l) ∝ P(l|n) exp(Z[psi(n), l]) over the fact's tokens: the expected attention of the paper
    (long-sequence limit), as scan_snap/figure_4_create.py (get_c) computes it.

    Z: (E, M, M); probs, tokens: (N, K); last: (N,). Returns (E, N, K), rows sum to 1.
    """
    z = Z[:, last.unsqueeze(1), tokens]                                   # (E, N, K)
    logit = z + probs.to(Z.dtype).log()
    return torch.softmax(logit, dim=2)


def c_entropy(c: torch.Tensor) -> torch.Tensor:
    """(E, N) entropy in nats of each c_n; uniform Z gives H(P(l|n)) (2.899 for Dataset2)."""
    return -(c * c.clamp_min(1e-30).log()).sum(-1)


def c_entropy_distinct(Z: torch.Tensor, probs: torch.Tensor, tokens: torch.Tensor, last: torch.Tensor,
                       num_distinct: int) -> torch.Tensor:
    """(E, N) entropy of c_n renormalised over the fact's distinct tokens only: the metric of Fig. 6.

    The analysis script behind scan_snap/figure_6_data.pkl is not in the repository; this is the
    definition that reproduces its table (num_last=1, eta_Z=1: 1.871 / 1.937 / 2.022 / 2.053 for the
    four eta_Y/eta_Z on the same seeds), whereas c_n over all tokens gives 2.62-2.85 there.
    Uniform Z gives H(linspace(0.1, 1, 10) normalised) = 2.151.
    """
    return c_entropy(c_attention(Z, probs[:, -num_distinct:], tokens[:, -num_distinct:], last))
