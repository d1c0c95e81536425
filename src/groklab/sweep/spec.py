"""Sweep specs: a YAML spec of many runs, batched into ensembles, run resumably (locally or on Ray).

    groklab sweep sweeps/li2_scaling.yaml --out sweeps_out/li2     # runs; again: resumes / skips
    groklab sweep --status sweeps_out/li2                          # done / running / left, ETA

A spec is a base config, a grid (cartesian product) and optional explicit runs; every key is a
RunConfig field by its bare name (`RunConfig.field_names()`), plus `seed`, the member's seed:

    name: li2_scaling
    base: {width: 512, act: sqr, loss: mse, opt: adam, lr: 1.0e-3, wd: 1.0e-4, stop_grokked: 100}
    grid: {group: [Z23, Z31], crit_mult: [0.5, 1, 2], seed: [0, 1, 2]}
    exclude: [{group: Z23, crit_mult: 3}]         # optional: drop matching grid points
    runs: [{group: Z97, crit_mult: 1.25, seed: 0}] # optional: extra members (over base)
    execution: {max_members: 64, threads: 1}      # optional: how members are packed into jobs

A member is one network: its id is a stable hash of its flat config (`member_id`). Members that
differ only in seed, lr, wd and training set (frac / n_train / crit_mult / split_seed) are packed
into one engine Job (ensemble) and train as one tensor program (`plan_jobs`). The sweep folder
format is in docs/formats.md and sweep/store.py; running in sweep/execute.py (driver), sweep/job.py (one job)
and sweep/executors.py (local, Ray); display in sweep/view.py.

Python: `run_sweep(spec, out)` -> `SweepResult` (index as a table, fit.json as a dict).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from groklab.errors import GroklabError
from groklab.train.config import ModelConfig, RunConfig, TaskConfig, TrainConfig

__all__ = ["Spec", "Member", "PlannedJob", "RefineConfig", "load_spec", "plan_jobs", "member_id", "SweepResult", "BATCH_FIELDS"]

SPEC_KEYS = ("name", "description", "base", "grid", "exclude", "runs", "execution", "refine")
# Fields a member may have of its own inside one ensemble job (the engine takes them per member).
BATCH_FIELDS = ("seed", "lr", "wd", "frac", "n_train", "crit_mult", "split_seed")
# Execution settings: how members are packed into jobs and run. They change no member's identity.
EXECUTION_DEFAULTS: dict[str, Any] = {
    "max_members": 64,  # members per job at most
    # A job's activations are E * n_max * width numbers. On a CPU a job runs fastest per member
    # while they fit the caches (~2^20 floats: measured on Z23/Z47/Z97, K 256-512, where E = 4-8
    # beat both E = 1 and E = 16 by up to 1.6x); a job grows past job_elements only up to
    # min_members, and never past max_elements (memory: 2^24 floats = 64 MB per activation).
    # "auto": 2^20 for members that train on the CPU, max_elements for CUDA (GPUs like big jobs).
    "job_elements": "auto",
    "min_members": 4,
    "max_elements": 1 << 24,
    "max_padding": 1.3,  # padded work / useful work at most (jobs above job_elements / 4)
    "threads": 1,  # torch threads per job; results depend on it (reduction order), so it is fixed here
    "checkpoint_s": 60.0,  # save a job's checkpoint at most this often (and at every ckpt_every)
    # The Li2 analysis (analysis.replay.Analyzer), live: steps between analyses (a multiple of every
    # member's eval_every), or null for none. Job folders are deleted when a job is done, so this is
    # how sweep members get `groklab analyze`'s measures: analysis/<job>.parquet (docs/formats.md).
    "analysis": None,
}


# ---- field kinds (for YAML values and the index schema) -------------------------------------------
def _kind(annotation: str) -> str:
    t = str(annotation)
    for k in ("tuple", "bool", "float", "int", "str"):
        if k in t:
            return k
    return "str"


FIELD_KINDS: dict[str, str] = {f.name: _kind(f.type) for cls in (TaskConfig, ModelConfig, TrainConfig) for f in fields(cls)}
FIELD_KINDS.pop("seeds")
FIELD_KINDS["seed"] = "int"
SPEC_FIELDS = tuple(["seed"] + [n for n in RunConfig.field_names() if n != "seeds"])


def _normalize(key: str, value: Any) -> Any:
    """YAML reads 1e-3 as a string and 2 as an int: give each field its own type, so that equal
    configs hash equally (lr 1 and lr 1.0 are one member)."""
    kind = FIELD_KINDS.get(key)
    if isinstance(value, bool) or value is None:
        return value
    if kind == "float":
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    return value


# ---- the spec ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """One network of the sweep: its flat config (bare field names, `seed` for the member seed)."""

    id: str
    flat: dict[str, Any] = field(repr=False)
    cfg: RunConfig = field(repr=False)
    n_train: int = 0  # the number of training pairs its split has
    order: int = 0

    @property
    def seed(self) -> int:
        return int(self.flat["seed"])


@dataclass
class Spec:
    """A validated sweep spec: its members in order and the execution settings."""

    name: str
    raw: dict[str, Any]
    members: list[Member]
    execution: dict[str, Any]
    source: str = "<dict>"
    refine: RefineConfig | None = None  # the `refine:` section (sweep_refine runs it)

    def describe(self) -> str:
        return f"{self.name}: {len(self.members)} members"


def member_id(flat: dict[str, Any]) -> str:
    """A stable id: the first 12 hex digits of sha256 over the flat config's non-default fields as
    sorted JSON. Fields left at their defaults are not hashed, so a later groklab that adds a config
    field (with a default that keeps the old behaviour) still recognises an existing sweep folder."""
    defaults = _default_flat()
    kept = {k: v for k, v in flat.items() if k not in defaults or _jsonable(v) != _jsonable(defaults[k])}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def _default_flat() -> dict[str, Any]:
    return RunConfig().flat()


def _jsonable(v: Any) -> str:
    return json.dumps(v, sort_keys=True, allow_nan=False)


def _fail(where: str, msg: str, field_name: str | None = None) -> GroklabError:
    return GroklabError(f"{where}: {msg}", field=field_name)


def _check_keys(where: str, mapping: Any, allowed: tuple[str, ...], what: str) -> dict:
    if not isinstance(mapping, dict):
        raise _fail(where, f"must be a mapping of {what}, got {type(mapping).__name__}")
    for key in mapping:
        if key == "seeds" and "seed" in allowed:
            raise _fail(f"{where}.seeds", "a sweep gives each member one seed: use `seed` (e.g. grid: {seed: [0, 1, 2]})", "seeds")
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise _fail(f"{where}.{key}", f"unknown {what[:-1] if what.endswith('s') else what}{hint}; known: {', '.join(sorted(allowed))}", str(key))
    return {k: _normalize(k, v) for k, v in mapping.items()}


def load_spec(spec: str | Path | dict, *, source: str | None = None) -> Spec:
    """Read and validate a spec (a YAML file or a dict). Every member's config is built and its
    training set sized here, so a bad key or value fails before anything runs; the error names
    the key (e.g. ``sweep.yaml: grid.lr: --lr -1: must be > 0``)."""
    import yaml

    if isinstance(spec, (str, Path)):
        path = Path(spec)
        source = source or str(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GroklabError(f"sweep spec {path}: no such file") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise GroklabError(f"sweep spec {path}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
    else:
        raw, source = spec, source or "<dict>"
    where = source
    if not isinstance(raw, dict):
        raise _fail(where, "a sweep spec must be a mapping with base / grid / runs")
    _check_keys(where, raw, SPEC_KEYS, "top-level keys")
    base = _check_keys(f"{where}: base", raw.get("base") or {}, SPEC_FIELDS, "config fields")
    grid = _check_keys(f"{where}: grid", raw.get("grid") or {}, SPEC_FIELDS, "config fields")
    axes: dict[str, list] = {}
    for k, v in grid.items():
        vals = v if isinstance(v, list) else [v]
        if not vals:
            raise _fail(f"{where}: grid.{k}", "an empty list gives no members; give at least one value", k)
        axes[k] = [_normalize(k, x) for x in vals]
    excludes = raw.get("exclude") or []
    if not isinstance(excludes, list):
        raise _fail(f"{where}: exclude", "must be a list of mappings, e.g. [{group: Z23, crit_mult: 3}]")
    excludes = [_check_keys(f"{where}: exclude[{i}]", e, SPEC_FIELDS, "config fields") for i, e in enumerate(excludes)]
    runs = raw.get("runs") or []
    if not isinstance(runs, list):
        raise _fail(f"{where}: runs", "must be a list of mappings (one per member)")
    runs = [_check_keys(f"{where}: runs[{i}]", r, SPEC_FIELDS, "config fields") for i, r in enumerate(runs)]
    execution = dict(EXECUTION_DEFAULTS)
    execution.update(_check_keys(f"{where}: execution", raw.get("execution") or {}, tuple(EXECUTION_DEFAULTS), "execution settings"))
    _check_execution(f"{where}: execution", execution)
    name = str(raw.get("name") or (Path(source).stem if source != "<dict>" else "sweep"))
    refine = RefineConfig.from_raw(f"{where}: refine", raw["refine"]) if raw.get("refine") is not None else None

    points: list[tuple[str, dict]] = []
    if axes:
        for combo in itertools.product(*axes.values()):
            point = dict(zip(axes, combo))
            if any(all(_same(point.get(k, base.get(k)), v) for k, v in e.items()) for e in excludes):
                continue
            points.append(("grid " + ", ".join(f"{k}={_show(v)}" for k, v in point.items()), {**base, **point}))
    elif not runs:
        points.append(("base", dict(base)))
    for i, r in enumerate(runs):
        points.append((f"runs[{i}]", {**base, **r}))
    if not points:
        raise _fail(where, "the grid and runs give no members (everything excluded?)")

    members, seen = [], set()
    tasks: dict[str, Any] = {}
    for origin, flat in points:
        m = _build_member(f"{where}: {origin}", flat, tasks)
        if m.id not in seen:  # the same member twice (grid and runs) runs once
            seen.add(m.id)
            members.append(m)
    every = execution["analysis"]
    for m in members:
        if every is not None and every % m.cfg.train.eval_every:
            raise _fail(f"{where}: execution.analysis", f"{every}: must be a multiple of every member's eval_every "
                        f"(analyses are taken at evaluations); member {m.id} has eval_every {m.cfg.train.eval_every}", "analysis")
    if refine is not None:
        _check_refine(f"{where}: refine", refine, members)
    return Spec(name, raw, members, execution, source, refine)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def _show(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check_execution(where: str, ex: dict) -> None:
    for k in ("max_members", "job_elements", "min_members", "max_elements", "threads"):
        v = ex[k]
        if k == "job_elements" and v == "auto":
            continue
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise _fail(f"{where}.{k}", f"{v!r}: must be an integer >= 1", k)
    v = ex["analysis"]
    if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        raise _fail(f"{where}.analysis", f"{v!r}: must be a number of steps >= 1 (a multiple of eval_every), or null", "analysis")
    for k, lo in (("max_padding", 1.0), ("checkpoint_s", 0.0)):
        v = ex[k]
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= lo):
            raise _fail(f"{where}.{k}", f"{v!r}: must be a number >= {lo:g}", k)
        ex[k] = float(v)


def _build_member(where: str, flat: dict, tasks: dict) -> Member:
    from groklab.tasks import make_task, split_size

    flat = dict(flat)
    seed = flat.pop("seed", 0)
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63):
        raise _fail(f"{where}: seed", f"{seed!r}: must be an integer in [0, 2**63)", "seed")
    try:
        cfg = RunConfig.from_flat({**flat, "seeds": (seed,)})
        group = cfg.task.group
        if group not in tasks:
            tasks[group] = make_task(group)
        task = tasks[group]
        t = cfg.task
        n = split_size(task, frac=t.frac, n_train=t.n_train, crit_mult=t.crit_mult)
        if cfg.train.batch_size is not None and cfg.train.batch_size >= n:
            raise GroklabError(f"--batch-size {cfg.train.batch_size}: must be smaller than the training set ({n} pairs)", field="batch_size")
    except GroklabError as e:
        hint = ""
        if e.field in ("crit_mult", "frac", "n_train") and "training pairs" in str(e):
            hint = "; drop such points with `exclude:` (e.g. exclude: [{group: Z23, crit_mult: 3}])"
        raise GroklabError(f"{where}: {e}{hint}", field=e.field) from None
    full = cfg.flat()
    full.pop("seeds")
    full = {"seed": seed, **{k: _normalize(k, v) for k, v in full.items()}}
    return Member(member_id(full), full, cfg, n, task.order)


# ---- the refine: section ---------------------------------------------------------------------------------
REFINE_KEYS = ("tolerance", "points", "seeds", "groups", "start", "expand", "max_rounds")
# Fields that may vary between the members of a refined spec: the critical size is one number per
# group of one recipe, so anything else varying (lr, width, ...) would mix recipes in a bracket.
_REFINE_FREE = {"group", "seed", "frac", "n_train", "crit_mult", "split_seed", "ckpt_every", "device"}


@dataclass(frozen=True)
class RefineConfig:
    """Adaptive search of the critical training size n* per group (`groklab.sweep.refine`).

    Round 0 is the spec's grid/runs; each further round adds, per group whose bracket
    [n_lo, n_hi] (largest size that fails, smallest that generalizes, by scaling.critical_points'
    rule) is wider than `tolerance` (n_hi / n_lo > 1 + tolerance), `points` sizes spaced evenly
    in log n inside it (1 = bisection), each with every seed of `seeds`. A group whose sizes all
    generalize (all fail) gets n_lo / expand (n_hi · expand) instead. A group of `groups` with no
    member yet starts at the sizes `start` × Li2 n_c. Stops when every group is within the
    tolerance (or cannot be refined: n_hi − n_lo <= 1, or bounded by 1 / all pairs) or after
    `max_rounds` rounds."""

    tolerance: float = 0.05
    points: int = 1
    seeds: tuple[int, ...] | None = None  # None: the seeds of the spec's members
    groups: tuple[str, ...] | None = None  # None: every group of the spec's members
    start: tuple[float, ...] = (0.5, 1.0, 2.0)
    expand: float = 2.0
    max_rounds: int = 12

    def __post_init__(self):
        from groklab.errors import number_in

        number_in("refine.tolerance", self.tolerance, lo=0, lo_open=True)
        number_in("refine.points", self.points, lo=1, hi=16, integer=True)
        number_in("refine.expand", self.expand, lo=1, lo_open=True)
        number_in("refine.max_rounds", self.max_rounds, lo=1, hi=100, integer=True)
        for s in self.seeds or ():
            number_in("refine.seeds", s, lo=0, integer=True)
        if self.seeds is not None and len(self.seeds) == 0:
            raise GroklabError("refine.seeds []: give at least one seed", field="refine.seeds")
        if not self.start:
            raise GroklabError("refine.start []: give at least one multiple of n_c", field="refine.start")
        for m in self.start:
            number_in("refine.start", m, lo=0, lo_open=True)

    @classmethod
    def from_raw(cls, where: str, raw: Any) -> RefineConfig:
        if raw is True or raw == {}:
            return cls()
        mapping = _check_keys(where, raw, REFINE_KEYS, "refine settings")
        kw: dict[str, Any] = {}
        for k, v in mapping.items():
            if k in ("seeds", "groups", "start"):
                v = tuple(v) if isinstance(v, list) else (v,)
                if k == "start":
                    v = tuple(float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v)
            elif k in ("tolerance", "expand") and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            kw[k] = v
        try:
            return cls(**kw)
        except GroklabError as e:
            raise GroklabError(f"{where}: {e}", field=e.field) from None


def _check_refine(where: str, rc: RefineConfig, members: list[Member]) -> None:
    """A refined spec is one recipe: only group, seed and the training size may vary."""
    from groklab.tasks import make_task

    for k in sorted({k for m in members for k in m.flat} - _REFINE_FREE):
        vals = {json.dumps(m.flat.get(k), sort_keys=True) for m in members}
        if len(vals) > 1:
            raise _fail(f"{where}", f"the members vary {k} ({', '.join(sorted(vals))[:80]}); a refined spec is one recipe: "
                        "only group, seed and the training size may vary (one spec per recipe)", k)
    for g in rc.groups or ():
        try:
            make_task(g)
        except GroklabError as e:
            raise GroklabError(f"{where}.groups: {e}", field="refine.groups") from None


# ---- packing members into jobs -------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedJob:
    """One engine Job: members sharing everything but BATCH_FIELDS; id = hash of its member ids."""

    id: str
    members: tuple[str, ...]
    work: float  # estimated cost units (E * n_max * width * (M + 8) * steps), for scheduling and ETA


def batch_key(m: Member) -> str:
    return json.dumps({k: v for k, v in m.flat.items() if k not in BATCH_FIELDS}, sort_keys=True)


def _pair_cost(m: Member) -> int:
    """Rough arithmetic per training pair and step (relative units): the li2 output layer is K x M."""
    c = m.cfg.model
    width = {"li2": c.width, "embed-mlp": c.d_mlp}.get(c.model, 4 * c.d_model + c.d_mlp)
    return width * (m.order + 8)


def _width(m: Member) -> int:
    c = m.cfg.model
    return {"li2": c.width, "embed-mlp": c.d_mlp}.get(c.model, max(c.d_model, c.d_mlp))


def plan_jobs(members: list[Member], execution: dict) -> list[PlannedJob]:
    """Pack members into jobs. Within one batch class the members are sorted by training-set size
    and grouped in blocks of equal size (a grid point's seeds, lrs, ...); blocks are added to a job
    while it stays within max_members, job_elements (once it has min_members), max_elements and
    max_padding (padding every member to the largest training set costs arithmetic; members of
    like size also tend to stop, by stop_grokked / stop_plateau, at like times). A block too large
    for one job is cut into near-equal jobs. The plan depends on the members and the settings
    only, so it is the same on every machine and every executor."""
    ex = execution
    classes: dict[str, list[Member]] = {}
    for m in members:
        classes.setdefault(batch_key(m), []).append(m)

    def fits(chunk: list[Member]) -> bool:
        E, n_max = len(chunk), max(c.n_train for c in chunk)
        elements = E * n_max * _width(chunk[0])
        padding = E * n_max / sum(c.n_train for c in chunk)
        target = job_elements(chunk[0])
        return not (E > ex["max_members"] or (E > 1 and elements > ex["max_elements"])
                    or (E > ex["min_members"] and elements > target)
                    or (elements > target / 4 and padding > ex["max_padding"]))

    def job_elements(m: Member) -> int:
        if ex["job_elements"] != "auto":
            return ex["job_elements"]
        dev = m.cfg.train.device
        if dev == "auto":
            import torch

            dev = "cuda" if torch.cuda.is_available() else "cpu"
        return ex["max_elements"] if dev == "cuda" else 1 << 20

    jobs = []
    for ms in classes.values():
        ms = sorted(ms, key=lambda m: (m.n_train, m.seed, m.flat["lr"], m.flat["wd"], m.id))
        blocks = [list(g) for _, g in itertools.groupby(ms, key=lambda m: m.n_train)]
        chunk: list[Member] = []
        for block in blocks:
            if chunk and fits(chunk + block):
                chunk += block
                continue
            if chunk:
                jobs.append(_job(chunk))
            if fits(block):
                chunk = block
                continue
            size = max(1, next(k for k in range(len(block), 0, -1) if k == 1 or fits(block[:k])))
            parts = -(-len(block) // size)  # as few jobs as fit, of near-equal size
            bounds = np.linspace(0, len(block), parts + 1).round().astype(int)
            jobs.extend(_job(block[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:]))
            chunk = []
        if chunk:
            jobs.append(_job(chunk))
    return jobs


def _job(chunk: list[Member]) -> PlannedJob:
    ids = tuple(m.id for m in chunk)
    jid = hashlib.sha256(",".join(ids).encode()).hexdigest()[:12]
    work = len(chunk) * max(m.n_train for m in chunk) * _pair_cost(chunk[0]) * chunk[0].cfg.train.steps
    return PlannedJob(jid, ids, float(work))


# ---- the API ----------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """A sweep folder's results: index.parquet as an Arrow table, fit.json as a dict."""

    dir: Path
    index: Any  # pyarrow.Table
    fit: dict | None
    phase_png: Path | None
    total_members: int
    ran_members: int = 0  # trained by this call
    wall_s: float = 0.0
    failed: dict = field(default_factory=dict)  # job id -> member ids, jobs whose worker died in this call
    resumed: dict = field(default_factory=dict)  # job id -> step its checkpoint resumed from (Ray retries, re-runs)

    def index_df(self):
        return self.index.to_pandas()
