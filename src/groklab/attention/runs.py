"""Run folders for the attention room: config.json, metrics.parquet, arrays.npz, summary.json.

Same conventions as groklab's training runs (groklab.record): the folder must be new or empty, the
whole configuration is validated before anything is written, each file is written atomically, and
summary.json is written last, so a folder with a summary is complete.
"""

from __future__ import annotations

import datetime as _dt
import io
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from groklab.science import VERSION as __version__
from groklab.train.record import atomic_write, check_out_dir, write_json

__all__ = ["KIND", "write_run", "time_it"]

KIND = "groklab.attention"


def time_it(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


def write_run(out: Path, what: str, config: dict, metrics: dict[str, np.ndarray], summary: dict,
              arrays: dict[str, np.ndarray], argv: list[str] | None) -> Path:
    """Write one finished experiment. `metrics`: equal-length columns (one row per iteration x member)."""
    out = Path(out)
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)

    def w_npz(tmp):
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        Path(tmp).write_bytes(buf.getvalue())

    atomic_write(out / "arrays.npz", w_npz)
    atomic_write(out / "metrics.parquet",
                 lambda tmp: pq.write_table(pa.table({k: np.asarray(v) for k, v in metrics.items()}), tmp))
    write_json(out / "config.json", {"kind": KIND, "what": what, "version": 1, "groklab": __version__,
                                     "config": config, "argv": argv or [],
                                     "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                     "torch": torch.__version__, "threads": torch.get_num_threads()})
    write_json(out / "summary.json", {"what": what, "status": "complete", **summary})
    return out
