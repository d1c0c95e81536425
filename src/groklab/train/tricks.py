"""Gradient filters and softmax-collapse diagnostics from the peer codebases (science.md §7).

All of them act on ensemble parameters (leading axis E), member by member: a filter's state has
the parameters' shapes, so each member keeps its own history, and an `active` mask (E,) bool
leaves stopped members' gradients and state untouched.

The engine calls them after backward and before the optimizer step:

    loss.backward()
    if cfg.train.orth_grad:   orthogonal_grad(params)
    if grad_filter is not None: grad_filter.apply(params, active)   # grad_filter = make_grad_filter(cfg.train)
    opt.step()

- Grokfast (Lee et al. 2024; reference ironjr/grokfast, grokfast.py): amplify the slow component
  of the gradient. EMA: μ ← α μ + (1 − α) g, g ← g + λ μ, with μ initialised to the first
  gradient (gradfilter_ema). MA: g ← g + λ · mean of the last `window` gradients, applied only
  once the window is full unless warmup=False (gradfilter_ma, filter_type "mean").
- ⊥Grad (Prieto et al. 2025, "Grokking at the edge of numerical stability"; reference
  LucasPrietoAl/grokking-at-the-edge-of-numerical-stability, orthograd.py): per parameter tensor,
  g⊥ = g − (⟨w, g⟩ / ⟨w, w⟩) w (the paper's ∇⊥L), then, as the authors' code does (the paper's
  formula does not), rescaled to the norm of g.
- Softmax collapse (Prieto et al. 2025, logger.py compute_softmax_collapse): an example has
  collapsed when Σ_c exp(z_c − max z) rounds to exactly 1 in float32, i.e. every other class's
  term is absorbed: the softmax is exactly one-hot and the cross-entropy gradient exactly zero.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["GrokfastEMA", "GrokfastMA", "make_grad_filter", "orthogonal_grad",
           "softmax_collapse_fraction", "zero_loss_fraction"]


def _mask(active: Tensor | None, p: Tensor) -> Tensor | None:
    """(E,) bool -> (E, 1, ..., 1) on p's device, or None when every member is active."""
    if active is None:
        return None
    return torch.as_tensor(active, dtype=torch.bool, device=p.device).view(-1, *([1] * (p.dim() - 1)))


def _grads(params: Sequence[Tensor]) -> list[Tensor | None]:
    return [p.grad for p in params]


class GrokfastEMA:
    """Grokfast-EMA (Lee et al. 2024, Algorithm 2; ironjr/grokfast gradfilter_ema).

    Per step, for each parameter's gradient g (in place):  μ ← α μ + (1 − α) g;  g ← g + λ μ.
    μ starts as the first gradient (then the same update runs once, as in the reference, so the
    arithmetic matches it bit for bit). `params` must be the same list, in the same order, at
    every call.
    """

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0):
        self.alpha, self.lamb = float(alpha), float(lamb)
        self.mu: list[Tensor | None] | None = None

    @torch.no_grad()
    def apply(self, params: Sequence[Tensor], active: Tensor | None = None) -> None:
        grads = _grads(params)
        if self.mu is None:
            self.mu = [None if g is None else g.detach().clone() for g in grads]
        for i, g in enumerate(grads):
            if g is None:
                continue
            mu = self.mu[i]
            if mu is None:  # a parameter that had no gradient so far
                mu = self.mu[i] = g.detach().clone()
            new = mu * self.alpha + g * (1 - self.alpha)
            m = _mask(active, g)
            if m is None:
                self.mu[i] = new
                g.add_(new * self.lamb)
            else:
                self.mu[i] = torch.where(m, new, mu)
                g.copy_(torch.where(m, g + new * self.lamb, g))

    def state_dict(self) -> dict:
        return {"kind": "ema", "alpha": self.alpha, "lamb": self.lamb,
                "mu": None if self.mu is None else [None if t is None else t.clone() for t in self.mu]}

    def load_state_dict(self, d: dict) -> None:
        self.alpha, self.lamb = float(d["alpha"]), float(d["lamb"])
        self.mu = None if d["mu"] is None else [None if t is None else t.clone() for t in d["mu"]]


class GrokfastMA:
    """Grokfast-MA (Lee et al. 2024, Algorithm 1; ironjr/grokfast gradfilter_ma, filter "mean").

    Keeps the last `window` gradients of each member; g ← g + λ · mean(history), where the
    history includes the current gradient. With warmup (the reference's default) the filter acts
    only once a member's history is full (`window` steps); without, it averages what it has.

    The history is a ring buffer (window, *param.shape) per parameter with a per-member count and
    write position, so a stopped member's history is frozen, not pushed. Memory: window times the
    parameters (the reference's deque costs the same).
    """

    def __init__(self, window: int = 100, lamb: float = 5.0, warmup: bool = True):
        self.window, self.lamb, self.warmup = int(window), float(lamb), bool(warmup)
        self.buf: list[Tensor | None] | None = None
        self.count: Tensor | None = None  # (E,) int64: gradients seen per member, capped at window
        self.pos: Tensor | None = None  # (E,) int64: next slot per member

    @torch.no_grad()
    def apply(self, params: Sequence[Tensor], active: Tensor | None = None) -> None:
        grads = _grads(params)
        ref = next(g for g in grads if g is not None)
        E, dev = ref.shape[0], ref.device
        if self.buf is None:
            self.buf = [None if g is None else g.new_zeros((self.window, *g.shape)) for g in grads]
            self.count = torch.zeros(E, dtype=torch.int64, device=dev)
            self.pos = torch.zeros(E, dtype=torch.int64, device=dev)
        act = torch.ones(E, dtype=torch.bool, device=dev) if active is None else torch.as_tensor(active, dtype=torch.bool, device=dev)
        members = torch.arange(E, device=dev)[act]
        pos = self.pos[act]
        count = torch.clamp(self.count + act.long(), max=self.window)  # after this push
        filt = act & ((count == self.window) if self.warmup else torch.ones_like(act))
        for i, g in enumerate(grads):
            if g is None:
                continue
            buf = self.buf[i]
            buf[pos, members] = g[act]  # push the current gradient of the active members
            mean = buf.sum(0) / count.clamp(min=1).to(g.dtype).view(-1, *([1] * (g.dim() - 1)))
            f = filt.view(-1, *([1] * (g.dim() - 1)))
            g.copy_(torch.where(f, g + mean * self.lamb, g))
        self.count = count
        self.pos = torch.where(act, (self.pos + 1) % self.window, self.pos)

    def state_dict(self) -> dict:
        return {"kind": "ma", "window": self.window, "lamb": self.lamb, "warmup": self.warmup,
                "buf": None if self.buf is None else [None if t is None else t.clone() for t in self.buf],
                "count": None if self.count is None else self.count.clone(),
                "pos": None if self.pos is None else self.pos.clone()}

    def load_state_dict(self, d: dict) -> None:
        self.window, self.lamb, self.warmup = int(d["window"]), float(d["lamb"]), bool(d["warmup"])
        self.buf = None if d["buf"] is None else [None if t is None else t.clone() for t in d["buf"]]
        self.count = None if d["count"] is None else d["count"].clone()
        self.pos = None if d["pos"] is None else d["pos"].clone()


def make_grad_filter(train_cfg) -> GrokfastEMA | GrokfastMA | None:
    """The filter a TrainConfig asks for (grokfast = "ema" | "ma" | "none")."""
    if train_cfg.grokfast == "ema":
        return GrokfastEMA(train_cfg.grokfast_alpha, train_cfg.grokfast_lamb)
    if train_cfg.grokfast == "ma":
        return GrokfastMA(train_cfg.grokfast_window, train_cfg.grokfast_lamb)
    return None


@torch.no_grad()
def orthogonal_grad(params: Sequence[Tensor], keep_norm: bool = True, eps: float = 1e-30) -> None:
    """⊥Grad (Prieto et al. 2025), in place, for each parameter tensor and each member e:

        g⊥ = g − (⟨w, g⟩ / (⟨w, w⟩ + eps)) w          (the paper's ∇⊥L, eps as in the authors' code)
        g  ← g⊥ · ‖g‖ / (‖g⊥‖ + eps)                  (keep_norm: the authors' code rescales; the
                                                       paper's formula does not)

    A zero weight tensor (e.g. a bias at init) leaves its gradient unchanged, as in the reference.
    """
    for p in params:
        g = p.grad
        if g is None:
            continue
        E = p.shape[0]
        w2, g2 = p.detach().reshape(E, -1), g.reshape(E, -1)
        proj = (w2 * g2).sum(1, keepdim=True) / ((w2 * w2).sum(1, keepdim=True) + eps)
        g_orth = g2 - proj * w2
        if keep_norm:
            g_orth = g_orth * (g2.norm(dim=1, keepdim=True) / (g_orth.norm(dim=1, keepdim=True) + eps))
        g.copy_(g_orth.view_as(g))


@torch.no_grad()
def softmax_collapse_fraction(logits: Tensor, mask: Tensor | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Fraction of examples in softmax collapse, per member: logits (E, C, n) -> (E,).

    An example has collapsed when S = Σ_c exp(z_c − max_c z) == 1 exactly in `dtype` (float32, the
    precision the loss is computed in), as Prieto et al.'s logger measures it: every non-maximal
    term was absorbed, so the softmax is exactly one-hot. `mask` (E, n) {0, 1} restricts the count
    to some examples (e.g. each member's training set).
    """
    z = logits.to(dtype)
    s = torch.exp(z - z.amax(dim=1, keepdim=True)).sum(dim=1)  # (E, n)
    return _masked_mean((s == 1).to(torch.float64), mask)


@torch.no_grad()
def zero_loss_fraction(logits: Tensor, y: Tensor, mask: Tensor | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Fraction of examples whose cross-entropy is exactly 0 in `dtype` (Prieto et al.'s
    "zero_terms"): their gradient vanishes. logits (E, C, n), y (n,) or (E, n) -> (E,)."""
    if y.dim() == 1:
        y = y.expand(logits.shape[0], -1)
    loss = torch.nn.functional.cross_entropy(logits.to(dtype), y, reduction="none")
    return _masked_mean((loss == 0).to(torch.float64), mask)


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1)
