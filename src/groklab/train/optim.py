"""Optimizers for ensemble parameters (leading axis E), with per-member learning rate and weight decay.

Why not torch.optim directly: torch's optimizers take one scalar lr / weight_decay per param
group, but an ensemble packs E members into each tensor and a sweep gives each member its own lr,
wd, and an `active` flag (a stopped member must not move). The update rules below are torch's own
formulas (Adam, AdamW, SGD with momentum) written with lr and wd as (E,) tensors broadcast over
each member's slice; tests check them against torch.optim member by member in float64.

Muon is the current Li2 code's (science.md §2; luckmatters cogo/modular_addition_simple2.py builds
MuonEnhanced(model.W.parameters(), beta1=0.9, beta2=0.99, nesterov=False, use_bf16=False,
update_rms_compensate=False, update_spectral_compensate=False) from cogo/muon_opt.py), per member:
    W <- W (1 - lr·η)                 decoupled decay, before the update (decay_after_update=False)
    m <- m + (1 - 0.99) (g - m)       EMA momentum (lerp); no Nesterov, so beta1 is unused
    W <- W - lr · NS5(m)              NS5 on the whole matrix (Li2Net: W, K x 2M), no RMS/spectral scale
NS5 = zeropower_via_newtonschulz5: Frobenius-normalise (+1e-7), five quintic steps with the five
coefficient tuples below, on the wide orientation. Muon acts on model.muon_params() (Li2Net: W);
every other parameter gets torch Adam with coupled L2, as the Li2 code's Adam on V.
"""

from __future__ import annotations

import abc
from typing import Iterable

import torch
from torch import Tensor

from groklab.train.config import TrainConfig

# Keller Jordan's quintic Newton–Schulz coefficients, as the Li2 code uses them (one tuple per step).
NS_COEFFS = ((4.01, -9.22, 5.80), (3.49, -6.38, 3.23), (3.34, -6.21, 3.20), (3.64, -7.48, 4.43), (3.46, -5.35, 2.85))


def newton_schulz(G: Tensor) -> Tensor:
    """Approximate the orthogonal factor U V^T of G = U S V^T, batched over leading axes.
    G (..., r, c). Works in G's dtype (the Li2 runs use use_bf16=False)."""
    X = G
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in NS_COEFFS:
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.mT if tall else X


def _per_member(x: Tensor, p: Tensor) -> Tensor:
    """(E,) -> (E, 1, ..., 1) to broadcast over a parameter of shape (E, ...)."""
    return x.view(-1, *([1] * (p.dim() - 1)))


class EnsembleOptimizer(abc.ABC):
    """Base: holds params, per-member lr / wd / active tensors, and per-param state tensors.

    lr, wd: (E,) tensors (or floats). `active` (E,) bool: inactive members are not updated (their
    effective lr is 0); the sweep engine uses it for members that have stopped or diverged.
    """

    def __init__(self, params: Iterable[Tensor], lr: Tensor, wd: Tensor):
        self.params = [p for p in params]
        E = self.params[0].shape[0]
        ref = self.params[0]
        self.lr = torch.as_tensor(lr, dtype=ref.dtype, device=ref.device).expand(E).clone()
        self.wd = torch.as_tensor(wd, dtype=ref.dtype, device=ref.device).expand(E).clone()
        self.active = torch.ones(E, dtype=torch.bool, device=ref.device)
        self.step_count = 0
        self.lr_scale = 1.0  # schedule factor (TrainConfig.warmup), set by the engine before each step
        self.state: list[dict[str, Tensor]] = [{} for _ in self.params]

    def effective_lr(self) -> Tensor:
        return self.lr * self.active.to(self.lr.dtype) * self.lr_scale

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "lr": self.lr, "wd": self.wd, "active": self.active,
                "state": [{k: v.clone() for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, d: dict) -> None:
        self.step_count = int(d["step_count"])
        self.lr.copy_(d["lr"])
        self.wd.copy_(d["wd"])
        self.active.copy_(d["active"])
        self.state = [{k: v.to(self.params[i].device) for k, v in s.items()} for i, s in enumerate(d["state"])]

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        lr = self.effective_lr()
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(p, p.grad, self.state[i], _per_member(lr, p), _per_member(self.wd, p))

    @abc.abstractmethod
    def _update(self, p: Tensor, g: Tensor, st: dict[str, Tensor], lr: Tensor, wd: Tensor) -> None:
        """Update one parameter in place; lr, wd broadcast per member."""


class SGD(EnsembleOptimizer):
    """torch.optim.SGD(momentum=μ, dampening=0, nesterov=False, weight_decay=wd): coupled L2."""

    def __init__(self, params, lr, wd, momentum: float = 0.9):
        super().__init__(params, lr, wd)
        self.momentum = momentum

    def _update(self, p, g, st, lr, wd):
        g = g + wd * p
        if self.momentum:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = g.clone()
            else:
                buf.mul_(self.momentum).add_(g)
            g = buf
        p.sub_(lr * g)


class Adam(EnsembleOptimizer):
    """torch.optim.Adam (coupled L2 weight decay: g <- g + wd·p), or AdamW (`decoupled=True`:
    p <- p (1 - lr·wd) before the Adam step)."""

    def __init__(self, params, lr, wd, betas=(0.9, 0.999), eps: float = 1e-8, decoupled: bool = False):
        super().__init__(params, lr, wd)
        self.betas, self.eps, self.decoupled = betas, eps, decoupled

    def _update(self, p, g, st, lr, wd):
        b1, b2 = self.betas
        if self.decoupled:
            p.mul_(1 - lr * wd)
        else:
            g = g + wd * p
        if not st:
            st["exp_avg"] = torch.zeros_like(p)
            st["exp_avg_sq"] = torch.zeros_like(p)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        t = self.step_count
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        denom = (v.sqrt() / bc2 ** 0.5).add_(self.eps)
        p.sub_((lr / bc1) * m / denom)


class Muon(EnsembleOptimizer):
    """Muon on (E, r, c) matrices as the Li2 code runs it (see module docstring): one NS5 per
    member's whole matrix. NS5 works on the wide orientation, so a matrix and its transpose get
    the same update (transposed): Li2Net's stored W^T (2M, K) is updated exactly as W (K, 2M)."""

    def __init__(self, params, lr, wd, beta: float = 0.99):
        super().__init__(params, lr, wd)
        self.beta = beta

    def _update(self, p, g, st, lr, wd):
        p.mul_(1 - lr * wd)
        if not st:
            st["momentum_buffer"] = torch.zeros_like(p)
        m = st["momentum_buffer"]
        m.lerp_(g, 1 - self.beta)
        p.sub_(lr * newton_schulz(m))  # (E, r, c): batched over members


class Combined:
    """Several optimizers stepped together (Muon on the matrices, Adam on the rest)."""

    def __init__(self, parts: list[EnsembleOptimizer]):
        self.parts = parts

    @property
    def active(self) -> Tensor:
        return self.parts[0].active

    def set_active(self, active: Tensor) -> None:
        for o in self.parts:
            o.active.copy_(active)

    def set_lr_scale(self, scale: float) -> None:
        for o in self.parts:
            o.lr_scale = scale

    def zero_grad(self) -> None:
        for o in self.parts:
            o.zero_grad()

    def step(self) -> None:
        for o in self.parts:
            o.step()

    def state_dict(self) -> dict:
        return {"parts": [o.state_dict() for o in self.parts]}

    def load_state_dict(self, d: dict) -> None:
        for o, s in zip(self.parts, d["parts"]):
            o.load_state_dict(s)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: Tensor, wd: Tensor,
                    exclude: Iterable[Tensor] = ()) -> Combined:
    """The optimizer for `model`'s trainable parameters; lr, wd are (E,) tensors.
    `exclude`: parameters not trained by gradient (the ridge top layer is solved in closed form)."""
    skip = {id(p) for p in exclude}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in skip]
    betas = (cfg.beta1, cfg.beta2)
    if cfg.opt == "sgd":
        return Combined([SGD(params, lr, wd, momentum=cfg.momentum)])
    if cfg.opt == "adam":
        return Combined([Adam(params, lr, wd, betas)])
    if cfg.opt == "adamw":
        return Combined([Adam(params, lr, wd, betas, decoupled=True)])
    if cfg.opt == "muon":
        mats = [p for p in model.muon_params() if id(p) not in skip]
        ids = {id(p) for p in mats}
        rest = [p for p in params if id(p) not in ids]
        parts: list[EnsembleOptimizer] = [Muon(mats, lr, wd, beta=cfg.muon_momentum)]
        if rest:
            parts.append(Adam(rest, lr, wd, betas))
        return Combined(parts)
    raise ValueError(f"unknown optimizer {cfg.opt!r}")
