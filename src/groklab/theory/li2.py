"""Li2 in code: the energy E, the back-propagated gradient G_F, the ridge top layer, the
independent feature dynamics and the critical data size (science.md §3, §4).

Row convention of the paper throughout: X [n, 2M] one-hot inputs (row i = [e_a ; e_b]),
F = σ(XW) [n, K] hidden features, V [K, M] top layer, Ŷ = FV [n, M]. A unit's weight is
w ∈ R^{2M} (a row of the model's W [K, 2M]; its first M entries act on operand a, the next M
on b). P₁^⊥ = I − 11ᵀ/n centres over the n *samples*; Ỹ = P₁^⊥Y, F̃ = P₁^⊥F.

Functions take torch tensors and keep their dtype (use float64 to compare with autograd).

>>> import numpy as np, torch
>>> Z5 = (np.arange(5)[:, None] + np.arange(5)[None, :]) % 5
>>> idx = np.arange(25)
>>> X, Yc = pair_inputs(5, idx), centred_labels(Z5, idx)
>>> X.shape, Yc.shape
(torch.Size([25, 10]), torch.Size([25, 5]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from groklab.errors import GroklabError, check
from groklab.science import CRITICAL_RULE, critical_size
from groklab.theory.reps import PURITY_THRESHOLD, irreps, unit_features

__all__ = [
    "ACTIVATIONS",
    "pair_inputs",
    "centred_labels",
    "energy",
    "energy_grad",
    "backprop_gradient",
    "gf_ridge_limit",
    "ridge_top_layer",
    "max_energy",
    "DynamicsResult",
    "independent_dynamics",
    "CriticalSizeReport",
    "critical_size_report",
]

Tensor = torch.Tensor

# σ and σ′ (science.md §2). relu′(0) = 0, as torch's autograd has it.
_ACTS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "sqr": (lambda x: x * x, lambda x: 2 * x),
    "relu": (torch.relu, lambda x: (x > 0).to(x.dtype)),
    "silu": (torch.nn.functional.silu, lambda x: torch.sigmoid(x) * (1 + x * (1 - torch.sigmoid(x)))),
    "relusqr": (lambda x: torch.relu(x) ** 2, lambda x: 2 * torch.relu(x)),
}
ACTIVATIONS = tuple(_ACTS)


def _act(name: str):
    check(name in _ACTS, "act", name, f"must be one of {', '.join(ACTIVATIONS)}")
    return _ACTS[name]


# ----------------------------------------------------------------------------- data
def pair_inputs(M: int, idx: Any, dtype: torch.dtype = torch.float64) -> Tensor:
    """X [n, 2M]: row i is one-hot at a and at M + b, for flat pair indices idx = a*M + b."""
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    X = torch.zeros(len(idx), 2 * M, dtype=dtype)
    rows = torch.arange(len(idx))
    X[rows, idx // M] = 1
    X[rows, M + idx % M] = 1
    return X


def centred_labels(table: Any, idx: Any, dtype: torch.dtype = torch.float64) -> Tensor:
    """Ỹ = P₁^⊥Y [n, M]: one-hot of a∘b, minus its mean over the n samples (the paper's form).

    (The original code instead centres over classes, onehot − 1/M; with all M² pairs of a group
    the two coincide, since every class then has frequency exactly 1/M.)
    """
    T = np.asarray(table)
    M = T.shape[0]
    idx = np.asarray(idx)
    Y = torch.zeros(len(idx), M, dtype=dtype)
    Y[torch.arange(len(idx)), torch.as_tensor(T.reshape(-1)[idx], dtype=torch.long)] = 1
    return Y - Y.mean(dim=0, keepdim=True)


# ----------------------------------------------------------------------------- energy (Thm 1)
def _energy_and_grad(w: Tensor, X: Tensor, Yc: Tensor, act: str) -> tuple[Tensor, Tensor]:
    """E(w) [K] and ∇E [K, 2M] for w [K, 2M]; shared work."""
    s, ds = _act(act)
    z = w @ X.T  # [K, n] pre-activations Xw
    f = s(z)  # [K, n] σ(Xw)
    r = f @ Yc  # [K, M] Ỹᵀσ(Xw)
    E = 0.5 * (r * r).sum(-1)
    g = (ds(z) * (r @ Yc.T)) @ X  # [K, 2M] Xᵀ D ỸỸᵀ σ(Xw)
    return E, g


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# numpy twins of _ACTS for the dynamics loop (checked against the torch ones in the tests).
_NP_ACTS = {
    "sqr": (lambda x: x * x, lambda x: 2 * x),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(x.dtype)),
    "silu": (lambda x: x * _np_sigmoid(x), lambda x: _np_sigmoid(x) * (1 + x * (1 - _np_sigmoid(x)))),
    "relusqr": (lambda x: np.maximum(x, 0.0) ** 2, lambda x: 2 * np.maximum(x, 0.0)),
}


class _PairEnergy:
    """E [K] and ∇E [K, 2M] for many units without forming X or Ỹ: gathers and bincounts, O(K·n).

    numpy, single-threaded on purpose: the dynamics loop is many small steps, where torch's
    thread pool costs more than it saves (20× slower on a loaded 2-core machine, measured).
    a, b, c [n]: operands and label of each pair; Ỹ = Y − 1·ybarᵀ with ybar the class frequencies.
    """

    def __init__(self, M: int, a: np.ndarray, b: np.ndarray, c: np.ndarray, act: str, K: int):
        _act(act)  # validates the name
        self.s, self.ds = _NP_ACTS[act]
        self.M, self.K, self.a, self.b, self.c = M, K, a, b, c
        self.ybar = np.bincount(c, minlength=M) / len(c)
        self.rc = (np.arange(K)[:, None] * M + c).ravel()  # flat [K, M] index of each (unit, label)
        self.gab = np.concatenate([(np.arange(K)[:, None] * 2 * M + a).ravel(), (np.arange(K)[:, None] * 2 * M + M + b).ravel()])

    def __call__(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        K, M = self.K, self.M
        z = w[:, self.a] + w[:, M + self.b]  # [K, n] Xw as a gather
        f = self.s(z)
        r = np.bincount(self.rc, weights=f.ravel(), minlength=K * M).reshape(K, M)
        r -= f.sum(1, keepdims=True) * self.ybar  # Ỹᵀσ(Xw), [K, M]
        E = 0.5 * (r * r).sum(-1)
        q = (self.ds(z) * (r[:, self.c] - (r * self.ybar).sum(1, keepdims=True))).ravel()  # D ỸỸᵀσ(Xw)
        g = np.bincount(self.gab, weights=np.concatenate([q, q]), minlength=K * 2 * M).reshape(K, 2 * M)  # Xᵀ(...)
        return E, g


def energy(w: Tensor, X: Tensor, Yc: Tensor, act: str = "sqr") -> Tensor:
    """E(w) = ½‖Ỹᵀσ(Xw)‖² (science.md §3 stage 2; Li2 Thm 1). w [2M] -> scalar, [K, 2M] -> [K]."""
    s, _ = _act(act)
    r = s(w @ X.T) @ Yc  # [..., M]
    return 0.5 * (r * r).sum(-1)


def energy_grad(w: Tensor, X: Tensor, Yc: Tensor, act: str = "sqr") -> Tensor:
    """∇E = Xᵀ D ỸỸᵀ σ(Xw), D = diag σ′(Xw) (Li2 Thm 1: the independent dynamics ẇ = ∇E).

    Same shape as w ([2M] or [K, 2M]).
    """
    E, g = _energy_and_grad(w.reshape(-1, w.shape[-1]), X, Yc, act)
    return g.reshape(w.shape)


# ----------------------------------------------------------------------------- G_F (Eq. 2–4)
def _centre(A: Tensor) -> Tensor:
    return A - A.mean(dim=0, keepdim=True)  # P₁^⊥A, centring over the n rows (samples)


def backprop_gradient(F: Tensor, V: Tensor, Y: Tensor) -> Tensor:
    """G_F = −∂J/∂F = P₁^⊥(Y − FV)Vᵀ [n, K] for J = ½‖P₁^⊥(Y − FV)‖²_F (Li2 Eq. 2).

    F [n, K], V [K, M], Y [n, M] (raw one-hot or already centred: P₁^⊥ is applied here).
    """
    return _centre(Y - F @ V) @ V.T


def ridge_top_layer(F: Tensor, Y: Tensor, lam: float) -> Tensor:
    """V = (FᵀF + λI)⁻¹FᵀY [K, M] (so that Ŷ = FV), solved, not inverted.

    Paper (science.md §3): pass F̃, Ỹ and λ = η for V_η. Original code (`set_weight_reg`,
    science.md §2): pass the uncentred F and Y = onehot − 1/M.
    """
    K = F.shape[1]
    return torch.linalg.solve(F.T @ F + lam * torch.eye(K, dtype=F.dtype, device=F.device), F.T @ Y)


def gf_ridge_limit(F: Tensor, Y: Tensor, eta: float) -> Tensor:
    """G_F → η(F̃F̃ᵀ + ηI)⁻¹ỸỸᵀF̃(F̃ᵀF̃ + ηI)⁻¹ [n, K] (Li2 Eq. 4), F̃ = P₁^⊥F, Ỹ = P₁^⊥Y.

    What holds exactly (checked in float64 in tests/test_li2.py): with V = ridge_top_layer(F̃, Ỹ, η),
    backprop_gradient(F, V, Y) equals this, because P₁^⊥(Y − FV) = Ỹ − F̃V and, by the
    push-through identity V = F̃ᵀ(F̃F̃ᵀ + ηI)⁻¹Ỹ, Ỹ − F̃V = η(F̃F̃ᵀ + ηI)⁻¹Ỹ. It is also the exact
    −dJ_η/dF of J_η(F) = min_V ½‖P₁^⊥(Y − FV)‖² + ½η‖V‖² (envelope theorem: V's own dependence
    on F drops out). With the code's ridge (uncentred F) it does not hold exactly.
    """
    Ft, Yt = _centre(F), _centre(Y)
    n, K = Ft.shape
    In = torch.eye(n, dtype=F.dtype, device=F.device)
    IK = torch.eye(K, dtype=F.dtype, device=F.device)
    left = torch.linalg.solve(Ft @ Ft.T + eta * In, Yt @ (Yt.T @ Ft))  # (F̃F̃ᵀ+ηI)⁻¹ỸỸᵀF̃
    return eta * torch.linalg.solve(Ft.T @ Ft + eta * IK, left.T).T  # ... (F̃ᵀF̃+ηI)⁻¹ (symmetric)


# ----------------------------------------------------------------------------- independent dynamics
@dataclass(frozen=True, eq=False)
class DynamicsResult:
    """Where independent ascent on E (Li2 Thm 1) ends, unit by unit.

    w [K, 2M] final unit weights (‖w‖ = 1); energy [K] final E; history [steps + 1, K] E along
    the way; fractions [K, 2, n_blocks], dominant [K, 2], purity [K, 2] per operand (see
    reps.unit_features); feature [K] the unit's block or −1; counts: block name -> number of
    units whose feature it is (purity ≥ threshold on both operands); names: block names.
    """

    w: np.ndarray
    energy: np.ndarray
    history: np.ndarray
    fractions: np.ndarray
    dominant: np.ndarray
    purity: np.ndarray
    feature: np.ndarray
    counts: dict[str, int]
    names: tuple[str, ...]


def independent_dynamics(
    table: Any,
    *,
    act: str = "sqr",
    n_units: int = 64,
    steps: int = 400,
    lr: float | None = None,
    seed: int = 0,
    train_idx: Any = None,
    threshold: float = PURITY_THRESHOLD,
) -> DynamicsResult:
    """Projected gradient ascent of E on the unit sphere from n_units random starts (batched).

    Each step: g = ∇E(w), w ← (w + lr·(g − ⟨g, w⟩w)) / ‖·‖ (Riemannian gradient step, then back
    to the sphere). ``lr`` defaults to 0.5·M/n: with σ = x² the curvature of E on the sphere at a
    maximum is about 4E* ≤ 2M·n/M², and lr·4E* ≳ 2 oscillates (measured: 1/M fails on Z12's
    sign block). relu is not smooth, so its E can dip. ``train_idx``: flat pair indices a*M + b
    (default: all M² pairs). float64 throughout; X and Ỹ are never formed (gathers instead).

    Measured, σ = x², all pairs, 400–1500 steps (tests/test_li2.py; science.md §3): on Z11 and
    Z13 every unit ends on one frequency pair with purity > 0.999 and E = M/4 (`max_energy`
    lists E* for every group). The maxima have ‖u‖ = ‖v‖ = 1/√2 but v is *not* in general ±Pu
    (P e_h = e_{h⁻¹}): |cos(v, Pu)| spreads over [0, 1] (Z13, D5, S4). E is invariant under
    u ↦ left translates of u and v ↦ right translates of v separately, so on Z_M the phases of u
    and v are free (a 2-torus of maxima per frequency); [u; ±Pu] is one slice of it.
    """
    T = np.asarray(table)
    M = T.shape[0]
    check(n_units >= 1, "n_units", n_units, "must be ≥ 1")
    check(steps >= 0, "steps", steps, "must be ≥ 0")
    idx = np.arange(M * M) if train_idx is None else np.asarray(train_idx, dtype=np.int64).ravel()
    if idx.size == 0 or idx.min() < 0 or idx.max() >= M * M:
        raise GroklabError(f"--train-idx: must be non-empty flat pair indices in [0, {M * M - 1}]", "train_idx")
    lr = 0.5 * M / idx.size if lr is None else float(lr)
    check(lr > 0, "lr", lr, "must be > 0")
    pe = _PairEnergy(M, idx // M, idx % M, T.reshape(-1)[idx], act, n_units)
    w = np.random.default_rng(seed).normal(size=(n_units, 2 * M))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    hist = []
    for _ in range(steps):
        E, g = pe(w)
        hist.append(E)
        g -= (g * w).sum(1, keepdims=True) * w  # tangent to the sphere
        w = w + lr * g
        w /= np.linalg.norm(w, axis=1, keepdims=True)
    E = pe(w)[0]
    hist.append(E)

    uf = unit_features(irreps(T), w, threshold)
    counts = {name: int((uf.feature == i).sum()) for i, name in enumerate(uf.names)}
    return DynamicsResult(
        w=w, energy=E, history=np.stack(hist), fractions=uf.fractions,
        dominant=uf.dominant, purity=uf.purity, feature=uf.feature, counts=counts, names=uf.names,
    )


def max_energy(table: Any) -> dict[str, float]:
    """E* per nontrivial block: the value of E at its maxima for σ = x², all M² pairs, ‖w‖ = 1.

    E* = M/(2d) for a real-type irrep, M/(4d) for a complex pair *and* for a quaternionic irrep
    (science.md §3 names only real/complex). Measured in float64 by `independent_dynamics` on
    Z11, Z12, Z13, Z2xZ6, D4, D5, Q8, S4, A5 and Z7⋊Z3 (complex d = 3) to 4 digits; on Z_M it
    is exact: u = A cos(2πka/M + φ), v = B cos(2πkb/M + ψ) gives E = A²B²M³/4, largest at
    A² = B² = 1/M, i.e. E* = M/4 (the squares u_a², v_b² are the same in every class and are
    removed by centring; only the cross term 2u_a v_b survives).
    """
    ir = irreps(table)
    M = ir.order
    return {b.name: M / (2 * b.d) if b.kind == "real" else M / (4 * b.d) for b in ir.blocks[1:]}


# ----------------------------------------------------------------------------- critical size (§4)
@dataclass(frozen=True)
class CriticalSizeReport:
    """Li2's predictions for one group (science.md §3–4).

    critical_n: groklab.science.critical_size (rule in ``rule``); critical_fraction = n_c / M²;
    n_features: distinct generalizing features = real isotypic blocks other than the trivial one
    (complex irreps counted up to conjugate pairing); feature_blocks: their names;
    k_sufficient: Li2 Thm 3, K = 2M − 2 units suffice (abelian groups; None otherwise).
    """

    order: int
    is_abelian: bool
    dims: tuple[int, ...]
    d_max: int
    critical_n: float
    critical_fraction: float
    rule: str
    n_features: int
    feature_blocks: tuple[str, ...]
    k_sufficient: int | None


def critical_size_report(table: Any) -> CriticalSizeReport:
    """Critical data size, number of features and Thm 3's width for a Cayley table."""
    ir = irreps(table)
    M = ir.order
    n_c = critical_size(M, is_abelian=ir.is_abelian, d_max=ir.d_max)
    feats = tuple(b.name for b in ir.blocks[1:])  # blocks[0] is the trivial irrep
    return CriticalSizeReport(
        order=M, is_abelian=ir.is_abelian, dims=ir.dims, d_max=ir.d_max, critical_n=n_c,
        critical_fraction=n_c / M**2, rule=CRITICAL_RULE, n_features=len(feats), feature_blocks=feats,
        k_sufficient=2 * M - 2 if ir.is_abelian else None,
    )
