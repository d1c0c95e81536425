"""Run folders: write, read, resume (format: docs/formats.md).

A run folder is either complete, or carries an `INCOMPLETE` marker and a resumable checkpoint.
Every file is written atomically (temp file in the same folder, fsync, os.replace), so a kill at
any moment - SIGKILL included - leaves each file either old or new, never torn. Nothing is
created before the whole configuration has been validated, so bad input leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from groklab import science
from groklab.errors import GroklabError
from groklab.train.numerics import numerics_state
from groklab.tasks import Task, critical_size
from groklab.train.config import RunConfig

CONFIG, SPLIT, METRICS_FILE, WEIGHTS, CKPT, SUMMARY, MARKER = (
    "config.json", "split.npz", "metrics.parquet", "weights.safetensors", "checkpoint.pt", "summary.json", "INCOMPLETE")
FORMAT_VERSION = 1


# ---- atomic writes -----------------------------------------------------------------------------
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class WriteError(GroklabError):
    """A file could not be written (disk full, quota, read-only, I/O error). The file it would have
    replaced is intact: atomic_write only renames a complete, fsynced temporary over it."""

    def __init__(self, path: Path, err: OSError):
        import errno

        code = errno.errorcode.get(err.errno, "") if err.errno else ""
        why = f"{err.strerror or err}" + (f" ({code})" if code else "")
        super().__init__(f"could not write {path}: {why}; its previous complete version is intact")
        self.path, self.errno = Path(path), err.errno


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) then move tmp_path over `path` in one rename. An OSError on the way
    (ENOSPC, EDQUOT, EIO, ...) removes the temporary file and raises WriteError: `path` keeps its
    previous complete content."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run folder is shared like any output
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):
            raise WriteError(path, e) from None
        if isinstance(e, RuntimeError) and "No space left" in str(e):  # torch.save wraps the OSError
            import errno

            raise WriteError(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from None
        raise


def write_json(path: Path, obj: Any) -> None:
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, allow_nan=False)
            f.write("\n")

    atomic_write(path, w)


def read_json(path: Path, what: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise GroklabError(f"{what}: {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GroklabError(f"{what}: {path} is not valid JSON ({e})") from None


# ---- creating and reading run folders ------------------------------------------------------------
def check_out_dir(out: Path) -> None:
    """--out must be new or an empty folder: never overwrite another run."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise GroklabError(f"--out {out}: exists and is not a folder; choose another --out")
        if any(out.iterdir()):
            hint = f"; to continue it use `groklab run --resume {out}`" if (out / CONFIG).exists() else ""
            raise GroklabError(f"--out {out}: already holds files (another run?){hint}; choose a new folder")


def create_run(out: Path, cfg: RunConfig, task: Task, seeds: list[int], train_idx: list[np.ndarray],
               argv: list[str] | None) -> None:
    """Make the folder with config.json, split.npz and the INCOMPLETE marker (in that order, so a
    folder with a marker always has a config to resume from)."""
    out = Path(out)
    existed = out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        _create_files(out, cfg, task, seeds, train_idx, argv)
    except BaseException as e:  # nothing half-written: a folder we made goes again, an empty one is emptied
        if existed:
            for p in out.iterdir():
                p.unlink()
        else:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(e, OSError):
            raise WriteError(out / MARKER, e) from None
        raise


def _create_files(out: Path, cfg: RunConfig, task: Task, seeds: list[int], train_idx: list[np.ndarray],
                  argv: list[str] | None) -> None:
    (out / MARKER).write_text("this run has not finished; resume with: groklab run --resume " + str(out) + "\n")
    write_json(out / CONFIG, {"kind": "groklab.run", "version": FORMAT_VERSION, "groklab": science.VERSION,
                              "config": cfg.to_dict(), "argv": argv or [],
                              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                              "torch": torch.__version__, "threads": torch.get_num_threads(),
                              "numerics": numerics_state()})
    n = max(len(i) for i in train_idx)
    idx = np.stack([np.pad(i, (0, n - len(i)), constant_values=-1) for i in train_idx]).astype(np.int64)

    def w(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, train_idx=idx, member_seed=np.asarray(seeds, np.int64), order=np.int64(task.order))

    atomic_write(out / SPLIT, w)


def load_config(run_dir: Path) -> tuple[RunConfig, dict]:
    """Read and check a run folder's config.json; a folder that is not a groklab run is an error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GroklabError(f"{run_dir}: no such run folder")
    if not (run_dir / CONFIG).exists():
        raise GroklabError(f"{run_dir}: not a groklab run folder (no {CONFIG})")
    raw = read_json(run_dir / CONFIG, str(run_dir))
    if not isinstance(raw, dict) or raw.get("kind") != "groklab.run":
        raise GroklabError(f"{run_dir}: not a groklab run folder ({CONFIG} has no \"kind\": \"groklab.run\")")
    if raw.get("version") != FORMAT_VERSION:
        raise GroklabError(f"{run_dir}: run format version {raw.get('version')!r} is not supported (this groklab reads {FORMAT_VERSION})")
    try:
        return RunConfig.from_dict(_upgrade_config(raw["config"], run_dir)), raw
    except GroklabError as e:
        raise GroklabError(f"{run_dir}/{CONFIG}: {e}") from None
    except (KeyError, TypeError) as e:
        raise GroklabError(f"{run_dir}/{CONFIG}: malformed config ({e})") from None


def _upgrade_config(conf: dict, run_dir: Path) -> dict:
    """Runs written before `init_scale` existed (issue 13) drew W from U(±1/sqrt(M)) per operand:
    replay them so. Their Muon was a per-block variant that no longer exists: refuse, plainly."""
    model = conf.get("model") if isinstance(conf, dict) else None
    if isinstance(model, dict) and "init_scale" not in model and model.get("model", "li2") == "li2":
        if isinstance(conf.get("train"), dict) and conf["train"].get("opt") == "muon":
            raise GroklabError(f"{run_dir}: made with groklab's earlier Muon (W_a, W_b orthogonalised separately and "
                               "scaled by sqrt(max(1, K/M))), which was replaced by the Li2 code's; it cannot be replayed")
        conf = {**conf, "model": {**model, "init_scale": "per-operand"}}
    return conf


def load_split(run_dir: Path) -> tuple[list[int], list[np.ndarray]]:
    try:
        with np.load(Path(run_dir) / SPLIT) as z:
            idx, seeds = z["train_idx"], z["member_seed"]
    except (OSError, KeyError, ValueError) as e:
        raise GroklabError(f"{run_dir}/{SPLIT}: unreadable ({e})") from None
    return [int(s) for s in seeds], [row[row >= 0] for row in idx]


def load_metrics(run_dir: Path) -> pa.Table:
    try:
        return pq.read_table(Path(run_dir) / METRICS_FILE)
    except (OSError, pa.ArrowInvalid) as e:
        raise GroklabError(f"{run_dir}/{METRICS_FILE}: unreadable ({e})") from None


# ---- progress, checkpoints, the end --------------------------------------------------------------
def metrics_table(rows: dict[str, list]) -> pa.Table:
    ints = {"step", "member", "seed"}
    return pa.table({k: pa.array(v, pa.int64() if k in ints else pa.float64()) for k, v in rows.items()})


def write_metrics(run_dir: Path, rows: dict[str, list]) -> None:
    atomic_write(Path(run_dir) / METRICS_FILE, lambda tmp: pq.write_table(metrics_table(rows), tmp))


def summarize(state, job, status: str) -> dict:
    """summary.json: per-member grokking times and final metrics (docs/formats.md)."""
    rows = state.rows
    step, member = np.asarray(rows["step"], np.int64), np.asarray(rows["member"], np.int64)
    members = []
    for e, seed in enumerate(job.seeds):
        sel = member == e
        s = step[sel]
        m = {k: np.asarray(rows[k])[sel] for k in ("train_acc", "test_acc", "train_loss", "test_loss")}
        diverged = state.status[e] == "diverged"

        def first(acc, thr):
            hit = np.flatnonzero(acc >= thr)
            return int(s[hit[0]]) if hit.size else None

        last = (lambda k: None if diverged or not len(m[k]) else float(m[k][-1]))
        members.append({"member": e, "seed": int(seed), "status": state.status[e],
                        "lr": float(job.lr[e]), "wd": float(job.wd[e]), "n_train": int(len(job.train_idx[e])),
                        "final_train_acc": last("train_acc"), "final_test_acc": last("test_acc"),
                        "final_train_loss": last("train_loss"), "final_test_loss": last("test_loss"),
                        "step_memorized": first(m["train_acc"], science.MEMORIZED_ACC),
                        "step_generalized": first(m["test_acc"], science.GENERALIZED_ACC),
                        "last_step": int(s[-1]) if s.size else None,
                        "diverged_step": state.diverged_step[e]})
    n_train = int(np.mean([len(i) for i in job.train_idx]))
    P = job.task.n_pairs
    return {"kind": "groklab.summary", "version": FORMAT_VERSION, "status": status,
            "group": job.task.name, "order": job.task.order, "n_train": n_train, "n_test": P - n_train,
            "train_frac": n_train / P, "steps": state.step, "steps_planned": job.cfg.train.steps,
            "wall_s": round(state.wall_s, 3), "critical_size": critical_size(job.task),
            "critical_rule": science.CRITICAL_RULE, "numerics": numerics_state(), "members": members}


def run_status(state) -> str:
    return "diverged" if "diverged" in state.status else "complete"


def save_checkpoint(run_dir: Path, state, job) -> None:
    """Everything needed to continue bit-exactly: weights, optimizer and filter state, step,
    member flags, stopping trackers, batch RNGs, the metrics so far. Then metrics and summary, so
    an interrupted folder can be looked at."""
    ck = checkpoint_dict(state)
    run_dir = Path(run_dir)
    # Metrics and summary first: a folder with a checkpoint always has both to look at.
    write_metrics(run_dir, state.rows)
    write_json(run_dir / SUMMARY, summarize(state, job, "running"))
    atomic_write(run_dir / CKPT, lambda tmp: torch.save(ck, tmp))


def checkpoint_dict(state) -> dict:
    """What checkpoint.pt holds (torch.save of this dict); restore_checkpoint is its inverse. Sweep
    jobs on a cluster send the same dict, as bytes, to their --storage location."""
    return {"step": state.step, "evaluated_at": state.evaluated_at, "model": state.model.state_dict(), "opt": state.opt.state_dict(),
          "grad_filter": state.grad_filter.state_dict() if state.grad_filter is not None else None,
          "active": torch.as_tensor(state.active), "status": list(state.status),
          "diverged_step": [(-1 if d is None else d) for d in state.diverged_step],
          "rows": {k: list(v) for k, v in state.rows.items()},
          "since": {k: torch.as_tensor(v) for k, v in state.since.items()},
          "batch_rng": [json.dumps(r.bit_generator.state) for r in state.batch_rng] if state.batch_rng else None,
          "wall_s": state.wall_s}


def checkpoint_step(run_dir: Path) -> int:
    """The step of the folder's last checkpoint (0 if it has none): where --resume continues."""
    path = Path(run_dir) / CKPT
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    except Exception:
        return 0


def load_checkpoint(run_dir: Path, state, device) -> None:
    """Restore `state` (freshly built from the same job) from checkpoint.pt in place."""
    path = Path(run_dir) / CKPT
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt pickle
        raise GroklabError(f"{path}: corrupt checkpoint ({type(e).__name__}); the run cannot resume from it") from None
    restore_checkpoint(state, ck)


def restore_checkpoint(state, ck: dict) -> None:
    """Restore `state` (freshly built from the same job) from a checkpoint_dict in place."""
    state.model.load_state_dict(ck["model"])
    state.opt.load_state_dict(ck["opt"])
    if state.grad_filter is not None:
        state.grad_filter.load_state_dict(ck["grad_filter"])
    state.step = int(ck["step"])
    state.evaluated_at = int(ck["evaluated_at"])
    state.active = ck["active"].cpu().numpy().astype(bool)
    state.status = list(ck["status"])
    state.diverged_step = [None if d < 0 else int(d) for d in ck["diverged_step"]]
    state.rows = {k: list(v) for k, v in ck["rows"].items()}
    state.since = {k: v.cpu().numpy() for k, v in ck["since"].items()}
    if ck["batch_rng"]:
        for r, s in zip(state.batch_rng, ck["batch_rng"]):
            r.bit_generator.state = json.loads(s)
    state.wall_s = float(ck["wall_s"])


def finish_run(run_dir: Path, state, job, keep_checkpoint: bool = False) -> dict:
    """Final weights, metrics, summary; then drop the checkpoint and the INCOMPLETE marker."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.model.export().items()}
    meta = {"model": job.cfg.model.model, "step": str(state.step)}
    atomic_write(run_dir / WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata=meta))
    write_metrics(run_dir, state.rows)
    summary = summarize(state, job, run_status(state))
    write_json(run_dir / SUMMARY, summary)
    if not keep_checkpoint and (run_dir / CKPT).exists():
        (run_dir / CKPT).unlink()
    if (run_dir / MARKER).exists():
        (run_dir / MARKER).unlink()
    return summary


def mark_interrupted(run_dir: Path, state, job) -> None:
    save_checkpoint(run_dir, state, job)
    write_json(Path(run_dir) / SUMMARY, summarize(state, job, "interrupted"))


def remove_run(run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)


def load_init(path: str, model, n_members: int) -> dict[str, torch.Tensor]:
    """Read --init FILE.safetensors and check every tensor's shape against the model's."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.exists(path):
        raise GroklabError(f"--init {path}: no such file")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise GroklabError(f"--init {path}: not a readable .safetensors file ({e})") from None
    out = {}
    for name, shape in model.expected_shapes().items():
        if name not in tensors:
            raise GroklabError(f"--init {path}: missing tensor {name!r} (expected {name} of shape {list(shape)} or {[n_members, *shape]})")
        t = tensors[name]  # its own dtype: init_state casts once, after the model has its dtype (issue 13)
        if tuple(t.shape) == tuple(shape):
            t = t.expand(n_members, *shape).clone()
        elif tuple(t.shape) != (n_members, *shape):
            raise GroklabError(f"--init {path}: tensor {name} has shape {list(t.shape)}; expected {list(shape)} or {[n_members, *shape]}")
        out[name] = t
    return out
