"""Cayley tables of the built-in groups, and the group-axiom checker.

Every generator returns ``(table, labels)``: ``table`` is int64 ``[M, M]`` with
``table[a, b] = a∘b`` and ``labels`` the M element names. `check_group_axioms` validates any
table (built-in or loaded from a file) and names the first violation it finds.
"""

from __future__ import annotations

import itertools

import numpy as np

from groklab.errors import GroklabError

__all__ = [
    "alternating",
    "check_group_axioms",
    "cyclic",
    "dihedral",
    "direct_product",
    "identity_of",
    "inverse_of",
    "quaternion",
    "symmetric",
]

Table = tuple[np.ndarray, tuple[str, ...]]


def cyclic(n: int) -> Table:
    """Z_n: addition mod n; element i is labelled "i"."""
    return direct_product([n])[0], tuple(str(i) for i in range(n))


def direct_product(orders: list[int]) -> Table:
    """Z_o0 × Z_o1 × ...: coordinate-wise addition.

    Element index = x0 + x1*o0 + x2*o0*o1 + ... (first coordinate varies fastest), as in the Li2
    code; labels "(x0,x1,...)". So Z2xZ3 ≅ Z6, but the two tables differ.
    """
    m = int(np.prod(orders))
    idx = np.arange(m)
    coords, strides, s = [], [], 1
    for o in orders:
        coords.append((idx // s) % o)
        strides.append(s)
        s *= o
    table = np.zeros((m, m), dtype=np.int64)
    for c, o, st in zip(coords, orders, strides):
        table += ((c[:, None] + c[None, :]) % o) * st
    labels = tuple("(" + ",".join(str(int(c[i])) for c in coords) + ")" for i in range(m))
    return table, labels


def dihedral(n: int) -> Table:
    """D_n, the 2n symmetries of the regular n-gon with vertices 0..n-1.

    Index k < n is the rotation r^k (label "rk"): vertex i ↦ i + k. Index n + k is s·r^k
    (label "s rk"): i ↦ −(i + k), i.e. rotate by k, then reflect through vertex 0. The table is
    function composition, like S_n: (a∘b)(i) = a(b(i)). For a = s^f1 r^k1 and b = s^f2 r^k2 this
    gives a∘b = s^(f1 xor f2) r^(k2 + (−1)^f2 · k1); in particular r∘s = s∘r^(−1).
    """
    m = 2 * n
    f, k = np.arange(m) // n, np.arange(m) % n
    f1, k1, f2, k2 = f[:, None], k[:, None], f[None, :], k[None, :]
    table = (f1 ^ f2) * n + (k2 + np.where(f2 == 1, -k1, k1)) % n
    labels = tuple(f"r{i}" for i in range(n)) + tuple(f"s r{i}" for i in range(n))
    return table.astype(np.int64), labels


def _perm_group(perms: np.ndarray) -> Table:
    """Composition table of a list of permutations (rows of `perms`, one-line notation)."""
    m, n = perms.shape
    weights = n ** np.arange(n)  # each permutation as a base-n number, for lookup
    lookup = np.full(n**n, -1, dtype=np.int64)
    lookup[perms @ weights] = np.arange(m)
    composed = perms[:, perms]  # composed[a, b, i] = a(b(i)): a∘b applies b first
    table = lookup[composed @ weights]
    labels = tuple("[" + " ".join(map(str, p)) + "]" for p in perms.tolist())
    return table, labels


def symmetric(n: int) -> Table:
    """S_n: permutations of 0..n-1 in lexicographic order (index 0 is the identity).

    Labels are one-line notation "[p(0) p(1) ...]" (brackets, not cycle notation);
    table[a, b] = a∘b with (a∘b)(i) = a(b(i)).
    """
    return _perm_group(np.array(list(itertools.permutations(range(n))), dtype=np.int64))


def _is_even(p: tuple[int, ...]) -> bool:
    inversions = sum(1 for i in range(len(p)) for j in range(i + 1, len(p)) if p[i] > p[j])
    return inversions % 2 == 0


def alternating(n: int) -> Table:
    """A_n: the even permutations of 0..n-1 in lexicographic order; as `symmetric` otherwise."""
    perms = [p for p in itertools.permutations(range(n)) if _is_even(p)]
    return _perm_group(np.array(perms, dtype=np.int64))


# Unit quaternions 1, i, j, k: _QMUL[u][v] = (sign, w) with u·v = sign·w.
_QMUL = [
    [(1, 0), (1, 1), (1, 2), (1, 3)],
    [(1, 1), (-1, 0), (1, 3), (-1, 2)],  # i·i = −1, i·j = k, i·k = −j
    [(1, 2), (-1, 3), (-1, 0), (1, 1)],  # j·i = −k, j·j = −1, j·k = i
    [(1, 3), (1, 2), (-1, 1), (-1, 0)],  # k·i = j, k·j = −i, k·k = −1
]


def quaternion() -> Table:
    """Q8 with elements 1, −1, i, −i, j, −j, k, −k (index 2u + s: unit u, s = 1 for a minus)."""
    table = np.zeros((8, 8), dtype=np.int64)
    for a, b in itertools.product(range(8), repeat=2):
        sign, w = _QMUL[a // 2][b // 2]
        sign *= (-1) ** (a % 2 + b % 2)
        table[a, b] = 2 * w + (sign < 0)
    return table, ("1", "-1", "i", "-i", "j", "-j", "k", "-k")


# ---------------------------------------------------------------------------------------------
# Axioms


def _generators(t: np.ndarray, limit: int) -> list[int] | None:
    """A set S such that every element is a product of elements of S (≤ `limit` of them), or None.

    Greedy: add the first element not yet reached, then close under right multiplication.
    Element 0 is tried last: for the built-in groups it is the identity, which generates nothing.
    """
    m = t.shape[0]
    gens: list[int] = []
    reached = np.zeros(m, dtype=bool)
    order = np.roll(np.arange(m), -1)
    while not reached.all():
        if len(gens) == limit:
            return None
        gens.append(int(order[np.flatnonzero(~reached[order])[0]]))
        reached[gens[-1]] = True
        frontier = np.flatnonzero(reached)
        while frontier.size:
            nxt = np.unique(t[np.ix_(frontier, gens)])
            frontier = nxt[~reached[nxt]]
            reached[frontier] = True
    return gens


def _first_non_associative(t: np.ndarray) -> tuple[int, int, int] | None:
    """The lexicographically first triple with (a∘b)∘c ≠ a∘(b∘c), or None.

    Fast path (Light's associativity test): the middle elements b for which (ab)c = a(bc) for all
    a, c are closed under the operation, so checking b over a generating set proves associativity
    in O(M² · |S|). Only when that fails is the full O(M³) scan run (in chunks of a) to name the
    first violation; above ~1e9 triples the violation Light's test found is reported instead.
    """
    m = t.shape[0]
    gens = _generators(t, limit=24)
    light_hit = None
    if gens is not None:
        for g in gens:
            bad = t[t[:, g]] != np.take(t, t[g], axis=1)  # [a, c]: (a∘g)∘c vs a∘(g∘c)
            if bad.any():
                a, c = np.argwhere(bad)[0]
                light_hit = (int(a), g, int(c))
                break
        else:
            return None
    if light_hit is not None and m**3 > 10**9:
        return light_hit
    chunk = max(1, 4_000_000 // (m * m))
    for lo in range(0, m, chunk):
        rows = t[lo : lo + chunk]  # [ca, M]: a∘b
        bad = t[rows] != rows[:, t]  # [ca, M, M]: (a∘b)∘c vs a∘(b∘c)
        if bad.any():
            a, b, c = np.argwhere(bad)[0]
            return int(a) + lo, int(b), int(c)
    return None


def check_group_axioms(table: np.ndarray, name: str) -> None:
    """Raise `GroklabError` naming the first violated group axiom of `table`, else return.

    Checked in order: 2-D, square, integer entries, closure (entries in [0, M)),
    associativity, identity, inverses. Messages look like
    ``table:g.csv is not associative: (3∘5)∘7 = 2 but 3∘(5∘7) = 4``.
    """
    t = np.asarray(table)
    if t.ndim != 2:
        raise GroklabError(f"{name} is not a 2-D table: shape {tuple(t.shape)}", field="group")
    if t.shape[0] != t.shape[1]:
        raise GroklabError(f"{name} is not square: shape {tuple(t.shape)}", field="group")
    m = t.shape[0]
    if m == 0:
        raise GroklabError(f"{name} is empty: shape {tuple(t.shape)}", field="group")
    if t.dtype.kind not in "iu":
        raise GroklabError(f"{name}: entries must be integers, got dtype {t.dtype}", field="group")
    out = (t < 0) | (t >= m)
    if out.any():
        a, b = np.argwhere(out)[0]
        raise GroklabError(f"{name}: entry T[{a}, {b}] = {t[a, b]} is outside [0, {m})", field="group")
    t = t.astype(np.int64, copy=False)
    hit = _first_non_associative(t)
    if hit is not None:
        a, b, c = hit
        left, right = t[t[a, b], c], t[a, t[b, c]]
        raise GroklabError(
            f"{name} is not associative: ({a}∘{b})∘{c} = {left} but {a}∘({b}∘{c}) = {right}", field="group"
        )
    e = identity_of(t)
    if e is None:
        raise GroklabError(f"{name} has no identity element", field="group")
    has_inv = ((t == e) & (t.T == e)).any(axis=1)
    if not has_inv.all():
        raise GroklabError(f"{name}: element {int(np.flatnonzero(~has_inv)[0])} has no inverse", field="group")


def identity_of(t: np.ndarray) -> int | None:
    """Index of the two-sided identity of table `t`, or None."""
    ar = np.arange(t.shape[0])
    ok = (t == ar[None, :]).all(axis=1) & (t == ar[:, None]).all(axis=0)
    hits = np.flatnonzero(ok)
    return int(hits[0]) if hits.size else None


def inverse_of(t: np.ndarray, e: int) -> np.ndarray:
    """inverse[g] for a group table `t` with identity `e` (int64 [M])."""
    return np.argmax((t == e) & (t.T == e), axis=1).astype(np.int64)
