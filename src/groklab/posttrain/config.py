"""The post-training comparison's configuration: one frozen dataclass, validated at construction.

A bad value raises `GroklabError` naming the field (as its command-line option), the value and what
is allowed, before anything is written. Defaults are the full-size comparison (docs/posttrain.md);
`PosttrainConfig.small()` is the reduced one the tests and the committed numbers use.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from typing import Any

from groklab.errors import bad_value, check

__all__ = ["PosttrainConfig", "ARMS", "BASELINES", "OPTIMIZERS"]

# sft: cross-entropy on gold answers. rl: policy gradient with a 0/1 verifier reward on the final
# answer. rl_kl: the same plus beta * KL(pi || pi_base) (exact, over the vocabulary, at each sampled prefix).
ARMS = ("sft", "rl", "rl_kl")
# How the policy gradient's advantage is formed from a group of G samples of one prompt (objectives.py).
BASELINES = ("grpo", "mean", "loo", "none")
OPTIMIZERS = ("adam", "sgd")  # post-training: torch.optim.Adam, or torch.optim.SGD with momentum 0.9


def _int(name: str, v: Any, lo: int, hi: int | None = None) -> None:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
    check(ok, name, v, f"must be an integer in [{lo}, {hi}]" if hi is not None else f"must be an integer >= {lo}")


def _float(name: str, v: Any, lo: float, hi: float | None = None, lo_open: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)
    span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if hi is not None else f"{'>' if lo_open else '>='} {lo:g}"
    check(ok, name, v, f"must be a number {'in ' if hi is not None else ''}{span}")


@dataclass(frozen=True)
class PosttrainConfig:
    """Base model on both rules, then SFT vs RL on rule r0 only (members = arms x pools x seeds)."""

    # task (rules.py)
    group: str = "Z23"
    r0: str = "power:2"          # r0 = a o phi(b) with phi(x) = x^k, or relabel:n (last n elements read as element M-n-1)
    hops: int = 2                # answers of 1 step (a o b) or 2 steps ((a o b) o c)
    frac: float = 0.5            # share of operand tuples in the base's training split (same tuples for both rules)
    split_seed: int = 0
    # model (model.py)
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 128
    n_layers: int = 1
    # base training on both rules
    base_steps: int = 4000
    base_batch: int = 512
    base_lr: float = 3e-3
    base_target: float = 0.6     # snapshot each seed's base when its mean held-out accuracy (r0, r1) first reaches this
    # post-training on r0 only
    arms: tuple[str, ...] = ARMS
    pools: tuple[int, ...] = (0, 64)  # distinct r0 prompts each member post-trains on (0 = all r0 training prompts)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    post_steps: int = 400
    samples: int = 256           # sequences per step per member, the same for every arm (matched samples)
    group_size: int = 8          # RL: samples per prompt (samples / group_size prompts per step)
    post_lr: float = 3e-4
    post_opt: str = "adam"       # the same optimizer and lr for every arm
    kl_coef: float = 1.0         # beta of the rl_kl arm
    baseline: str = "grpo"
    temperature: float = 1.0
    # measurement
    eval_every: int = 25
    eval_prompts: int = 1024     # held-out prompts per rule for the accuracy curves (0 = all)
    top_k: int = 4               # k of the top-k singular subspaces (diagnostics.py)

    def __post_init__(self) -> None:
        check(isinstance(self.group, str) and bool(self.group), "group", self.group, "a group name such as Z23, D7, S4")
        m = re.fullmatch(r"(power|relabel):(\d+)", str(self.r0))
        check(m is not None, "r0", self.r0, "expected power:<k> (r0 = a o b^k) or relabel:<n> (last n elements relabelled)")
        _int("hops", self.hops, 1, 2)
        _float("frac", self.frac, 0.0, 1.0, lo_open=True)
        check(self.frac < 1.0, "frac", self.frac, "must be in (0, 1): the held-out prompts measure accuracy")
        _int("split_seed", self.split_seed, 0)
        _int("d_model", self.d_model, 1)
        _int("n_heads", self.n_heads, 1)
        check(self.d_model % self.n_heads == 0, "n_heads", self.n_heads, f"must divide --d-model {self.d_model}")
        _int("d_mlp", self.d_mlp, 1)
        _int("n_layers", self.n_layers, 1, 4)
        _int("base_steps", self.base_steps, 1)
        _int("base_batch", self.base_batch, 1)
        _float("base_lr", self.base_lr, 0.0, lo_open=True)
        _float("base_target", self.base_target, 0.0, 1.0, lo_open=True)
        check(isinstance(self.arms, tuple) and len(self.arms) > 0 and all(a in ARMS for a in self.arms)
              and len(set(self.arms)) == len(self.arms), "arms", ",".join(map(str, self.arms)),
              "a comma-separated subset of " + ",".join(ARMS))
        check(isinstance(self.pools, tuple) and len(self.pools) > 0 and all(isinstance(p, int) and p >= 0 for p in self.pools)
              and len(set(self.pools)) == len(self.pools), "pools", ",".join(map(str, self.pools)),
              "distinct integers >= 0 (0 = all r0 training prompts)")
        check(isinstance(self.seeds, tuple) and len(self.seeds) > 0 and all(isinstance(s, int) and s >= 0 for s in self.seeds)
              and len(set(self.seeds)) == len(self.seeds), "seeds", ",".join(map(str, self.seeds)), "distinct integers >= 0")
        _int("post_steps", self.post_steps, 1)
        _int("group_size", self.group_size, 2)
        _int("samples", self.samples, self.group_size)
        check(self.samples % self.group_size == 0, "samples", self.samples,
              f"must be a multiple of --group-size {self.group_size} (RL sees samples/group_size prompts x group_size answers)")
        _float("post_lr", self.post_lr, 0.0, lo_open=True)
        check(self.post_opt in OPTIMIZERS, "post_opt", self.post_opt, "expected one of " + ", ".join(OPTIMIZERS))
        _float("kl_coef", self.kl_coef, 0.0)
        check(self.baseline in BASELINES, "baseline", self.baseline, "expected one of " + ", ".join(BASELINES))
        _float("temperature", self.temperature, 0.0, lo_open=True)
        _int("eval_every", self.eval_every, 1)
        _int("eval_prompts", self.eval_prompts, 0)
        _int("top_k", self.top_k, 1)

    @property
    def n_members(self) -> int:
        return len(self.arms) * len(self.pools) * len(self.seeds)

    def members(self) -> list[tuple[str, int, int]]:
        """(arm, pool, seed) of each post-training member, in the ensemble's order."""
        return [(a, p, s) for a in self.arms for p in self.pools for s in self.seeds]

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "PosttrainConfig":
        names = {f.name for f in fields(cls)}
        for k in d:
            if k not in names:
                raise bad_value(k, d[k], "unknown option; known: " + ", ".join(sorted(names)))
        tuples = {"arms", "pools", "seeds"}
        return cls(**{k: (tuple(v) if k in tuples and isinstance(v, list) else v) for k, v in d.items()})

    def replace(self, **changes: Any) -> "PosttrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def small(cls) -> "PosttrainConfig":
        """The reduced comparison that fits a shared CPU in a few minutes (docs/posttrain.md)."""
        return cls(group="Z17", base_batch=256, pools=(0, 32), post_steps=200, samples=128, eval_every=10,
                   eval_prompts=512)

