"""JoMA (arXiv 2310.00535): the linear invariant (Figs. 2-3) and the nonlinear toy (Fig. 4).

Sources: facebookresearch/luckmatters ssl/real-dataset/joma/draw_figure_2_3.py and draw_figure_4.py,
transcribed line for line (float32 like the scripts); the scripts' global torch RNG is replaced by a
seeded torch.Generator (draw_figure_2_3.py sets no seed at all; draw_figure_4.py seeds 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from groklab.errors import check

__all__ = ["ToyConfig", "joma_toy", "LinearConfig", "joma_linear", "norm_corr"]


@dataclass(frozen=True)
class ToyConfig:
    """draw_figure_4.py: v <- v + eta (mu - v) * softmax(v^2 / T), mu = sort(rand(n) * 3 + 1)."""

    seed: int = 0
    n: int = 10
    eta: float = 0.02
    T: float = 3.0
    v0: float = 0.05
    niter: int = 5000

    def __post_init__(self):
        check(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "must be an integer >= 0")
        check(isinstance(self.n, int) and self.n >= 2, "n", self.n, "must be an integer >= 2")
        check(self.eta > 0, "eta", self.eta, "must be > 0")
        check(self.T > 0, "T", self.T, "must be > 0")
        check(isinstance(self.niter, int) and self.niter >= 1, "niter", self.niter, "must be an integer >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def joma_toy(cfg: ToyConfig = ToyConfig()) -> dict:
    """Returns mu (n,), v every 100 iterations (niter//100 + 1, n), entropy (niter,) and the
    minimum's value and iteration. Entropy as the script: -(sa * (log sa + 1e-8)).sum()."""
    gen = torch.Generator().manual_seed(cfg.seed)
    mu, _ = (torch.rand(cfg.n, generator=gen) * 3 + 1).sort()
    v = torch.ones(cfg.n) * cfg.v0
    ent = torch.zeros(cfg.niter)
    vs = []
    for i in range(cfg.niter):
        if i % 100 == 0:
            vs.append(v.clone())
        sa = (v.pow(2) / cfg.T).exp()
        sa = sa / sa.sum()
        ent[i] = -(sa * (sa.log() + 1e-8)).sum()
        v = v + cfg.eta * ((mu - v) * sa)
    vs.append(v.clone())
    i_min = int(ent.argmin())
    return dict(mu=mu, v=torch.stack(vs), entropy=ent, min_entropy=float(ent[i_min]), min_iter=i_min,
                final_entropy=float(ent[-1]))


def norm_corr(v1: torch.Tensor, v2: torch.Tensor) -> float:
    """draw_figure_2_3.py norm_corr: cosine of the mean-removed vectors."""
    a = v1 - v1.mean()
    a = a / (a.norm() + 1e-8)
    b = v2 - v2.mean()
    b = b / (b.norm() + 1e-8)
    return float(a @ b)


@dataclass(frozen=True)
class LinearConfig:
    """draw_figure_2_3.py: Mc = 10 distinct + 10 common contextual tokens, K = 20 classes, d = 30,
    T = 0.5, SGD lr 0.1 on (W, z), 2000 iterations, Gaussian-bump P(l|y) for the distinct tokens."""

    seed: int = 0
    m_distinct: int = 10
    m_common: int = 10
    K: int = 20
    d: int = 30
    T: float = 0.5
    lr: float = 0.1
    niter: int = 2000
    gaussian_prob: bool = True

    def __post_init__(self):
        check(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "must be an integer >= 0")
        check(self.d >= self.m_distinct + self.m_common + 1, "d", self.d, "must be >= Mc + 1 (U embeds the Mc + Mq tokens)")
        check(self.T > 0, "T", self.T, "must be > 0")
        check(isinstance(self.niter, int) and self.niter >= 1, "niter", self.niter, "must be an integer >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def joma_linear(cfg: LinearConfig = LinearConfig()) -> dict:
    """Train W (d, K) and z (Mc,) jointly; at every step compare z with its JoMA prediction from W:
    z_hat = (||V_l||^2 - xbar_l ||W||^2) / (2T) + C (JoMA Thm 1, linear case; V = U^T W).
    Returns corr, corr1 (first term only), corr2 (second term only) (niter,), X (Mc, K), V at init
    and at the end (Mc+1, K), and v0 (niter, 4): components 0..3 of column 0 of V over time (Fig. 3)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    Mc, Mq, K, d, T = cfg.m_distinct + cfg.m_common, 1, cfg.K, cfg.d, cfg.T
    X = torch.rand(Mc, K, generator=gen) / 2
    idx = torch.arange(cfg.m_distinct)
    if cfg.gaussian_prob:
        for i in range(K):
            X[:cfg.m_distinct, i] = (-(idx - i / K * cfg.m_distinct).pow(2) / 30).exp()
    X = X / X.sum(dim=0, keepdim=True)                       # (Mc, K): P(l | y)
    U = torch.zeros(d, Mc + Mq)
    U[:Mc + Mq, :Mc + Mq] = torch.eye(Mc + Mq)
    xbar = X.mean(dim=1)
    W = (torch.randn(d, K, generator=gen) / 100).requires_grad_()
    z = (torch.randn(Mc, generator=gen) / 100).requires_grad_()
    with torch.no_grad():
        Wt = U.t() @ W
        C = z - (Wt[:Mc].pow(2).sum(dim=1) - xbar * W.pow(2).sum()) / 2 / T
    labels = torch.arange(K)
    opt = torch.optim.SGD([W, z], lr=cfg.lr)
    corr, corr1, corr2 = (torch.zeros(cfg.niter) for _ in range(3))
    v0 = torch.zeros(cfg.niter, 4)
    V_init = (U.t() @ W).detach().clone()
    for t in range(cfg.niter):
        opt.zero_grad()
        with torch.no_grad():
            v0[t] = (U.t() @ W)[:4, 0]
        Bm = (z / T).exp()[:, None] * X
        Bm = Bm / Bm.sum(dim=0, keepdim=True)                # (Mc, K) attention on contextual tokens
        F = U[:, :Mc] @ Bm + U[:, Mc][:, None]               # (d, K), "+ U[:, Mc]" is the residual
        output = F.t() @ W                                   # (K, K) logits
        with torch.no_grad():
            Wt = U.t() @ W
            z1 = Wt[:Mc].pow(2).sum(dim=1) / 2 / T
            z2 = -xbar * W.pow(2).sum() / 2 / T
            corr[t] = norm_corr(z, z1 + z2 + C)
            corr1[t] = norm_corr(z, z1)
            corr2[t] = norm_corr(z, z2)
        loss = torch.nn.functional.cross_entropy(output, labels)
        loss.backward()
        opt.step()
    return dict(corr=corr, corr1=corr1, corr2=corr2, X=X, V_init=V_init, V_final=(U.t() @ W).detach(), v0=v0,
                z=z.detach(), final_loss=float(loss.detach()))
