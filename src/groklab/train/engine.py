"""The training loop, written once: `run`, `demo`, `sweep`, `bench` and the tests all call `train`.

An ensemble of E members trains as one tensor program (every parameter has a leading axis E).
Members may differ in seed, learning rate, weight decay and training set (padded to the largest,
with per-example weights); they share the task, model shape, optimizer kind and schedule.

Step numbering: an evaluation at step s is taken after s optimizer updates (s = 0 is the init),
like the original code's test_model() at the top of each epoch. Evaluations run at every multiple
of eval_every and at the last step, on all pairs of the task at once (no loop over members or
examples; chunked over pairs only when the output would be large).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from groklab import science
from groklab.models import build_model, ridge_top_layer
from groklab.tasks import Task
from groklab.train.config import RunConfig
from groklab.train.losses import per_example_loss
from groklab.train.optim import build_optimizer

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "w_norm", "v_norm")
EVAL_CHUNK = 1 << 24  # max activation elements of one evaluation block (E * width * pairs)


@dataclass
class Job:
    """One ensemble to train: shared config plus per-member seeds, splits, lr and wd (all length E)."""

    cfg: RunConfig
    task: Task
    seeds: list[int]
    train_idx: list[np.ndarray]  # flat pair indices a*M + b, one sorted array per member
    lr: np.ndarray
    wd: np.ndarray
    init: dict[str, Tensor] | None = None  # exported tensors to start from (leading axis E)
    eval_chunk: int = 0  # max elements of one evaluation block; 0: EVAL_CHUNK (train.memory lowers it to fit)

    @property
    def n_members(self) -> int:
        return len(self.seeds)


def make_job(cfg: RunConfig, task: Task, init: dict[str, Tensor] | None = None) -> Job:
    """The Job of a plain run: every member shares lr and wd; member e's split is drawn from
    split_seed if set, else from its own seed (as the original code does)."""
    from groklab.tasks import make_split

    t = cfg.task
    splits = [make_split(task, t.split_seed if t.split_seed is not None else s,
                         frac=t.frac, n_train=t.n_train, crit_mult=t.crit_mult) for s in cfg.train.seeds]
    E = len(cfg.train.seeds)
    if cfg.train.batch_size is not None:
        n_min = min(len(i) for i in splits)
        if cfg.train.batch_size >= n_min:
            from groklab.errors import bad_value

            raise bad_value("batch_size", cfg.train.batch_size, f"must be smaller than the training set ({n_min} pairs); omit it for full batch")
    return Job(cfg, task, list(cfg.train.seeds), splits, np.full(E, cfg.train.lr), np.full(E, cfg.train.wd), init)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from groklab.errors import bad_value

        raise bad_value("device", name, "CUDA is not available on this machine; use --device cpu or auto")
    return torch.device(name)


class StopRequested(KeyboardInterrupt):
    """Raised by train() between two steps when should_stop() asks; .state is consistent."""

    def __init__(self, state: "State"):
        super().__init__(f"stop requested at step {state.step}")
        self.state = state


@dataclass
class State:
    """Everything that changes during training; checkpoints hold exactly this."""

    model: torch.nn.Module
    opt: object
    grad_filter: object | None
    step: int = 0
    evaluated_at: int = -1  # last step evaluated (a resumed state must not record it twice)
    active: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (E,) still training
    status: list[str] = field(default_factory=list)  # per member: running / complete / stopped / diverged
    diverged_step: list[int | None] = field(default_factory=list)
    rows: dict[str, list] = field(default_factory=dict)  # metrics so far, one entry per (eval, member)
    since: dict[str, np.ndarray] = field(default_factory=dict)  # stopping-rule trackers
    batch_rng: list[np.random.Generator] | None = None
    wall_s: float = 0.0


class Data:
    """The task's pairs and each member's training set, as device tensors."""

    def __init__(self, job: Job, device: torch.device, dtype: torch.dtype):
        M, E = job.task.order, job.n_members
        pairs = job.task.pairs()  # (P,) flat a*M + b
        self.M, self.P = M, len(pairs)
        self.a = torch.as_tensor(pairs // M, device=device)
        self.b = torch.as_tensor(pairs % M, device=device)
        self.y = torch.as_tensor(job.task.table.reshape(-1)[pairs], device=device)
        is_train = np.stack([np.isin(pairs, idx) for idx in job.train_idx])  # (E, P)
        self.n_train = torch.as_tensor(is_train.sum(1), device=device, dtype=dtype)
        self.n_test = torch.as_tensor((~is_train).sum(1), device=device, dtype=dtype)
        self.is_train = torch.as_tensor(is_train, device=device, dtype=dtype)
        # Training batch: shared indices (n,) when every member has the same split (index_select is
        # cheaper than a per-member gather); else (E, n_max) padded, with weight 0 on padding.
        shared = all(np.array_equal(job.train_idx[0], i) for i in job.train_idx[1:])
        n_max = max(len(i) for i in job.train_idx)
        flat = np.zeros((E, n_max), np.int64)
        mask = np.zeros((E, n_max))
        for e, idx in enumerate(job.train_idx):
            flat[e, : len(idx)], mask[e, : len(idx)] = idx, 1.0
        flat_t = torch.as_tensor(flat[0] if shared else flat, device=device)
        self.ta, self.tb = flat_t // M, flat_t % M
        self.ty = torch.as_tensor(job.task.table.reshape(-1), device=device)[flat_t]
        self.tmask = torch.as_tensor(mask, device=device, dtype=dtype)  # (E, n_max)
        self.tweight = self.tmask / self.tmask.sum(1, keepdim=True)  # mean over each member's set
        self.flat, self.shared = flat, shared  # flat: (E, n_max) numpy, for minibatches


def init_state(job: Job, device: torch.device, dtype: torch.dtype) -> State:
    cfg = job.cfg
    model = build_model(cfg.model, job.task.order, job.seeds).to(device=device, dtype=dtype)
    if job.init is not None:  # after the cast: a float64 file starts a float64 run bit for bit
        model.load_exported({k: v.to(device=device, dtype=dtype) for k, v in job.init.items()})
    lr = torch.as_tensor(job.lr, dtype=dtype, device=device)
    wd = torch.as_tensor(job.wd, dtype=dtype, device=device)
    exclude = [model.V] if cfg.model.ridge is not None else []
    opt = build_optimizer(model, cfg.train, lr, wd, exclude=exclude)
    grad_filter = None
    if cfg.train.grokfast != "none":
        from groklab.train.tricks import make_grad_filter

        grad_filter = make_grad_filter(cfg.train)
    E = job.n_members
    st = State(model, opt, grad_filter, active=np.ones(E, bool), status=["running"] * E,
               diverged_step=[None] * E, rows={k: [] for k in ("step", "member", "seed", *METRICS)},
               since={"grok": np.full(E, -1), "move": np.zeros(E, np.int64), "ref": np.full(E, -1.0)})
    if cfg.train.batch_size is not None:
        st.batch_rng = [np.random.default_rng([s, 1]) for s in job.seeds]
    return st


@torch.no_grad()
def evaluate(state: State, job: Job, data: Data) -> dict[str, np.ndarray]:
    """Train/test loss and accuracy of every member on all pairs; returns (E,) arrays."""
    model, loss_kind = state.model, job.cfg.model.loss
    E, M = job.n_members, data.M
    if job.cfg.model.ridge is not None:
        _solve_ridge(model, data, job.cfg.model.ridge)
    sums = torch.zeros(4, E, dtype=data.tmask.dtype, device=data.tmask.device)
    width = getattr(model, "eval_width", max(M, getattr(model, "width", M)))  # floats per pair and member
    chunk = max(1, (job.eval_chunk or EVAL_CHUNK) // (E * width))
    for lo in range(0, data.P, chunk):
        sl = slice(lo, lo + chunk)
        out = model(data.a[sl], data.b[sl])  # (E, M, p)
        y = data.y[sl]
        loss = per_example_loss(loss_kind, out, y)  # (E, p)
        correct = (out.argmax(1) == y).to(loss.dtype)  # (E, p)
        tr = data.is_train[:, sl]
        sums += torch.stack([(loss * tr).sum(1), (correct * tr).sum(1),
                             (loss * (1 - tr)).sum(1), (correct * (1 - tr)).sum(1)])
    n = torch.stack([data.n_train, data.n_train, data.n_test, data.n_test])
    res = (sums / n.clamp(min=1)).cpu().numpy()
    norms = {k: v.detach().cpu().numpy() for k, v in model.weight_norms().items()}
    return {"train_loss": res[0], "train_acc": res[1], "test_loss": res[2], "test_acc": res[3], **norms}


@torch.no_grad()
def _solve_ridge(model, data: Data, lam: float) -> None:
    """V <- ridge solution on the current features (science.md §2; original code's set_weight_reg)."""
    f = model.features(data.ta, data.tb)  # (E, K, n)
    y = data.ty if data.ty.dim() == 2 else data.ty.expand(f.shape[0], -1)
    model.V.copy_(ridge_top_layer(f, y, data.tmask, model.order, lam))


def _record(state: State, job: Job, m: dict[str, np.ndarray], members: np.ndarray) -> None:
    for e in np.flatnonzero(members):
        state.rows["step"].append(state.step)
        state.rows["member"].append(int(e))
        state.rows["seed"].append(int(job.seeds[e]))
        for k in METRICS:
            state.rows[k].append(float(m[k][e]))


def _apply_stopping_rules(state: State, job: Job, m: dict[str, np.ndarray]) -> None:
    """TrainConfig.stop_grokked / stop_plateau (used by sweeps): freeze members that are done."""
    t, s, step = job.cfg.train, state.since, state.step
    grok = m["test_acc"] >= science.GENERALIZED_ACC
    s["grok"] = np.where(grok, np.where(s["grok"] < 0, step, s["grok"]), -1)
    moved = np.abs(m["test_acc"] - s["ref"]) > 0.01
    s["ref"] = np.where(moved, m["test_acc"], s["ref"])
    s["move"] = np.where(moved, step, s["move"])
    stop = np.zeros_like(state.active)
    if t.stop_grokked is not None:
        stop |= grok & (step - s["grok"] >= t.stop_grokked)
    if t.stop_plateau is not None:
        stop |= (m["train_acc"] >= 1.0) & (step - s["move"] >= t.stop_plateau)
    for e in np.flatnonzero(stop & state.active):
        state.active[e] = False
        state.status[e] = "stopped"


def train(job: Job, state: State | None = None, *, device: torch.device | None = None,
          on_eval: Callable[[State, dict], None] | None = None,
          on_checkpoint: Callable[[State], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> State:
    """Train `job` from `state` (or from scratch) to cfg.train.steps; returns the final state.

    on_eval(state, metrics) runs after every evaluation (progress display); on_checkpoint(state)
    runs every ckpt_every steps (the recorder saves a resumable checkpoint there). Both see the
    state between two steps, so a checkpoint resumes bit-exactly. should_stop() is polled between
    two steps (after the checkpoint); when it answers True, StopRequested carries the state out,
    consistent and resumable (a signal handler sets the flag: Ctrl-C never lands mid-update).
    """
    cfg = job.cfg
    t = cfg.train
    dtype = torch.float64 if t.dtype == "float64" else torch.float32
    device = device or pick_device(t.device)
    state = state or init_state(job, device, dtype)
    data = Data(job, device, dtype)
    model, opt = state.model, state.opt
    ridge = cfg.model.ridge
    finite = torch.ones(job.n_members, dtype=torch.bool, device=device)
    first_bad = torch.full((job.n_members,), -1, dtype=torch.int64, device=device)
    t0 = time.perf_counter() - state.wall_s
    start = state.step
    while True:
        # ---- evaluate, record, stop -------------------------------------------------------------
        if (state.step % t.eval_every == 0 or state.step == t.steps) and state.evaluated_at != state.step:
            state.evaluated_at = state.step
            _check_divergence(state, job, finite, first_bad)
            m = evaluate(state, job, data)
            was_active = state.active.copy()
            _apply_stopping_rules(state, job, m)
            _record(state, job, m, was_active)
            state.wall_s = time.perf_counter() - t0
            if on_eval is not None:
                on_eval(state, m)
        if state.step >= t.steps or not state.active.any():
            break
        # ---- checkpoint ---------------------------------------------------------------------------
        if on_checkpoint is not None and state.step % t.ckpt_every == 0 and state.step > start:
            state.wall_s = time.perf_counter() - t0
            on_checkpoint(state)
        if should_stop is not None and should_stop():
            state.wall_s = time.perf_counter() - t0
            raise StopRequested(state)
        # ---- forward / backward -------------------------------------------------------------------
        a, b, y, w = data.ta, data.tb, data.ty, data.tweight
        if state.batch_rng is not None:
            a, b, y, w = _minibatch(state, job, data)
        if ridge is not None:
            _solve_ridge(model, data, ridge)
        out = model(a, b)  # (E, M, n)
        loss_e = (per_example_loss(cfg.model.loss, out, y) * w).sum(1)  # (E,) each member's own mean
        opt.zero_grad()
        loss_e.sum().backward()  # members are independent: d(sum)/d(theta_e) = d(loss_e)/d(theta_e)
        # ---- update -------------------------------------------------------------------------------
        ok = torch.isfinite(loss_e)
        first_bad = torch.where(~ok & finite, state.step, first_bad)
        finite &= ok
        moving = finite & torch.as_tensor(state.active, device=device)  # (E,) members that update
        opt.set_active(moving)
        params = [p for o in opt.parts for p in o.params]
        if t.orth_grad:
            from groklab.train.tricks import orthogonal_grad

            orthogonal_grad(params)
        if state.grad_filter is not None:
            state.grad_filter.apply(params, moving)  # stopped members keep their filter state
        if t.warmup:
            opt.set_lr_scale(min(state.step / t.warmup, 1.0))
        opt.step()
        state.step += 1
    state.wall_s = time.perf_counter() - t0
    for e in range(job.n_members):
        if state.status[e] == "running":
            state.status[e] = "complete"
    return state


def _check_divergence(state: State, job: Job, finite: Tensor, first_bad: Tensor) -> None:
    """Freeze members whose loss went non-finite; never report their later metrics as results."""
    bad = (~finite).cpu().numpy() & state.active
    if bad.any():
        steps = first_bad.cpu().numpy()
        for e in np.flatnonzero(bad):
            state.active[e] = False
            state.status[e] = "diverged"
            state.diverged_step[e] = int(steps[e])


def _minibatch(state: State, job: Job, data: Data):
    """A random batch of B pairs per member, drawn without replacement from that member's own
    training set by its own generator (saved in checkpoints, so resume stays bit-exact)."""
    B = job.cfg.train.batch_size
    pos = np.stack([rng.choice(len(idx), size=B, replace=False) for rng, idx in zip(state.batch_rng, job.train_idx)])
    flat = torch.as_tensor(np.take_along_axis(data.flat, pos, 1), device=data.tmask.device)  # (E, B)
    w = torch.full(flat.shape, 1.0 / B, dtype=data.tmask.dtype, device=flat.device)
    y = torch.as_tensor(job.task.table.reshape(-1), device=flat.device)[flat]
    return flat // data.M, flat % data.M, y, w
