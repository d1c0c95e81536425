"""Irreducible representations of a finite group given only by its Cayley table (science.md §5).

Input everywhere: ``table``, int array [M, M] with ``table[a, b] = a∘b``. Element 0 need not be
the identity; it is found. Nothing else about the group is assumed.

How the characters are found (Burnside–Dixon, done numerically): the class sums C_j span the
centre of the group algebra. Left multiplication by a central element z = Σ_j r_j C_j is a
*normal* operator on the centre in the orthonormal basis C_j/√|C_j| (its adjoint is
multiplication by Σ_j conj(r_j) C_{j⁻¹}), so the Hermitian H = z + z* with random complex r_j has
the central idempotents e_χ = (d/M) Σ_g conj(χ(g)) g as eigenvectors, with generically distinct
eigenvalues 2 Re ω_χ(z). Clusters of (nearly) equal eigenvalues are split by a second random
Hermitian operator restricted to the cluster. ``numpy.linalg.eigh`` keeps it stable; the result
is checked (Σd² = M, both orthogonality relations, and ω_χ is an algebra homomorphism).

Real isotypic blocks: P_k = (d_k/M) Σ_g conj(χ_k(g)) ρ_reg(g), i.e. P_k[x, h] = (d_k/M)
conj(χ_k(x h⁻¹)). A real-valued χ (Frobenius–Schur indicator +1 "real" or −1 "quaternionic") has
a real P_k of rank d_k²; a non-real χ is paired with conj χ and P_k + P_k̄ is real of rank 2d_k².
For d = 1 the basis is Re χ, Im χ (the real Fourier basis on Z_M: cos/sin of frequency k);
otherwise an eigenbasis of the real projector.

>>> import numpy as np
>>> Z6 = (np.arange(6)[:, None] + np.arange(6)[None, :]) % 6
>>> irrep_dimensions(Z6)
[1, 1, 1, 1, 1, 1]
>>> [b.name for b in irreps(Z6).blocks]
['k=0', 'k=1', 'k=2', 'k=3']
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from groklab.errors import GroklabError

__all__ = [
    "PURITY_THRESHOLD",
    "Block",
    "Irreps",
    "UnitFeatures",
    "irreps",
    "irrep_dimensions",
    "conjugacy_classes",
    "character_table",
    "block_energy",
    "unit_features",
    "features_covered",
]

# A unit "has learned" a block when both operands put at least this share of their squared
# weight in it (groklab's choice, not from Li2; Li2 Thm 2 maxima have share 1.0 exactly).
PURITY_THRESHOLD = 0.9

_TOL = 1e-8  # accuracy demanded of the character table (orthogonality, Σd² = M)
_SEED = 20250925  # fixed: the random central elements, so results are deterministic
_CACHE: dict[tuple, "Irreps"] = {}
_CACHE_MAX = 32


# ----------------------------------------------------------------------------- group basics
def _group(table: Any) -> tuple[np.ndarray, int, np.ndarray]:
    """Validate a Cayley table; return (table int64 [M, M], identity, inverse [M])."""
    T = np.asarray(table)
    if T.ndim != 2 or T.shape[0] != T.shape[1] or T.shape[0] < 1:
        raise GroklabError(f"table: shape {T.shape}: must be a square [M, M] Cayley table", "table")
    if not np.issubdtype(T.dtype, np.integer):
        raise GroklabError(f"table: dtype {T.dtype}: must hold integers (element indices)", "table")
    T = T.astype(np.int64)
    M = T.shape[0]
    if T.min() < 0 or T.max() >= M:
        raise GroklabError(f"table: entries in [{T.min()}, {T.max()}]: must lie in [0, {M - 1}]", "table")
    ar = np.arange(M)
    ids = np.flatnonzero((T == ar[None, :]).all(axis=1) & (T == ar[:, None]).all(axis=0))
    if ids.size != 1:
        raise GroklabError("table: no identity element (no e with e∘x = x∘e = x): not a group", "table")
    e = int(ids[0])
    srt = np.sort(T, axis=1)
    if not ((srt == ar).all() and (np.sort(T, axis=0) == ar[:, None]).all()):
        raise GroklabError("table: not a Latin square (some a∘x = b has no unique x): not a group", "table")
    inv = np.argmax(T == e, axis=1)
    # Associativity (a∘b)∘c == a∘(b∘c): every triple up to M = 256, else 10⁵ random triples
    # (groklab.tasks has already checked built-in and loaded tables in full).
    rows = range(M) if M <= 256 else np.random.default_rng(_SEED).integers(0, M, 10)
    for a in rows:
        cols = slice(None) if M <= 256 else np.random.default_rng(a).integers(0, M, 10**4)
        if not np.array_equal(T[T[a]][cols], T[a][T][cols]):
            raise GroklabError(f"table: not associative (fails for a = {a}): not a group", "table")
    return T, e, inv


def _classes(T: np.ndarray, e: int, inv: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Conjugacy classes (identity class first, then by smallest member) and the class of each element."""
    M = T.shape[0]
    conj = T[T, inv[:, None]]  # conj[g, h] = g∘h∘g⁻¹
    cls = -np.ones(M, dtype=np.int64)
    found = []
    for h in [e] + [x for x in range(M) if x != e]:
        if cls[h] < 0:
            members = np.unique(conj[:, h])
            cls[members] = len(found)
            found.append(members)
    return found, cls


def conjugacy_classes(table: Any) -> list[np.ndarray]:
    """Conjugacy classes as sorted index arrays; the identity's class ({e}) first, then by smallest member."""
    return list(irreps(table).classes)


# ----------------------------------------------------------------------------- characters
def _class_operator(T, inv, cls, classes, f_cls: np.ndarray) -> np.ndarray:
    """Hermitian z + z* on the centre, z = Σ_j f_j C_j, in the orthonormal basis C_j/√|C_j|.

    z C_i = Σ_k L[k, i] C_k with L[k, i] = Σ_{y∈C_i} f(g_k y⁻¹), g_k a representative of C_k.
    """
    r = len(classes)
    reps = np.array([c[0] for c in classes])
    f = f_cls[cls]  # f as a function on the group
    vals = f[T[reps][:, inv]]  # [r, M]: f(g_k y⁻¹) for every y
    onehot = np.zeros((T.shape[0], r))
    onehot[np.arange(T.shape[0]), cls] = 1.0
    L = vals @ onehot  # [r, r]
    h = np.sqrt(np.array([len(c) for c in classes], dtype=float))
    A = h[:, None] * L / h[None, :]
    return A + A.conj().T


def _common_eigvecs(make_op, r: int, rng: np.random.Generator) -> np.ndarray:
    """Columns = common eigenvectors of the commuting normal operators (split clusters recursively)."""
    H = make_op(rng)
    lam, Q = np.linalg.eigh(H)
    out = []
    scale = max(1.0, float(np.abs(lam).max()))
    start = 0
    for i in range(1, r + 1):
        if i == r or lam[i] - lam[i - 1] > 1e-7 * scale:
            block = Q[:, start:i]
            if block.shape[1] > 1:  # degenerate cluster: diagonalise another random operator on it
                for _ in range(20):
                    H2 = block.conj().T @ make_op(rng) @ block
                    mu, R = np.linalg.eigh(H2)
                    if np.min(np.diff(mu)) > 1e-7 * max(1.0, float(np.abs(mu).max())):
                        break
                block = block @ R
            out.append(block)
            start = i
    return np.concatenate(out, axis=1)


def _characters(T, e, inv, classes, cls) -> np.ndarray:
    """Character table [n_irreps, n_classes] (unsorted), complex."""
    M, r = T.shape[0], len(classes)
    rng = np.random.default_rng(_SEED)

    def make_op(g):
        return _class_operator(T, inv, cls, classes, g.normal(size=r) + 1j * g.normal(size=r))

    B = _common_eigvecs(make_op, r, rng)  # [r, r], column ∝ conj(χ_j) √h_j
    h = np.array([len(c) for c in classes], dtype=float)
    U = B.conj().T / np.sqrt(h)[None, :]  # rows ∝ χ
    U = U / U[:, :1]  # χ(e)/d = 1
    d2 = M / ((U.real**2 + U.imag**2) @ h)
    d = np.sqrt(d2)
    if np.max(np.abs(d - np.round(d))) > 1e-6:
        raise RuntimeError(f"character table: non-integer degrees {d} (numerical failure)")
    return np.round(d)[:, None] * U


def _check_characters(chi, h, M, T, cls) -> None:
    d = chi[:, 0].real
    gram = (chi * h[None, :]) @ chi.conj().T / M  # row orthogonality: δ_ab
    col = chi.conj().T @ chi  # column orthogonality: δ_jk M/h_j
    errs = [
        abs(float(np.sum(d**2)) - M),
        float(np.abs(gram - np.eye(len(d))).max()),
        float(np.abs(col * h[:, None] / M - np.eye(len(h))).max()),
    ]
    # ω_χ(f)ω_χ(g) = ω_χ(f*g) for random class functions f, g: χ is a character of a representation.
    rng = np.random.default_rng(_SEED + 1)
    f, g = rng.normal(size=(2, len(h)))
    fg = np.bincount(T.ravel(), weights=np.outer(f[cls], g[cls]).ravel(), minlength=M)  # convolution
    om = lambda x: (chi[:, cls] @ x) / d  # noqa: E731
    errs.append(float(np.abs(om(f[cls]) * om(g[cls]) - om(fg)).max()) / M)
    if max(errs) > _TOL:
        raise RuntimeError(f"character table fails its checks (errors {errs}); please report the table")


# ----------------------------------------------------------------------------- the Irreps object
@dataclass(frozen=True, eq=False)
class Block:
    """One real isotypic block of R^M.

    name: "k=3" (cyclic groups: frequency pair ±3), else "ρ3 (d=2)" or "ρ2+ρ3 (d=1)" for a pair.
    irreps: indices (into Irreps.dims / .characters) of the complex irreps it holds.
    kind: "real", "complex" (a conjugate pair) or "quaternionic".
    dim: real dimension (d² real/quaternionic, 2d² complex pair); start: offset in Irreps.basis.
    basis: [M, dim], orthonormal columns.
    """

    name: str
    irreps: tuple[int, ...]
    kind: str
    d: int
    dim: int
    start: int
    basis: np.ndarray


@dataclass(frozen=True, eq=False)
class Irreps:
    """Everything representation-theoretic about one Cayley table (science.md §5).

    order M; identity; inverse [M]; classes (identity first); class_of [M];
    dims (ascending, one per complex irrep); characters [n_irreps, n_classes] complex, same order;
    indicators: Frobenius–Schur (+1 real, 0 complex, −1 quaternionic) per irrep;
    blocks: real isotypic blocks (trivial first); basis [M, M] orthogonal = blocks' bases side by side.
    """

    order: int
    identity: int
    inverse: np.ndarray
    is_abelian: bool
    is_cyclic: bool
    classes: tuple[np.ndarray, ...]
    class_of: np.ndarray
    dims: tuple[int, ...]
    characters: np.ndarray
    indicators: tuple[int, ...]
    blocks: tuple[Block, ...]
    basis: np.ndarray

    @property
    def d_max(self) -> int:
        return max(self.dims)

    @property
    def block_names(self) -> list[str]:
        return [b.name for b in self.blocks]

    def block_index(self, name: str) -> int:
        names = self.block_names
        if name not in names:
            raise GroklabError(f"block {name!r}: unknown; this group has {names}", "block")
        return names.index(name)

    def projector(self, i: int) -> np.ndarray:
        """Real orthogonal projector [M, M] onto block i."""
        b = self.blocks[i].basis
        return b @ b.T


def _conjugates(chi: np.ndarray) -> np.ndarray:
    """partner[i] = j with χ_j = conj χ_i (i itself for a real-valued χ_i)."""
    z = np.random.default_rng(_SEED + 2).normal(size=(chi.shape[1], 2)) @ [1, 1j]
    s, s_conj = chi @ z, chi.conj() @ z  # fingerprints: s_j == s_conj_i iff χ_j = conj χ_i
    partner = np.argmin(np.abs(s[None, :] - s_conj[:, None]), axis=1)
    if np.abs(chi[partner] - chi.conj()).max() > 1e-6 or np.any(partner[partner] != np.arange(len(chi))):
        raise RuntimeError("character table: complex conjugates do not pair up (numerical failure)")
    return partner


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _element_orders(T: np.ndarray, e: int) -> np.ndarray:
    M = T.shape[0]
    orders = np.zeros(M, dtype=np.int64)
    cur = np.arange(M)
    for n in range(1, M + 1):
        newly = (cur == e) & (orders == 0)
        orders[newly] = n
        if (orders > 0).all():
            break
        cur = T[cur, np.arange(M)]
    return orders


def _build(table: Any) -> Irreps:
    T, e, inv = _group(table)
    M = T.shape[0]
    classes, cls = _classes(T, e, inv)
    h = np.array([len(c) for c in classes], dtype=float)
    chi = _characters(T, e, inv, classes, cls)
    _check_characters(chi, h, M, T, cls)
    d = np.round(chi[:, 0].real).astype(int)
    fs = np.round(np.mean(chi[:, cls[T[np.arange(M), np.arange(M)]]], axis=1).real).astype(int)

    is_abelian = len(classes) == M
    orders = _element_orders(T, e) if is_abelian else None
    is_cyclic = bool(is_abelian and (orders == M).any())
    freq = None
    if is_cyclic:  # frequency k of each character: χ(g) = exp(2πik/M), g the generator
        g = 1 if (M > 1 and orders[1] == M) else int(np.flatnonzero(orders == M)[0])
        freq = np.round(np.angle(chi[:, cls[g]]) * M / (2 * np.pi)).astype(int) % M
        order = np.argsort(freq, kind="stable")
    else:
        keys = [(d[i], not np.allclose(chi[i], 1.0), *np.round(-chi[i].real, 6), *np.round(-chi[i].imag, 6))
                for i in range(len(d))]
        partner = _conjugates(chi)
        order, seen = [], set()
        for i in sorted(range(len(d)), key=lambda i: keys[i]):  # each conj χ right after its χ
            if i not in seen:
                order += [i] if partner[i] == i else [i, partner[i]]
                seen.update((i, partner[i]))
    chi, d, fs = chi[order], d[order], fs[order]
    if freq is not None:
        freq = freq[order]
    partner = _conjugates(chi)

    specs, used = [], set()  # (name, members, kind) per real block
    for i in range(len(d)):
        if i in used:
            continue
        if partner[i] == i:
            members, kind = (i,), ("real" if fs[i] >= 0 else "quaternionic")
        else:
            members, kind = (i, int(partner[i])), "complex"
        used.update(members)
        if freq is not None:
            name = f"k={int(min(freq[i], M - freq[i]))}"
        elif kind == "complex":
            name = f"ρ{members[0]}+ρ{members[1]} (d={d[i]})"
        else:
            name = f"ρ{i} (d={d[i]})"
        specs.append((name, members, kind))

    # Blocks with d > 1: one eigh of H = Σ_b (b+1)·P_b, P_b[x, h] = Σ_{m∈b} (d/M) conj χ_m(x h⁻¹)
    # (real); its eigenspace at b+1 is block b. One M×M eigh instead of one per block.
    big = [b for b, (_, mem, _) in enumerate(specs) if d[mem[0]] > 1]
    big_basis = {}
    if big:
        xh = cls[T[:, inv]]  # class of x∘h⁻¹, [M, M]
        H = np.zeros((M, M))
        for b in big:
            H += (b + 1) * sum(d[m] / M * chi[m].conj()[xh] for m in specs[b][1]).real
        lam, Q = np.linalg.eigh((H + H.T) / 2)
        for b in big:
            sel = np.abs(lam - (b + 1)) < 0.5
            want = len(specs[b][1]) * d[specs[b][1][0]] ** 2
            if sel.sum() != want or np.abs(lam[sel] - (b + 1)).max() > 1e-8:
                raise RuntimeError(f"projector of block {specs[b][0]} has rank {sel.sum()} != {want}")
            big_basis[b] = Q[:, sel]

    blocks, cols, start = [], [], 0
    for b, (name, members, kind) in enumerate(specs):
        i = members[0]
        dim = len(members) * d[i] ** 2
        if d[i] == 1:  # Re χ, Im χ: the real Fourier basis (cos, sin of frequency k on Z_M)
            c = chi[i, cls]
            if freq is not None and kind == "complex" and freq[i] > M - freq[i]:
                c = c.conj()  # orient so the sine is sin(+2πkm/M), 0 < k < M/2
            vecs = [c.real / np.sqrt(M)] if kind != "complex" else [c.real * np.sqrt(2 / M), c.imag * np.sqrt(2 / M)]
            basis = np.stack(vecs, axis=1)
        else:
            basis = big_basis[b]
        blocks.append(Block(name, members, kind, int(d[i]), int(dim), start, _frozen(np.ascontiguousarray(basis))))
        cols.append(basis)
        start += dim
    basis = np.concatenate(cols, axis=1)
    err = np.abs(basis.T @ basis - np.eye(M)).max()
    if err > 1e-9:
        raise RuntimeError(f"isotypic basis is not orthonormal (error {err:.2e})")
    return Irreps(
        order=M, identity=e, inverse=_frozen(inv), is_abelian=is_abelian, is_cyclic=is_cyclic,
        classes=tuple(_frozen(c) for c in classes), class_of=_frozen(cls), dims=tuple(int(x) for x in d),
        characters=_frozen(chi), indicators=tuple(int(x) for x in fs), blocks=tuple(blocks),
        basis=_frozen(basis),
    )


def irreps(table: Any) -> Irreps:
    """The `Irreps` of a Cayley table, cached by the table's bytes (it is reused a lot)."""
    T = np.ascontiguousarray(np.asarray(table))
    key = (T.shape, str(T.dtype), hashlib.sha1(T.tobytes()).hexdigest())
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _build(T)
    return _CACHE[key]


def irrep_dimensions(table: Any) -> list[int]:
    """Degrees of the complex irreps, ascending (Σ d² = M is checked)."""
    return list(irreps(table).dims)


def character_table(table: Any) -> np.ndarray:
    """Characters [n_irreps, n_classes] (complex); rows as `irrep_dimensions`, columns as `conjugacy_classes`."""
    return irreps(table).characters


# ----------------------------------------------------------------------------- projections
def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def block_energy(ir: Irreps, w: Any) -> np.ndarray:
    """Share of ‖w‖² in each block: w [..., M] -> [..., n_blocks] (rows sum to 1; 0 for w = 0)."""
    w = _np(w)
    if w.shape[-1] != ir.order:
        raise GroklabError(f"w: last axis {w.shape[-1]}: must be the group order {ir.order}", "w")
    c2 = (w @ ir.basis) ** 2  # [..., M] squared coefficients in the isotypic basis
    starts = np.array([b.start for b in ir.blocks])
    e = np.add.reduceat(c2, starts, axis=-1)  # [..., n_blocks]
    tot = e.sum(axis=-1, keepdims=True)
    return np.divide(e, tot, out=np.zeros_like(e), where=tot > 0)


@dataclass(frozen=True, eq=False)
class UnitFeatures:
    """Per-unit features of a first layer W [..., K, 2M] (operand 0 = columns :M, 1 = M:).

    fractions [..., K, 2, n_blocks]; dominant [..., K, 2] block index; purity [..., K, 2] its share;
    feature [..., K]: the block both operands share as dominant with purity ≥ threshold, else −1.
    """

    names: tuple[str, ...]
    fractions: np.ndarray
    dominant: np.ndarray
    purity: np.ndarray
    feature: np.ndarray
    threshold: float


def unit_features(ir: Irreps, W: Any, threshold: float = PURITY_THRESHOLD) -> UnitFeatures:
    """Block energy per unit and operand for W [K, 2M] or an ensemble [E, K, 2M]."""
    W = _np(W)
    M = ir.order
    if W.ndim not in (2, 3) or W.shape[-1] != 2 * M:
        raise GroklabError(f"W: shape {W.shape}: must be [K, {2 * M}] or [E, K, {2 * M}] (2M = {2 * M})", "W")
    frac = block_energy(ir, W.reshape(*W.shape[:-1], 2, M))  # [..., K, 2, n_blocks]
    dom = frac.argmax(axis=-1)
    pur = frac.max(axis=-1)
    ok = (dom[..., 0] == dom[..., 1]) & (pur.min(axis=-1) >= threshold)
    feat = np.where(ok, dom[..., 0], -1)
    return UnitFeatures(tuple(ir.block_names), frac, dom, pur, feat, threshold)


def features_covered(ir: Irreps, W: Any, threshold: float = PURITY_THRESHOLD) -> set[str] | list[set[str]]:
    """Names of the blocks some unit has learned (`UnitFeatures.feature`); a list of sets for [E, K, 2M]."""
    uf = unit_features(ir, W, threshold)
    names = uf.names
    if uf.feature.ndim == 1:
        return {names[i] for i in np.unique(uf.feature) if i >= 0}
    return [{names[i] for i in np.unique(f) if i >= 0} for f in uf.feature]
