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
V, no bias). The parametrization is not: Li2Net draws W ~ U(±1/sqrt(M)), V ~ U(±1/sqrt(K)) (torch's
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
from torch import Tensor, nn

from ..config import ModelConfig
from .li2 import ACT, member_generator


class EmbedMLP(nn.Module):
    """E Gromov networks. Parameters: Wa, Wb (E, M, N) = W_a^T, W_b^T (an embedding table per
    operand, one row per symbol, so the gather reads contiguous rows), V (E, M, N)."""

    kind = "embed-mlp"

    def __init__(self, order: int, cfg: ModelConfig, seeds: Sequence[int]):
        super().__init__()
        N, M = cfg.width, order
        self.order, self.width, self.act_name = M, N, cfg.act
        self.act = ACT[cfg.act]
        self.in_scale = 1.0 / math.sqrt(2 * M)  # 1/sqrt(D), D = 2M inputs
        self.out_scale = 1.0 / N  # mean-field readout
        w, v = [], []
        for s in seeds:
            g = member_generator(s)
            w.append(torch.randn(N, 2 * M, generator=g))  # first layer W on [e_a ; e_b]
            v.append(torch.randn(M, N, generator=g))
        W = torch.stack(w)  # (E, N, 2M)
        self.Wa = nn.Parameter(W[:, :, :M].mT.contiguous())  # (E, M, N) = W_a^T
        self.Wb = nn.Parameter(W[:, :, M:].mT.contiguous())  # (E, M, N) = W_b^T
        self.V = nn.Parameter(torch.stack(v))  # (E, M, N)
        self.Wa.muon_shape = self.Wb.muon_shape = (N, M)  # the matrix Muon sees is W_a (N x M)

    @property
    def n_members(self) -> int:
        return self.Wa.shape[0]

    def hidden_pre(self, a: Tensor, b: Tensor) -> Tensor:
        """h = (W_a[:, a] + W_b[:, b]) / sqrt(2M) for a, b (n,) shared or (E, n). Returns (E, n, N)."""
        if a.dim() == 1:
            h = self.Wa.index_select(1, a) + self.Wb.index_select(1, b)
        else:
            E, n, N = self.Wa.shape[0], a.shape[1], self.Wa.shape[2]
            h = self.Wa.gather(1, a[:, :, None].expand(E, n, N)) + self.Wb.gather(1, b[:, :, None].expand(E, n, N))
        return h * self.in_scale

    def features(self, a: Tensor, b: Tensor) -> Tensor:
        """f = σ(h), (E, n, N)."""
        return self.act(self.hidden_pre(a, b))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """o = V f / N, laid out (E, M, n)."""
        return torch.bmm(self.V, self.features(a, b).mT) * self.out_scale  # (E, M, N) @ (E, N, n)

    def muon_params(self) -> list[nn.Parameter]:
        """W_a and W_b (Muon on the first layer, Adam on V, as for Li2Net)."""
        return [self.Wa, self.Wb]

    def weight_norms(self) -> dict[str, Tensor]:
        """Per-member Frobenius norms of the raw parameters, (E,) each: ||W||_F and ||V||_F."""
        w = (self.Wa.square().sum((1, 2)) + self.Wb.square().sum((1, 2))).sqrt()
        return {"w_norm": w, "v_norm": self.V.square().sum((1, 2)).sqrt()}

    def export(self) -> dict[str, Tensor]:
        """Raw weights, Li2Net's layout: W (E, N, 2M) with W[:, :, :M] acting on a, V (E, M, N)."""
        return {"W": torch.cat([self.Wa, self.Wb], dim=1).mT.contiguous().detach(), "V": self.V.detach().contiguous()}

    @torch.no_grad()
    def load_exported(self, tensors: dict[str, Tensor]) -> None:
        W, V = tensors["W"], tensors["V"]  # (E, N, 2M), (E, M, N)
        M = self.order
        self.Wa.copy_(W[..., :M].mT)
        self.Wb.copy_(W[..., M:].mT)
        self.V.copy_(V)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of one member's exported tensors (for --init checks)."""
        return {"W": (self.width, 2 * self.order), "V": (self.order, self.width)}
