"""The Li2 model, losses, optimizers and the training loop: facts that could be false."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groklab import RunConfig, make_task
from groklab.models import Li2Net
from groklab.models.li2 import ridge_top_layer
from groklab.models.pairs import ACT, pair_features
from groklab.train.engine import Data, evaluate, init_state, make_job, train
from groklab.train.losses import mse, per_example_loss
from groklab.train.optim import SGD, Adam, Muon, newton_schulz

torch.set_default_dtype(torch.float32)


def onehot_reference(model: Li2Net, a, b):
    """The original code's forward: one-hot matmuls, one member at a time, (E, M, n)."""
    M = model.order
    X = torch.cat([torch.nn.functional.one_hot(a, M), torch.nn.functional.one_hot(b, M)], 1).to(model.V.dtype)  # (n, 2M)
    W = model.export()["W"]  # (E, K, 2M)
    return torch.stack([model.V[e] @ ACT[model.act_name](W[e] @ X.T) for e in range(model.n_members)])


@pytest.mark.parametrize("act", ["sqr", "relu", "silu", "relusqr"])
def test_gather_forward_equals_onehot_matmul(act):
    model = Li2Net(7, 16, act, [0, 1]).double()
    a, b = torch.arange(7).repeat_interleave(7), torch.arange(7).repeat(7)
    torch.testing.assert_close(model(a, b), onehot_reference(model, a, b), rtol=1e-12, atol=1e-12)


def _linear_init(g: torch.Generator, fan_out: int, fan_in: int) -> torch.Tensor:
    """nn.Linear(fan_in, fan_out, bias=False).reset_parameters(), drawn from generator g."""
    w = torch.empty(fan_out, fan_in)
    return torch.nn.init.kaiming_uniform_(w, a=5 ** 0.5, generator=g)


@pytest.mark.parametrize("init_scale", ["joint", "per-operand"])
def test_init_is_torch_linear_default_per_seed(init_scale):
    """Member e is drawn from seed e exactly as the Li2 code's modules would be: "joint" = the current
    code's W = nn.Linear(2M, K) then V = nn.Linear(K, M); "per-operand" = the older layera, layerb =
    nn.Linear(M, K), then layerc. Compared with torch's own nn.Linear init, bit for bit."""
    M, K = 11, 32
    m2 = Li2Net(M, K, "sqr", [3, 5], init_scale=init_scale)
    m1 = Li2Net(M, K, "sqr", [5], init_scale=init_scale)
    torch.testing.assert_close(m2.export()["W"][1], m1.export()["W"][0], rtol=0, atol=0)
    g = torch.Generator().manual_seed(5)
    if init_scale == "joint":
        W = _linear_init(g, K, 2 * M)
    else:
        W = torch.cat([_linear_init(g, K, M), _linear_init(g, K, M)], dim=1)
    V = _linear_init(g, M, K)
    torch.testing.assert_close(m1.export()["W"][0], W, rtol=0, atol=0)
    torch.testing.assert_close(m1.export()["V"][0], V, rtol=0, atol=0)
    bound = (2 * M) ** -0.5 if init_scale == "joint" else M ** -0.5
    assert m2.W.abs().max() <= bound and m2.W.abs().max() > 0.95 * bound and m2.V.abs().max() <= K ** -0.5


def test_init_scale_default_and_errors():
    from groklab.errors import GroklabError

    assert RunConfig().model.init_scale == "joint"
    with pytest.raises(GroklabError, match="--init-scale 'fan-in'.*joint, per-operand"):
        RunConfig.from_flat({"init_scale": "fan-in"})
    with pytest.raises(GroklabError, match="--init-scale 'per-operand'.*li2 only"):
        RunConfig.from_flat({"model": "embed-mlp", "init_scale": "per-operand"})


def test_gradients_match_autograd_of_onehot_reference_float64():
    model = Li2Net(5, 8, "sqr", [0, 1, 2]).double()
    a, b = torch.tensor([0, 1, 4, 3, 2]), torch.tensor([2, 2, 0, 1, 4])
    y = (a + b) % 5
    per_example_loss("mse", model(a, b), y).sum().backward()
    grads = {"W": model.W.grad.mT, "V": model.V.grad}
    W = model.export()["W"].clone().requires_grad_(True)
    V = model.V.detach().clone().requires_grad_(True)
    X = torch.cat([torch.nn.functional.one_hot(a, 5), torch.nn.functional.one_hot(b, 5)], 1).double()
    o = torch.einsum("emk,ekn->emn", V, torch.einsum("ekd,nd->ekn", W, X).square())
    o0 = o - o.mean(1, keepdim=True)
    target = torch.nn.functional.one_hot(y, 5).double().T - 1 / 5  # (M, n)
    (o0 - target).square().sum(1).sum().backward()
    torch.testing.assert_close(grads["W"], W.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads["V"], V.grad, rtol=1e-10, atol=1e-12)
    # And the autograd gradient against central finite differences on one entry.
    h = 1e-6
    def loss_at(w):
        o = torch.einsum("emk,ekn->emn", V.detach(), torch.einsum("ekd,nd->ekn", w, X).square())
        o0 = o - o.mean(1, keepdim=True)
        return (o0 - target).square().sum().item()
    Wp, Wm = W.detach().clone(), W.detach().clone()
    Wp[1, 3, 6] += h
    Wm[1, 3, 6] -= h
    assert abs((loss_at(Wp) - loss_at(Wm)) / (2 * h) - W.grad[1, 3, 6].item()) < 1e-6


@pytest.mark.parametrize("act", ["sqr", "relu", "silu", "relusqr"])
@pytest.mark.parametrize("shared", [True, False])
def test_fused_first_layer_gradcheck(act, shared):
    """The hand-written backward of the fused gather + activation against finite differences."""
    W = torch.randn(2, 10, 4, dtype=torch.float64, requires_grad=True)  # E=2, M=5, K=4
    a, b = torch.tensor([0, 4, 2, 2]), torch.tensor([1, 1, 3, 0])
    if not shared:
        a, b = torch.stack([a, a.flip(0)]), torch.stack([b, b.roll(1)])
    assert torch.autograd.gradcheck(lambda w: pair_features(w, a, b, act, scale=0.7), (W,))


def test_mse_is_the_original_codes_loss():
    o = torch.randn(2, 6, 9, dtype=torch.float64)
    y = torch.randint(0, 6, (2, 9))
    o0 = o - o.mean(1, keepdim=True)
    target = torch.nn.functional.one_hot(y, 6).double().permute(0, 2, 1) - 1 / 6
    torch.testing.assert_close(mse(o, y), (o0 - target).square().sum(1))


def _quadratic_grads(p: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (p - torch.randn(p.shape, generator=g, dtype=p.dtype)) * 3.0


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_ensemble_optimizers_equal_torch_optim_member_by_member(kind):
    """Per-member lr and wd: member e must follow torch.optim with (lr[e], wd[e]) exactly."""
    lr, wd = [0.1, 0.03, 0.2], [0.0, 0.01, 0.5]
    P = torch.randn(3, 4, 5, dtype=torch.float64)
    ens = P.clone().requires_grad_(True)
    make = {"sgd": lambda ps, l, w: torch.optim.SGD(ps, lr=l, momentum=0.9, weight_decay=w),
            "adam": lambda ps, l, w: torch.optim.Adam(ps, lr=l, weight_decay=w),
            "adamw": lambda ps, l, w: torch.optim.AdamW(ps, lr=l, weight_decay=w)}[kind]
    opt = {"sgd": lambda: SGD([ens], torch.tensor(lr, dtype=torch.float64), torch.tensor(wd, dtype=torch.float64), momentum=0.9),
           "adam": lambda: Adam([ens], torch.tensor(lr, dtype=torch.float64), torch.tensor(wd, dtype=torch.float64)),
           "adamw": lambda: Adam([ens], torch.tensor(lr, dtype=torch.float64), torch.tensor(wd, dtype=torch.float64), decoupled=True)}[kind]()
    singles = [P[e].clone().requires_grad_(True) for e in range(3)]
    refs = [make([singles[e]], lr[e], wd[e]) for e in range(3)]
    for t in range(6):
        ens.grad = _quadratic_grads(ens.detach(), t)
        opt.step()
        g = _quadratic_grads(torch.stack([s.detach() for s in singles]), t)  # same noise, same rule
        for e in range(3):
            singles[e].grad = g[e].clone()
            refs[e].step()
    for e in range(3):
        torch.testing.assert_close(ens[e].detach(), singles[e].detach(), rtol=1e-12, atol=1e-14)


def test_warmup_scale_equals_torch_lambdalr():
    """TrainConfig.warmup: update s uses lr · min(s / warmup, 1), as LambdaLR in Nanda's code."""
    from groklab.train.optim import Combined

    P = torch.randn(2, 4, 5, dtype=torch.float64)
    ens = P.clone().requires_grad_(True)
    lr, wd = torch.tensor([1e-2, 3e-2], dtype=torch.float64), torch.tensor([1.0, 0.5], dtype=torch.float64)
    opt = Combined([Adam([ens], lr, wd, betas=(0.9, 0.98), decoupled=True)])
    singles = [P[e].clone().requires_grad_(True) for e in range(2)]
    refs = [torch.optim.AdamW([singles[e]], lr=float(lr[e]), weight_decay=float(wd[e]), betas=(0.9, 0.98))
            for e in range(2)]
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: min(s / 4, 1.0)) for o in refs]
    for t in range(8):
        ens.grad = _quadratic_grads(ens.detach(), t)
        opt.set_lr_scale(min(t / 4, 1.0))
        opt.step()
        g = _quadratic_grads(torch.stack([s.detach() for s in singles]), t)
        for e in range(2):
            singles[e].grad = g[e].clone()
            refs[e].step()
            scheds[e].step()
    for e in range(2):
        torch.testing.assert_close(ens[e].detach(), singles[e].detach(), rtol=1e-12, atol=1e-14)


def test_engine_warmup_first_update_has_lr_zero():
    cfg = RunConfig.from_flat({"group": "Z7", "frac": 0.6, "width": 16, "opt": "adamw", "steps": 1, "warmup": 10,
                               "dtype": "float64", "device": "cpu"})
    job = make_job(cfg, make_task("Z7"))
    p0 = [p.detach().clone() for p in init_state(job, torch.device("cpu"), torch.float64).model.parameters()]
    p1 = [p.detach() for p in train(job, device=torch.device("cpu")).model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(p0, p1))
    job2 = make_job(cfg.replace(steps=2), make_task("Z7"))
    p2 = [p.detach() for p in train(job2, device=torch.device("cpu")).model.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(p0, p2))


def test_inactive_members_do_not_move():
    P = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    before = P.detach().clone()
    opt = Adam([P], torch.tensor([0.1, 0.1]), torch.tensor([0.1, 0.1]))
    opt.active[1] = False
    P.grad = torch.ones_like(P)
    opt.step()
    assert torch.equal(P[1].detach(), before[1]) and not torch.equal(P[0].detach(), before[0])


def test_newton_schulz_is_batched_and_near_orthogonal():
    G = torch.randn(4, 12, 7, dtype=torch.float64)
    X = newton_schulz(G)
    for e in range(4):
        torch.testing.assert_close(X[e], newton_schulz(G[e]), rtol=1e-12, atol=1e-12)
        s = torch.linalg.svdvals(X[e])
        assert s.min() > 0.6 and s.max() < 1.25  # Keller Jordan's quintic lands in ~[0.7, 1.2]
        U, _, Vh = torch.linalg.svd(G[e], full_matrices=False)
        assert torch.nn.functional.cosine_similarity((U @ Vh).flatten(), X[e].flatten(), dim=0) > 0.98


# ---- the Li2 code's Muon, transcribed from luckmatters ssl/real-dataset/cogo/muon_opt.py ------------------
# (zeropower_via_newtonschulz5, muon_update, MuonEnhanced.step) with the arguments
# modular_addition_simple2.py passes: beta1=0.9, beta2=0.99, nesterov=False, use_bf16=False,
# update_rms_compensate=False, update_spectral_compensate=False, decay_after_update=False; on the
# single first layer W = nn.Linear(2M, K) (weight K x 2M), with torch.optim.Adam on V.
def _ref_zeropower_ns5(G):
    X = G
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in ((4.01, -9.22, 5.80), (3.49, -6.38, 3.23), (3.34, -6.21, 3.20), (3.64, -7.48, 4.43), (3.46, -5.35, 2.85)):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


@torch.no_grad()
def _ref_muon_step(p, grad, momentum, lr, wd, beta1=0.9, beta2=0.99):
    compensation_coeff = 1  # neither update_spectral_compensate nor update_rms_compensate
    if wd != 0:  # and not decay_after_update
        p.mul_(1 - lr * wd)
    momentum.lerp_(grad, 1 - beta2)
    grad.copy_(momentum)  # nesterov=False
    grad = _ref_zeropower_ns5(grad)
    grad.mul_(compensation_coeff)
    p.add_(grad.reshape(p.shape), alpha=-lr)


def _ref_mse(o, labels):
    """The Li2 code's compute_loss(..., "mse") for one output head."""
    o0 = o - o.mean(dim=1, keepdim=True)
    return o0.pow(2).sum(dim=1).mean() - 2 * o0.gather(1, labels.unsqueeze(1)).mean() + 1 - 1.0 / o.shape[1]


@pytest.mark.parametrize("width", [16, 40])  # K < 2M (wide W) and K > 2M (tall W: NS5 transposes)
def test_muon_equals_the_li2_codes_muon_for_20_float64_steps(width):
    """groklab `--opt muon` against an independent transcription of the Li2 code's training step
    (one-hot concat -> nn.Linear(2M, K) -> x² -> nn.Linear(K, M), MuonEnhanced on W, Adam on V),
    from the same init on the same training pairs: 20 float64 steps agree to 1e-10 relative."""
    M, lr, wd, steps = 11, 1e-2, 0.05, 20
    cfg = RunConfig.from_flat({"group": "Z11", "frac": 0.5, "width": width, "opt": "muon", "lr": lr, "wd": wd,
                               "steps": steps, "eval_every": steps, "dtype": "float64", "seeds": (0,)})
    job = make_job(cfg, make_task("Z11"))
    st = train(job)
    got = st.model.export()
    # the reference, from groklab's float32 init cast to float64 (the init is not under test here)
    init = Li2Net(M, width, "sqr", [0]).double().export()
    W = torch.nn.Linear(2 * M, width, bias=False).double()
    V = torch.nn.Linear(width, M, bias=False).double()
    with torch.no_grad():
        W.weight.copy_(init["W"][0])
        V.weight.copy_(init["V"][0])
    idx = torch.as_tensor(job.train_idx[0])
    a, b = idx // M, idx % M
    labels = torch.as_tensor(make_task("Z11").table.reshape(-1))[idx]
    X = torch.cat([torch.eye(M, dtype=torch.float64)[a], torch.eye(M, dtype=torch.float64)[b]], dim=1)  # (n, 2M)
    adam = torch.optim.Adam(V.parameters(), lr=lr, weight_decay=wd)
    mom = torch.zeros_like(W.weight)
    for _ in range(steps):
        adam.zero_grad()
        W.weight.grad = None
        loss = _ref_mse(V(W(X).pow(2)), labels)
        loss.backward()
        adam.step()
        _ref_muon_step(W.weight, W.weight.grad, mom, lr, wd)
    for name, ref in (("W", W.weight), ("V", V.weight)):
        rel = (got[name][0] - ref.detach()).norm() / ref.detach().norm()
        assert rel <= 1e-10, f"{name}: relative difference {rel:.2e}"
    moved = (W.weight.detach() - init["W"][0]).norm() / init["W"][0].norm()
    assert moved > 0.1  # the steps are large enough for a wrong rule to show


def test_muon_is_whole_matrix_not_per_operand_block():
    """Negative control: one step of groklab's Muon differs from orthogonalising W_a and W_b
    separately (the pre-issue-13 rule) — the reference test above would catch a return to it."""
    g = torch.randn(1, 22, 40, dtype=torch.float64)
    p = torch.zeros(1, 22, 40, dtype=torch.float64, requires_grad=True)
    opt = Muon([p], torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))
    p.grad = g.clone()
    opt.step()
    whole = -newton_schulz(0.01 * g)
    blocks = -torch.cat([newton_schulz(0.01 * g[:, :11]), newton_schulz(0.01 * g[:, 11:])], dim=1)
    torch.testing.assert_close(p.detach(), whole, rtol=1e-12, atol=1e-12)
    assert (whole - blocks).norm() / whole.norm() > 0.1


def test_ridge_top_layer_is_least_squares():
    f = torch.randn(1, 30, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (1, 30))
    V = ridge_top_layer(f, y, torch.ones(1, 30, dtype=torch.float64), 4, 0.1)
    Y = torch.nn.functional.one_hot(y[0], 4).double() - 0.25
    ref = torch.linalg.solve(f[0].T @ f[0] + 0.1 * torch.eye(6, dtype=torch.float64), f[0].T @ Y).T
    torch.testing.assert_close(V[0], ref)


def small(**kw) -> RunConfig:
    base = {"group": "Z11", "frac": 0.5, "width": 32, "steps": 60, "eval_every": 10, "dtype": "float64"}
    base.update(kw)
    return RunConfig.from_flat(base)


def test_ensemble_equals_single_runs_member_by_member():
    cfg = small(seeds=(0, 1, 2), steps=80)
    ens = train(make_job(cfg, make_task("Z11")))
    for e, seed in enumerate((0, 1, 2)):
        one = train(make_job(cfg.replace(seeds=(seed,)), make_task("Z11")))
        sel = np.asarray(ens.rows["member"]) == e
        for k in ("train_loss", "test_loss", "train_acc", "test_acc", "w_norm"):
            np.testing.assert_allclose(np.asarray(ens.rows[k])[sel], one.rows[k], rtol=1e-9, atol=1e-12)


def test_same_config_gives_bit_identical_metrics():
    cfg = small(seeds=(0, 1), dtype="float32", opt="muon")
    r1, r2 = train(make_job(cfg, make_task("Z11"))), train(make_job(cfg, make_task("Z11")))
    assert r1.rows == r2.rows


def test_members_with_different_training_sets_are_padded_correctly():
    """A member with a smaller split inside an ensemble equals that member run alone."""
    cfg = small(seeds=(0, 1), steps=40)
    task = make_task("Z11")
    job = make_job(cfg, task)
    job.train_idx[1] = job.train_idx[1][:30]  # member 1 sees only 30 pairs
    ens = train(job)
    solo_job = make_job(cfg.replace(seeds=(1,)), task)
    solo_job.train_idx[0] = job.train_idx[1]
    solo = train(solo_job)
    sel = np.asarray(ens.rows["member"]) == 1
    np.testing.assert_allclose(np.asarray(ens.rows["train_loss"])[sel], solo.rows["train_loss"], rtol=1e-9)
    assert Data(job, torch.device("cpu"), torch.float64).n_train.tolist() == [len(job.train_idx[0]), 30]


def test_evaluation_counts_train_and_test_exactly():
    cfg = small()
    job = make_job(cfg, make_task("Z11"))
    st = init_state(job, torch.device("cpu"), torch.float64)
    m = evaluate(st, job, Data(job, torch.device("cpu"), torch.float64))
    out = st.model(torch.as_tensor(job.train_idx[0] // 11), torch.as_tensor(job.train_idx[0] % 11))
    y = torch.as_tensor(make_task("Z11").table.reshape(-1)[job.train_idx[0]])
    assert m["train_acc"][0] == pytest.approx((out[0].argmax(0) == y).double().mean().item(), abs=1e-12)


def test_divergence_is_recorded_not_reported():
    cfg = small(seeds=(0, 1), opt="sgd", lr=1e4, steps=50)
    st = train(make_job(cfg, make_task("Z11")))
    assert st.status == ["diverged", "diverged"]
    assert all(d is not None and 0 <= d < 50 for d in st.diverged_step)
    assert all(np.isfinite(st.rows["train_loss"]))  # rows after divergence are not recorded


def test_stopping_rule_freezes_members_and_ends_early():
    cfg = RunConfig.from_flat({"group": "Z11", "frac": 0.8, "width": 64, "steps": 3000, "lr": 1e-2,
                               "stop_plateau": 50, "seeds": (0, 1)})
    st = train(make_job(cfg, make_task("Z11")))
    assert set(st.status) == {"stopped"} and st.step < 3000


@pytest.mark.slow
def test_z23_above_critical_size_groks():
    """Li2 defaults (K=512, x², MSE, Adam 1e-3, wd 1e-4) at 2x the critical size: test accuracy 1.0."""
    cfg = RunConfig.from_flat({"group": "Z23", "crit_mult": 2.0, "steps": 1200, "eval_every": 20})
    st = train(make_job(cfg, make_task("Z23")))
    test_acc = np.asarray(st.rows["test_acc"])
    assert test_acc[-1] == 1.0
    first_train = np.asarray(st.rows["step"])[np.argmax(np.asarray(st.rows["train_acc"]) >= 0.99)]
    first_test = np.asarray(st.rows["step"])[np.argmax(test_acc >= 0.99)]
    assert first_train < first_test  # memorizes first, generalizes later: grokking


@pytest.mark.slow
def test_z23_below_critical_size_only_memorizes():
    cfg = RunConfig.from_flat({"group": "Z23", "crit_mult": 0.5, "steps": 1200, "eval_every": 50})
    st = train(make_job(cfg, make_task("Z23")))
    assert st.rows["train_acc"][-1] == 1.0 and st.rows["test_acc"][-1] < 0.3


@pytest.mark.parametrize("act", sorted(ACT))
def test_pair_features_evaluation_path_equals_training_path(act):
    """Under no_grad the first layer applies σ in place (no saved tensors); the values must be the
    same bits as the autograd path's."""
    W = torch.randn(2, 22, 8, dtype=torch.float64, requires_grad=True)
    a, b = torch.randint(0, 11, (30,)), torch.randint(0, 11, (30,))
    train_path = pair_features(W, a, b, act, 0.7)
    with torch.no_grad():
        eval_path = pair_features(W, a, b, act, 0.7)
    assert train_path.requires_grad and not eval_path.requires_grad
    assert torch.equal(train_path.detach(), eval_path)
