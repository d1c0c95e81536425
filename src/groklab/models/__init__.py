"""Ensemble models. Every model is an nn.Module whose parameters carry a leading axis E.

The contract (what the engine, optimizers and recorder rely on):
    model(a, b) -> outputs (E, C, n)      a, b int64 [n] (shared by all members) or [E, n]; C = classes
    model.muon_params() -> list[Parameter]  matrices Muon orthogonalises (the rest get Adam)
    model.weight_norms() -> {"w_norm": (E,), "v_norm": (E,)}   first layer(s) / top layer
    model.export() -> {name: tensor}          what weights.safetensors holds (leading axis E)
    model.load_exported(tensors)              the inverse of export()
    model.expected_shapes() -> {name: shape}  one member's shapes, to check --init files
Members are initialised from their own seeds, so member e of an ensemble equals a single run.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from groklab.models.config import ModelConfig
from groklab.models.li2 import Li2Net, ridge_top_layer

__all__ = ["Li2Net", "build_model", "ridge_top_layer"]


def build_model(cfg: ModelConfig, order: int, seeds: Sequence[int]) -> nn.Module:
    """Build the ensemble on the CPU in float32 (init is device- and dtype-independent);
    the caller moves it with .to(device, dtype)."""
    if cfg.model == "li2":
        return Li2Net(order, cfg.width, cfg.act, seeds, init_scale=cfg.init_scale)
    if cfg.model == "transformer":
        from groklab.models.transformer import Transformer

        return Transformer(order, cfg, seeds)
    if cfg.model == "embed-mlp":
        from groklab.models.embed_mlp import EmbedMLP

        return EmbedMLP(order, cfg, seeds)
    raise ValueError(f"unknown model {cfg.model!r}")
