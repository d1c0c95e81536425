"""The hand-built construction of arXiv 2505.12514: thoughts are exact BFS superpositions.

Every fact here could be false: the thoughts are compared with eq. (1) computed from an
independent breadth-first search, the answer with the reachable candidate, and the paper's
literal constants are shown to fail on the graphs where we changed them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from groklab.errors import GroklabError
from groklab.superposition.construction import Construction, ConstructionConfig
from groklab.superposition.graphs import Problem, distances, random_problem, reachable_within

CASES = [("sinusoidal", "identity"), ("sinusoidal", "random"), ("rope", "identity"), ("rope", "random")]


def _check_exact(C: Construction, p: Problem, n_thoughts: int, tol: float = 1e-12):
    th = C.think(p, n_thoughts)
    for c in range(n_thoughts + 1):
        want = C.superposition(reachable_within(p.n, p.edges, p.root, c))
        err = (th.thoughts[c] - want).abs().max().item()
        assert err < tol, (c, err)
    return th


@pytest.mark.parametrize("position,basis", CASES)
def test_thoughts_are_bfs_superpositions_on_random_graphs(position, basis):
    """Random digraphs with cycles: [t_c] = (1/sqrt|V_c|) Σ_{V_c} u_v for every c, and <A> answers."""
    C = Construction(ConstructionConfig(n_max=12, m_max=40, position=position, basis=basis, seed=3))
    rng = np.random.default_rng(0)
    n_cyclic = 0
    for _ in range(12):
        n = int(rng.integers(5, 13))
        p = random_problem(rng, n, p_edge=min(0.3, 30 / (n * n)))
        if len(p.edges) > 40:
            continue
        D = max(distances(p.n, p.edges, p.root))
        th = _check_exact(C, p, D + 1)  # one thought past the diameter: the set must stay fixed
        assert th.prediction == p.answer
        lg = th.logits
        assert lg[p.answer] > lg[p.c1 + p.c2 - p.answer] + 0.1  # 2 vs 1 before the 1/sqrt(|V_C|+5)
        n_cyclic += any(distances(p.n, p.edges, t)[s] >= 0 for s, t in p.edges)  # s reachable from t
    assert n_cyclic >= 4  # the sample really contains directed cycles


@pytest.mark.parametrize("position", ["sinusoidal", "rope"])
def test_candidate_reachable_only_at_hop_D(position):
    """A candidate at distance exactly D: absent from [t_{D-1}], present in [t_D]; with D-1 thoughts
    both candidates score the same (negative control: the answer is not decided early)."""
    C = Construction(ConstructionConfig(n_max=12, m_max=30, position=position))
    rng = np.random.default_rng(7)
    for depth in (2, 3, 4):
        p = random_problem(rng, 12, p_edge=0.12, depth=depth, allow_cycles=True)
        th = _check_exact(C, p, depth)
        good, bad = p.answer, p.c1 + p.c2 - p.answer
        k = C.blocks["content"]
        assert abs(float(th.thoughts[depth - 1][k] @ C.U[:, good])) < 1e-12
        assert float(th.thoughts[depth][k] @ C.U[:, good]) > 0.1
        assert th.prediction == good
        early = C.think(p, depth - 1)
        assert torch.isclose(early.logits[good], early.logits[bad], atol=1e-12)


def test_disconnected_candidate_and_cycle_back_to_root():
    """Two components; the root's component is a directed cycle with a chord. The other candidate
    lives in the second component (it has in- and out-edges, so it is in many buffers)."""
    edges = ((0, 1), (1, 2), (2, 3), (3, 0), (1, 3), (3, 4), (5, 6), (6, 7), (7, 5), (6, 8))
    for c1, c2 in ((4, 6), (7, 2)):
        p = Problem(9, edges, 0, c1, c2)
        for position in ("sinusoidal", "rope"):
            C = Construction(ConstructionConfig(n_max=9, position=position))
            th = _check_exact(C, p, 5)
            assert th.prediction == p.answer
            assert reachable_within(9, edges, 0, 5) == [0, 1, 2, 3, 4]


def test_layer1_choosers_attend_where_lemma3_says():
    """<e> heads put > 1 - 1e-9 on i-2 (source) and i-1 (target); <R> heads on the candidates;
    every other position on <s> (attention sink)."""
    for position in ("sinusoidal", "rope"):
        C = Construction(ConstructionConfig(n_max=16, position=position))
        p = random_problem(np.random.default_rng(1), 16, 0.2)
        toks = C.prompt(p) + [C.ANS]
        h = C.embed(toks)
        h[-2] = C.superposition([p.root])
        _, maps = C.forward(h)
        a = maps["l1"]
        for head, (x, ell) in enumerate([(C.EDGE, 2), (C.EDGE, 1), (C.REASON, 2), (C.REASON, 1), (C.ANS, 1)]):
            for i, t in enumerate(toks):
                j = i - ell if t == x else 0
                assert a[head, i, j] > 1 - 1e-9, (head, i)


def test_paper_literal_threshold_fails_on_a_dense_graph():
    """eps2 = 1/(4n) as printed filters out a target reached by one of many matched edges
    (weight 1/(sqrt(3) |I_c|) with |I_c| = 17 matched edges at c = 1); the corrected eps2 keeps it."""
    edges = [(0, i) for i in range(1, 5)] + [(a, b) for a in range(1, 5) for b in range(1, 5) if a != b] + [(4, 5)]
    p = Problem(7, tuple(edges), 0, 5, 6)
    good = Construction(ConstructionConfig(n_max=7))
    _check_exact(good, p, 2)
    assert good.think(p, 2).prediction == 5
    lit = Construction(ConstructionConfig(n_max=7, paper_literal=True))
    th = lit.think(p, 2)
    assert (th.thoughts[2] - lit.superposition(reachable_within(7, edges, 0, 2))).abs().max() > 0.3
    assert th.prediction != 5
    assert 1 / (math.sqrt(3) * 17) < lit.eps2  # the arithmetic of the failure


def test_paper_literal_without_sink_leaks_when_no_edge_leaves_the_root():
    """Root without out-edges: the literal layer 2 spreads attention over all positions and puts
    the many-in-edge node 3 into the thought; with the <s> sink the thought stays u_root."""
    edges = ((1, 3), (2, 3), (4, 3), (5, 3), (1, 2))
    p = Problem(6, edges, 0, 0, 3)
    good = Construction(ConstructionConfig(n_max=6))
    th = _check_exact(good, p, 2)
    assert th.prediction == 0
    lit = Construction(ConstructionConfig(n_max=6, paper_literal=True))
    th = lit.think(p, 2)
    assert (th.thoughts[1] - lit.superposition([0])).abs().max() > 0.5
    assert torch.isclose(th.logits[0], th.logits[3])  # the literal model cannot tell the candidates apart


def test_layer2_attention_is_uniform_over_edges_leaving_Vc():
    """The position making [t_{c+1}] spends equal attention on each <e> whose source is in V_c."""
    edges = ((0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (5, 0))
    p = Problem(6, edges, 0, 4, 5)
    C = Construction(ConstructionConfig(n_max=6))
    th = C.think(p, 3)
    toks = C.prompt(p)
    e_pos = [i for i, t in enumerate(toks) if t == C.EDGE]
    for c in range(3):
        Vc = set(reachable_within(6, edges, 0, c))
        matched = [i for i, (s, _) in zip(e_pos, edges) if s in Vc]
        a = th.attn_l2[c]
        assert torch.allclose(a[matched], torch.full((len(matched),), 1 / len(matched), dtype=torch.float64), atol=1e-12)


def test_config_and_problem_errors_name_the_field():
    with pytest.raises(GroklabError, match="--position 'alibi'"):
        ConstructionConfig(position="alibi")
    with pytest.raises(GroklabError, match="--d-pe 3"):
        ConstructionConfig(d_pe=3)
    with pytest.raises(GroklabError, match="exactly one candidate"):
        Problem(3, ((0, 1), (0, 2)), 0, 1, 2).answer
    C = Construction(ConstructionConfig(n_max=4, m_max=3))
    with pytest.raises(GroklabError, match="n_max = 4"):
        C.prompt(Problem(5, ((0, 1),), 0, 1, 4))
