"""Subnormal floats are flushed to zero in every process that computes (issue 12), it is recorded in
the run folder, it can be turned off, and it survives a thread pool created before groklab."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from groklab import RunConfig, run
from groklab.train.numerics import ENV, _each_omp_thread, numerics_state, subnormals_flushed

SMALLEST_NORMAL = torch.finfo(torch.float32).tiny  # 1.18e-38


def _python(code: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_groklab_flushes_subnormals_in_every_thread():
    assert numerics_state()["flush_subnormals"] is True
    assert subnormals_flushed()
    x = torch.full((1 << 17,), SMALLEST_NORMAL / 4)  # subnormal inputs, split over all threads
    assert (x * 1.0 == 0).all()  # DAZ: read as zero
    y = torch.full((1 << 17,), SMALLEST_NORMAL) * 0.25  # a normal times 0.25 would be subnormal
    assert (y == 0).all()  # FTZ: written as zero
    z = torch.full((1 << 17,), SMALLEST_NORMAL) * 4.0  # normal values are untouched
    assert (z == SMALLEST_NORMAL * 4.0).all()


def test_the_run_folder_records_it(tmp_path):
    r = run(RunConfig.from_flat({"group": "Z5", "frac": 0.6, "width": 8, "steps": 5}), tmp_path / "r")
    cfg = json.loads((r.dir / "config.json").read_text())
    assert cfg["numerics"]["flush_subnormals"] is True
    assert r.summary["numerics"]["flush_subnormals"] is True


def test_it_can_be_turned_off_and_then_subnormals_survive():
    code = ("import json, groklab; from groklab.train.numerics import numerics_state, subnormals_flushed;"
            "print(json.dumps({**numerics_state(), 'probe': subnormals_flushed()}))")
    off = _python(code, **{ENV: "0"})
    assert off["flush_subnormals"] is False and off["probe"] is False and ENV in off["how"]
    on = _python(code)
    assert on["flush_subnormals"] is True and on["probe"] is True


def test_a_thread_pool_made_before_groklab_is_covered_too():
    """A library user who ran torch code first: the intra-op pool exists before groklab's import."""
    code = ("import json, torch; torch.set_num_threads(2); a = torch.randn(1 << 20); (a * a).sum();"
            "torch.randn(512, 512) @ torch.randn(512, 512);"
            "import groklab; from groklab.train.numerics import numerics_state, subnormals_flushed;"
            "print(json.dumps({**numerics_state(), 'probe': subnormals_flushed()}))")
    got = _python(code)
    assert got["flush_subnormals"] is True and got["probe"] is True, got


def test_the_broadcast_reaches_each_openmp_thread():
    n = torch.get_num_threads()
    seen = _each_omp_thread(lambda: None)
    assert len(seen) == n
