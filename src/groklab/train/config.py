"""Run configuration: three small frozen dataclasses (task, model, train), validated at construction.

A bad value raises `GroklabError` naming the field (as its command-line option), the value and
what is allowed; the CLI prints that line and exits 2. Field names are unique across the three
dataclasses, so a sweep can address any field by its bare name (`RunConfig.from_flat`).

Defaults are the Li2 code's defaults (science.md §2): K = 512, sqr, MSE, Adam lr 1e-3, wd 1e-4,
3000 full-batch steps, 30% training data.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields
from typing import Any

from groklab.errors import GroklabError, bad_value, check, number_in, one_of
from groklab.models.config import ACTIVATIONS, LOSSES, MODELS, ModelConfig
from groklab.tasks.config import TaskConfig

__all__ = ["TaskConfig", "ModelConfig", "TrainConfig", "RunConfig", "MODELS", "ACTIVATIONS", "LOSSES", "OPTIMIZERS"]

OPTIMIZERS = ("sgd", "adam", "adamw", "muon")
DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer and schedule. Full batch unless `batch_size` is set (science.md §2).

    Weight decay `wd` is coupled L2 for sgd/adam (torch's `weight_decay`), decoupled for adamw and
    for the Muon part of `muon` (Muon on W, Adam on V, as in the original code).
    Stopping rules (both off by default): `stop_grokked` N stops a member once test accuracy
    >= 0.99 has held for N steps; `stop_plateau` N stops a member once train accuracy is 1.0 and
    test accuracy has not moved by more than 0.01 for N steps.
    """

    opt: str = "adam"
    lr: float = 1e-3
    wd: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.9
    muon_momentum: float = 0.99
    steps: int = 3000
    eval_every: int = 10
    ckpt_every: int = 500
    seeds: tuple[int, ...] = (0,)
    batch_size: int | None = None
    dtype: str = "float32"
    device: str = "auto"
    stop_grokked: int | None = None
    stop_plateau: int | None = None
    # Gradient tricks from the peer codebases (applied after backward, before the optimizer step):
    # Grokfast (Lee et al. 2024) "ema" (alpha, lamb) or "ma" (window, lamb); ⊥Grad (Prieto et al. 2025).
    grokfast: str = "none"
    grokfast_alpha: float = 0.98
    grokfast_lamb: float = 2.0
    grokfast_window: int = 100
    orth_grad: bool = False
    # Linear lr warm-up over the first `warmup` updates, as Nanda's and Grokfast's code
    # (LambdaLR(lambda s: min(s / warmup, 1))): update s (0-based) uses lr · min(s / warmup, 1).
    warmup: int = 0

    def __post_init__(self) -> None:
        one_of("opt", self.opt, OPTIMIZERS)
        number_in("lr", self.lr, lo=0, lo_open=True)
        number_in("wd", self.wd, lo=0)
        number_in("beta1", self.beta1, lo=0, hi=1, hi_open=True)
        number_in("beta2", self.beta2, lo=0, hi=1, hi_open=True)
        number_in("momentum", self.momentum, lo=0, hi=1, hi_open=True)
        number_in("muon_momentum", self.muon_momentum, lo=0, hi=1, hi_open=True)
        number_in("steps", self.steps, lo=1, integer=True)
        number_in("eval_every", self.eval_every, lo=1, integer=True)
        number_in("ckpt_every", self.ckpt_every, lo=1, integer=True)
        seeds = self.seeds
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            seeds = (seeds,)
        check(isinstance(seeds, (tuple, list)) and len(seeds) > 0, "seeds", self.seeds, "must be a non-empty list of integers, e.g. 0,1,2")
        for s in seeds:
            check(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63, "seeds", s, "each seed must be an integer in [0, 2**63)")
        check(len(set(seeds)) == len(seeds), "seeds", ",".join(map(str, seeds)), "seeds must be distinct")
        object.__setattr__(self, "seeds", tuple(seeds))
        number_in("batch_size", self.batch_size, lo=1, integer=True, optional=True)
        one_of("dtype", self.dtype, DTYPES)
        one_of("device", self.device, DEVICES)
        number_in("stop_grokked", self.stop_grokked, lo=1, integer=True, optional=True)
        number_in("stop_plateau", self.stop_plateau, lo=1, integer=True, optional=True)
        one_of("grokfast", self.grokfast, ("none", "ema", "ma"))
        number_in("grokfast_alpha", self.grokfast_alpha, lo=0, hi=1, hi_open=True)
        number_in("grokfast_lamb", self.grokfast_lamb, lo=0)
        number_in("grokfast_window", self.grokfast_window, lo=1, integer=True)
        number_in("warmup", self.warmup, lo=0, integer=True)
        check(isinstance(self.orth_grad, bool), "orth_grad", self.orth_grad, "must be true or false")


_SECTIONS = {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. `RunConfig.from_flat({"group": "Z47", "lr": 1e-2})` builds one
    from bare field names (what sweeps and the CLI use); `to_dict()` / `from_dict()` round-trip JSON."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.model.model == "li2":
            check(self.model.loss in ("mse", "ce", "stablemax"), "loss", self.model.loss, "li2 supports mse, ce, stablemax")

    @staticmethod
    def field_names() -> dict[str, str]:
        """Map every bare field name to its section ("lr" -> "train")."""
        return {f.name: sec for sec, cls in _SECTIONS.items() for f in fields(cls)}

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> "RunConfig":
        owner = cls.field_names()
        parts: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
        for key, value in flat.items():
            if key not in owner:
                close = difflib.get_close_matches(str(key), list(owner), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise bad_value(key, value, f"unknown config field{hint}; known: {', '.join(sorted(owner))}")
            if key == "seeds" and isinstance(value, list):
                value = tuple(value)
            parts[owner[key]][key] = value
        return cls(**{s: _SECTIONS[s](**kw) for s, kw in parts.items()})

    def flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for sec in _SECTIONS:
            out.update(dataclasses.asdict(getattr(self, sec)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {sec: dataclasses.asdict(getattr(self, sec)) for sec in _SECTIONS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        if not isinstance(d, dict) or set(d) - set(_SECTIONS):
            raise GroklabError(f"config: expected sections {', '.join(_SECTIONS)}, got {sorted(d) if isinstance(d, dict) else type(d).__name__}")
        flat: dict[str, Any] = {}
        for sec, kw in d.items():
            if not isinstance(kw, dict):
                raise GroklabError(f"config: section {sec!r} must be a mapping")
            flat.update(kw)
        return cls.from_flat(flat)

    def replace(self, **flat: Any) -> "RunConfig":
        merged = self.flat()
        merged.update(flat)
        return RunConfig.from_flat(merged)
