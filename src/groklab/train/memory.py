"""Peak-memory estimates, checked before anything is allocated or written (issue 16).

A request that cannot fit must get one clear line and exit 2, not the OOM killer. Every verb that
trains or replays (run, resume, sweep jobs, analyze, and any new verb) calls

    est = estimate(cfg, order, n_train, n_members)          # bytes, per part
    require(est, available(device))                          # GroklabError if it cannot fit

before it creates a folder. The estimate counts the tensors groklab itself holds at the worst
moment of a training step (B = bytes per float, 4 or 8; E members, n training pairs per step
(the batch size when minibatching), K hidden width, M group order, P = M² pairs):

    parameters          Li2 / embed-mlp: W (E, 2M, K) + V (E, M, K)    = 3·E·M·K·B
    gradients           the same again
    optimizer state     adam/adamw 2×, sgd 1×, muon 1× (W) + 2× (V); Grokfast ema +1×, ma +window×
    step activations    Li2: h, f, df, dh and a temporary (E, n, K); o, do, residuals (E, M, n): 5·E·n·K·B + 4·E·n·M·B
    evaluation block    (E, M + K, p) floats for p pairs per block (engine.EVAL_CHUNK bounds E·p·width);
                        added to the step's although the two never coexist (freed heap blocks stay
                        resident), unless both are made of tensors >= 32 MB (mmapped): then the larger
    data                the task table (M², int64), the pairs, each member's split masks (E, P)
    metrics             (steps / eval_every) rows per member kept in Python lists, ~360 bytes a row
    ridge (--ridge)     features (E, n, K) and the Gram / solve (E, K, K), twice
    analysis (replay)   measures.measure: F, z, R, G_F (E, n, K), Grams (E, K, K) float64, basis M²
    runtime             64 MB: what torch allocates for itself at the first step (measured)
    init                the members are drawn on the CPU in float32, stacked and moved: 3× params
                        (float32) while building, before the optimizer exists

The Python/torch interpreter itself (a few hundred MB, already resident) is not counted: the limit
it is compared with is what the OS reports as still available. The transformer's activations are
counted per example from its forward pass ([a, b, =] embeddings, q/k/v, scores, the MLP hidden
layer, logits) with autograd's saved copies.

Measured (tests/train/test_memory.py, peak RSS growth of a subprocess over its RSS before training,
12 steps with an evaluation every 4, CPU, float32 and float64): the estimate lies between 1× and
2.5× the measured peak on the shapes tested (ESTIMATE_FACTOR). It is meant as a safe upper bound,
not an exact figure. Peak RSS grows over the first steps (freed blocks below glibc's 32 MB mmap
threshold stay in the heap), so a one-step measurement reads low. On a GPU the caching allocator
keeps freed blocks too; the same sum is used there (not yet measured on a GPU).

`available(device)`: on the CPU the kernel's MemAvailable (/proc/meminfo), lowered to the cgroup's
limit minus its usage when a container limit is set; on CUDA torch.cuda.mem_get_info's free
bytes. GROKLAB_MEMORY_LIMIT (bytes, or with a K/M/G/T suffix) overrides both, for a machine
shared with other work (and for the tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from groklab.errors import GroklabError

__all__ = ["Estimate", "Limit", "estimate", "estimate_job", "available", "require", "fits", "max_members",
           "check_job", "format_bytes", "parse_bytes", "ESTIMATE_FACTOR", "ENV_LIMIT"]

ENV_LIMIT = "GROKLAB_MEMORY_LIMIT"
ESTIMATE_FACTOR = 2.5  # measured peak <= estimate <= ESTIMATE_FACTOR x measured peak (tests/train/test_memory.py)
EVAL_CHUNK = 1 << 24  # the same bound as engine.EVAL_CHUNK (kept equal by a test)
MIN_EVAL_CHUNK = 1 << 14  # smallest evaluation block (elements) offered before refusing
MMAP_MAX = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: larger allocations are always mmapped
RUNTIME_BYTES = 64 << 20  # first-step allocations of torch itself (kernels' workspaces, thread pools)


@dataclass(frozen=True)
class Estimate:
    """A peak-memory estimate in bytes: `total`, its `parts`, and the options that drive it
    (e.g. ("--width 100000000", "--frac 0.5 (264 training pairs)"))."""

    total: int
    parts: dict[str, int] = field(default_factory=dict)
    drivers: tuple[str, ...] = ()
    what: str = "this run"

    def largest(self) -> str:
        return max(self.parts, key=self.parts.get) if self.parts else "total"


@dataclass(frozen=True)
class Limit:
    """Memory one job may use: bytes, and where the number comes from (for the message)."""

    bytes: int
    source: str


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def parse_bytes(text: str) -> int:
    """'4G', '512M', '1.5T', '1000000' -> bytes; GroklabError naming GROKLAB_MEMORY_LIMIT otherwise."""
    t = str(text).strip().upper().removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if mult > 1 else t)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise GroklabError(f"{ENV_LIMIT}={text!r}: expected a positive number of bytes, e.g. 4G, 512M or 1000000")
    return int(value * mult)


# ---- what is there -------------------------------------------------------------------------------------------
def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """The container's limit minus its usage (cgroup v2, then v1); None without a limit."""
    for limit_f, usage_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                             ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_f) as f:
                raw = f.read().strip()
            if raw == "max" or int(raw) >= 1 << 60:
                continue
            with open(usage_f) as f:
                return max(0, int(raw) - int(f.read().strip()))
        except (OSError, ValueError):
            continue
    return None


def available(device: str = "cpu") -> Limit:
    """Memory a new allocation can use now on `device` ("cpu", "cuda", "cuda:1" or a torch.device)."""
    env = os.environ.get(ENV_LIMIT)
    if env:
        return Limit(parse_bytes(env), f"{ENV_LIMIT}={env}")
    dev = str(device)
    if dev.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(dev))
        return Limit(int(free), f"free memory on {dev}")
    room = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    if not room:
        return Limit(1 << 62, "unknown (no /proc/meminfo)")
    return Limit(min(room), "available host RAM")


# ---- the estimate ---------------------------------------------------------------------------------------------
def _param_floats(cfg, M: int) -> tuple[int, int]:
    """(floats per member in the parameters, of which in matrices Muon orthogonalises)."""
    mc = cfg.model
    if mc.model in ("li2", "embed-mlp"):
        return 3 * M * mc.width, 2 * M * mc.width
    d, m = mc.d_model, mc.d_mlp
    total = d * (M + 1) + 3 * d + 4 * d * d + 2 * d * m + m + d + d * M
    return total, 4 * d * d + 2 * d * m


def _act_floats(cfg, M: int, n: int) -> int:
    """Floats alive at the worst moment of one forward+backward over n pairs, per member."""
    mc = cfg.model
    if mc.model in ("li2", "embed-mlp"):
        return n * (5 * mc.width + 4 * M)  # h, f, df, dh and one temporary (n, K) each; o, do, residuals (n, M)
    d, m, H = mc.d_model, mc.d_mlp, mc.n_heads
    # per example: 3 embedded tokens, k/v (3 each), q, scores/attention (H x 3), attention out,
    # residual, MLP pre/post (m each), logits (M); autograd keeps each once and the backward adds
    # a gradient of the same size, and the matmul backward a temporary of it: x3, plus the loss's
    # softmax and residual copies of the logits.
    per = 3 * d * 3 + d * 3 + 2 * H * 3 + 2 * d + 2 * m + M
    return n * (3 * per + 4 * M)


def estimate(cfg, order: int, n_train: int, n_members: int | None = None, *, analysis: bool = False,
             eval_chunk: int | None = None, what: str = "this run") -> Estimate:
    """Peak bytes of training `cfg` (a RunConfig) on a task of `order` M with at most `n_train`
    training pairs per member and `n_members` members (default: len(cfg.train.seeds)).
    analysis=True adds the replay's measures (analysis/measures.py). See the module docstring."""
    t, mc = cfg.train, cfg.model
    E = int(n_members if n_members is not None else len(t.seeds))
    M, n = int(order), int(n_train)
    P = M * M
    B = 8 if t.dtype == "float64" else 4
    per, muon_part = _param_floats(cfg, M)
    params = E * per
    opt_x = {"adam": 2, "adamw": 2, "sgd": 1}.get(t.opt)
    opt = params * opt_x if opt_x is not None else E * (muon_part + 2 * (per - muon_part))
    if t.grokfast == "ema":
        opt += params
    elif t.grokfast == "ma":
        opt += params * t.grokfast_window
    step_n = min(n, t.batch_size) if t.batch_size else n
    parts = {
        "parameters": params * B,
        "gradients": params * B,
        "optimizer state": opt * B,
        "step activations": E * _act_floats(cfg, M, step_n) * B,
    }
    width = max(M, mc.width if mc.model != "transformer" else mc.d_mlp)
    chunk = eval_chunk or EVAL_CHUNK
    p = max(1, min(P, chunk // (E * width)))
    parts["evaluation block"] = E * p * (M + width + 4) * B + E * _act_floats(cfg, M, p) * B // 4
    parts["data"] = P * 8 * 2 + E * P * (B + 1) + E * n * 8 * 6
    # The metrics kept in memory: one row per evaluation and member, 9 Python floats/ints in lists
    # (~32 bytes each with the list slot), plus the Arrow table built from them at each checkpoint.
    parts["metrics"] = (t.steps // t.eval_every + 2) * E * 9 * (32 + 8)
    if mc.ridge is not None:
        K = mc.width
        parts["ridge solve"] = 2 * (E * n * K + 2 * E * K * K + E * n * M) * B
    if analysis:
        K = mc.width
        parts["analysis"] = 6 * E * n * K * B + 4 * E * K * K * 8 + 3 * E * n * M * B + 3 * E * 2 * M * K * 8 + 2 * P * 8
    parts["runtime"] = RUNTIME_BYTES
    # A training step and an evaluation never hold tensors at the same time. Tensors of 32 MB or more
    # (glibc's largest mmap threshold) are mmapped and go back to the OS when freed: then the larger
    # of the two counts. Smaller ones are carved from the heap, whose freed blocks stay resident, and
    # measured peak RSS over 12+ steps reaches the sum (tests/train/test_memory.py).
    k = mc.d_mlp if mc.model == "transformer" else mc.width
    step_tensor, eval_tensor = E * step_n * k * B, E * p * width * B  # the largest single tensor of each
    steady = sum(parts.values())
    if min(step_tensor, eval_tensor) >= MMAP_MAX:
        steady -= min(parts["step activations"], parts["evaluation block"])
    init = 3 * params * 4 + (params * B if B != 4 else 0)  # float32 draws, stack, contiguous copy; then .to(dtype)
    total = max(steady, init + parts["data"])
    drivers = _drivers(cfg, E, n, M)
    if parts["metrics"] > total / 4:
        drivers = (f"--steps {t.steps} --eval-every {t.eval_every}",) + drivers
    return Estimate(int(total), parts, drivers, what)


def _drivers(cfg, E: int, n: int, M: int) -> tuple[str, ...]:
    t, mc, tk = cfg.train, cfg.model, cfg.task
    out = []
    if mc.model == "transformer":
        out += [f"--d-model {mc.d_model}", f"--d-mlp {mc.d_mlp}"]
    else:
        out.append(f"--width {mc.width}")
    if E > 1:
        out.append(f"--seeds ({E} members)")
    size = (f"--n-train {tk.n_train}" if tk.n_train is not None else f"--crit-mult {tk.crit_mult:g}" if tk.crit_mult is not None
            else f"--frac {tk.frac:g}")
    out.append(f"--batch-size {t.batch_size}" if t.batch_size else f"{size} ({n} training pairs)")
    out.append(f"--group {tk.group} (order {M})")
    if t.dtype == "float64":
        out.append("--dtype float64")
    if t.grokfast == "ma":
        out.append(f"--grokfast ma --grokfast-window {t.grokfast_window}")
    return tuple(out)


def estimate_job(job, *, analysis: bool = False, what: str = "this run") -> Estimate:
    """`estimate` for an engine Job (its config, task order, largest split and member count)."""
    n = max(len(i) for i in job.train_idx)
    return estimate(job.cfg, job.task.order, n, job.n_members, analysis=analysis, what=what)


def fits(est: Estimate, limit: Limit) -> bool:
    return est.total <= limit.bytes


def require(est: Estimate, limit: Limit) -> None:
    """Raise the one-line GroklabError when `est` cannot fit in `limit`; nothing has been written."""
    if fits(est, limit):
        return
    raise GroklabError(f"{', '.join(est.drivers)}: {est.what} needs about {format_bytes(est.total)} at its peak "
                       f"(largest part: {est.largest()} {format_bytes(est.parts.get(est.largest(), est.total))}) but "
                       f"{limit.source} is {format_bytes(limit.bytes)}; reduce the options named (or set {ENV_LIMIT} "
                       "if the machine has more); nothing was written", field="memory")


def max_members(cfg, order: int, n_train: int, limit: Limit, n_members: int) -> int:
    """The most members (<= n_members) of this shape whose job fits in `limit`; 0 if not even one."""
    lo, hi = 0, n_members
    while lo < hi:  # estimate grows with E: binary search for the largest E that fits
        mid = (lo + hi + 1) // 2
        if estimate(cfg, order, n_train, mid).total <= limit.bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_job(job, device="cpu", *, analysis: bool = False, what: str = "this run", limit: Limit | None = None) -> str | None:
    """The check every verb makes before it writes: raise the one-line error when `job` (an engine
    Job) cannot fit; when only a smaller evaluation block fits, set job.eval_chunk to it and return
    a note saying so; else return None."""
    limit = limit or available(device)
    n = max(len(i) for i in job.train_idx)
    est = estimate(job.cfg, job.task.order, n, job.n_members, analysis=analysis, what=what)
    if fits(est, limit):
        return None
    chunk = EVAL_CHUNK >> 1
    while chunk >= MIN_EVAL_CHUNK:  # evaluation is chunked over pairs: a smaller block costs time only
        smaller = estimate(job.cfg, job.task.order, n, job.n_members, analysis=analysis, eval_chunk=chunk, what=what)
        if fits(smaller, limit):
            job.eval_chunk = chunk
            return (f"memory: evaluating in blocks of {chunk} elements instead of {EVAL_CHUNK} so that {what} fits "
                    f"({format_bytes(smaller.total)} of {format_bytes(limit.bytes)}, {limit.source})")
        chunk >>= 1
    require(est, limit)
    return None
