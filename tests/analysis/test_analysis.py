"""groklab.analysis and analysis_stages: the measures against their definitions, grokked vs
memorizing networks, the replay of a run folder, stage boundaries, error cases."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from groklab import RunConfig, run
from groklab.analysis import (
    ANALYSIS_FILE,
    Analyzer,
    Probe,
    analyze_run,
    measure,
    resolve_every,
)
from groklab.analysis.stages import STAGES
from groklab.errors import GroklabError
from groklab.tasks import make_task
from groklab.theory import li2 as th
from groklab.theory.reps import irreps, unit_features
from groklab.train import record
from groklab.train.api import prepare
from groklab.train.engine import Job, train

torch.set_num_threads(1)
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def grokked(tmp_path_factory):
    """Z23 at twice the critical size, K = 128, Adam lr 1e-3: groks (test acc 1.0 near step 350)."""
    d = tmp_path_factory.mktemp("runs") / "z23"
    cfg = RunConfig.from_flat({"group": "Z23", "crit_mult": 2.0, "steps": 800, "width": 128})
    r = run(cfg, d)
    return d, r


@pytest.fixture(scope="module")
def analyzed(grokked):
    d, r = grokked
    return analyze_run(d)


def _train_with_analysis(flat: dict, every=None):
    cfg = RunConfig.from_flat(flat)
    job = prepare(cfg)
    an = Analyzer(job, every)
    st = train(job, device=CPU, on_eval=an.on_eval)
    return job, st, an.table().to_pydict()


def _final(t: dict, key: str, member: int = 0) -> float:
    step, mem = np.asarray(t["step"]), np.asarray(t["member"])
    return float(np.asarray(t[key])[(step == step.max()) & (mem == member)][0])


# ---------------------------------------------------------------------------------------------- the measures
def _reference(job: Job, model, e: int) -> dict:
    """Every measure of member e from its definition (n×n matrices, one-hot matmuls, theory.li2)."""
    M = job.task.order
    idx = job.train_idx[e]
    X = th.pair_inputs(M, idx)  # [n, 2M]
    W = model.export()["W"][e].double()  # [K, 2M]
    V = model.V[e].detach().double().T  # paper's V [K, M]
    act = job.cfg.model.act
    s = {"sqr": lambda x: x * x, "silu": torch.nn.functional.silu, "relu": torch.relu}[act]
    F = s(X @ W.T)  # [n, K]
    T = job.task.table.reshape(-1)[idx]
    Y = torch.nn.functional.one_hot(torch.as_tensor(T), M).double()
    Ft = F - F.mean(0)
    C = Ft.T @ Ft
    K = C.shape[0]
    G = F @ F.T  # n×n, as the original code forms it
    n = G.shape[0]
    a, b = G.diag().mean(), (G.sum() - G.diag().sum()) / (n * (n - 1))
    fit = (a - b) * torch.eye(n, dtype=G.dtype) + b
    GF = th.backprop_gradient(F, V, Y)
    Yc = th.centred_labels(job.task.table, idx)
    H = Yc @ Yc.T @ Ft
    Wn = W / W.norm(dim=1, keepdim=True)
    ir = irreps(job.task.table)
    uf = unit_features(ir, W.numpy())
    return {
        "ftf_diag": C.diag().abs().mean(), "ftf_offdiag": (C.abs().sum() - C.diag().abs().sum()) / (K * (K - 1)),
        "fft_dist": (fit - G).norm() / G.norm(), "gf_norm": GF.norm(),
        "dF_norm": ((Y - 1.0 / M - F @ V) @ V.T).norm(),
        "gf_indep_cos": (GF * H).sum() / (GF.norm(dim=0) * H.norm(dim=0)).sum(),
        "energy_mean": th.energy(Wn, X, Yc, act).mean(), "energy_max": th.energy(Wn, X, Yc, act).max(),
        "purity_a_mean": uf.purity[:, 0].mean(), "purity_b_mean": uf.purity[:, 1].mean(),
        "purity_mean": uf.purity.mean(),
    }


@pytest.mark.parametrize("act", ["sqr", "silu"])
def test_measures_match_their_definitions(act):
    """Members with training sets of different sizes (padded), float64, after a few steps."""
    cfg = RunConfig.from_flat({"group": "Z7", "frac": 0.5, "width": 6, "act": act, "seeds": (3, 4),
                               "steps": 5, "dtype": "float64", "lr": 1e-2})
    job = prepare(cfg)
    job.train_idx[1] = job.train_idx[1][:-5]  # a smaller set for member 1
    st = train(job, device=CPU)
    got = measure(Probe(job), st.model)
    for e in range(2):
        ref = _reference(job, st.model, e)
        for k, v in ref.items():
            assert got[k][e] == pytest.approx(float(v), rel=1e-9, abs=1e-12), (k, e)
    assert np.allclose(got["spectrum"].sum(1), 1.0)
    assert got["w_rel_change"][0] == 0.0  # the first measurement is the reference W_0


def _fft_blocks(u: np.ndarray) -> np.ndarray:
    """Energy of u (M, ...) in each real Fourier block of Z_M (M odd): [k=0, {1, M−1}, {2, M−2}, ...]
    by numpy's FFT (Parseval: the blocks sum to ‖u‖²). Independent of groklab.theory.reps."""
    M = u.shape[0]
    P = np.abs(np.fft.fft(u, axis=0)) ** 2 / M
    return np.stack([P[0]] + [P[k] + P[M - k] for k in range(1, (M + 1) // 2)])


@pytest.mark.parametrize("act", ["sqr", "relu"])
def test_irrep_measures_against_an_independent_computation(act):
    """purity_weighted, units_pure, irreps_covered, energy_weighted, energy_transfer and a NON-ZERO
    gf_missing_share, on a Z7 network whose units are set by hand (two pure frequencies, one mixed,
    random ones, one too small to count), recomputed here with numpy's FFT and explicit one-hot
    matrices in float64 (members with different training sets)."""
    M, K = 7, 6
    cfg = RunConfig.from_flat({"group": f"Z{M}", "frac": 0.6, "width": K, "act": act, "seeds": (1, 2), "steps": 3,
                               "dtype": "float64", "lr": 1e-2})
    job = prepare(cfg)
    job.train_idx[1] = job.train_idx[1][:-4]
    st = train(job, device=CPU)
    model = st.model
    m = np.arange(M)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for e in range(2):
            W = rng.normal(size=(2 * M, K))
            W[:M, 0], W[M:, 0] = np.cos(2 * np.pi * m / M), np.cos(2 * np.pi * m / M + 0.3)  # pure k=1
            W[:M, 1], W[M:, 1] = 2 * np.sin(4 * np.pi * m / M), 2 * np.cos(4 * np.pi * m / M)  # pure k=2
            W[:M, 2] = np.cos(2 * np.pi * m / M) + np.cos(6 * np.pi * m / M)  # k=1 and k=3: mixed
            W[:, 5] *= 1e-3  # inactive: ‖w‖ < 0.1 × the largest
            model.W[e] = torch.as_tensor(W)
    got = measure(Probe(job), model)
    sig = {"sqr": lambda z: z * z, "relu": lambda z: np.maximum(z, 0)}[act]
    dsig = {"sqr": lambda z: 2 * z, "relu": lambda z: (z > 0).astype(float)}[act]
    table = job.task.table
    for e in range(2):
        W = model.W[e].detach().numpy()  # (2M, K)
        V = model.V[e].detach().numpy()  # (M, K): o = V f
        be = np.stack([_fft_blocks(W[:M]), _fft_blocks(W[M:])])  # (2, B, K)
        norm2 = (W**2).sum(0)
        share = be / be.sum(1, keepdims=True)
        dom, pur = share.argmax(1), share.max(1)
        assert got["purity_weighted"][e] == pytest.approx(be.max(1).sum() / norm2.sum(), rel=1e-9)
        active = np.sqrt(norm2) >= 0.1 * np.sqrt(norm2).max()
        pure = (dom[0] == dom[1]) & (dom[0] > 0) & (pur.min(0) >= 0.9) & active
        assert got["units_pure"][e] == pure.sum() == 2
        assert got["irreps_covered"][e] == len(set(dom[0][pure])) == 2
        # energies of the unit directions, on the training pairs and on all pairs
        def energy(idx, W=W, norm2=norm2):
            X = np.zeros((len(idx), 2 * M))
            X[np.arange(len(idx)), idx // M] = 1
            X[np.arange(len(idx)), M + idx % M] = 1
            Y = np.eye(M)[table.reshape(-1)[idx]]
            Yc = Y - Y.mean(0)
            return 0.5 * ((Yc.T @ sig(X @ (W / np.sqrt(norm2)))) ** 2).sum(0), X, Y
        idx = np.asarray(job.train_idx[e])
        Etr, X, Y = energy(idx)
        Eall, _, _ = energy(np.arange(M * M))
        ew = (Etr * norm2).sum() / norm2.sum()
        assert got["energy_weighted"][e] == pytest.approx(ew, rel=1e-9)
        n, P = len(idx), M * M
        assert got["energy_transfer"][e] == pytest.approx(((Eall * norm2).sum() / norm2.sum() / P**2) / (ew / n**2), rel=1e-9)
        # G_F = P1⊥(Y − FV)Vᵀ in the paper's row layout; the first-layer gradient it implies, per block
        Z = X @ W
        R = (Y - sig(Z) @ V.T) @ V
        GF = R - R.mean(0)
        G = X.T @ (dsig(Z) * GF)  # (2M, K)
        gb = (_fft_blocks(G[:M]) + _fft_blocks(G[M:])).sum(1)  # (B,)
        missing = np.ones(len(gb), bool)
        missing[0] = False
        missing[list(set(dom[0][pure]))] = False
        ref = gb[missing].sum() / gb.sum()
        assert 0.05 < ref < 0.95 and got["gf_missing_share"][e] == pytest.approx(ref, rel=1e-9)


def test_measure_does_not_change_training():
    """The hook must not perturb the run: metrics with and without analysis are bit-identical."""
    flat = {"group": "Z11", "frac": 0.5, "steps": 60, "width": 16, "seeds": (0, 1)}
    job, st, _ = _train_with_analysis(flat, every="eval")
    plain = train(prepare(RunConfig.from_flat(flat)), device=CPU)
    assert st.rows == plain.rows


def test_grokked_network_is_pure_memorizing_is_not(analyzed):
    """Li2 Thm 2: a grokked x² net puts its units on single frequencies; a memorizing one does not."""
    t = analyzed.analysis.to_pydict()
    assert analyzed.summary["members"][0]["final_test_acc"] >= 0.99  # it grokked
    assert _final(t, "purity_weighted") > 0.7  # most of the layer's ‖W‖² in the units' own frequency
    assert _final(t, "irreps_covered") == 11  # all (M − 1)/2 frequencies of Z23
    assert _final(t, "gf_missing_share") < 0.05
    assert t["purity_weighted"][0] < 0.35  # at init: chance level (12 blocks)

    job, st, m = _train_with_analysis({"group": "Z23", "crit_mult": 0.4, "steps": 600, "width": 128}, every=600)
    assert st.rows["train_acc"][-1] >= 0.99 and st.rows["test_acc"][-1] < 0.1  # memorized, no generalization
    assert _final(m, "purity_weighted") < 0.35
    assert _final(m, "irreps_covered") <= 1


# ---------------------------------------------------------------------------------------------- replay
def test_analyze_replays_exactly_and_writes(analyzed, grokked):
    d, r = grokked
    assert analyzed.replay == "exact" and analyzed.replay_max_abs_diff == 0.0
    tab = pq.read_table(d / ANALYSIS_FILE).to_pydict()
    steps = sorted(set(tab["step"]))
    assert steps[:5] == [0, 10, 20, 40, 50] and steps[-1] == 800 and all(s % 50 == 0 for s in steps[4:])
    assert {"purity_mean", "irreps_covered", "energy_mean", "gf_norm", "fft_dist", "spectrum_k=11"} <= set(tab)
    summ = json.loads((d / record.SUMMARY).read_text())
    assert summ["analysis"]["replay"] == "exact" and summ["analysis"]["blocks"][1] == "k=1"
    assert summ["members"] == r.summary["members"]  # the rest of summary.json is kept
    assert not list(d.glob(".*.tmp"))  # atomic writes leave no temp files


def test_stages_ordered_inside_the_run(analyzed):
    st = analyzed.summary["stages"]
    assert "energy_transfer" in st["rule"] and "irreps_covered" in st["rule"]
    (m,) = st["members"]
    assert m["features"] == "generalizing"
    names = [s["name"] for s in m["stages"]]
    assert names == list(STAGES)
    bounds = [(s["start"], s["end"]) for s in m["stages"]]
    assert bounds[0][0] == 0 and bounds[-1][1] == 800
    assert all(a < b for a, b in bounds) and all(bounds[i][1] == bounds[i + 1][0] for i in range(2))
    # the interactive stage starts at the first analysed step where a unit holds an irrep, which
    # is before the network generalizes (features first, then test accuracy)
    t = analyzed.analysis.to_pydict()
    cov = np.asarray(t["irreps_covered"])
    first = int(np.asarray(t["step"])[np.flatnonzero(cov >= 1)[0]])
    assert bounds[1][1] == first < analyzed.summary["members"][0]["step_generalized"]


def test_replay_mismatch_is_an_error(tmp_path):
    d = tmp_path / "small"
    run(RunConfig.from_flat({"group": "Z11", "frac": 0.5, "steps": 100, "width": 16}), d)
    t = pq.read_table(d / record.METRICS_FILE).to_pydict()
    t["test_acc"][-1] -= 0.5
    record.write_metrics(d, t)
    with pytest.raises(GroklabError, match="does not reproduce metrics.parquet.*test_acc at step 100"):
        analyze_run(d)
    assert not (d / ANALYSIS_FILE).exists()
    res = analyze_run(d, allow_mismatch=True)
    assert res.replay == "mismatch" and res.summary["analysis"]["replay_max_abs_diff"] == pytest.approx(0.5)
    assert (d / ANALYSIS_FILE).exists()


def test_analyze_errors(tmp_path, grokked):
    with pytest.raises(GroklabError, match="no such run folder"):
        analyze_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GroklabError, match="not a groklab run folder"):
        analyze_run(tmp_path / "empty")
    cfg = RunConfig.from_flat({"group": "Z5", "frac": 0.5, "steps": 10, "width": 4})
    job = prepare(cfg)
    record.create_run(tmp_path / "inc", cfg, job.task, job.seeds, job.train_idx, None)
    with pytest.raises(GroklabError, match="has not finished.*--resume"):
        analyze_run(tmp_path / "inc")
    with pytest.raises(GroklabError, match="--every 25: must be a multiple of the run's eval_every"):
        analyze_run(grokked[0], every=25)
    with pytest.raises(GroklabError, match="--every 'often'"):
        analyze_run(grokked[0], every="often")
    tr = prepare(RunConfig.from_flat({"group": "Z5", "frac": 0.5, "model": "transformer"}))
    with pytest.raises(GroklabError, match="--model transformer: .*use --model li2"):
        Probe(tr)


def test_resolve_every():
    cfg = RunConfig.from_flat({"eval_every": 15, "ckpt_every": 100})
    assert resolve_every(cfg, None) == 60 and resolve_every(cfg, "eval") == 15 and resolve_every(cfg, "ckpt") == 100
    assert resolve_every(cfg, 45) == 45 and resolve_every(cfg, 200) == 200


def test_non_group_task_has_no_irrep_columns():
    job, st, t = _train_with_analysis({"group": "expr:x*y mod 7", "frac": 0.6, "steps": 20, "width": 8}, every=20)
    assert "gf_indep_cos" in t and "purity_mean" not in t and not any(k.startswith("spectrum_") for k in t)


def test_run_with_analysis_is_live(tmp_path):
    from groklab.analysis import run_with_analysis

    cfg = RunConfig.from_flat({"group": "Z11", "frac": 0.5, "steps": 30, "width": 12, "eval_every": 5, "ckpt_every": 7})
    with pytest.raises(GroklabError, match="--every ckpt: during a run analyses are taken at evaluations"):
        run_with_analysis(cfg, tmp_path / "a", every="ckpt")
    assert not (tmp_path / "a").exists()
    r = run_with_analysis(cfg, tmp_path / "b", every=10)
    assert r.replay == "live" and sorted(set(r.analysis["step"].to_pylist())) == [0, 5, 10, 20, 30]
    assert json.loads((tmp_path / "b" / record.SUMMARY).read_text())["analysis"]["replay"] == "live"
    # after the run: at every checkpoint (7 steps, between evaluations), by replay
    r = analyze_run(tmp_path / "b", every="ckpt")
    assert r.replay == "exact" and sorted(set(r.analysis["step"].to_pylist())) == [0, 5, 7, 14, 21, 28, 30]
