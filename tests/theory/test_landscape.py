"""theory.landscape: the Li2 energy's maxima on training subsets (Li2 Thm 1, 2, 4, 5; science.md §3–4).

Facts that could be false: E and ∇E that the ascent climbs equal autograd of an independent
transcription of E_n(w) = ½‖Ỹ_nᵀσ(X_n w)‖² in float64; with all pairs every random start ends on an
irrep feature at E = E*; at ≤ 0.3 n_c no random start on Z23 reaches a generalizing maximum; Thm 5's
focused point is a memorizing maximum; the classification has negative controls both ways.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groklab.errors import GroklabError
from groklab.tasks import critical_size, make_split, make_task
from groklab.theory.landscape import (
    ascend,
    classify,
    crossing_bracket,
    distinct_count,
    find_maxima,
    irrep_starts,
    memorization_starts,
)
from groklab.theory.li2 import _PairEnergy, max_energy
from groklab.theory.reps import irreps

torch.set_num_threads(1)
Z23 = make_task("Z23")


def _autograd_energy(M, T, idx, w, act):
    """Independent transcription: one-hot X [n, 2M], Y one-hot of a∘b centred over the n samples."""
    a, b = idx // M, idx % M
    X = torch.zeros(len(idx), 2 * M, dtype=torch.float64)
    X[torch.arange(len(idx)), torch.as_tensor(a)] = 1.0
    X[torch.arange(len(idx)), torch.as_tensor(M + b)] = 1.0
    Y = torch.nn.functional.one_hot(torch.as_tensor(T[a, b]), M).to(torch.float64)
    Yc = Y - Y.mean(0)
    sig = {"sqr": lambda z: z ** 2, "relu": torch.relu, "silu": torch.nn.functional.silu}[act]
    w = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    E = 0.5 * ((Yc.T @ sig(X @ w.T)) ** 2).sum(0)  # [K]
    (g,) = torch.autograd.grad(E.sum(), w)
    return E.detach().numpy(), g.numpy()


@pytest.mark.parametrize("group, act", [("Z23", "sqr"), ("Z23", "relu"), ("Z23", "silu"), ("S4", "sqr")])
def test_energy_and_gradient_on_a_subset_match_autograd(group, act):
    task = make_task(group)
    M, T = task.order, task.table
    idx = make_split(task, 3, crit_mult=0.6)
    w = np.random.default_rng(1).normal(size=(7, 2 * M))
    E, g = _PairEnergy(M, idx // M, idx % M, T.reshape(-1)[idx], act, 7)(w)
    E_ref, g_ref = _autograd_energy(M, T, idx, w, act)
    np.testing.assert_allclose(E, E_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-11, atol=1e-11)


def test_ascent_stays_on_the_sphere_and_never_lowers_E():
    idx = make_split(Z23, 0, crit_mult=1.0)
    w0 = np.random.default_rng(0).normal(size=(12, 46))
    w1, E1, _, _ = ascend(Z23.table, idx, w0, steps=20, tol=0)
    w2, E2, res, _ = ascend(Z23.table, idx, w1, steps=400, tol=0)
    np.testing.assert_allclose(np.linalg.norm(w2, axis=1), 1.0, atol=1e-12)
    assert (E2 >= E1 - 1e-12).all() and res.max() < 1e-3


def test_full_data_every_random_start_ends_on_an_irrep_at_E_star():
    """Li2 Thm 2 / science.md §3: with all M² pairs and σ = x² the maxima are the irrep features."""
    all_pairs = np.arange(23 * 23)
    r = find_maxima(Z23.table, all_pairs, n_random=32, per_block=0, n_memo=0, steps=1500, seed=5)
    assert (r.kind == "generalizing").all()
    e_star = max_energy(Z23.table)
    # E approaches E* from below; on the degenerate set of maxima (a 2-torus per frequency) the last
    # digits come slowly, as in tests/cli/test_theory_cli.py (rel 1e-3 there too)
    np.testing.assert_allclose(r.E, [e_star[r.names[b]] for b in r.block], rtol=1e-3)
    assert r.E == pytest.approx(23 / 4, rel=1e-3) and (r.E <= 23 / 4 + 1e-9).all()  # Z_M: E* = M/4


@pytest.mark.parametrize("mult", [0.25, 0.3])
def test_little_data_no_generalizing_maximum_from_random_starts(mult):
    """Z23 at ≤ 0.3 n_c, 3 training sets as runs draw them: memorization only (Li2 Thm 5)."""
    for seed in range(3):
        idx = make_split(Z23, seed, crit_mult=mult)
        r = find_maxima(Z23.table, idx, n_random=48, per_block=0, n_memo=0, steps=800, seed=seed)
        assert not (r.kind == "generalizing").any()
        assert (r.kind == "memorizing").mean() >= 0.5


def test_thm5_focused_point_is_a_memorizing_maximum_and_irreps_generalize():
    """σ = x², 0.25 n_c: ascent from (e_a + e_{M+b})/√2 stays on few training pairs; irrep features on
    full data classify as generalizing; a random direction is neither (negative controls)."""
    rng = np.random.default_rng(0)
    idx = make_split(Z23, 0, crit_mult=0.25)
    wm = memorization_starts(23, idx, 6, rng)
    c0 = classify(Z23.table, idx, wm)
    assert (c0["kind"] == "memorizing").all() and c0["focused"].all() and (c0["n_eff"] < 2.5).all()
    w, E, res, _ = ascend(Z23.table, idx, wm + 1e-3 * rng.normal(size=wm.shape), steps=800)
    c = classify(Z23.table, idx, w)
    # the maximum near Thm 5's point keeps one operand on one element and fires on a few pairs only
    assert (c["kind"] == "memorizing").all() and (c["n_eff"] <= 5).all() and res.max() < 1e-3
    assert (c["ipr"].min(axis=1) < 1.5).all() and c["focused"].any()
    wi, blocks = irrep_starts(Z23.table, 1, rng)
    ci = classify(Z23.table, np.arange(529), wi)
    assert (ci["kind"] == "generalizing").all() and (ci["block"] == blocks).all()
    wr = rng.normal(size=(8, 46))
    assert (classify(Z23.table, np.arange(529), wr)["kind"] == "mixed").all()


def test_two_peaks_cross_between_small_and_large_data():
    """Below n_c only memorizing maxima, at 2.5 n_c every random start generalizes (Z23, one subset)."""
    lo = find_maxima(Z23.table, make_split(Z23, 0, crit_mult=1.0), n_random=24, steps=600)
    hi = find_maxima(Z23.table, make_split(Z23, 0, crit_mult=2.5), n_random=24, steps=600)
    s_lo, s_hi = lo.summary(), hi.summary()
    assert s_lo["E_max_generalizing"] is None and s_lo["share_memorizing"] >= 0.9
    assert s_hi["share_generalizing"] == 1.0 and s_hi["E_max_memorizing"] is None
    assert s_hi["n_distinct_generalizing"] >= 5  # many of the 11 frequencies are reached


def test_crossing_bracket_and_distinct_count():
    n = [50, 100, 200, 400]
    nan = float("nan")
    assert crossing_bracket(n, [nan, nan, 3.0, 5.0], [2.0, 3.0, 3.5, 4.0]) == (200.0, 400.0)
    assert crossing_bracket(n, [nan, 2.9, 3.0, 5.0], [2.0, 3.0, nan, nan]) == (100.0, 200.0)
    assert crossing_bracket(n, [1, 1, 1, 1], [0, 0, 0, 0]) == (None, 50.0)
    assert crossing_bracket(n, [nan] * 4, [1, 1, 1, 1]) == (400.0, None)
    assert crossing_bracket(n, [5, 1, 5, 5], [1, 2, 1, 1]) == (100.0, 200.0)  # must stay above
    with pytest.raises(GroklabError, match="sizes: must be increasing"):
        crossing_bracket([2, 1], [1, 1], [0, 0])
    w = np.eye(4)[[0, 0, 1, 1, 2]] * np.array([[1], [-1], [1], [1], [1]])
    assert distinct_count(w, np.ones(5), even=True) == 3 and distinct_count(w, np.ones(5), even=False) == 4


def test_errors_name_the_field():
    with pytest.raises(GroklabError, match="train_idx: must be ≥ 2 distinct"):
        ascend(Z23.table, [0, 0, 1], np.ones((1, 46)))
    with pytest.raises(GroklabError, match="act"):
        find_maxima(Z23.table, np.arange(100), act="tanh")
    with pytest.raises(GroklabError, match=r"w0: shape \(2, 5\)"):
        ascend(Z23.table, np.arange(100), np.ones((2, 5)))
    with pytest.raises(GroklabError, match="--n-random -1: must be a whole number ≥ 0"):
        find_maxima(Z23.table, np.arange(100), n_random=-1)


def test_irrep_starts_cover_every_nontrivial_block_of_s4():
    ir = irreps(make_task("S4").table)
    w, blocks = irrep_starts(make_task("S4").table, 2, np.random.default_rng(0))
    assert sorted(set(blocks.tolist())) == list(range(1, len(ir.blocks)))
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0)
    assert critical_size(make_task("S4")) == pytest.approx(1.5 * 2.7482 * 24 * np.log(24))
