"""EmbedMLP: the two-layer network of Gromov 2023, "Grokking modular arithmetic" (science.md §7).

Gromov's network acts on the concatenated one-hot codes x = [e_a ; e_b] (D = 2M inputs) with a
first layer W of width N, a quadratic activation and a readout V, with no biases, in the
mean-field parametrization (weights ~ N(0, 1), the scale carried by constants in the forward pass):

    h = W x / sqrt(D) = (W_a[:, a] + W_b[:, b]) / sqrt(2M)      (N)
    f = σ(h)                                                   (N)    σ = x² in the paper
    o = V f / N                                                (M)

The columns of W_a and W_b are learned N-dimensional embeddings of a and b, summed; the first
layer is a gather, never a one-hot matmul. Width N = cfg.width, σ = cfg.act.

How it differs from Li2Net (science.md §2): the function class is the same (one-hot -> W -> σ ->
V, no bias). The parametrization is not: Li2Net draws W ~ U(±1/sqrt(2M)) (or U(±1/sqrt(M)), init_scale), V ~ U(±1/sqrt(K)) (torch's
nn.Linear default) and has no forward constants; EmbedMLP draws W, V ~ N(0, 1) and multiplies by
1/sqrt(2M) and 1/N in the forward pass. Under Adam the update size is set in parameter units, so
the constants change the effective per-layer learning rates and the effect of weight decay:
training dynamics differ even though the reachable functions do not.

The scale constants are not in the weights: export() writes the raw W (E, N, 2M) and V (E, M, N)
as Li2Net does; o = V σ(W x / sqrt(2M)) / N rebuilds the outputs from them. The reference for the
constants and N(0, 1) init is a public replication of Gromov's baselines (Linear(2p, N) ->
Scale(1/sqrt(2p)) -> x² -> Linear(N, p) -> Scale(1/N), weights normal_(0, 1)).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from groklab.models.config import ModelConfig
from groklab.models.li2 import Li2Net


class EmbedMLP(Li2Net):
    """E Gromov networks: Li2Net's structure and storage (W (E, 2M, N), V (E, M, N)), with Gromov's
    N(0, 1) init and forward constants 1/sqrt(2M) and 1/N."""

    kind = "embed-mlp"

    def __init__(self, order: int, cfg: ModelConfig, seeds: Sequence[int]):
        self.in_scale = 1.0 / math.sqrt(2 * order)  # 1/sqrt(D), D = 2M inputs
        self.out_scale = 1.0 / cfg.width  # mean-field readout
        super().__init__(order, cfg.width, cfg.act, seeds)

    @staticmethod
    def init_member(g: torch.Generator, M: int, N: int, init_scale: str = "joint") -> tuple[Tensor, Tensor]:
        """W (N, 2M) on [e_a ; e_b] and V (M, N), both N(0, 1)."""
        return torch.randn(N, 2 * M, generator=g), torch.randn(M, N, generator=g)
