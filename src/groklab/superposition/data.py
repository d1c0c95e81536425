"""ProsQA-like reachability data at CPU scale, and batches for the three arms.

A graph (cf. the official data ``prosqa_*_graph_4_coconut.json``: edges, root, target,
neg_target, neighbor_k) is two layered DAGs on random node tokens: group A hangs from the root,
group B from a second source nobody asks about; each non-source node at level l has 1-2 parents
at level l-1 of its own group, so a node's distance from its source is its level; a few edges go
from B into A (never back, so B stays unreachable). The target is a level-`depth` node of A, the
negative target a level-`depth` node of B. ``optimal[k]`` = nodes at distance k from the root and
depth-k from the target (the official ``neighbor_k``: nodes of some shortest root->target path).

Token layout (the paper's Fig. 1, every edge closed by <e>; the official code joins edges with
'|' and has none after the last):  <s> s t <e> ... <Q> c1 c2 <R> r | suffix.
Prompts are left-padded to a common length so the root and all later positions line up across a
batch (the official collator pads the same way for the same reason); positions restart at 0 at
the first real token.

Suffixes (official ``dataset.py``; ``expand_data``, ``get_graph_cot_dataset``, ``..._no_cot_...``):
- coconut, stage k < depth: k latent slots; the last position predicts one optimal node of hop k+1
  (standard Coconut), or, with the BFS loss of "Emergence of Superposition" (arXiv 2509.23365
  App. E.2, official ``coconut.py`` ``bfs-paper-loss``), any node of the hop-(k+1) frontier:
  loss = -log sum_{v in frontier} p(v) (``frontier_tokens``).
- coconut, stage k >= depth: depth latent slots, <A>; <A> predicts the target.
- cot: the nodes of a random shortest path, <A>, target (teacher-forced on all of them).
- nocot: <A>, target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from groklab.errors import check

__all__ = ["DataConfig", "Graph", "Vocab", "make_graph", "encode_batch", "frontier_tokens", "IGNORE"]

IGNORE = -100


@dataclass(frozen=True)
class Vocab:
    """Node tokens 0..n_tokens-1, then the specials (same order as the construction's)."""

    n_tokens: int

    @property
    def BOS(self) -> int: return self.n_tokens  # noqa: E704
    @property
    def EDGE(self) -> int: return self.n_tokens + 1  # noqa: E704
    @property
    def QUES(self) -> int: return self.n_tokens + 2  # noqa: E704
    @property
    def REASON(self) -> int: return self.n_tokens + 3  # noqa: E704
    @property
    def ANS(self) -> int: return self.n_tokens + 4  # noqa: E704
    @property
    def LATENT(self) -> int: return self.n_tokens + 5  # noqa: E704
    @property
    def PAD(self) -> int: return self.n_tokens + 6  # noqa: E704
    @property
    def size(self) -> int: return self.n_tokens + 7  # noqa: E704


@dataclass(frozen=True)
class DataConfig:
    n_min: int = 10  # nodes per graph
    n_max: int = 12
    depth: int = 3  # hops from root to target (every graph; ProsQA mixes 3 and 4)
    n_tokens: int = 16  # node vocabulary; each graph uses a random subset (the official shuffle_nodes)
    p_second_parent: float = 0.5
    cross_edges: float = 0.25  # B->A edges per node

    def __post_init__(self) -> None:
        check(1 <= self.depth <= 8, "depth", self.depth, "must be in [1, 8]")
        check(self.n_min >= 2 * (self.depth + 1), "n_min", self.n_min, f"must be >= 2(depth+1) = {2 * (self.depth + 1)}")
        check(self.n_max >= self.n_min, "n_max", self.n_max, f"must be >= n_min = {self.n_min}")
        check(self.n_tokens >= self.n_max, "n_tokens", self.n_tokens, f"must be >= n_max = {self.n_max}")
        check(0 <= self.p_second_parent <= 1, "p_second_parent", self.p_second_parent, "must be in [0, 1]")
        check(0 <= self.cross_edges <= 2, "cross_edges", self.cross_edges, "must be in [0, 2]")

    @property
    def vocab(self) -> Vocab:
        return Vocab(self.n_tokens)

    @property
    def max_edges(self) -> int:
        # each non-source node has <= 2 parents; plus the cross edges
        return 2 * self.n_max + int(np.ceil(self.cross_edges * self.n_max))


@dataclass(frozen=True)
class Graph:
    edges: tuple[tuple[int, int], ...]  # token ids, prompt order
    root: int
    target: int
    neg: int
    optimal: tuple[tuple[int, ...], ...]  # optimal[k] for k = 0..depth (optimal[0] = (root,))
    nodes: tuple[int, ...]


def _levels(rng: np.random.Generator, size: int, depth: int) -> list[list[int]]:
    """Split local ids 0..size-1 into depth+1 levels: one source, every other level non-empty."""
    rest = list(range(1, size))
    cuts = np.sort(rng.choice(np.arange(1, len(rest)), size=depth - 1, replace=False)) if depth > 1 else []
    levels, lo = [[0]], 0
    for c in list(cuts) + [len(rest)]:
        levels.append(rest[lo:c])
        lo = c
    return levels


def make_graph(rng: np.random.Generator, cfg: DataConfig) -> Graph:
    n = int(rng.integers(cfg.n_min, cfg.n_max + 1))
    a = int(rng.integers(cfg.depth + 1, n - cfg.depth))  # |A|; |B| = n - a >= depth + 1
    names = rng.permutation(cfg.n_tokens)[:n]
    edges: list[tuple[int, int]] = []
    groups = []
    for off, size in ((0, a), (a, n - a)):
        lv = [[off + v for v in level] for level in _levels(rng, size, cfg.depth)]
        for l in range(1, len(lv)):
            for v in lv[l]:
                k = 2 if (rng.random() < cfg.p_second_parent and len(lv[l - 1]) > 1) else 1
                for u in rng.choice(lv[l - 1], size=k, replace=False):
                    edges.append((int(u), v))
        groups.append(lv)
    A, B = groups
    b_nodes = [v for level in B for v in level]
    a_nodes = [v for level in A[1:] for v in level]  # not the root: its distance stays 0
    for _ in range(int(rng.binomial(len(b_nodes) + len(a_nodes), cfg.cross_edges / 2))):
        e = (int(rng.choice(b_nodes)), int(rng.choice(a_nodes)))
        if e not in edges:
            edges.append(e)
    rng.shuffle(edges)
    root, target, neg = 0, int(rng.choice(A[-1])), int(rng.choice(B[-1]))
    # optimal nodes: dist(root, v) = k and dist(v, target) = depth - k
    from groklab.superposition.graphs import distances

    d_root = distances(n, edges, root)
    d_to = distances(n, [(t, s) for s, t in edges], target)
    opt = tuple(tuple(int(names[v]) for v in range(n) if d_root[v] == k and d_to[v] == cfg.depth - k)
                for k in range(cfg.depth + 1))
    assert d_root[target] == cfg.depth and d_root[neg] < 0
    return Graph(tuple((int(names[s]), int(names[t])) for s, t in edges), int(names[root]), int(names[target]),
                 int(names[neg]), opt, tuple(int(x) for x in names))


def frontier_tokens(g: Graph, c: int) -> list[int]:
    """Token ids of the nodes at the end of some c-step walk from the root (the BFS loss's
    candidate set for the thought that makes hop c; on these layered graphs, distance c)."""
    from groklab.superposition.graphs import frontier_walk

    local = {v: k for k, v in enumerate(g.nodes)}
    return [g.nodes[k] for k in frontier_walk(len(g.nodes), [(local[s], local[t]) for s, t in g.edges], local[g.root], c)]


def prompt_tokens(g: Graph, voc: Vocab, swap: bool) -> list[int]:
    toks = [voc.BOS]
    for s, t in g.edges:
        toks += [s, t, voc.EDGE]
    c1, c2 = (g.neg, g.target) if swap else (g.target, g.neg)
    return toks + [voc.QUES, c1, c2, voc.REASON, g.root]


def shortest_path(rng: np.random.Generator, g: Graph) -> list[int]:
    """A random root->target shortest path (official get_graph_cot_dataset: at hop i pick a random
    optimal node with an edge from the current one)."""
    cur, path = g.root, []
    es = set(g.edges)
    for k in range(1, len(g.optimal)):
        nxt = [v for v in g.optimal[k] if (cur, v) in es]
        cur = int(rng.choice(nxt))
        path.append(cur)
    return path


@dataclass
class Batch:
    tokens: torch.Tensor  # (B, T) long; LATENT slots to be filled by thoughts
    pos: torch.Tensor  # (B, T) long position ids
    pad: torch.Tensor  # (B, T) bool, True at left padding
    targets: torch.Tensor  # (B, T) long, IGNORE except where a next token is supervised
    prompt_len: int  # Lp: index of the first suffix position
    n_latent: int
    graphs: list[Graph]
    swaps: list[bool]


def encode_batch(graphs: list[Graph], voc: Vocab, arm: str, stage: int, rng: np.random.Generator,
                 swaps: list[bool] | None = None) -> Batch:
    """One batch of one arm; ``stage`` only matters for coconut (capped at depth for the answer)."""
    check(arm in ("coconut", "cot", "nocot"), "arm", arm, "one of coconut, cot, nocot")
    depth = len(graphs[0].optimal) - 1
    if swaps is None:
        swaps = [bool(rng.random() < 0.5) for _ in graphs]
    prompts = [prompt_tokens(g, voc, s) for g, s in zip(graphs, swaps)]
    Lp = max(len(p) for p in prompts)
    rows, tgts, n_latent = [], [], 0
    for g, p in zip(graphs, prompts):
        if arm == "coconut":
            if stage < depth:
                suffix = [voc.LATENT] * stage
                sup = {len(suffix) - 1: int(rng.choice(g.optimal[stage + 1]))}  # offset -1 = the root
            else:
                suffix = [voc.LATENT] * depth + [voc.ANS]
                sup = {len(suffix) - 1: g.target}
            n_latent = min(stage, depth)
        elif arm == "cot":
            path = shortest_path(rng, g)
            suffix = path + [voc.ANS]
            seq = path + [voc.ANS, g.target]
            sup = {i - 1: seq[i] for i in range(len(seq))}
        else:
            suffix = [voc.ANS]
            sup = {-1: voc.ANS, 0: g.target}
        pad = Lp - len(p)
        rows.append(([voc.PAD] * pad + p + suffix, pad))
        t = [IGNORE] * (Lp + len(suffix))
        for off, tok in sup.items():
            t[Lp + off] = tok
        tgts.append(t)
    T = len(rows[0][0])
    tokens = torch.tensor([r for r, _ in rows], dtype=torch.long)
    pads = torch.tensor([pd for _, pd in rows])
    idx = torch.arange(T)[None]
    pad = idx < pads[:, None]
    pos = (idx - pads[:, None]).clamp(min=0)
    return Batch(tokens, pos, pad, torch.tensor(tgts, dtype=torch.long), Lp, n_latent, graphs, swaps)
