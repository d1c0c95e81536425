"""Li2Net: the 2-layer network of Li2 (science.md §2, Li2 Eq. 1), ensemble-first.

    x = [e_a ; e_b] (fixed one-hot, not learned)    h = W x = W_a[:, a] + W_b[:, b]    (K)
    f = σ(h)                                                                         (K)
    o = V f                                                                          (M)

W = [W_a | W_b] is K x 2M with no bias, V is M x K with no bias. Every parameter carries a leading
ensemble axis E, so E independent networks train as one tensor program. Because x is one-hot the
first layer is a gather (index_select), never a one-hot matmul: O(K n) instead of O(K M n).

Storage: W_a and W_b are kept transposed, (E, M, K) - one row of K weights per input symbol, as an
embedding table - so the gather reads contiguous rows. `export()` writes the paper's layout
W (E, K, 2M). Muon's shape-dependent scale uses the logical (K, M) shape (`muon_shape`).

Init is PyTorch's nn.Linear default, as in the original code (layera/layerb = Linear(M, K),
layerc = Linear(K, M)): uniform ±1/sqrt(fan_in), so W_a, W_b ~ U(±1/sqrt(M)), V ~ U(±1/sqrt(K)).
Each member draws from its own seed, so member e of an ensemble equals a single run with seed e.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

ACT = {
    "sqr": lambda h: h * h,
    "relu": torch.relu,
    "silu": nn.functional.silu,
    "relusqr": lambda h: torch.relu(h).square(),
}


def member_generator(seed: int) -> torch.Generator:
    """The CPU generator a member's init is drawn from (device-independent: CUDA runs start equal)."""
    return torch.Generator().manual_seed(int(seed))


class Li2Net(nn.Module):
    """E Li2 networks. Parameters: Wa, Wb (E, M, K) = W_a^T, W_b^T (first / second operand), V (E, M, K)."""

    kind = "li2"

    def __init__(self, order: int, width: int, act: str, seeds: Sequence[int]):
        super().__init__()
        E, K, M = len(seeds), width, order
        self.order, self.width, self.act_name = M, K, act
        self.act = ACT[act]
        wa, wb, v = [], [], []
        for s in seeds:
            g = member_generator(s)
            # Same draw order as torch.nn.Linear's reset_parameters for layera, layerb, layerc.
            wa.append(torch.empty(K, M).uniform_(-M ** -0.5, M ** -0.5, generator=g))
            wb.append(torch.empty(K, M).uniform_(-M ** -0.5, M ** -0.5, generator=g))
            v.append(torch.empty(M, K).uniform_(-K ** -0.5, K ** -0.5, generator=g))
        self.Wa = nn.Parameter(torch.stack(wa).mT.contiguous())  # (E, M, K) = W_a^T
        self.Wb = nn.Parameter(torch.stack(wb).mT.contiguous())  # (E, M, K) = W_b^T
        self.V = nn.Parameter(torch.stack(v))  # (E, M, K)
        self.Wa.muon_shape = self.Wb.muon_shape = (K, M)  # the matrix Muon sees is W_a (K x M)

    @property
    def n_members(self) -> int:
        return self.Wa.shape[0]

    def hidden_pre(self, a: Tensor, b: Tensor) -> Tensor:
        """h = W x for pairs (a, b): a, b are (n,) (shared by all members) or (E, n). Returns (E, n, K)."""
        if a.dim() == 1:
            return self.Wa.index_select(1, a) + self.Wb.index_select(1, b)
        E, n, K = self.Wa.shape[0], a.shape[1], self.Wa.shape[2]
        return self.Wa.gather(1, a[:, :, None].expand(E, n, K)) + self.Wb.gather(1, b[:, :, None].expand(E, n, K))

    def features(self, a: Tensor, b: Tensor) -> Tensor:
        """F = σ(W x), (E, n, K): per member the paper's F (n x K, row convention)."""
        return self.act(self.hidden_pre(a, b))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Outputs o = V f, laid out (E, M, n): class axis 1, as torch's cross_entropy expects."""
        f = self.features(a, b)  # (E, n, K)
        return torch.bmm(self.V, f.mT)  # (E, M, K) @ (E, K, n) -> (E, M, n)

    def muon_params(self) -> list[nn.Parameter]:
        """Matrices Muon orthogonalises: W (the original code applies it per Linear: W_a and W_b)."""
        return [self.Wa, self.Wb]

    def weight_norms(self) -> dict[str, Tensor]:
        """Per-member Frobenius norms, (E,) each."""
        w = (self.Wa.square().sum((1, 2)) + self.Wb.square().sum((1, 2))).sqrt()  # ||W||_F
        return {"w_norm": w, "v_norm": self.V.square().sum((1, 2)).sqrt()}

    def export(self) -> dict[str, Tensor]:
        """Tensors for weights.safetensors: W (E, K, 2M) with W[:, :, :M] acting on a, and V (E, M, K)."""
        return {"W": torch.cat([self.Wa, self.Wb], dim=1).mT.contiguous().detach(), "V": self.V.detach().contiguous()}

    @torch.no_grad()
    def load_exported(self, tensors: dict[str, Tensor]) -> None:
        W, V = tensors["W"], tensors["V"]  # (E, K, 2M), (E, M, K)
        M = self.order
        self.Wa.copy_(W[..., :M].mT)
        self.Wb.copy_(W[..., M:].mT)
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
