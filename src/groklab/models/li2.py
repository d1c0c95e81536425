"""Li2Net: the 2-layer network of Li2 (science.md §2, Li2 Eq. 1), ensemble-first.

    x = [e_a ; e_b] (fixed one-hot, not learned)    h = W x = W_a[:, a] + W_b[:, b]    (K)
    f = σ(h)                                                                         (K)
    o = V f                                                                          (M)

W = [W_a | W_b] is K x 2M with no bias, V is M x K with no bias. Every parameter carries a leading
ensemble axis E, so E independent networks train as one tensor program. Because x is one-hot the
first layer is a gather (index_select), never a one-hot matmul: O(K n) instead of O(K M n).

Storage: W is kept transposed as one table (E, 2M, K) - one row of K weights per input symbol,
rows 0..M-1 for the first operand - so the fused first layer (models/pairs.py) reads contiguous
rows. `export()` writes the paper's layout W (E, K, 2M). Muon orthogonalises each member's whole
table at once: NS5(W^T) = NS5(W)^T, the current Li2 code's Muon on its single nn.Linear(2M, K).

Init is PyTorch's nn.Linear default (uniform ±1/sqrt(fan_in)), as in the original code, in one of
its two revisions (science.md §2), chosen by `init_scale` (ModelConfig):
  "joint"        (default) the current Li2 code: W = nn.Linear(2M, K), so W ~ U(±1/sqrt(2M)),
                 drawn as one (K, 2M) matrix;
  "per-operand"  the older layera/layerb revision (where the 2.7482 constant was set):
                 W_a, W_b = nn.Linear(M, K) each, so W_a, W_b ~ U(±1/sqrt(M)), drawn W_a then W_b.
V = nn.Linear(K, M) ~ U(±1/sqrt(K)) in both, drawn after W (the modules' construction order).
Each member draws from its own seed, so member e of an ensemble equals a single run with seed e.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from groklab.models.pairs import ACT, pair_features


def member_generator(seed: int) -> torch.Generator:
    """The CPU generator a member's init is drawn from (device-independent: CUDA runs start equal)."""
    return torch.Generator().manual_seed(int(seed))


class Li2Net(nn.Module):
    """E Li2 networks. Parameters: W (E, 2M, K) = [W_a | W_b]^T, V (E, M, K)."""

    kind = "li2"
    in_scale = 1.0  # h = in_scale · W x   (EmbedMLP changes these two constants)
    out_scale = 1.0  # o = out_scale · V f

    def __init__(self, order: int, width: int, act: str, seeds: Sequence[int], init_scale: str = "joint"):
        super().__init__()
        K, M = width, order
        self.order, self.width, self.act_name = M, K, act
        W, V = zip(*(self.init_member(member_generator(s), M, K, init_scale) for s in seeds))
        self.W = nn.Parameter(torch.stack(W).mT.contiguous())  # (E, 2M, K)
        self.V = nn.Parameter(torch.stack(V))  # (E, M, K)

    @staticmethod
    def init_member(g: torch.Generator, M: int, K: int, init_scale: str = "joint") -> tuple[Tensor, Tensor]:
        """One member's W (K, 2M) and V (M, K), drawn in nn.Linear's order (W, then V).
        "joint": W ~ U(±1/sqrt(2M)) as one (K, 2M) draw; "per-operand": W_a then W_b ~ U(±1/sqrt(M))."""
        if init_scale == "joint":
            w = torch.empty(K, 2 * M).uniform_(-(2 * M) ** -0.5, (2 * M) ** -0.5, generator=g)
        elif init_scale == "per-operand":
            wa = torch.empty(K, M).uniform_(-M ** -0.5, M ** -0.5, generator=g)
            wb = torch.empty(K, M).uniform_(-M ** -0.5, M ** -0.5, generator=g)
            w = torch.cat([wa, wb], dim=1)
        else:
            raise ValueError(f"unknown init_scale {init_scale!r}")
        v = torch.empty(M, K).uniform_(-K ** -0.5, K ** -0.5, generator=g)
        return w, v

    @property
    def Wa(self) -> Tensor:
        """W_a^T, (E, M, K): a view, for analysis."""
        return self.W[:, : self.order]

    @property
    def Wb(self) -> Tensor:
        """W_b^T, (E, M, K): a view, for analysis."""
        return self.W[:, self.order :]

    @property
    def n_members(self) -> int:
        return self.W.shape[0]

    def features(self, a: Tensor, b: Tensor) -> Tensor:
        """F = σ(W x) for pairs (a, b), which are (n,) (shared by all members) or (E, n).
        Returns (E, n, K): per member the paper's F (n x K, row convention)."""
        return pair_features(self.W, a, b, self.act_name, self.in_scale)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Outputs o = V f, laid out (E, M, n): class axis 1, as torch's cross_entropy expects."""
        f = self.features(a, b)  # (E, n, K)
        # (E, n, K) @ (E, K, M) -> (E, n, M), returned as its (E, M, n) view. Not bmm(V, f.mT): its
        # backward would hand df back as a transposed (E, n, K) view, and every elementwise pass of
        # the first layer's backward over a transposed operand is ~25x slower than a contiguous one.
        o = torch.bmm(f, self.V.mT).mT
        return o if self.out_scale == 1.0 else o * self.out_scale

    def muon_params(self) -> list[nn.Parameter]:
        """Matrices Muon orthogonalises: W, each member's whole (2M, K) table (= W^T, K x 2M in the
        paper's layout), as the current Li2 code's Muon on its single nn.Linear(2M, K)."""
        return [self.W]

    def weight_norms(self) -> dict[str, Tensor]:
        """Per-member Frobenius norms, (E,) each."""
        w = self.W.square().sum((1, 2)).sqrt()  # ||W||_F
        return {"w_norm": w, "v_norm": self.V.square().sum((1, 2)).sqrt()}

    def export(self) -> dict[str, Tensor]:
        """Tensors for weights.safetensors: W (E, K, 2M) with W[:, :, :M] acting on a, and V (E, M, K)."""
        return {"W": self.W.mT.contiguous().detach(), "V": self.V.detach().contiguous()}

    @torch.no_grad()
    def load_exported(self, tensors: dict[str, Tensor]) -> None:
        W, V = tensors["W"], tensors["V"]  # (E, K, 2M), (E, M, K)
        self.W.copy_(W.mT)
        self.V.copy_(V)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of one member's exported tensors (for --init checks)."""
        return {"W": (self.width, 2 * self.order), "V": (self.order, self.width)}


@torch.no_grad()
def ridge_top_layer(f: Tensor, y: Tensor, mask: Tensor, order: int, lam: float) -> Tensor:
    """Closed-form top layer (the original code's set_weight_reg; science.md §2):

        V = (F^T F + λ I)^-1 F^T Ỹ     (row convention: F is n x K, Ỹ = onehot - 1/M is n x M)

    f (E, n, K) uncentred features; y (E, n) labels; mask (E, n) is 1 on training rows and 0 on
    padding. Returns V laid out (E, M, K).
    """
    fm = f * mask[:, :, None]  # (E, n, K): padding rows contribute nothing
    gram = torch.bmm(fm.mT, fm)  # (E, K, K) = F^T F
    gram.diagonal(dim1=1, dim2=2).add_(lam)
    yt = torch.nn.functional.one_hot(y, order).to(f.dtype) - 1.0 / order  # (E, n, M) = Ỹ
    rhs = torch.bmm(fm.mT, yt)  # (E, K, M) = F^T Ỹ
    return torch.linalg.solve(gram, rhs).mT  # (E, M, K)
