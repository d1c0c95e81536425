"""The paper's probes of trained thoughts (§5.3, Table 1, Fig. 6; official ``notebook.ipynb``).

- Thought probe: the inner product of thought i with each node's token embedding, grouped as
  Reachable (within i hops), Frontier (end of an i-step walk; the notebook's ``current_node_set``),
  Optimal (``neighbor_k[i]``: on a shortest root->target path), Not reachable. Frontier ⊂
  Reachable, Optimal ⊂ Frontier on these layered graphs. We add Frontier-not-optimal, the group
  that says whether the frontier is held in superposition beyond the supervised path, and
  Reachable-not-root: the root's own embedding rides along in every thought (it is the first
  thought's input), which lifts Reachable even in an untrained network (see the probe test).
- Edge attention: while making thought i+1 (i = 0..depth-1), the last layer's attention of the
  thought-making position, summed over heads and over the edge triplet (s, t, <e>), grouped by the
  edge's source: Reachable (in V_i), Frontier (in the i-step walk set), Optimal (frontier edge
  whose target is in neighbor_k[i+1]), Not reachable.
Groups report mean and standard deviation over all (graph, node) or (graph, edge) members.

Within-graph contrasts (``contrast``): pooled means mix graphs whose thoughts have different norms
(on the exact construction every reachable node weighs 1/sqrt|V_i|, so graphs with small V_i lift
whichever group they hold more of), so per thought we also report, over the graphs that have both
sides, the mean and spread of the per-graph difference of group means: frontier - not reachable
(does the thought hold the frontier at all), optimal - frontier-not-optimal (does it prefer the
supervised path over the rest of the frontier: 0 on the exact construction) and
reachable-not-frontier - not reachable (does it keep nodes reached earlier, as eq. (1) does).
"""

from __future__ import annotations

import numpy as np
import torch

from groklab.superposition.data import Graph, Vocab, encode_batch
from groklab.superposition.graphs import distances, frontier_walk
from groklab.superposition.model import GPT, coconut_forward

__all__ = ["probe", "group", "probe_construction", "GROUPS"]

GROUPS = ("not_reachable", "reachable", "reachable_not_root", "frontier", "frontier_not_optimal", "optimal")
CONTRASTS = {"frontier_vs_not_reachable": ("frontier", "not_reachable"),
             "optimal_vs_frontier_not_optimal": ("optimal", "frontier_not_optimal"),
             "earlier_vs_not_reachable": ("earlier", "not_reachable")}


def _stats(vals: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Mean, std, count per group; None for an empty group (JSON has no NaN)."""
    return {g: dict(mean=float(np.mean(v)) if v else None, std=float(np.std(v)) if v else None, n=len(v))
            for g, v in vals.items()}


@torch.no_grad()
def probe(model: GPT, graphs: list[Graph], voc: Vocab, depth: int, seed: int = 0) -> dict:
    """{'thought': [per thought i=1..depth: {group: {mean, std, n}}], 'edge_attention': [per step
    i=0..depth-1: {group: ...}]} for a trained (or untrained) GPT."""
    rng = np.random.default_rng(seed)
    b = encode_batch(graphs, voc, "coconut", depth, rng)
    _, th, passes = coconut_forward(model, b.tokens, b.pos, b.pad, b.prompt_len, depth, keep=True)
    ip = (th @ model.wte.weight.T).numpy()  # (B, depth, V): <thought i, u_v>
    # last layer, summed over heads, the row of the position making thought i+1: (B, Tp + t)
    att = [passes[i][-1][:, :, -1, :].sum(1).numpy() for i in range(depth)]
    first_edge = [int(p) + 1 for p in b.pad.sum(1)]  # after the left padding and <s>
    return group(ip, att, first_edge, graphs)


def group(ip: np.ndarray, att: list[np.ndarray], first_edge: list[int], graphs: list[Graph]) -> dict:
    """The grouping alone, for any model: ip (B, depth, V) inner products of thought i with each
    token embedding; att[i] (B, T_i) attention of the position making thought i+1; the first edge
    triplet (s, t, <e>) of graph b starts at first_edge[b]."""
    depth = ip.shape[1]
    out_t, out_e, out_c = [], [], []
    for i in range(1, depth + 1):
        vals: dict[str, list[float]] = {g: [] for g in GROUPS}
        diffs: dict[str, list[float]] = {c: [] for c in CONTRASTS}
        for gi, g in enumerate(graphs):
            before = {k: len(v) for k, v in vals.items()}
            earlier: list[float] = []
            local = {v: k for k, v in enumerate(g.nodes)}
            e_loc = [(local[s], local[t]) for s, t in g.edges]
            d = distances(len(g.nodes), e_loc, local[g.root])
            front = {g.nodes[k] for k in frontier_walk(len(g.nodes), e_loc, local[g.root], i)}
            for v in g.nodes:
                x = float(ip[gi, i - 1, v])
                if 0 <= d[local[v]] <= i:
                    vals["reachable"].append(x)
                    if v != g.root:
                        vals["reachable_not_root"].append(x)
                    if v in front:
                        vals["frontier"].append(x)
                        vals["optimal" if v in g.optimal[i] else "frontier_not_optimal"].append(x)
                    elif v != g.root:
                        earlier.append(x)
                else:
                    vals["not_reachable"].append(x)
            mine = {k: vals[k][before[k]:] for k in vals}  # this graph's members of each group
            mine["earlier"] = earlier
            for c, (a, b) in CONTRASTS.items():
                if mine[a] and mine[b]:
                    diffs[c].append(float(np.mean(mine[a]) - np.mean(mine[b])))
        out_t.append(_stats(vals))
        out_c.append({c: dict(mean=float(np.mean(d)) if d else None, std=float(np.std(d)) if d else None,
                              positive=float(np.mean(np.array(d) > 0)) if d else None, graphs=len(d))
                      for c, d in diffs.items()})
    for i in range(depth):
        vals = {g: [] for g in ("not_reachable", "reachable", "frontier", "optimal")}
        for gi, g in enumerate(graphs):
            local = {v: k for k, v in enumerate(g.nodes)}
            e_loc = [(local[s], local[t]) for s, t in g.edges]
            d = distances(len(g.nodes), e_loc, local[g.root])
            front = {g.nodes[k] for k in frontier_walk(len(g.nodes), e_loc, local[g.root], i)}
            first = first_edge[gi]
            for j, (s, t) in enumerate(g.edges):
                mass = float(att[i][gi, first + 3 * j: first + 3 * j + 3].sum())
                if 0 <= d[local[s]] <= i:
                    vals["reachable"].append(mass)
                    if s in front:
                        vals["frontier"].append(mass)
                        if t in g.optimal[i + 1]:
                            vals["optimal"].append(mass)
                else:
                    vals["not_reachable"].append(mass)
        out_e.append(_stats(vals))
    return {"thought": out_t, "edge_attention": out_e, "contrast": out_c}


def probe_construction(graphs: list[Graph], n_tokens: int) -> dict:
    """The same probes on the exact construction (arXiv 2505.12514 §4): a positive control, where
    Reachable reads 1/sqrt|V_i|, Not reachable 0, and each edge leaving V_i gets 1/|I_i|."""
    from groklab.superposition.construction import Construction, ConstructionConfig
    from groklab.superposition.graphs import Problem

    depth = len(graphs[0].optimal) - 1
    m = max(len(g.edges) for g in graphs)
    C = Construction(ConstructionConfig(n_max=n_tokens, m_max=m))
    ip, att = [], [[] for _ in range(depth)]
    T = 3 * m + 6 + depth
    for g in graphs:
        th = C.think(Problem(n_tokens, g.edges, g.root, g.target, g.neg), depth)
        ip.append((th.thoughts[1:, C.blocks["content"]] @ C.U).numpy())  # (depth, V)
        for i in range(depth):
            row = np.zeros(T)
            row[: th.attn_l2[i].numel()] = th.attn_l2[i].numpy()
            att[i].append(row)
    return group(np.stack(ip), [np.stack(a) for a in att], [1] * len(graphs), graphs)
