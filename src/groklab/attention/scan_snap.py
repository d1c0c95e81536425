"""Scan & Snap training: the official Model2 + Dataset2 run, E = seeds x eta_Z x eta_Y/eta_Z at once.

Source: facebookresearch/luckmatters ssl/real-dataset/decoder_only.py (`main`) with the settings of
scan_snap/figure_4.log (Fig. 4) and scan_snap/figure_6.log (Fig. 6). What the code does, and this
loop does the same, step for step:
  - two SGD optimizers, K1 (= Y) with lr_y = lr_z * lr_y_multi_on_z and K2 (= Z) with lr_z, both with
    momentum 0.9 (the yaml default the paper's command lines do not override) and weight decay 0;
  - per iteration: one batch of 128 from Dataset2.generate, loss, backward, step Y, step Z;
  - zero_init=true sets K1 = K2 = 0 (Fig. 4); otherwise the nn.Linear init stays (Fig. 6).
The config fields lr_y / lr_z of the yaml default to the *strings* "none," so the script only runs
with lr_z and lr_y_multi_on_z given; here they are required numbers.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field

import torch

from groklab.errors import check
from .snap_data import DataConfig, build_facts, code_stream
from .snap_model import c_attention, c_entropy, c_entropy_distinct, forward_backward

__all__ = ["SnapConfig", "train_snap", "snap_time", "freeze_time", "FIG4", "fig6_config"]


@dataclass(frozen=True)
class SnapConfig:
    data: DataConfig = field(default_factory=DataConfig)
    seeds: tuple[int, ...] = (2,)
    lr_z: tuple[float, ...] = (1.0,)
    lr_y_multi_on_z: tuple[float, ...] = (1.0,)
    niter: int = 100
    batchsize: int = 128
    momentum: float = 0.9          # decoder_only.yaml opt.momentum
    wd: float = 0.0
    zero_init: bool = True
    normalize: bool = True
    residual: bool = False
    dtype: str = "float32"         # the code's; float64 for checks
    snap_frac: float = 0.05        # snap = |dZ| per step falls below this fraction of its peak
    keep_c: bool = False           # keep c_n(t) for every member, fact and iteration (Fig. 4 heatmap)

    def __post_init__(self):
        if isinstance(self.data, dict):
            object.__setattr__(self, "data", DataConfig(**self.data))
        for f in ("seeds", "lr_z", "lr_y_multi_on_z"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
            check(len(getattr(self, f)) >= 1, f, getattr(self, f), "needs at least one value")
        check(all(isinstance(s, int) and s >= 0 for s in self.seeds), "seeds", self.seeds, "must be integers >= 0")
        check(all(v > 0 for v in self.lr_z), "lr_z", self.lr_z,
              "must be > 0 (the code's yaml default is the string 'none,', so it must be set)")
        check(all(v > 0 for v in self.lr_y_multi_on_z), "lr_y_multi_on_z", self.lr_y_multi_on_z, "must be > 0")
        check(isinstance(self.niter, int) and self.niter >= 1, "niter", self.niter, "must be an integer >= 1")
        check(isinstance(self.batchsize, int) and self.batchsize >= 1, "batchsize", self.batchsize, "must be an integer >= 1")
        check(0 <= self.momentum < 1, "momentum", self.momentum, "must be in [0, 1)")
        check(self.wd >= 0, "wd", self.wd, "must be >= 0")
        check(self.dtype in ("float32", "float64"), "dtype", self.dtype, "must be float32 or float64")
        check(0 < self.snap_frac < 1, "snap_frac", self.snap_frac, "must be in (0, 1)")

    def members(self) -> list[tuple[int, float, float]]:
        """(seed, lr_z, lr_y_multi_on_z) of each member, seed outermost."""
        return list(itertools.product(self.seeds, self.lr_z, self.lr_y_multi_on_z))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data"] = self.data.to_dict()
        return d


# Fig. 4: the command line of scan_snap/figure_4.log (M = 34).
FIG4 = SnapConfig(data=DataConfig(num_last=2, num_next_per_last=1, num_common_per_last=0), seeds=(2,),
                  lr_z=(1.0,), lr_y_multi_on_z=(1.0,), zero_init=True, keep_c=True)


def fig6_config(num_last: int, seeds=tuple(range(1, 11)), lr_z=(0.5, 1.0, 2.0, 3.0), ratios=(1.0, 2.0, 5.0, 10.0)) -> SnapConfig:
    """One panel of Fig. 6: the command line of scan_snap/figure_6.log (num_next_per_last stays at the
    yaml's 2, zero_init=false)."""
    return SnapConfig(data=DataConfig(num_last=num_last, num_next_per_last=2, num_common_per_last=0), seeds=tuple(seeds),
                      lr_z=tuple(lr_z), lr_y_multi_on_z=tuple(ratios), zero_init=False)


def snap_time(dz: torch.Tensor, frac: float) -> torch.Tensor:
    """dz: (T, E) |Z(t+1) - Z(t)|_F. First t after the peak with dz < frac * peak; -1 if never."""
    T, E = dz.shape
    peak, at = dz.max(0)
    t = torch.arange(T).unsqueeze(1)
    below = (dz < frac * peak) & (t > at)
    first = torch.where(below, t, torch.full_like(t, T)).min(0).values
    return torch.where(first < T, first, torch.full_like(first, -1))


def freeze_time(h: torch.Tensor, final: torch.Tensor, frac: float) -> torch.Tensor:
    """h: (T, E) an attention summary over time (the entropy of c_n), final: (E,) its end value.
    First t from which h stays within frac * |h(0) - final| of the end value (0 if it never moved)."""
    dev = (h - final).abs()                                           # (T, E)
    tol = frac * (h[0] - final).abs()
    later_max = dev.flip(0).cummax(0).values.flip(0)                  # max over t' >= t
    ok = later_max <= tol
    T = h.shape[0]
    t = torch.arange(T).unsqueeze(1).expand_as(ok)
    return torch.where(ok, t, torch.full_like(t, T)).min(0).values


def train_snap(cfg: SnapConfig, progress=None) -> dict:
    """Run every member; returns tensors: loss, entropy, dz, dy (niter, E); c (niter+1, E, N, K)
    when keep_c; final Y, Z (E, M, M); facts; snap (E,) and the wall time."""
    t0 = time.perf_counter()
    dt = torch.float64 if cfg.dtype == "float64" else torch.float32
    facts = build_facts(cfg.data)
    M, L = facts.M, cfg.data.L
    members = cfg.members()
    E, S = len(members), len(cfg.seeds)
    G = E // S  # members per seed: the learning-rate settings share the seed's data and init
    streams = [code_stream(facts, L, s, cfg.batchsize, cfg.niter) for s in cfg.seeds]
    ctx_all = torch.stack([s[2] for s in streams])        # (S, niter, B, L-1)
    q_all = torch.stack([s[3] for s in streams])          # (S, niter, B)
    lab_all = torch.stack([s[4] for s in streams])
    if cfg.zero_init:
        Y = torch.zeros(E, M, M, dtype=dt)
        Z = torch.zeros(E, M, M, dtype=dt)
    else:
        Y = torch.stack([s[0] for s in streams]).to(dt).repeat_interleave(G, 0)
        Z = torch.stack([s[1] for s in streams]).to(dt).repeat_interleave(G, 0)
    lr_z = torch.tensor([m[1] for m in members], dtype=dt).view(E, 1, 1)
    lr_y = lr_z * torch.tensor([m[2] for m in members], dtype=dt).view(E, 1, 1)
    buf_y = torch.zeros_like(Y)
    buf_z = torch.zeros_like(Z)
    out = {k: torch.zeros(cfg.niter, E, dtype=torch.float64) for k in ("loss", "entropy", "entropy_distinct", "dz", "dy")}
    probs, tokens, last = facts.probs, facts.tokens, facts.last
    c_hist = []
    for t in range(cfg.niter):
        c = c_attention(Z, probs, tokens, last)
        if cfg.keep_c:
            c_hist.append(c.double())
        out["entropy"][t] = c_entropy(c).mean(1).double()
        out["entropy_distinct"][t] = c_entropy_distinct(Z, probs, tokens, last, facts.num_distinct).mean(1).double()
        ctx = ctx_all[:, t].repeat_interleave(G, 0)       # (E, B, L-1)
        q = q_all[:, t].repeat_interleave(G, 0)
        lab = lab_all[:, t].repeat_interleave(G, 0)
        loss, dY, dZ = forward_backward(Y, Z, ctx, q, lab, cfg.normalize, cfg.residual)
        out["loss"][t] = loss.double()
        if cfg.wd:
            dY = dY + cfg.wd * Y
            dZ = dZ + cfg.wd * Z
        # torch.optim.SGD, dampening 0, not Nesterov: buf = momentum * buf + grad; p -= lr * buf
        buf_y = cfg.momentum * buf_y + dY
        buf_z = cfg.momentum * buf_z + dZ
        step_y, step_z = lr_y * buf_y, lr_z * buf_z
        Y = Y - step_y
        Z = Z - step_z
        out["dy"][t] = step_y.flatten(1).norm(dim=1).double()
        out["dz"][t] = step_z.flatten(1).norm(dim=1).double()
        if progress is not None:
            progress(t + 1, cfg.niter)
    c = c_attention(Z, probs, tokens, last)
    if cfg.keep_c:
        c_hist.append(c.double())
        out["c"] = torch.stack(c_hist)
    out["entropy_final"] = c_entropy(c).mean(1).double()   # (E,) c_n over all its tokens, at the end
    # (E,) Fig. 6's metric at the end: c_n over the distinct tokens (see c_entropy_distinct)
    out["entropy_distinct_final"] = c_entropy_distinct(Z, probs, tokens, last, facts.num_distinct).mean(1).double()
    out["freeze"] = freeze_time(torch.cat([out["entropy_distinct"], out["entropy_distinct_final"][None]]),
                                out["entropy_distinct_final"], cfg.snap_frac)
    out.update(Y=Y, Z=Z, facts=facts, members=members, snap=snap_time(out["dz"], cfg.snap_frac),
               wall_s=time.perf_counter() - t0)
    return out
