"""Analysis of Li2 networks during and after training: what the hidden units have learned
(science.md §3, §5; Li2 §4–5.3), measured at evaluation steps and written to ``analysis.parquet``.

Runs save only their final weights, so ``analyze_run(dir)`` (``groklab analyze RUN``) REPLAYS
the run: it rebuilds the Job from config.json + split.npz exactly as ``api.resume`` does, trains
it again with an ``on_eval`` hook that measures the network every ``every`` steps, checks that the
replayed metrics equal metrics.parquet (training is bit-deterministic on one machine and thread
count), then writes ``analysis.parquet`` and adds ``stages`` (analysis_stages.py) to summary.json.
``Analyzer`` is the same hook for use during a run (``run_with_analysis``). Runs of the peer models
(transformer, embed-mlp) on Z_M get Nanda et al.'s progress measures and phases instead
(analysis_progress.py), through the same replay, steps and files.

One row per analysed step and member (columns: docs/formats.md, "analysis files"). The measures
(analysis_measures.py) are per member, on that member's training pairs:

- feature purity (science.md §5): a unit's share of ‖w‖² in its dominant real isotypic block, per
  operand (theory.reps.unit_features); irreps covered = distinct non-trivial blocks that some
  unit has learned (both operands, purity ≥ reps.PURITY_THRESHOLD, same block);
- spectrum: share of the whole hidden layer's ‖W‖²_F in each block (for heatmaps);
- E(ŵ) = ½‖Ỹᵀσ(Xŵ)‖² of each unit direction ŵ = w/‖w‖ (Li2 Thm 1; theory.li2.energy);
- ‖G_F‖_F, G_F = P₁^⊥(Y − FV)Vᵀ (Li2 Eq. 2; theory.li2.backprop_gradient), and the share of the
  first-layer gradient it implies that lies in blocks no unit has learned yet (Li2 Thm 7);
- the original code's kernel diagnostics (science.md §5), from the K×K Gram only (no n×n matrix).

    >>> from groklab import RunConfig
    >>> from groklab.analysis import run_with_analysis
    >>> r = run_with_analysis(RunConfig.from_flat({"group": "Z11", "frac": 0.5, "steps": 40, "width": 24}), out=None, every=20)
    >>> sorted(set(r.analysis["step"].to_pylist()))
    [0, 10, 20, 40]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from groklab.analysis.measures import ACTIVE_NORM, SCALARS, Probe, measure
from groklab.errors import GroklabError
from groklab.train import record

__all__ = ["ANALYSIS_FILE", "DEFAULT_EVERY", "Probe", "Analyzer", "AnalyzedRun", "measure", "resolve_every",
           "analyze_run", "run_with_analysis", "load_analysis"]

ANALYSIS_FILE = "analysis.parquet"
DEFAULT_EVERY = 50  # steps between analyses by default (rounded up to a multiple of eval_every)


# ---------------------------------------------------------------------------------------------- hook
def resolve_every(cfg, every: int | str | None) -> int:
    """Steps between analyses: None -> DEFAULT_EVERY rounded up to a multiple of eval_every;
    "eval" -> every evaluation; "ckpt" -> every checkpoint (ckpt_every); an int must be a multiple
    of eval_every (analyses are taken at evaluations) or of ckpt_every."""
    t = cfg.train
    if every is None:
        return -(-DEFAULT_EVERY // t.eval_every) * t.eval_every
    if every == "eval":
        return t.eval_every
    if every == "ckpt":
        return t.ckpt_every
    if isinstance(every, str):
        try:
            every = int(every)
        except ValueError:
            raise GroklabError(f"--every {every!r}: must be a number of steps, 'eval' or 'ckpt'", "every") from None
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise GroklabError(f"--every {every!r}: must be a positive number of steps, 'eval' or 'ckpt'", "every")
    if every % t.eval_every and every % t.ckpt_every:
        raise GroklabError(f"--every {every}: must be a multiple of the run's eval_every ({t.eval_every}) or "
                           f"ckpt_every ({t.ckpt_every}): analyses are taken at evaluations and checkpoints", "every")
    return every


class Analyzer:
    """Measures a training Job at its evaluation steps: pass ``on_eval`` and ``on_checkpoint`` to
    ``engine.train`` (or ``on_eval`` to ``api.run``). Analysed steps: step 0, every ``every``
    steps, the steps eval_every·2^j below ``every`` (so log-scale plots see the early dynamics), and
    the last evaluation. A member is measured at a step iff metrics.parquet has a row for it there."""

    def __init__(self, job, every: int | str | None = None):
        # Li2 networks: the irrep analysis; the peer models: Nanda's progress measures (Z_M only).
        if job.cfg.model.model == "li2":
            self.probe = Probe(job)
            self._measure = lambda model: measure(self.probe, model)
        else:
            from groklab.analysis.phases import ProgressProbe

            self.probe = ProgressProbe(job)
            self._measure = self.probe.measure
        self.every = resolve_every(job.cfg, every)
        t = job.cfg.train
        self.last = t.steps
        self.early = {t.eval_every * 2**j for j in range(64) if t.eval_every * 2**j < self.every}
        self.job = job
        self.seeds = list(job.seeds)
        self.done: set[int] = set()
        self.rows: dict[str, list] = {"step": [], "member": [], "seed": []}
        self.spectra: list[np.ndarray] = []

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.last or step in self.early

    def on_eval(self, state, metrics: dict | None = None) -> None:
        if state.step in self.done:
            return
        rows = state.rows
        members = []
        for i in range(len(rows["step"]) - 1, -1, -1):  # the rows this evaluation appended
            if rows["step"][i] != state.step:
                break
            members.append(rows["member"][i])
        # also a member's last evaluation (a stopping rule froze it here), so its final state is measured
        if self.due(state.step) or any(not state.active[e] for e in members):
            self._take(state, sorted(members))

    def on_checkpoint(self, state) -> None:
        if state.step not in self.done and self.due(state.step):
            self._take(state, [int(e) for e in np.flatnonzero(state.active)])

    def _take(self, state, members: list[int]) -> None:
        self.done.add(state.step)
        if not members:
            return
        res = self._measure(state.model)
        for e in members:
            self.rows["step"].append(int(state.step))
            self.rows["member"].append(int(e))
            self.rows["seed"].append(int(self.seeds[e]))
            for k, v in res.items():
                if k != "spectrum":
                    self.rows.setdefault(k, []).append(float(v[e]))
            if "spectrum" in res:
                self.spectra.append(res["spectrum"][e])

    def table(self) -> pa.Table:
        """analysis.parquet's table: step, member, seed (int64), the measures, spectrum_<block>."""
        ints = {"step", "member", "seed"}
        names = ["step", "member", "seed"] + [k for k in SCALARS if k in self.rows]
        names += [k for k in self.rows if k not in names]
        cols = {k: pa.array(self.rows[k], pa.int64() if k in ints else pa.float64()) for k in names}
        if self.spectra:
            S = np.stack(self.spectra)
            for i, name in enumerate(self.probe.block_names):
                cols["spectrum_" + name] = pa.array(S[:, i], pa.float64())
        return pa.table(cols)

    @property
    def kind(self) -> str:
        return "li2" if isinstance(self.probe, Probe) else "progress"

    def meta(self) -> dict[str, Any]:
        p = self.probe
        if self.kind == "progress":
            return p.meta(self.every)
        return {"file": ANALYSIS_FILE, "every": self.every, "blocks": list(p.block_names),
                "n_features": max(len(p.block_names) - 1, 0), "active_norm": ACTIVE_NORM}


# ---------------------------------------------------------------------------------------------- runs
@dataclass
class AnalyzedRun:
    """The result of `analyze_run` / `run_with_analysis`: the run folder, the analysis table,
    summary.json as updated (with ``stages`` and ``analysis``), and how exactly the replay
    reproduced metrics.parquet (``replay``: "exact", "approximate" or "live" when measured
    during the run itself; ``replay_max_abs_diff``)."""

    dir: Path | None
    analysis: pa.Table
    summary: dict
    replay: str
    replay_max_abs_diff: float


REPLAY_TOL = 1e-3  # largest |Δ| of any metric for an "approximate" replay (a few test pairs flipping)
_COMPARED = ("train_loss", "train_acc", "test_loss", "test_acc", "w_norm", "v_norm")


def _compare(old: pa.Table, new: pa.Table) -> tuple[float, str]:
    """Max |Δ| between two metrics tables over the compared columns, and where it is."""
    ko = list(zip(old["step"].to_pylist(), old["member"].to_pylist()))
    kn = list(zip(new["step"].to_pylist(), new["member"].to_pylist()))
    if ko != kn:
        return float("inf"), f"the replay evaluated other (step, member) rows ({len(kn)} vs {len(ko)} recorded)"
    worst, where = 0.0, ""
    for k in _COMPARED:
        if k not in old.column_names:
            continue
        a = np.asarray(old[k].to_numpy(zero_copy_only=False), float)
        b = np.asarray(new[k].to_numpy(zero_copy_only=False), float)
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        d = np.where(same, 0.0, np.abs(a - b))
        d = np.where(np.isnan(d), np.inf, d)
        if d.size and d.max() > worst:
            i = int(np.argmax(d))
            worst, where = float(d[i]), f"{k} at step {ko[i][0]}, member {ko[i][1]}: {a[i]:.6g} recorded, {b[i]:.6g} replayed"
    return worst, where


def _stages_and_meta(an: Analyzer, table: pa.Table, state, replay: str, diff: float) -> tuple[dict, dict]:
    from groklab.analysis.stages import STAGE_COLUMNS, detect_stages

    members = record.summarize(state, an.job, "running")["members"]  # step_memorized etc., as summary.json has them
    last = {m["member"]: m["last_step"] for m in members if m["last_step"] is not None}
    memorized = {m["member"]: m["step_memorized"] for m in members}
    meta = {**an.meta(), "replay": replay, "replay_max_abs_diff": diff}
    if an.kind == "progress":
        from groklab.analysis.phases import detect_phases

        cols = {k: table[k].to_numpy() for k in ("step", "member", "seed", "restricted_loss")}
        return detect_phases(cols, last, memorized, {m["member"]: m["step_generalized"] for m in members}), meta
    cols = {k: table[k].to_numpy() for k in ("step", "member", "seed", *STAGE_COLUMNS) if k in table.column_names}
    return detect_stages(cols, last), meta


def _write(run_dir: Path, table: pa.Table, stages: dict, meta: dict) -> dict:
    record.atomic_write(run_dir / ANALYSIS_FILE, lambda tmp: pq.write_table(table, tmp))
    summary = record.read_json(run_dir / record.SUMMARY, str(run_dir))
    summary["stages"] = stages
    summary["analysis"] = meta
    record.write_json(run_dir / record.SUMMARY, summary)
    return summary


def analyze_run(run_dir: str | Path, every: int | str | None = None, *, allow_mismatch: bool = False,
                on_eval: Callable | None = None) -> AnalyzedRun:
    """Replay a finished run folder with the analysis hook; write analysis.parquet and add
    ``stages`` and ``analysis`` to summary.json (atomically). Raises GroklabError when the folder
    is not a finished Li2 run, or when the replay does not reproduce metrics.parquet (by more than
    REPLAY_TOL; ``allow_mismatch`` keeps the analysis anyway and records the difference)."""
    from groklab.train import api
    from groklab.train.engine import init_state, pick_device, train

    run_dir = Path(run_dir)
    cfg, raw = record.load_config(run_dir)
    if (run_dir / record.MARKER).exists():
        raise GroklabError(f"analyze {run_dir}: the run has not finished ({record.MARKER} marker); "
                           f"finish it first with `groklab run --resume {run_dir}`")
    record.read_json(run_dir / record.SUMMARY, str(run_dir))
    recorded = record.load_metrics(run_dir)
    job = api.prepare(cfg)
    seeds, splits = record.load_split(run_dir)
    if seeds != job.seeds:
        raise GroklabError(f"analyze {run_dir}: split.npz seeds {seeds} do not match config seeds {job.seeds}")
    job.train_idx = splits  # replay the saved split exactly, as api.resume does
    an = Analyzer(job, every)
    device = pick_device(cfg.train.device)
    _check_memory(job, device, "this analysis")
    dtype = torch.float64 if cfg.train.dtype == "float64" else torch.float32
    threads = raw.get("threads")
    old_threads = torch.get_num_threads()
    hook = an.on_eval if on_eval is None else (lambda st, m: (an.on_eval(st, m), on_eval(st, m)))
    try:
        if isinstance(threads, int) and threads >= 1:
            torch.set_num_threads(threads)  # same reduction order as the recorded run, for bit-equality
        state = train(job, init_state(job, device, dtype), device=device, on_eval=hook, on_checkpoint=an.on_checkpoint)
    finally:
        torch.set_num_threads(old_threads)
    diff, where = _compare(recorded, record.metrics_table(state.rows))
    if diff > REPLAY_TOL and not allow_mismatch:
        raise GroklabError(f"analyze {run_dir}: the replay does not reproduce metrics.parquet ({where}); was the run "
                           "made on another machine, device or torch version? --allow-mismatch keeps the analysis anyway")
    replay = "exact" if diff == 0 else ("approximate" if diff <= REPLAY_TOL else "mismatch")
    table = an.table()
    stages, meta = _stages_and_meta(an, table, state, replay, diff if np.isfinite(diff) else None)
    if where:
        meta["replay_worst"] = where
    summary = _write(run_dir, table, stages, meta)
    return AnalyzedRun(run_dir, table, summary, replay, diff)


def run_with_analysis(cfg, out: str | Path | None = "auto", every: int | str | None = None, **kw: Any) -> AnalyzedRun:
    """`api.run` with the analysis hook attached (no replay needed): trains `cfg`, writes the run
    folder, analysis.parquet and the stages. Extra keywords go to `api.run` (argv, on_eval, ...)."""
    from groklab.train import api

    job = api.prepare(cfg)
    an = Analyzer(job, every)
    _check_memory(job, api.pick_device(cfg.train.device), "this run with its analysis")
    if an.every % cfg.train.eval_every:
        raise GroklabError(f"--every {every}: during a run analyses are taken at evaluations; use a multiple of "
                           f"eval_every ({cfg.train.eval_every})", "every")
    user = kw.pop("on_eval", None)
    holder: dict[str, Any] = {}

    def hook(st, m):
        holder["state"] = st
        an.on_eval(st, m)
        if user is not None:
            user(st, m)

    r = api.run(cfg, out, on_eval=hook, **kw)
    table = an.table()
    stages, meta = _stages_and_meta(an, table, holder["state"], "live", 0.0)
    summary = _write(r.dir, table, stages, meta)
    return AnalyzedRun(r.dir, table, summary, "live", 0.0)


def _check_memory(job, device, what: str) -> None:
    """Refuse (one line, nothing written) an analysis that cannot fit (train.memory, analysis=True).
    A smaller evaluation block is not offered here: the replay must evaluate exactly as the run did."""
    from groklab.train import memory

    memory.require(memory.estimate_job(job, analysis=True, what=what), memory.available(device))


def load_analysis(run_dir: str | Path) -> pa.Table:
    """Read a run folder's analysis.parquet (GroklabError if absent: run `groklab analyze` first)."""
    p = Path(run_dir) / ANALYSIS_FILE
    if not p.exists():
        raise GroklabError(f"{run_dir}: no {ANALYSIS_FILE}; run `groklab analyze {run_dir}` first")
    try:
        return pq.read_table(p)
    except (OSError, pa.ArrowInvalid) as e:
        raise GroklabError(f"{p}: unreadable ({e})") from None
