"""The comparison, start to end: a base on both rules, then SFT vs RL on r0 only, written as run folders.

    out/config.json                      the resolved PosttrainConfig, argv, versions
    out/base/{metrics.parquet, weights.safetensors, summary.json}
                                         one base per seed, snapshotted when it first reaches
                                         base_target mean held-out accuracy (partial competence)
    out/<arm>/{config.json, metrics.parquet, weights.parquet, summary.json}
                                         every (pool, seed) member of that arm; metrics: one row per
                                         evaluation and member; weights: one row per evaluation,
                                         member and matrix (diagnostics.py)
    out/summary.json                     the comparison: finals, changes against the base, seed intervals

All members (arms x pools x seeds) post-train in one tensor program from copies of their seed's base,
with the same number of sequences per step (`samples`) and the same optimizer (`post_opt`, `post_lr`):
SFT sees `samples` gold chains, RL sees samples / group_size prompts with group_size sampled chains
each. Randomness: model init from each seed's torch.Generator, prompt draws from numpy generators
seeded by (seed, pool, arm), sampling from one torch.Generator seeded by the seeds; nothing global.
Every file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from groklab.posttrain import objectives as obj
from groklab.posttrain.config import PosttrainConfig
from groklab.posttrain.diagnostics import DIAGNOSTICS, chance_share, matrix_diagnostics
from groklab.posttrain.model import ChainTransformer
from groklab.posttrain.rules import RuleTask, make_rule_task
from groklab.posttrain.summary import summarize
from groklab.science import VERSION as __version__
from groklab.train.record import atomic_write, check_out_dir, write_json

__all__ = ["run_posttrain", "train_base", "post_train"]

POOL_EVAL = 256  # pool prompts per member for the memorization readout acc_pool


def _write_parquet(path: Path, rows: dict[str, list]) -> None:
    table = pa.table(rows)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _model(cfg: PosttrainConfig, task: RuleTask, seeds: list[int]) -> ChainTransformer:
    return ChainTransformer(task.vocab, task.order, task.seq_len, cfg.d_model, cfg.n_heads, cfg.d_mlp,
                            cfg.n_layers, seeds)


def _eval_idx(task: RuleTask, cfg: PosttrainConfig) -> np.ndarray:
    """The fixed held-out tuples the accuracy curves are measured on (the same for every member)."""
    test = np.flatnonzero(~task.train)
    test = np.random.default_rng([cfg.split_seed, 1]).permutation(test)
    return np.sort(test[: cfg.eval_prompts] if cfg.eval_prompts else test)


@torch.no_grad()
def greedy_accuracy(model: ChainTransformer, task: RuleTask, rule: int, idx: np.ndarray,
                    mask: np.ndarray | None = None) -> np.ndarray:
    """(E,) share of tuples idx ((n,) shared or (E, n) per member) whose greedy final answer is right."""
    E = model.n_members
    idx = np.broadcast_to(idx, (E,) + idx.shape[-1:])
    seq = torch.from_numpy(task.sequences(np.full(idx.size, rule), idx.reshape(-1)).reshape(E, idx.shape[1], -1))
    out = obj.generate(model, seq[..., : task.prompt_len], task.hops, greedy=True)
    ok = (out[..., -1] == seq[..., -1]).double().numpy()
    if mask is None:
        return ok.mean(1)
    return (ok * mask).sum(1) / mask.sum(1)


def train_base(cfg: PosttrainConfig, task: RuleTask, log: Callable[[str], None]) -> tuple[dict, dict, dict]:
    """One base per seed on both rules' training tuples; returns (snapshot tensors, metrics rows, summary)."""
    seeds = list(cfg.seeds)
    E = len(seeds)
    model = _model(cfg, task, seeds)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.base_lr)
    train_idx = np.flatnonzero(task.train)
    eval_idx = _eval_idx(task, cfg)
    rngs = [np.random.default_rng([s, 0]) for s in seeds]
    every = 10  # fine enough to catch the fast rise and snapshot near base_target
    snap = model.state()
    snap_step = np.full(E, -1)
    rows: dict[str, list] = {k: [] for k in ("step", "seed", "acc_r0", "acc_r1", "loss")}
    loss_e = torch.full((E,), float("nan"))
    for step in range(cfg.base_steps + 1):
        if step % every == 0 or step == cfg.base_steps:
            acc = [greedy_accuracy(model, task, r, eval_idx) for r in (0, 1)]
            for e in range(E):
                rows["step"].append(step), rows["seed"].append(seeds[e])
                rows["acc_r0"].append(float(acc[0][e])), rows["acc_r1"].append(float(acc[1][e]))
                rows["loss"].append(float(loss_e[e]))
            reached = ((acc[0] + acc[1]) / 2 >= cfg.base_target) & (snap_step < 0)
            if reached.any():
                state = model.state()
                for k in snap:
                    snap[k][torch.from_numpy(reached)] = state[k][torch.from_numpy(reached)]
                snap_step[reached] = step
            log(f"base step {step}: acc r0 {acc[0].mean():.3f} r1 {acc[1].mean():.3f} (mean over {E} seeds)")
            if (snap_step >= 0).all() or step == cfg.base_steps:
                break
        # ---- a minibatch of both rules' training chains, cross-entropy on every answer token
        idx = np.stack([rng.choice(train_idx, cfg.base_batch) for rng in rngs])          # (E, B)
        rule = np.stack([rng.integers(0, 2, cfg.base_batch) for rng in rngs])           # (E, B)
        seq = torch.from_numpy(task.sequences(rule.reshape(-1), idx.reshape(-1)).reshape(E, cfg.base_batch, -1))
        logp = obj.answer_logprobs(model, seq, task.prompt_len)
        loss_e = obj.sft_loss(logp, seq, task.prompt_len).detach()
        opt.zero_grad(set_to_none=True)
        obj.sft_loss(logp, seq, task.prompt_len).sum().backward()
        opt.step()
    final = model.state()
    never = torch.from_numpy(snap_step < 0)
    for k in snap:  # a seed that never reached the target keeps its last weights (said in the summary)
        snap[k][never] = final[k][never]
    snap_step[snap_step < 0] = step
    base_model = _model(cfg, task, seeds)
    base_model.load_members(snap, torch.arange(E))
    acc = [greedy_accuracy(base_model, task, r, eval_idx) for r in (0, 1)]
    summary = {"seeds": seeds, "snapshot_step": snap_step.tolist(), "reached_target": (~never).tolist(),
               "acc_r0": acc[0].tolist(), "acc_r1": acc[1].tolist(), "target": cfg.base_target}
    return snap, rows, summary


def post_train(cfg: PosttrainConfig, task: RuleTask, base: dict, log: Callable[[str], None]) -> tuple[dict, dict, dict]:
    """SFT and RL members from their seed's base; returns (final tensors, metrics rows, weights rows)."""
    members = cfg.members()
    E, P, G, N = len(members), task.prompt_len, cfg.group_size, cfg.samples
    seed_pos = {s: i for i, s in enumerate(cfg.seeds)}
    index = torch.tensor([seed_pos[s] for _, _, s in members])
    model = _model(cfg, task, [s for _, _, s in members])
    model.load_members(base, index)
    ref = _model(cfg, task, [s for _, _, s in members])
    ref.load_members(base, index)
    ref.requires_grad_(False)
    base_mats = ref.matrices()
    opt = (torch.optim.Adam(model.parameters(), lr=cfg.post_lr) if cfg.post_opt == "adam"
           else torch.optim.SGD(model.parameters(), lr=cfg.post_lr, momentum=0.9))
    is_sft = torch.tensor([a == "sft" for a, _, _ in members])
    beta = torch.tensor([cfg.kl_coef if a == "rl_kl" else 0.0 for a, _, _ in members])
    # Each (pool, seed) draws its pool once, the same for every arm: matched data across arms.
    r0_train = np.flatnonzero(task.train)
    pools, rngs = [], []
    for ai, (arm, pool, seed) in enumerate(members):
        chosen = r0_train if pool == 0 else np.random.default_rng([seed, pool, 7]).choice(r0_train, min(pool, r0_train.size), replace=False)
        pools.append(chosen)
        rngs.append(np.random.default_rng([seed, pool, cfg.arms.index(arm), 11]))
    L = min(POOL_EVAL, max(p.size for p in pools))
    pool_eval = np.stack([np.resize(p[:L], L) for p in pools])
    pool_mask = np.stack([np.arange(L) < min(p.size, L) for p in pools]).astype(float)
    eval_idx = _eval_idx(task, cfg)
    gen = torch.Generator().manual_seed(int(1_000_003 * sum(cfg.seeds) + 17))
    metrics: dict[str, list] = {k: [] for k in ("step", "arm", "pool", "seed", "acc_r0", "acc_r1", "acc_pool", "reward", "loss", "kl")}
    weights: dict[str, list] = {k: [] for k in ("step", "arm", "pool", "seed", "matrix", "rows", "cols", "chance_share", *DIAGNOSTICS)}
    stats = {k: torch.full((E,), float("nan")) for k in ("reward", "loss", "kl")}
    # Also at steps 1, 2, 4, ... below eval_every: SFT moves fast at first, and the matched-r0-gain
    # comparison (summary.py) needs the early curve.
    early = {2 ** i for i in range(12) if 2 ** i < cfg.eval_every}
    for step in range(cfg.post_steps + 1):
        if step % cfg.eval_every == 0 or step == cfg.post_steps or step in early:
            acc0, acc1 = (greedy_accuracy(model, task, r, eval_idx) for r in (0, 1))
            accp = greedy_accuracy(model, task, 0, pool_eval, pool_mask)
            for e, (arm, pool, seed) in enumerate(members):
                for k, v in (("step", step), ("arm", arm), ("pool", pool), ("seed", seed), ("acc_r0", float(acc0[e])),
                             ("acc_r1", float(acc1[e])), ("acc_pool", float(accp[e])),
                             *((k, float(stats[k][e])) for k in ("reward", "loss", "kl"))):
                    metrics[k].append(v)
            for name, W1 in model.matrices().items():
                d = matrix_diagnostics(base_mats[name], W1, cfg.top_k)
                shape = tuple(W1.shape[1:])
                for e, (arm, pool, seed) in enumerate(members):
                    for k, v in (("step", step), ("arm", arm), ("pool", pool), ("seed", seed), ("matrix", name),
                                 ("rows", shape[0]), ("cols", shape[1]), ("chance_share", chance_share(shape, cfg.top_k)),
                                 *((k, float(d[k][e])) for k in DIAGNOSTICS)):
                        weights[k].append(v)
            parts = []
            for arm in cfg.arms:
                sel = np.array([a == arm for a, _, _ in members])
                parts.append(f"{arm} r0 {acc0[sel].mean():.3f} r1 {acc1[sel].mean():.3f}")
            log(f"post step {step}: " + "; ".join(parts))
        if step == cfg.post_steps:
            break
        # ---- prompts: SFT N tuples from its pool; RL N/G tuples, each repeated G times (consecutive)
        idx = np.stack([rng.choice(pool, N) if is_sft[e] else np.repeat(rng.choice(pool, N // G), G)
                        for e, (rng, pool) in enumerate(zip(rngs, pools))])               # (E, N)
        gold = torch.from_numpy(task.sequences(np.zeros(idx.size, dtype=np.int64), idx.reshape(-1)).reshape(E, N, -1))
        sampled = obj.generate(model, gold[..., :P], task.hops, greedy=False, temperature=cfg.temperature, generator=gen)
        reward = obj.final_reward(sampled, gold[..., -1])                                   # (E, N)
        seq = torch.where(is_sft[:, None, None], gold, sampled)
        logp = obj.answer_logprobs(model, seq, P)                                           # (E, N, h, M)
        with torch.no_grad():
            logp_ref = obj.answer_logprobs(ref, seq, P)
        adv = obj.advantages(reward, G, cfg.baseline)
        kl = obj.kl_to_base(logp, logp_ref)
        loss_e = torch.where(is_sft, obj.sft_loss(logp, seq, P), obj.pg_loss(logp, seq, P, adv) + beta * kl)
        opt.zero_grad(set_to_none=True)
        loss_e.sum().backward()
        opt.step()
        stats = {"reward": reward.mean(1), "loss": loss_e.detach(), "kl": kl.detach()}
    return model.state(), metrics, weights


def run_posttrain(cfg: PosttrainConfig, out: str | Path, argv: list[str] | None = None,
                  quiet: bool = False) -> dict:
    """Run the whole comparison into the new folder `out`; returns the top-level summary."""
    out = Path(out)
    check_out_dir(out)
    task = make_rule_task(cfg.group, cfg.r0, cfg.hops, cfg.frac, cfg.split_seed)  # validates before writing
    t0 = time.perf_counter()
    log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    out.mkdir(parents=True, exist_ok=True)
    meta = {"kind": "groklab.posttrain", "groklab": __version__, "config": cfg.to_dict(), "argv": argv or [],
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "task": {"group": task.group, "order": task.order, "r0": task.r0, "hops": task.hops,
                     "n_prompts_per_rule": int(task.operands.shape[0]), "n_train": int(task.train.sum()),
                     "final_answers_differ": task.differ()}}
    write_json(out / "config.json", meta)
    base, base_rows, base_summary = train_base(cfg, task, log)
    t_base = time.perf_counter() - t0
    (out / "base").mkdir(exist_ok=True)
    _write_parquet(out / "base" / "metrics.parquet", base_rows)
    from safetensors.torch import save_file

    atomic_write(out / "base" / "weights.safetensors", lambda tmp: save_file({k: v.contiguous() for k, v in base.items()}, tmp))
    write_json(out / "base" / "summary.json", {**base_summary, "wall_s": round(t_base, 2)})
    final, metrics, weights = post_train(cfg, task, base, log)
    t_all = time.perf_counter() - t0
    for arm in cfg.arms:
        d = out / arm
        d.mkdir(exist_ok=True)
        sel = [i for i, a in enumerate(metrics["arm"]) if a == arm]
        _write_parquet(d / "metrics.parquet", {k: [v[i] for i in sel] for k, v in metrics.items()})
        selw = [i for i, a in enumerate(weights["arm"]) if a == arm]
        _write_parquet(d / "weights.parquet", {k: [v[i] for i in selw] for k, v in weights.items()})
        write_json(d / "config.json", {"kind": "groklab.posttrain.arm", "arm": arm, "config": cfg.to_dict()})
        write_json(d / "summary.json", summarize(cfg, metrics, weights, arms=(arm,)))
    summary = summarize(cfg, metrics, weights, arms=cfg.arms)
    summary.update({"base": base_summary, "wall_s": round(t_all, 2), "wall_base_s": round(t_base, 2),
                    "threads": torch.get_num_threads()})
    write_json(out / "summary.json", summary)
    return summary
