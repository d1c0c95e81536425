"""Directed-graph reachability problems: the object both the construction and the training read.

A problem is (n nodes, edges (s, t), root r, candidates c1, c2) with exactly one candidate
reachable from r (arXiv 2505.12514 §3). The breadth-first sets V_c (nodes reachable within c
steps) are computed here by plain Python, independently of any transformer, so tests can hold a
model's thoughts against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groklab.errors import check

__all__ = ["Problem", "reachable_within", "distances", "random_problem", "frontier_walk"]


@dataclass(frozen=True)
class Problem:
    """One reachability question. ``edges`` in prompt order; nodes are 0..n-1."""

    n: int
    edges: tuple[tuple[int, int], ...]
    root: int
    c1: int
    c2: int

    def __post_init__(self) -> None:
        check(self.n >= 2, "n", self.n, "a problem needs at least 2 nodes")
        for s, t in self.edges:
            check(0 <= s < self.n and 0 <= t < self.n, "edges", (s, t), f"node ids must be in [0, {self.n})")
        for name in ("root", "c1", "c2"):
            v = getattr(self, name)
            check(0 <= v < self.n, name, v, f"must be a node id in [0, {self.n})")
        check(self.c1 != self.c2, "c2", self.c2, "the two candidates must differ")

    @property
    def answer(self) -> int:
        """The reachable candidate; raises if the problem is not well posed (0 or 2 reachable)."""
        d = distances(self.n, self.edges, self.root)
        ok1, ok2 = d[self.c1] >= 0, d[self.c2] >= 0
        check(ok1 != ok2, "candidates", (self.c1, self.c2), "exactly one candidate must be reachable from the root")
        return self.c1 if ok1 else self.c2


def distances(n: int, edges, root: int) -> list[int]:
    """Shortest hop count from ``root`` to every node (-1 = unreachable), by breadth-first search."""
    out: dict[int, list[int]] = {}
    for s, t in edges:
        out.setdefault(s, []).append(t)
    dist = [-1] * n
    dist[root] = 0
    layer = [root]
    while layer:
        nxt = []
        for u in layer:
            for v in out.get(u, []):
                if dist[v] < 0:
                    dist[v] = dist[u] + 1
                    nxt.append(v)
        layer = nxt
    return dist


def reachable_within(n: int, edges, root: int, c: int) -> list[int]:
    """V_c: the sorted nodes reachable from ``root`` in at most ``c`` steps (V_0 = {root})."""
    return [v for v, d in enumerate(distances(n, edges, root)) if 0 <= d <= c]


def frontier_walk(n: int, edges, root: int, c: int) -> list[int]:
    """Nodes at the end of some walk of exactly ``c`` steps from the root.

    This is the official notebook's 'frontier' (it expands the current set ``c`` times without
    removing visited nodes), which on a DAG built in layers equals the nodes at distance c.
    """
    cur = {root}
    for _ in range(c):
        cur = {t for s, t in edges if s in cur}
    return sorted(cur)


def random_problem(rng: np.random.Generator, n: int, p_edge: float, depth: int | None = None,
                   allow_cycles: bool = True, max_tries: int = 1000) -> Problem:
    """A random directed graph on ``n`` nodes (each ordered pair an edge with probability p_edge;
    with ``allow_cycles=False`` only pairs s < t) and a well-posed question on it.

    ``depth``: the reachable candidate sits at exactly that hop distance (so it enters V_c only at
    c = depth); the other candidate is any unreachable node. Retries until such a pair exists.
    """
    check(n >= 3, "n", n, "must be >= 3")
    check(0.0 < p_edge <= 1.0, "p_edge", p_edge, "must be in (0, 1]")
    for _ in range(max_tries):
        mask = rng.random((n, n)) < p_edge
        np.fill_diagonal(mask, False)
        if not allow_cycles:
            mask = np.triu(mask, 1)
        perm = rng.permutation(n)  # node names independent of their order in the DAG
        edges = [(int(perm[s]), int(perm[t])) for s, t in zip(*np.nonzero(mask))]
        rng.shuffle(edges)
        root = int(rng.integers(n))
        d = distances(n, edges, root)
        good = [v for v in range(n) if (d[v] == depth if depth is not None else d[v] > 0)]
        bad = [v for v in range(n) if d[v] < 0]
        if good and bad:
            c_good, c_bad = int(rng.choice(good)), int(rng.choice(bad))
            c1, c2 = (c_good, c_bad) if rng.random() < 0.5 else (c_bad, c_good)
            return Problem(n, tuple(edges), root, c1, c2)
    raise RuntimeError(f"no well-posed problem found in {max_tries} tries (n={n}, p_edge={p_edge}, depth={depth})")
