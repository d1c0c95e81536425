"""The training loop of the three arms (Coconut, discrete CoT, no CoT) and their evaluation.

One explicit loop (nanoGPT shape): stage -> batch -> forward/backward -> step -> evaluate/log.
Settings follow the official ``args/prosqa_coconut_2l_8h_768d.yaml`` and the paper §5.1 (AdamW,
betas (0.9, 0.95), weight decay 0.01, constant lr, a stage every ``stage_steps`` with previous
stages mixed in with probability 0.1) scaled to CPU: fresh graphs every step instead of epochs
over 15k stored graphs, and the stage mix is drawn per batch (all rows of a batch share a
layout) instead of per example.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from groklab.errors import check
from groklab.superposition.data import IGNORE, DataConfig, Graph, encode_batch, frontier_tokens, make_graph
from groklab.superposition.model import GPT, GPTConfig, coconut_forward

__all__ = ["TrainConfig", "ARMS", "train_arm", "accuracy", "eval_graphs"]

ARMS = ("coconut", "cot", "nocot")


@dataclass(frozen=True)
class TrainConfig:
    arms: tuple[str, ...] = ARMS
    # data
    n_min: int = 10
    n_max: int = 12
    depth: int = 3
    n_tokens: int = 16
    # model (official: 2 layers, 8 heads, 768 wide)
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    # optimisation (official: lr 1e-4, wd 0.01, batch 128, 25 epochs a stage)
    steps: int = 1500
    stage_steps: int = 250
    batch: int = 64
    lr: float = 1e-3
    wd: float = 0.01
    uniform_prob: float = 0.1
    # Coconut's loss before the last stage: "optimal" = cross-entropy on one optimal node of the
    # next hop (official Coconut); "bfs" = -log of the probability mass on the next hop's whole
    # frontier (Emergence of Superposition, arXiv 2509.23365 App. E.2)
    coconut_loss: str = "optimal"
    # evaluation
    eval_every: int = 100
    n_eval: int = 256
    seed: int = 0
    threads: int = 1
    max_seconds: float = 0.0  # per arm wall-clock budget (0 = none); stops at the next evaluation

    def __post_init__(self) -> None:
        check(len(self.arms) >= 1 and all(a in ARMS for a in self.arms), "arms", ",".join(self.arms),
              "a comma list of " + ", ".join(ARMS))
        for name in ("steps", "stage_steps", "batch", "eval_every", "n_eval", "threads", "d_model", "n_head"):
            check(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        check(self.lr > 0, "lr", self.lr, "must be > 0")
        check(self.wd >= 0, "wd", self.wd, "must be >= 0")
        check(0 <= self.uniform_prob <= 1, "uniform_prob", self.uniform_prob, "must be in [0, 1]")
        check(self.coconut_loss in ("optimal", "bfs"), "coconut_loss", self.coconut_loss, "optimal or bfs")
        check(self.max_seconds >= 0, "max_seconds", self.max_seconds, "must be >= 0 (0 = no budget)")
        self.data  # validates the data fields
        self.gpt  # validates the model fields

    @property
    def data(self) -> DataConfig:
        return DataConfig(n_min=self.n_min, n_max=self.n_max, depth=self.depth, n_tokens=self.n_tokens)

    @property
    def gpt(self) -> GPTConfig:
        d = self.data
        n_pos = 3 * d.max_edges + 6 + d.depth + 4
        return GPTConfig(vocab=d.vocab.size, n_layer=self.n_layer, n_head=self.n_head, d_model=self.d_model, n_pos=n_pos)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["arms"] = list(self.arms)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        check(set(d) <= names, "config", sorted(set(d) - names), "unknown fields")
        return cls(**{**d, "arms": tuple(d.get("arms", ARMS))})


def eval_graphs(cfg: TrainConfig) -> list[Graph]:
    """A fixed evaluation set, from its own seed stream (never drawn by training)."""
    rng = np.random.default_rng([cfg.seed, 1])
    return [make_graph(rng, cfg.data) for _ in range(cfg.n_eval)]


@torch.no_grad()
def accuracy(model: GPT, arm: str, graphs: list[Graph], cfg: TrainConfig, chunk: int = 128) -> float:
    """Answer accuracy as the official eval measures it: Coconut with `depth` thoughts then <A>;
    CoT decoded greedily until <A>, then the next token; no CoT: the token after <A>."""
    voc, depth = cfg.data.vocab, cfg.depth
    rng = np.random.default_rng([cfg.seed, 2])
    correct = 0
    for lo in range(0, len(graphs), chunk):
        gs = graphs[lo: lo + chunk]
        if arm == "coconut":
            b = encode_batch(gs, voc, "coconut", depth, rng)
            h, _, _ = coconut_forward(model, b.tokens, b.pos, b.pad, b.prompt_len, depth)
            pred = model.logits(h[:, -1]).argmax(-1)
        elif arm == "nocot":
            b = encode_batch(gs, voc, "nocot", 0, rng)
            h, _ = model.hidden(model.wte(b.tokens), b.pos, b.pad)
            pred = model.logits(h[:, -1]).argmax(-1)
        else:
            b = encode_batch(gs, voc, "nocot", 0, rng)  # prompt + <A>: drop the <A>, decode from the root
            toks, pos, pad = b.tokens[:, :-1], b.pos[:, :-1], b.pad[:, :-1]
            gen = []
            for _ in range(depth + 2):
                h, _ = model.hidden(model.wte(toks), pos, pad)
                nxt = model.logits(h[:, -1]).argmax(-1)
                gen.append(nxt)
                toks = torch.cat([toks, nxt[:, None]], 1)
                pos = torch.cat([pos, pos[:, -1:] + 1], 1)
                pad = torch.cat([pad, torch.zeros_like(pad[:, :1])], 1)
            gen_t = torch.stack(gen, 1)
            is_a = gen_t[:, :-1] == voc.ANS
            first = torch.where(is_a.any(1), is_a.float().argmax(1), torch.full_like(is_a[:, 0], -1, dtype=torch.long))
            pred = torch.where(first >= 0, gen_t.gather(1, (first + 1).clamp(min=0)[:, None])[:, 0], torch.full_like(first, -1))
        correct += int((pred == torch.tensor([g.target for g in gs])).sum())
    return correct / len(graphs)


def arm_loss(model: GPT, h: torch.Tensor, b, cfg: TrainConfig, arm: str, stage: int) -> torch.Tensor:
    """Mean loss over the supervised positions of a batch; h (B, T, d) final hidden states."""
    if arm == "coconut" and cfg.coconut_loss == "bfs" and stage < cfg.depth:
        # one supervised position per row (the last); its hop stage+1 frontier is the target set
        logp = model.logits(h[:, -1]).log_softmax(-1)  # (B, V)
        mask = torch.zeros_like(logp, dtype=torch.bool)
        for i, g in enumerate(b.graphs):
            mask[i, frontier_tokens(g, stage + 1)] = True
        return -torch.logsumexp(logp.masked_fill(~mask, float("-inf")), -1).mean()
    sel = b.targets != IGNORE
    return F.cross_entropy(model.logits(h[sel]), b.targets[sel])


def train_arm(cfg: TrainConfig, arm: str, log: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> tuple[GPT, list[dict]]:
    """Train one arm from its own seed; returns the model and one metrics row per evaluation."""
    torch.set_num_threads(cfg.threads)
    model = GPT(cfg.gpt, seed=cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.wd)
    rng = np.random.default_rng([cfg.seed, 0, ARMS.index(arm)])
    evals = eval_graphs(cfg)
    rows: list[dict] = []
    t0, loss_sum, loss_n = time.perf_counter(), 0.0, 0
    for step in range(cfg.steps + 1):
        stage = min(step // cfg.stage_steps, cfg.depth) if arm == "coconut" else 0
        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            row = dict(arm=arm, step=step, stage=stage, loss=loss_sum / max(loss_n, 1),
                       acc=accuracy(model, arm, evals, cfg), seconds=time.perf_counter() - t0)
            rows.append(row)
            loss_sum, loss_n = 0.0, 0
            if log:
                log(row)
            model.train()
            out_of_time = cfg.max_seconds > 0 and row["seconds"] > cfg.max_seconds
            if step == cfg.steps or out_of_time or (should_stop and should_stop()):
                break
        if arm == "coconut" and rng.random() < cfg.uniform_prob:
            stage = int(rng.integers(0, stage + 1))  # official: random.randint(0, min(stage, len(steps)))
        graphs = [make_graph(rng, cfg.data) for _ in range(cfg.batch)]
        b = encode_batch(graphs, cfg.data.vocab, arm, stage, rng)
        if arm == "coconut":
            h, _, _ = coconut_forward(model, b.tokens, b.pos, b.pad, b.prompt_len, b.n_latent)
        else:
            h, _ = model.hidden(model.wte(b.tokens), b.pos, b.pad)
        loss = arm_loss(model, h, b, cfg, arm, stage)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach())
        loss_n += 1
    return model, rows
