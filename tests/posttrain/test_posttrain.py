"""groklab.posttrain: rule tables, the policy-gradient estimator against exact expectations (float64),
the one-token identity, the weight diagnostics on hand-built matrices, config errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from groklab.errors import GroklabError
from groklab.posttrain import objectives as obj
from groklab.posttrain.config import PosttrainConfig
from groklab.posttrain.diagnostics import chance_share, matrix_diagnostics, principal_angles
from groklab.posttrain.model import ChainTransformer
from groklab.posttrain.rules import chain_answers, make_rule_task

torch.set_num_threads(1)


# ---- rule tables -------------------------------------------------------------------------------
def test_power_rule_tables_on_z7():
    t = make_rule_task("Z7", "power:2", hops=2, frac=0.5, split_seed=0)
    a, b = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    assert np.array_equal(t.tables[1], (a + b) % 7)          # r1 = the group law
    assert np.array_equal(t.tables[0], (a + 2 * b) % 7)      # r0 = a o b^2, b^2 = 2b in Z7
    ops = t.operands
    assert ops.shape == (343, 3) and len({tuple(o) for o in ops.tolist()}) == 343
    assert np.array_equal(t.answers[0, :, 0], (ops[:, 0] + 2 * ops[:, 1]) % 7)
    assert np.array_equal(t.answers[0, :, 1], (ops[:, 0] + 2 * ops[:, 1] + 2 * ops[:, 2]) % 7)
    assert np.array_equal(t.answers[1, :, 1], ops.sum(1) % 7)
    # the final answers differ unless 2(b + c) = b + c, i.e. b + c = 0: 7 * 7 of the 343 tuples agree
    assert t.differ() == pytest.approx(1 - 49 / 343)
    assert t.train.sum() == math.floor(0.5 * 343)
    seq = t.sequences(np.array([0, 1]), np.array([5, 5]))
    assert seq.tolist() == [[7, *ops[5], *t.answers[0, 5]], [8, *ops[5], *t.answers[1, 5]]]


def test_relabel_rule_reads_face_cards_as_the_card_below():
    t = make_rule_task("Z7", "relabel:2", hops=1, frac=0.5, split_seed=0)
    pi = np.array([0, 1, 2, 3, 4, 4, 4])  # elements 5, 6 read as 4 (J/Q/K count 10)
    a, b = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    assert np.array_equal(t.tables[0], (pi[a] + pi[b]) % 7)
    assert (t.tables[0] != t.tables[1]).sum() == 49 - 25  # rows/cols 5, 6 differ, the 5x5 block agrees
    assert np.array_equal(chain_answers(t.tables[1], np.array([[3, 4, 6]])), [[0, 6]])


@pytest.mark.parametrize("group, r0, msg", [
    ("Z7", "power:7", "not a bijection"),
    ("Z7", "power:1", "identity map"),
    ("S3", "power:5", "not an automorphism"),
    ("Z7", "relabel:6", "1 <= n <= M-2"),
])
def test_bad_rules_are_named(group, r0, msg):
    with pytest.raises(GroklabError, match=msg) as e:
        make_rule_task(group, r0, hops=1, frac=0.5, split_seed=0)
    assert str(e.value).startswith(f"--r0 '{r0}'")


def test_config_errors_name_the_option():
    with pytest.raises(GroklabError, match=r"^--samples 100: must be a multiple of --group-size 8"):
        PosttrainConfig(samples=100, group_size=8)
    with pytest.raises(GroklabError, match=r"^--r0 'swap:2'"):
        PosttrainConfig(r0="swap:2")
    with pytest.raises(GroklabError, match=r"^--arms 'sft,ppo'"):
        PosttrainConfig(arms=("sft", "ppo"))
    with pytest.raises(GroklabError, match=r"^--hops 3"):
        PosttrainConfig(hops=3)
    with pytest.raises(GroklabError, match=r"^--post-opt 'lion': expected one of adam, sgd"):
        PosttrainConfig(post_opt="lion")


# ---- the policy gradient, exactly ---------------------------------------------------------------
def _tiny(M: int, hops: int, seed: int = 0) -> tuple[ChainTransformer, torch.Tensor, torch.Tensor]:
    """A float64 model on Z_M, one prompt (E=1), its gold chain."""
    t = make_rule_task(f"Z{M}", "power:2", hops=hops, frac=0.5, split_seed=0)
    model = ChainTransformer(t.vocab, t.order, t.seq_len, 8, 2, 16, 1, [seed], dtype=torch.float64)
    with torch.no_grad():  # somewhat larger weights so pi is far from uniform (a stronger test)
        for p in model.parameters():
            p.mul_(1.5)
    gold = torch.from_numpy(t.sequences(np.array([0]), np.array([7])))[None]  # (1, 1, T)
    return model, gold, t


def _chains(gold: torch.Tensor, M: int, hops: int) -> torch.Tensor:
    """Every answer chain after gold's prompt: (1, M^hops, T)."""
    P = gold.shape[-1] - hops
    ys = torch.tensor(list(itertools.product(range(M), repeat=hops)))
    return torch.cat([gold[0, :, :P].expand(len(ys), P), ys], 1)[None]


def _grad(model, loss) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("baseline, factor", [("loo", 1.0), ("none", 1.0), ("mean", 0.5)])
def test_reinforce_estimator_matches_exact_expected_gradient(baseline, factor):
    """E over all ordered groups of G=2 chains of the estimator's gradient = factor * grad E[R]
    (leave-one-out and no baseline: unbiased; group mean: (G-1)/G = 1/2 of it)."""
    M, hops, G = 3, 2, 2
    model, gold, t = _tiny(M, hops)
    P = t.prompt_len
    chains = _chains(gold, M, hops)                                    # (1, 9, T)
    logp = obj.answer_logprobs(model, chains, P)
    logpi = obj.token_logprob(logp, chains, P)[0]                      # (9,)
    R = obj.final_reward(chains, gold[..., -1])[0]                     # outcome reward on y_2
    assert 0 < R.sum() < len(R)
    J = (logpi.exp() * R).sum()
    exact = _grad(model, J)
    pi = logpi.exp().detach()
    total = 0.0
    for i, j in itertools.product(range(len(R)), repeat=G):
        seq = chains[:, [i, j]]
        adv = obj.advantages(obj.final_reward(seq, gold[..., -1]), G, baseline)
        lp = obj.answer_logprobs(model, seq, P)
        total = total + pi[i] * pi[j] * obj.pg_loss(lp, seq, P, adv).sum()
    expected = -_grad(model, total)  # pg_loss is minimised: its negative gradient estimates grad J
    assert exact.abs().max() > 1e-3
    torch.testing.assert_close(expected, factor * exact, rtol=1e-10, atol=1e-12)


def test_generate_samples_from_pi():
    """The sampler's chain frequencies match pi, enumerated (40k draws: 5 sd ~ 0.012)."""
    M, hops = 3, 2
    model, gold, t = _tiny(M, hops, seed=1)
    chains = _chains(gold, M, hops)
    pi = obj.token_logprob(obj.answer_logprobs(model, chains, t.prompt_len), chains, t.prompt_len)[0].exp().detach()
    prompts = gold[..., : t.prompt_len].expand(1, 40000, t.prompt_len)
    out = obj.generate(model, prompts, hops, greedy=False, generator=torch.Generator().manual_seed(0))
    code = out[0, :, -2] * M + out[0, :, -1]
    freq = torch.bincount(code, minlength=M * M).double() / 40000
    assert (freq - pi).abs().max() < 0.012
    hot = obj.generate(model, prompts[:, :20000], hops, greedy=False, temperature=1e-3,
                       generator=torch.Generator().manual_seed(0))
    greedy = obj.generate(model, prompts[:, :1], hops, greedy=True)
    P = t.prompt_len
    assert (hot[0, :, P:] == greedy[0, :, P:]).all(-1).double().mean() > 0.99  # T -> 0 is greedy


def test_one_token_identity_and_its_two_token_failure():
    """h = 1: E_y[1[y=y*] grad log pi(y)] = pi(y*) grad log pi(y*) = -pi(y*) grad L_sft.
    h = 2 with the outcome reward: the expected policy gradient is NOT pi(y*) times SFT's."""
    for hops, should_hold in ((1, True), (2, False)):
        M = 5
        model, gold, t = _tiny(M, hops, seed=2)
        P = t.prompt_len
        chains = _chains(gold, M, hops)
        logpi = obj.token_logprob(obj.answer_logprobs(model, chains, P), chains, P)[0]
        pi = logpi.exp().detach()
        total = 0.0
        for i in range(chains.shape[1]):  # exact expectation over y, one sample per "group", A = R
            seq = chains[:, [i]]
            adv = obj.final_reward(seq, gold[..., -1])
            total = total + pi[i] * obj.pg_loss(obj.answer_logprobs(model, seq, P), seq, P, adv).sum()
        g_pg = _grad(model, total)
        star = int(((chains[0, :, P:] == gold[0, 0, P:]).all(-1)).nonzero())
        g_sft = _grad(model, obj.sft_loss(obj.answer_logprobs(model, gold, P), gold, P).sum())
        close = torch.allclose(g_pg, pi[star] * g_sft, rtol=1e-9, atol=1e-12)
        assert close == should_hold, hops


# ---- weight diagnostics on hand-built matrices ---------------------------------------------------
def _orth(n: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def test_principal_angles_of_a_rotated_plane():
    e = torch.eye(4, dtype=torch.float64)
    for theta in (0.3, 1e-7, math.pi / 2):
        A = e[:, :2]
        B = torch.stack([math.cos(theta) * e[:, 0] + math.sin(theta) * e[:, 2], e[:, 1]], 1)
        ang = principal_angles(A, B)
        torch.testing.assert_close(ang, torch.tensor([0.0, theta], dtype=torch.float64), rtol=1e-9, atol=1e-15)


def _base() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    U, V = _orth(6, 0)[:, :5], _orth(5, 1)
    s = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    return U, s, V, (U * s) @ V.T  # W0 (6, 5) = U diag(s) V^T


def test_diagnostics_known_answers():
    U, s, V, W0 = _base()
    k = 2
    d = lambda W1: {n: float(v[0]) for n, v in matrix_diagnostics(W0[None], W1[None], k).items()}  # noqa: E731
    same = d(W0.clone())
    assert same["dW_rel"] == 0 and same["sv_drift"] == 0 and same["bf16_same"] == 1
    assert same["rot_left"] < 1e-9 and same["rot_right"] < 1e-9
    assert math.isnan(same["topk_share"])
    # top singular value 5 -> 6: drift 1/||(5,4)||, the whole update in the principal block, no rotation
    top = d(W0 + torch.outer(U[:, 0], V[:, 0]))
    assert top["sv_drift"] == pytest.approx(1 / math.sqrt(41), rel=1e-12)
    assert top["topk_share"] == pytest.approx(1.0, rel=1e-12)
    assert top["dW_rel"] == pytest.approx(1 / math.sqrt(55), rel=1e-12)
    assert top["rot_left"] < 1e-6 and top["rot_right"] < 1e-6
    # an update along the smallest direction: off-principal, top-k spectrum and subspaces untouched
    low = d(W0 + 0.5 * torch.outer(U[:, 4], V[:, 4]))
    assert low["topk_share"] < 1e-24 and low["sv_drift"] < 1e-12 and low["rot_left"] < 1e-6
    # rotate u1 toward u5 by 20 degrees on the left: rot_left = 20, rot_right = 0, spectrum unchanged
    th = math.radians(20)
    R = torch.eye(6, dtype=torch.float64) + (math.cos(th) - 1) * (torch.outer(U[:, 0], U[:, 0]) + torch.outer(U[:, 4], U[:, 4])) \
        + math.sin(th) * (torch.outer(U[:, 4], U[:, 0]) - torch.outer(U[:, 0], U[:, 4]))
    rot = d(R @ W0)
    assert rot["rot_left"] == pytest.approx(20.0, rel=1e-9)
    assert rot["rot_right"] < 1e-6 and rot["sv_drift"] < 1e-12


def test_bf16_gate_and_chance_share_control():
    W0 = torch.ones(1, 4, 50, dtype=torch.float64)
    W1 = W0.clone()
    W1[..., :25] += 1e-4   # below half the bf16 spacing at 1 (2^-8): invisible in bf16
    W1[..., 25:] += 0.1
    assert float(matrix_diagnostics(W0, W1, 1)["bf16_same"][0]) == 0.5
    # negative control: an isotropic random update lands in the principal block at chance k^2/(mn)
    U, s, V, _ = _base()
    g = torch.Generator().manual_seed(3)
    W0 = torch.randn(64, 80, 96, generator=g, dtype=torch.float64)
    dW = torch.randn(64, 80, 96, generator=g, dtype=torch.float64) * 1e-3
    share = matrix_diagnostics(W0, W0 + dW, 4)["topk_share"]
    assert float(share.mean()) == pytest.approx(chance_share((80, 96), 4), rel=0.15)


# ---- end to end: the verb, the run folders, the report ------------------------------------------
TINY = ["--group", "Z7", "--seeds", "0,1", "--pools", "0,8", "--base-steps", "60", "--post-steps", "6",
        "--samples", "16", "--eval-every", "3", "--eval-prompts", "32", "--d-model", "16", "--d-mlp", "32", "--quiet"]


def test_cli_writes_run_folders_and_report(tmp_path, capsys):
    from groklab.cli import main
    from groklab.report.common import read_json, read_parquet

    out = tmp_path / "pt"
    assert main(["posttrain", *TINY, "--out", str(out)]) == 0
    for arm in ("sft", "rl", "rl_kl"):
        m = read_parquet(out / arm / "metrics.parquet")
        assert sorted(set(m["step"].tolist())) == [0, 1, 2, 3, 6]  # early 1, 2 below eval_every and set(m["pool"].tolist()) == {0, 8}
        w = read_parquet(out / arm / "weights.parquet")
        assert len(w["step"]) == 5 * 2 * 2 * 9  # evaluations x pools x seeds x matrices
        assert (w["dW_rel"][w["step"] == 0] == 0).all() and (w["bf16_same"][w["step"] == 0] == 1).all()
        assert (w["dW_rel"][w["step"] == 6] > 0).all()
    s = read_json(out / "summary.json")
    assert {c["verdict"] for c in s["claims"]} <= {"holds", "reversed", "same sign, not significant",
                                                   "opposite sign, not significant", "context", "not measured",
                                                   "no difference"}
    assert len(s["groups"]) == 6 and s["base"]["seeds"] == [0, 1]
    html = (out / "report.html").read_text()
    assert 'id="claims"' in html and (out / "diagnostics.png").stat().st_size > 10_000
    # every member starts from its seed's base: step-0 accuracies agree across arms
    a = read_parquet(out / "sft" / "metrics.parquet")
    b = read_parquet(out / "rl" / "metrics.parquet")
    assert np.array_equal(a["acc_r1"][a["step"] == 0], b["acc_r1"][b["step"] == 0])


@pytest.mark.parametrize("args, msg", [
    (["--samples", "20", "--group-size", "8"], "--samples 20: must be a multiple of --group-size 8"),
    (["--r0", "power:7"], "--r0 'power:7': x -> x^7 is not a bijection"),
    (["--arms", "sft,dpo"], "--arms 'sft,dpo'"),
])
def test_cli_bad_input_writes_nothing(tmp_path, capsys, args, msg):
    from groklab.cli import main

    out = tmp_path / "bad"
    assert main(["posttrain", *TINY, *args, "--out", str(out)]) == 2
    assert msg in capsys.readouterr().err
    assert not out.exists()


def test_t_quantiles_and_interval_against_scipy():
    from scipy.stats import t

    from groklab.posttrain.summary import interval, t975

    for df in (1, 4, 30, 31, 60, 1000):
        assert t975(df) == pytest.approx(t.ppf(0.975, df), rel=1e-4 if df > 30 else 1e-10)
    x = np.array([0.1, 0.3, 0.2, 0.6])
    iv = interval(x)
    assert iv["mean"] == pytest.approx(0.3) and iv["n"] == 4
    assert iv["ci95"] == pytest.approx(t.ppf(0.975, 3) * x.std(ddof=1) / 2, rel=1e-9)
    assert interval(np.array([0.5]))["ci95"] is None and interval(np.array([np.nan]))["n"] == 0


def test_matched_r0_gain_interpolates_r1_at_the_crossing():
    """Hand-made curves: SFT's r0 rises 0.5 -> 0.9 by step 2, RL's 0.5 -> 0.7 by step 4. The matched
    gain is half the smaller final gain (0.1); r1 is read where each crosses r0 = 0.6."""
    from groklab.posttrain.diagnostics import DIAGNOSTICS
    from groklab.posttrain.summary import summarize

    cfg = PosttrainConfig(arms=("sft", "rl"), pools=(0,), seeds=(0, 1), eval_every=2, post_steps=4, samples=16)
    steps = [0, 2, 4]
    curves = {"sft": ([0.5, 0.9, 0.9], [0.8, 0.4, 0.3]), "rl": ([0.5, 0.55, 0.7], [0.8, 0.7, 0.5])}
    m = {k: [] for k in ("step", "arm", "pool", "seed", "acc_r0", "acc_r1", "acc_pool", "reward", "loss", "kl")}
    w = {k: [] for k in ("step", "arm", "pool", "seed", "matrix", "rows", "cols", "chance_share", *DIAGNOSTICS)}
    for arm, (r0, r1) in curves.items():
        for seed in (0, 1):
            for i, st in enumerate(steps):
                for k, v in (("step", st), ("arm", arm), ("pool", 0), ("seed", seed), ("acc_r0", r0[i]),
                             ("acc_r1", r1[i]), ("acc_pool", 1.0), ("reward", 0.0), ("loss", 0.0), ("kl", 0.0)):
                    m[k].append(v)
                for k, v in (("step", st), ("arm", arm), ("pool", 0), ("seed", seed), ("matrix", "W"), ("rows", 2),
                             ("cols", 2), ("chance_share", 0.25), *((d, float(st)) for d in DIAGNOSTICS)):
                    w[k].append(v)
    s = summarize(cfg, m, w, arms=cfg.arms)
    g = {x["arm"]: x for x in s["groups"]}
    assert g["sft"]["matched"]["r0_gain"] == pytest.approx(0.1)
    # SFT crosses 0.6 a quarter of the way from step 0 to 2: r1 = 0.8 + 0.25 (0.4 - 0.8) = 0.7 -> -0.1
    assert g["sft"]["matched"]["d_acc_r1"]["mean"] == pytest.approx(-0.1)
    assert g["sft"]["matched"]["step"]["mean"] == 2
    # RL crosses 0.6 a third of the way from step 2 to 4: r1 = 0.7 + (1/3)(0.5 - 0.7) -> -0.1667
    assert g["rl"]["matched"]["d_acc_r1"]["mean"] == pytest.approx(-0.1 - 0.2 / 3)
    assert g["rl"]["matched"]["step"]["mean"] == 4 and g["rl"]["matched"]["dW_rel"]["mean"] == 4.0
    final = {(c["matching"], c["metric"]): c for c in s["claims"]}
    assert final[("final", "d_acc_r1")]["rl_minus_sft"]["mean"] == pytest.approx(0.2)  # -0.3 - (-0.5)
    assert final[("matched r0 gain", "d_acc_r1")]["rl_minus_sft"]["mean"] == pytest.approx(-0.2 / 3)
