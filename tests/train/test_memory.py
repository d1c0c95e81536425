"""Memory estimates before allocation, and write failures (disk full) that keep the last good state.

The estimate is checked against the peak RSS a subprocess measures (scripts/memory_check.py):
measured <= estimate <= ESTIMATE_FACTOR x measured. Write failures are injected by making
os.replace (the atomic rename every groklab write ends with) raise OSError(ENOSPC).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from groklab import RunConfig
from groklab.cli import main
from groklab.errors import GroklabError
from groklab.train import api, engine, memory, record

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---- the estimate against measured peak RSS -----------------------------------------------------------------
SHAPES = [  # li2 float32, li2 float64 with 3 members, the transformer with 2 members, li2 with Muon
    {"group": "Z61", "frac": 0.5, "width": 3000},
    {"group": "Z47", "frac": 0.5, "width": 1500, "seeds": [0, 1, 2], "dtype": "float64"},
    {"group": "Z61", "frac": 0.5, "model": "transformer", "seeds": [0, 1]},
    {"group": "Z59", "frac": 0.5, "width": 4096, "opt": "muon"},
]
STEPS = {"steps": 12, "eval_every": 4}  # RSS grows over the first steps (heap reuse): not one step


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak RSS")
@pytest.mark.parametrize("flat", SHAPES, ids=["li2-f32", "li2-f64-E3", "transformer-E2", "li2-muon"])
def test_estimate_bounds_measured_peak_rss(flat):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "memory_check.py"), json.dumps({**flat, **STEPS})],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["measured"] > 50 << 20  # the shape is big enough for the tensors to dominate
    assert r["measured"] <= r["estimate"] <= memory.ESTIMATE_FACTOR * r["measured"], r


def test_estimate_counts_what_it_documents():
    cfg = RunConfig.from_flat({"group": "Z23", "frac": 0.5, "width": 1000, "seeds": (0, 1)})
    e = memory.estimate(cfg, 23, 264)
    assert e.parts["parameters"] == 2 * 3 * 23 * 1000 * 4 == e.parts["gradients"]
    assert e.parts["optimizer state"] == 2 * e.parts["parameters"]  # Adam: two moments
    assert e.parts["step activations"] == 2 * 264 * (5 * 1000 + 4 * 23) * 4
    f64 = memory.estimate(cfg.replace(dtype="float64"), 23, 264)
    assert f64.parts["parameters"] == 2 * e.parts["parameters"]
    ma = memory.estimate(cfg.replace(grokfast="ma", grokfast_window=100), 23, 264)
    assert ma.parts["optimizer state"] == e.parts["optimizer state"] + 100 * e.parts["parameters"]
    assert memory.EVAL_CHUNK == engine.EVAL_CHUNK


def test_limits_and_parsing(monkeypatch):
    assert memory.parse_bytes("4G") == 4 << 30 and memory.parse_bytes("512M") == 512 << 20 and memory.parse_bytes("1000") == 1000
    with pytest.raises(GroklabError, match="GROKLAB_MEMORY_LIMIT='lots': expected a positive number"):
        memory.parse_bytes("lots")
    monkeypatch.setenv(memory.ENV_LIMIT, "3G")
    assert memory.available() == memory.Limit(3 << 30, "GROKLAB_MEMORY_LIMIT=3G")
    monkeypatch.delenv(memory.ENV_LIMIT)
    lim = memory.available()
    assert 0 < lim.bytes < 1 << 50 and lim.source == "available host RAM"


# ---- refusing before anything is written --------------------------------------------------------------------
def test_the_huge_width_example_answers_in_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["run", "--group", "Z23", "--frac", "0.5", "--width", "100000000", "--out", "o", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("groklab: error: --width 100000000, --frac 0.5 (264 training pairs), --group Z23 (order 23): "
                          "this run needs about ")
    assert "available host RAM is" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []  # no o/, no runs/


def test_resume_and_analyze_are_checked_too(tmp_path, monkeypatch):
    cfg = RunConfig.from_flat({"group": "Z11", "frac": 0.5, "width": 32, "steps": 20})
    r = api.run(cfg, tmp_path / "r")
    monkeypatch.setenv(memory.ENV_LIMIT, "1M")
    from groklab.analysis import analyze_run

    before = sorted(p.name for p in (tmp_path / "r").iterdir())
    with pytest.raises(GroklabError, match=r"this analysis needs about .* but GROKLAB_MEMORY_LIMIT=1M is 1.0 MB"):
        analyze_run(r.dir)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == before
    with pytest.raises(GroklabError, match="this run needs about"):
        api.run(cfg, tmp_path / "r2")
    assert not (tmp_path / "r2").exists()


def test_a_smaller_evaluation_block_is_chosen_when_it_fits_and_said(tmp_path, monkeypatch, capsys):
    cfg = RunConfig.from_flat({"group": "Z61", "frac": 0.05, "width": 4096, "steps": 2, "eval_every": 1})
    full = memory.estimate(cfg, 61, 186)
    small = memory.estimate(cfg, 61, 186, eval_chunk=1 << 20)
    assert small.total < full.total
    monkeypatch.setenv(memory.ENV_LIMIT, str((small.total + full.total) // 2))
    r = api.run(cfg, tmp_path / "r")
    assert "memory: evaluating in blocks of" in capsys.readouterr().err
    monkeypatch.delenv(memory.ENV_LIMIT)
    ref = api.run(cfg, tmp_path / "ref")
    a, b = r.metrics.to_pandas(), ref.metrics.to_pandas()
    assert np.allclose(a["test_loss"], b["test_loss"], rtol=1e-5) and (a["test_acc"] == b["test_acc"]).all()


# ---- write failures -----------------------------------------------------------------------------------------
def _fail_on(monkeypatch, name: str, nth: int):
    """os.replace raises ENOSPC on the nth rename onto a file called `name` (1-based)."""
    real = os.replace
    seen = {"n": 0}

    def replace(src, dst, *a, **k):
        if Path(dst).name == name:
            seen["n"] += 1
            if seen["n"] == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(record.os, "replace", replace)


@pytest.mark.parametrize("victim", [record.CKPT, record.METRICS_FILE, record.WEIGHTS])
def test_disk_full_keeps_the_last_good_state_and_resume_finishes_bit_exactly(tmp_path, monkeypatch, victim):
    cfg = RunConfig.from_flat({"group": "Z11", "frac": 0.5, "width": 24, "steps": 60, "eval_every": 5, "ckpt_every": 20,
                               "seeds": (0, 1)})
    ref = api.run(cfg, tmp_path / "ref")
    d = tmp_path / "r"
    _fail_on(monkeypatch, victim, 2 if victim != record.WEIGHTS else 1)  # the second checkpoint / the final weights
    with pytest.raises(GroklabError) as ei:
        api.run(cfg, d)
    msg = str(ei.value)
    assert msg.startswith(f"run stopped: could not write {d / victim}: No space left on device (ENOSPC); "
                          "its previous complete version is intact")
    step = 40 if victim == record.WEIGHTS else 20
    assert msg.endswith(f"`groklab run --resume {d}` continues from the last good checkpoint (step {step})")
    assert (d / record.MARKER).exists() and not list(d.glob(".*.tmp"))  # no temporary left behind
    assert record.checkpoint_step(d) == step
    monkeypatch.undo()
    res = api.resume(d)
    assert res.summary["status"] == "complete"
    got = pq.read_table(d / record.METRICS_FILE).to_pandas()
    pd.testing.assert_frame_equal(got, ref.metrics.to_pandas())  # bit-exact, as if never interrupted


def test_disk_full_while_creating_the_folder_leaves_nothing(tmp_path, monkeypatch):
    _fail_on(monkeypatch, record.CONFIG, 1)
    with pytest.raises(GroklabError, match="could not write .*config.json: No space left on device"):
        api.run(RunConfig.from_flat({"group": "Z11", "frac": 0.5, "width": 8, "steps": 5}), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_disk_full_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    _fail_on(monkeypatch, record.CKPT, 1)
    rc = main(["run", "--group", "Z11", "--frac", "0.5", "--width", "8", "--steps", "30", "--ckpt-every", "10",
               "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "No space left on device" in err and "--resume" in err
