"""The two peaks: local maxima of the Li2 one-unit energy on a training subset, and what they are
(science.md §3–4; Li2 Thm 1, 2, 4, 5).

E_n(w) = ½‖Ỹ_nᵀ σ(X_n w)‖² on the sphere ‖w‖ = 1, with X_n [n, 2M] the one-hot inputs of the n
training pairs and Ỹ_n [n, M] their labels centred over those samples (theory.li2.energy). Its local
maxima are the features independent learning can reach (Thm 1). With all M² pairs and σ = x² they are
exactly the irrep features (Thm 2, E = E* of theory.li2.max_energy); with few pairs, memorization maxima
win (Thm 5: for σ = x² a unit focuses on one training pair; for ReLU/SiLU it spreads over a few). Thm 4:
the generalizing maxima survive from n ≳ d_k² M log(M/δ) on.

How the maxima are found: projected ascent from many starts at once (an array [K, 2M]), each step
    w ← normalise(g_t + α w),   g_t = ∇E − ⟨∇E, w⟩ w (the tangent gradient),  α = max_k |⟨∇E_k, w_k⟩|
i.e. a Riemannian gradient step of size 1/α (the shifted power method for homogeneous E: for σ = x²,
⟨∇E, w⟩ = 4E). One α for the whole batch: a per-unit α (plain power iteration) oscillates near the
transition (measured on Z23 at 1.75 n_c; 0.5–2× per-unit α never converged or was slower).
Starts: random (N(0, I) normalised; only these give the basin shares), the group's irrep features
(a random vector of one block's basis in each operand, ½ the norm each), and the focused memorization
points of Thm 5 for σ = x², w = (e_a + e_{M+b})/√2 for a training pair (a, b). Structured starts get a
1e-3 random nudge so an exact stationary point (a saddle) is left.

Kinds (groklab's definitions; the thresholds are choices, not from Li2):
- generalizing: both operands put ≥ PURITY_THRESHOLD (0.9) of their weight in the same non-trivial
  irrep block (theory.reps.unit_features), as at Thm 2's maxima;
- memorizing: otherwise, if one operand's weight sits on a few group elements: participation ratio
  ipr(u) = (Σ_a u_a²)² / Σ_a u_a⁴ ≤ MEMO_ELEMENTS (3) for u or v, so the unit fires only on the
  training pairs that contain those elements. "focused" (Thm 5, σ = x²) when both operands sit on one
  element each (ipr ≤ FOCUSED_IPR = 1.5: one pair (a, b)), else "spread". Reported beside it: n_eff =
  (Σ_i f_i²)² / Σ_i f_i⁴, f_i = σ(x_i·w), the number of training pairs carrying the activation energy.
  Measured on Z23 (σ = x², `groklab landscape --group Z23`): below 1.5 n_c every non-irrep maximum has
  min ipr ≈ 1.0–1.4 and n_eff ≈ 1–15 pairs (about 0.6–3 rows' worth, n/M each); irrep features have
  ipr ≈ 2M/3 (cos²) and n_eff ≈ 0.13–0.28 n; near the crossing (1.5–1.75 n_c) some maxima have
  ipr 6–10 and are neither;
- mixed: neither (spread over many pairs without being one irrep; near the crossing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from groklab.errors import GroklabError, check
from groklab.theory.li2 import _NP_ACTS, _PairEnergy, _act
from groklab.theory.reps import PURITY_THRESHOLD, irreps, unit_features

__all__ = [
    "KINDS",
    "MEMO_ELEMENTS",
    "FOCUSED_IPR",
    "START_KINDS",
    "Maxima",
    "ascend",
    "irrep_starts",
    "memorization_starts",
    "random_starts",
    "classify",
    "distinct_count",
    "find_maxima",
    "crossing_bracket",
]

KINDS = ("generalizing", "memorizing", "mixed")
START_KINDS = ("random", "irrep", "memorization")
MEMO_ELEMENTS = 3.0  # memorizing: an operand's weight on ≤ ~this many elements (ipr; groklab's choice)
FOCUSED_IPR = 1.5  # focused (Thm 5, σ = x²): both operands on one element each
_NUDGE = 1e-3


def _check_idx(M: int, idx: Any) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64).ravel()
    if idx.size < 2 or idx.min() < 0 or idx.max() >= M * M or np.unique(idx).size != idx.size:
        raise GroklabError(f"train_idx: must be ≥ 2 distinct flat pair indices in [0, {M * M - 1}]", "train_idx")
    return idx


# ----------------------------------------------------------------------------- starts
def random_starts(M: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """[count, 2M] uniform on the sphere."""
    w = rng.normal(size=(count, 2 * M))
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def irrep_starts(table: Any, per_block: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """[per_block · (blocks − 1), 2M] starts inside one non-trivial irrep block each, and their block index.

    u and v are independent random vectors of the block's real basis, each of norm 1/√2 (the
    maxima of Thm 2 split the norm equally between the operands).
    """
    ir = irreps(table)
    M = ir.order
    ws, blocks = [], []
    for i, b in enumerate(ir.blocks[1:], start=1):
        for _ in range(per_block):
            u, v = b.basis @ rng.normal(size=b.dim), b.basis @ rng.normal(size=b.dim)
            ws.append(np.concatenate([u / np.linalg.norm(u), v / np.linalg.norm(v)]) / np.sqrt(2))
            blocks.append(i)
    return np.array(ws).reshape(-1, 2 * M), np.array(blocks, dtype=np.int64)


def memorization_starts(M: int, train_idx: Any, count: int, rng: np.random.Generator) -> np.ndarray:
    """[count, 2M] the focused memorization points of Li2 Thm 5 (σ = x²): w = (e_a + e_{M+b})/√2 for
    ``count`` training pairs (a, b) drawn without replacement (all of them if there are fewer)."""
    idx = _check_idx(M, train_idx)
    pick = rng.choice(idx.size, size=min(count, idx.size), replace=False)
    w = np.zeros((pick.size, 2 * M))
    w[np.arange(pick.size), idx[pick] // M] = 1 / np.sqrt(2)
    w[np.arange(pick.size), M + idx[pick] % M] = 1 / np.sqrt(2)
    return w


# ----------------------------------------------------------------------------- ascent
def ascend(table: Any, train_idx: Any, w0: np.ndarray, *, act: str = "sqr", steps: int = 800,
           tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Projected ascent of E_n from the starts w0 [K, 2M] (module docstring), all units at once.

    Returns (w [K, 2M] on the sphere, E [K], residual [K] = ‖g_t‖/‖∇E‖, steps taken). Stops when
    every residual is below ``tol`` or after ``steps``. float64, numpy, single-threaded (gathers and
    bincounts, never X or Ỹ: theory.li2._PairEnergy).
    """
    T = np.asarray(table)
    M = T.shape[0]
    idx = _check_idx(M, train_idx)
    _act(act)
    check(steps >= 0, "steps", steps, "must be ≥ 0")
    w = np.array(w0, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != 2 * M:
        raise GroklabError(f"w0: shape {w.shape}: must be [K, {2 * M}]", "w0")
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    pe = _PairEnergy(M, idx // M, idx % M, T.reshape(-1)[idx], act, w.shape[0])
    t = 0
    while True:
        E, g = pe(w)
        gw = (g * w).sum(1, keepdims=True)
        gt = g - gw * w  # tangent part [K, 2M]
        res = np.linalg.norm(gt, axis=1) / np.maximum(np.linalg.norm(g, axis=1), 1e-300)
        if t >= steps or res.max() < tol:
            return w, E, res, t
        alpha = max(float(np.abs(gw).max()), 1e-12)
        w = gt + alpha * w
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        t += 1


# ----------------------------------------------------------------------------- classification
def classify(table: Any, train_idx: Any, w: np.ndarray, act: str = "sqr",
             threshold: float = PURITY_THRESHOLD) -> dict[str, np.ndarray]:
    """Kind of each unit w [K, 2M] on this training set (module docstring).

    Returns arrays [K]: kind (str, one of KINDS), block (the irrep block of a generalizing unit,
    else −1), purity (min over the two operands of the dominant block's share), ipr [K, 2] (elements
    each operand's weight sits on), n_eff (training pairs the activation energy sits on), focused
    (memorizing with both ipr ≤ FOCUSED_IPR: one pair).
    """
    T = np.asarray(table)
    M = T.shape[0]
    idx = _check_idx(M, train_idx)
    s, _ = _NP_ACTS[act]
    uf = unit_features(irreps(T), w, threshold)
    f = s(w[:, idx // M] + w[:, M + idx % M])  # [K, n] σ(X_n w)
    f2 = f * f
    n_eff = f2.sum(1) ** 2 / np.maximum((f2 * f2).sum(1), 1e-300)
    gen = uf.feature > 0  # block 0 is the trivial irrep: not a feature
    w2 = w.reshape(-1, 2, M) ** 2  # [K, 2, M] per operand
    ipr = w2.sum(-1) ** 2 / np.maximum((w2 * w2).sum(-1), 1e-300)  # [K, 2]
    mem = ~gen & (ipr.min(axis=1) <= MEMO_ELEMENTS)
    kind = np.where(gen, KINDS[0], np.where(mem, KINDS[1], KINDS[2]))
    return {"kind": kind, "block": np.where(gen, uf.feature, -1), "purity": uf.purity.min(axis=1), "ipr": ipr,
            "n_eff": n_eff, "focused": mem & (ipr.max(axis=1) <= FOCUSED_IPR)}


def distinct_count(w: np.ndarray, E: np.ndarray, *, even: bool, cos: float = 0.999, rtol: float = 1e-4) -> int:
    """Number of distinct points among w [K, 2M] (unit rows): two are the same maximum when
    cos(w_i, w_j) ≥ cos (|cos| when σ is even, as x² is: E(−w) = E(w)) and their E agree to rtol."""
    if len(w) == 0:
        return 0
    C = w @ w.T
    C = np.abs(C) if even else C
    rep: list[int] = []
    for i in np.argsort(-E):
        if not any(C[i, j] >= cos and abs(E[i] - E[j]) <= rtol * max(abs(E[j]), 1e-12) for j in rep):
            rep.append(int(i))
    return len(rep)


@dataclass(frozen=True, eq=False)
class Maxima:
    """Where ascent from every start ends, on one training set. Arrays [K], one per start:
    start (START_KINDS), start_block (irrep starts: their block, else −1), E, residual, and the
    classify() fields kind, block, purity, ipr [K, 2], n_eff, focused; w [K, 2M]; steps taken;
    names of blocks."""

    start: np.ndarray
    start_block: np.ndarray
    w: np.ndarray
    E: np.ndarray
    residual: np.ndarray
    kind: np.ndarray
    block: np.ndarray
    purity: np.ndarray
    ipr: np.ndarray
    n_eff: np.ndarray
    focused: np.ndarray
    steps: int
    names: tuple[str, ...]

    def summary(self, tol: float = 1e-3, even: bool = True) -> dict[str, Any]:
        """Per kind: highest E, number of distinct maxima (converged ends only: residual ≤ tol),
        and the share of the random starts that end there; plus the count of unconverged ends."""
        ok = self.residual <= tol
        rnd = self.start == "random"
        out: dict[str, Any] = {"unconverged": int((~ok).sum()), "random_starts": int(rnd.sum())}
        for k in KINDS:
            sel = self.kind == k
            out[f"E_max_{k}"] = float(self.E[sel].max()) if sel.any() else None
            out[f"n_distinct_{k}"] = distinct_count(self.w[sel & ok], self.E[sel & ok], even=even)
            out[f"share_{k}"] = float((sel & rnd).sum() / max(rnd.sum(), 1))
        return out


def find_maxima(table: Any, train_idx: Any, *, act: str = "sqr", n_random: int = 48, per_block: int = 2,
                n_memo: int = 8, steps: int = 800, tol: float = 1e-6, seed: int = 0) -> Maxima:
    """Ascend E_n from random, irrep and Thm 5 starts (one batch) and classify the ends."""
    T = np.asarray(table)
    M = T.shape[0]
    idx = _check_idx(M, train_idx)
    _act(act)
    for name, v in (("n_random", n_random), ("per_block", per_block), ("n_memo", n_memo)):
        check(isinstance(v, (int, np.integer)) and v >= 0, name, v, "must be a whole number ≥ 0")
    rng = np.random.default_rng(seed)
    wr = random_starts(M, n_random, rng)
    wi, bi = irrep_starts(T, per_block, rng)
    wm = memorization_starts(M, idx, n_memo, rng) if n_memo else np.zeros((0, 2 * M))
    w0 = np.concatenate([wr, wi, wm])
    if len(w0) == 0:
        raise GroklabError("starts: n_random, per_block and n_memo are all 0: nothing to ascend from", "n_random")
    nudge = np.zeros_like(w0)
    nudge[len(wr):] = _NUDGE * rng.normal(size=(len(w0) - len(wr), 2 * M))
    w, E, res, t = ascend(T, idx, w0 + nudge, act=act, steps=steps, tol=tol)
    c = classify(T, idx, w, act)
    start = np.array(["random"] * len(wr) + ["irrep"] * len(wi) + ["memorization"] * len(wm))
    sb = np.concatenate([-np.ones(len(wr), np.int64), bi, -np.ones(len(wm), np.int64)])
    return Maxima(start=start, start_block=sb, w=w, E=E, residual=res, kind=c["kind"], block=c["block"],
                  purity=c["purity"], ipr=c["ipr"], n_eff=c["n_eff"], focused=c["focused"], steps=t,
                  names=tuple(irreps(T).block_names))


# ----------------------------------------------------------------------------- the crossing
def crossing_bracket(sizes: Any, e_gen: Any, e_mem: Any) -> tuple[float | None, float | None]:
    """[n_lo, n_hi]: the largest size at which the generalization peak is not above the memorization
    peak, and the next size, where it is (and stays so at every larger size). e_gen / e_mem [S]:
    the highest E of each kind at each size (NaN when no maximum of that kind was found; an absent
    memorization peak counts as below, an absent generalization peak as not above).
    Returns (None, sizes[0]) if it is above everywhere, (sizes[-1], None) if nowhere.
    """
    n = np.asarray(sizes, dtype=float)
    g, m = np.asarray(e_gen, dtype=float), np.asarray(e_mem, dtype=float)
    if not (n.shape == g.shape == m.shape) or n.size == 0 or np.any(np.diff(n) <= 0):
        raise GroklabError("sizes: must be increasing, one E of each kind per size", "sizes")
    above = np.isfinite(g) & (~np.isfinite(m) | (g > m))
    if above.all():
        return None, float(n[0])
    last_not = int(np.flatnonzero(~above).max())
    return float(n[last_not]), (float(n[last_not + 1]) if last_not + 1 < n.size else None)
