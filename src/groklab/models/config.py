"""The model's config (Li2Net, the Nanda transformer, the embed-MLP). Validated at construction."""

from __future__ import annotations

from dataclasses import dataclass

from groklab.errors import check, number_in, one_of

__all__ = ["ModelConfig", "MODELS", "ACTIVATIONS", "LOSSES", "INIT_SCALES"]

MODELS = ("li2", "transformer", "embed-mlp")
ACTIVATIONS = ("sqr", "relu", "silu", "relusqr")
LOSSES = ("mse", "ce", "stablemax")
INIT_SCALES = ("joint", "per-operand")


@dataclass(frozen=True)
class ModelConfig:
    """The network. `li2` is Li2's 2-layer net (science.md §2): one-hot (a, b) -> W -> σ -> V.

    `width` is K, the hidden size. `ridge` λ replaces V by its ridge solution every step (the original
    code's set_weight_reg; needs `mse`). `init` is a .safetensors file with W [K, 2M] or [E, K, 2M]
    and V [M, K] or [E, M, K] to start from. The transformer / embed-mlp fields are used by those models.

    `init_scale` (li2 only; science.md §2) picks which revision of the Li2 code's first-layer init
    to follow: "joint" = the current code's single nn.Linear(2M, K), W ~ U(±1/sqrt(2M)) (default);
    "per-operand" = the older layera/layerb = nn.Linear(M, K) each, W_a, W_b ~ U(±1/sqrt(M)) (the
    revision in which the 2.7482 critical-size constant was set; groklab's init before issue 13).
    """

    model: str = "li2"
    width: int = 512
    act: str = "sqr"
    loss: str = "mse"
    ridge: float | None = None
    init: str | None = None
    init_scale: str = "joint"
    # Transformer (Nanda et al. 2023) and embed-MLP (Gromov 2023) sizes.
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512

    def __post_init__(self) -> None:
        one_of("model", self.model, MODELS)
        number_in("width", self.width, lo=1, integer=True)
        one_of("act", self.act, ACTIVATIONS)
        one_of("loss", self.loss, LOSSES)
        number_in("ridge", self.ridge, lo=0, lo_open=True, optional=True)
        if self.ridge is not None:
            check(self.loss == "mse", "ridge", self.ridge, "the ridge top layer needs --loss mse (it is a least-squares fit)")
            check(self.model == "li2", "ridge", self.ridge, "the ridge top layer is defined for --model li2 only")
        if self.init is not None:
            check(isinstance(self.init, str) and self.init.endswith(".safetensors"), "init", self.init, "must be a .safetensors file")
        one_of("init_scale", self.init_scale, INIT_SCALES)
        if self.init_scale != "joint":
            check(self.model == "li2", "init_scale", self.init_scale, "is defined for --model li2 only (embed-mlp draws N(0, 1))")
        number_in("d_model", self.d_model, lo=1, integer=True)
        number_in("n_heads", self.n_heads, lo=1, integer=True)
        check(self.d_model % self.n_heads == 0, "n_heads", self.n_heads, f"must divide --d-model {self.d_model}")
        number_in("d_mlp", self.d_mlp, lo=1, integer=True)
