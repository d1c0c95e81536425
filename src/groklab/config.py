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
import math
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import GroklabError, bad_value, check

__all__ = ["TaskConfig", "ModelConfig", "TrainConfig", "RunConfig", "MODELS", "ACTIVATIONS", "LOSSES", "OPTIMIZERS"]

MODELS = ("li2", "transformer", "embed-mlp")
ACTIVATIONS = ("sqr", "relu", "silu", "relusqr")
LOSSES = ("mse", "ce", "stablemax")
OPTIMIZERS = ("sgd", "adam", "adamw", "muon")
DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    check(value in allowed, name, value, "expected one of " + ", ".join(allowed))


def _number(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, hi_open: bool = False, integer: bool = False, optional: bool = False) -> None:
    """Check a number against an interval; the message states the interval in math notation."""
    if value is None:
        check(optional, name, value, "a value is required")
        return
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    check(ok_type and not isinstance(value, bool), name, value, f"must be {kind}")
    check(math.isfinite(value), name, value, "must be finite")
    if lo is not None and hi is not None:
        span = f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        span = f"must be {'>' if lo_open else '>='} {lo:g}"
    else:
        span = f"must be {'<' if hi_open else '<='} {hi:g}"
    if lo is not None:
        check(value > lo if lo_open else value >= lo, name, value, span)
    if hi is not None:
        check(value < hi if hi_open else value <= hi, name, value, span)


@dataclass(frozen=True)
class TaskConfig:
    """Which table to learn and how to split it (science.md §1).

    Exactly one of `frac`, `n_train`, `crit_mult` sets the training-set size; with none given,
    `frac` = 0.3 (the original code's test_size 0.7). `split_seed` None means each ensemble member
    draws its split from its own seed, as the original code does (train_test_split(random_state=seed)).
    """

    group: str = "Z97"
    frac: float | None = None
    n_train: int | None = None
    crit_mult: float | None = None
    split_seed: int | None = None

    def __post_init__(self) -> None:
        check(isinstance(self.group, str) and self.group.strip() != "", "group", self.group, "must be a task name such as Z97, S4, D5, Q8, table:FILE or 'expr:x/y mod 97'")
        given = [n for n in ("frac", "n_train", "crit_mult") if getattr(self, n) is not None]
        if len(given) > 1:
            raise GroklabError(f"--{given[0].replace('_', '-')} and --{given[1].replace('_', '-')}: give only one way to size the training set (--frac, --n-train or --crit-mult)", field=given[1])
        if not given:
            object.__setattr__(self, "frac", 0.3)
        _number("frac", self.frac, lo=0, hi=1, lo_open=True, hi_open=True, optional=True)
        _number("n_train", self.n_train, lo=1, integer=True, optional=True)
        _number("crit_mult", self.crit_mult, lo=0, lo_open=True, optional=True)
        _number("split_seed", self.split_seed, lo=0, integer=True, optional=True)


@dataclass(frozen=True)
class ModelConfig:
    """The network. `li2` is Li2's 2-layer net (science.md §2): one-hot (a, b) -> W -> σ -> V.

    `width` is K, the hidden size. `ridge` λ replaces V by its ridge solution every step (the original
    code's set_weight_reg; needs `mse`). `init` is a .safetensors file with W [K, 2M] or [E, K, 2M]
    and V [M, K] or [E, M, K] to start from. The transformer / embed-mlp fields are used by those models.
    """

    model: str = "li2"
    width: int = 512
    act: str = "sqr"
    loss: str = "mse"
    ridge: float | None = None
    init: str | None = None
    # Transformer (Nanda et al. 2023) and embed-MLP (Gromov 2023) sizes.
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512

    def __post_init__(self) -> None:
        _one_of("model", self.model, MODELS)
        _number("width", self.width, lo=1, integer=True)
        _one_of("act", self.act, ACTIVATIONS)
        _one_of("loss", self.loss, LOSSES)
        _number("ridge", self.ridge, lo=0, lo_open=True, optional=True)
        if self.ridge is not None:
            check(self.loss == "mse", "ridge", self.ridge, "the ridge top layer needs --loss mse (it is a least-squares fit)")
            check(self.model == "li2", "ridge", self.ridge, "the ridge top layer is defined for --model li2 only")
        if self.init is not None:
            check(isinstance(self.init, str) and self.init.endswith(".safetensors"), "init", self.init, "must be a .safetensors file")
        _number("d_model", self.d_model, lo=1, integer=True)
        _number("n_heads", self.n_heads, lo=1, integer=True)
        check(self.d_model % self.n_heads == 0, "n_heads", self.n_heads, f"must divide --d-model {self.d_model}")
        _number("d_mlp", self.d_mlp, lo=1, integer=True)


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
        _one_of("opt", self.opt, OPTIMIZERS)
        _number("lr", self.lr, lo=0, lo_open=True)
        _number("wd", self.wd, lo=0)
        _number("beta1", self.beta1, lo=0, hi=1, hi_open=True)
        _number("beta2", self.beta2, lo=0, hi=1, hi_open=True)
        _number("momentum", self.momentum, lo=0, hi=1, hi_open=True)
        _number("muon_momentum", self.muon_momentum, lo=0, hi=1, hi_open=True)
        _number("steps", self.steps, lo=1, integer=True)
        _number("eval_every", self.eval_every, lo=1, integer=True)
        _number("ckpt_every", self.ckpt_every, lo=1, integer=True)
        seeds = self.seeds
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            seeds = (seeds,)
        check(isinstance(seeds, (tuple, list)) and len(seeds) > 0, "seeds", self.seeds, "must be a non-empty list of integers, e.g. 0,1,2")
        for s in seeds:
            check(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63, "seeds", s, "each seed must be an integer in [0, 2**63)")
        check(len(set(seeds)) == len(seeds), "seeds", ",".join(map(str, seeds)), "seeds must be distinct")
        object.__setattr__(self, "seeds", tuple(seeds))
        _number("batch_size", self.batch_size, lo=1, integer=True, optional=True)
        _one_of("dtype", self.dtype, DTYPES)
        _one_of("device", self.device, DEVICES)
        _number("stop_grokked", self.stop_grokked, lo=1, integer=True, optional=True)
        _number("stop_plateau", self.stop_plateau, lo=1, integer=True, optional=True)
        _one_of("grokfast", self.grokfast, ("none", "ema", "ma"))
        _number("grokfast_alpha", self.grokfast_alpha, lo=0, hi=1, hi_open=True)
        _number("grokfast_lamb", self.grokfast_lamb, lo=0)
        _number("grokfast_window", self.grokfast_window, lo=1, integer=True)
        _number("warmup", self.warmup, lo=0, integer=True)
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
