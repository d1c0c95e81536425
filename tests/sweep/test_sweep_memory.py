"""Sweeps that must fit in memory, workers that die, and a disk that fills up (issue 16).

The memory limit is set with GROKLAB_MEMORY_LIMIT from train.memory's own estimates of the jobs,
so the tests do not depend on this machine's RAM. A dead worker is a real SIGKILL of a real
worker process (what the OOM killer sends). Disk-full is injected: os.replace raises ENOSPC.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from groklab import sweep
from groklab.errors import GroklabError
from groklab.sweep import memfit
from groklab.train import memory, record

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "sweeps" / "tiny.yaml"
COMPARE = ["member_id", "status", "final_test_acc", "step_memorized", "step_generalized", "last_step"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def one_class(**grid) -> dict:
    """tiny.yaml cut to one (group, width): its 6 members form one job."""
    spec = yaml.safe_load(TINY.read_text())
    spec["grid"] = {"group": ["Z7"], "width": [12], "frac": [0.4, 0.6, 0.8], "seed": [0, 1], **grid}
    return spec


def job_bytes(spec: dict, E: int) -> int:
    sp = sweep.load_spec(spec)
    m = max(sp.members, key=lambda m: m.n_train)
    return memory.estimate(m.cfg, m.order, m.n_train, E).total


def test_a_job_too_big_is_split_and_said_and_results_are_the_same(tmp_path, monkeypatch, capsys):
    spec = one_class()
    ref = sweep.run_sweep(spec, tmp_path / "ref", workers=1, analyze=False)
    assert len(sweep.load_spec(spec).members) == 6 and ref.index.num_rows == 6
    monkeypatch.setenv(memory.ENV_LIMIT, str((job_bytes(spec, 3) + job_bytes(spec, 4)) // 2))  # 3 fit, 4 do not
    res = sweep.run_sweep(spec, tmp_path / "split", workers=1, analyze=False)
    err = capsys.readouterr().err
    assert "memory: job " in err and "(6 members, about" in err and "split into 2 jobs of at most 3 members" in err
    df = res.index.to_pandas()
    assert len(df) == 6 and df.member_id.is_unique and set(df.job_members) == {3}
    plan = record.read_json(tmp_path / "split" / "plan.json", "plan")
    assert sorted(len(j["members"]) for j in plan["jobs"]) == [3, 3]
    a = df[COMPARE].sort_values("member_id").reset_index(drop=True)
    b = ref.index.to_pandas()[COMPARE].sort_values("member_id").reset_index(drop=True)
    assert a.drop(columns="final_test_acc").equals(b.drop(columns="final_test_acc"))
    assert ((a.final_test_acc - b.final_test_acc).abs() < 1e-6).all()
    # the same command again: nothing left, nothing split again
    again = sweep.run_sweep(spec, tmp_path / "split", workers=1, analyze=False)
    assert again.ran_members == 0 and again.index.num_rows == 6


def test_workers_are_reduced_to_what_fits_side_by_side(tmp_path, monkeypatch, capsys):
    spec = one_class(group=["Z5", "Z7"])  # two jobs
    each = job_bytes(spec, 6) + memfit.WORKER_BYTES
    monkeypatch.setenv(memory.ENV_LIMIT, str(each + each // 2))  # room for one worker, not two
    res = sweep.run_sweep(spec, tmp_path / "w", workers=2, analyze=False)
    assert "memory: running 1 worker at once instead of 2" in capsys.readouterr().err
    assert res.index.num_rows == 12


def test_a_member_that_cannot_fit_alone_is_one_line_and_nothing_written(tmp_path, monkeypatch, capsys):
    from groklab.cli import main

    spec = one_class()
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv(memory.ENV_LIMIT, str(job_bytes(spec, 1) // 2))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--width 12" in err and "sweep member " in err and "alone needs about" in err
    assert "GROKLAB_MEMORY_LIMIT=" in err and not (tmp_path / "out").exists()


def test_a_killed_worker_fails_its_job_the_rest_go_on_and_a_rerun_retries_it(tmp_path):
    """SIGKILL one worker mid-job (as the OOM killer would): the sweep reports that job with its
    members, finishes the other job, exits 3; the same command again completes every member once."""
    spec = one_class(group=["Z5", "Z7"])
    spec["base"].update(steps=600, eval_every=50, ckpt_every=200)  # long enough to be caught running
    spec["base"].pop("stop_grokked")
    spec["base"].pop("stop_plateau")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "groklab.cli", "sweep", str(path), "--out", str(out), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    try:
        deadline = time.monotonic() + 180
        while killed is None:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no job started in 180 s"
            for p in sorted((out / "jobs").glob("*/progress.json")) if (out / "jobs").is_dir() else []:
                try:
                    r = record.read_json(p, "progress")
                except GroklabError:
                    continue
                if r["step"] < r["steps"]:
                    os.kill(r["pid"], 9)
                    killed = p.parent.name
                    break
            time.sleep(0.05)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    plan = record.read_json(out / "plan.json", "plan")
    members = next(j["members"] for j in plan["jobs"] if j["id"] == killed)
    assert proc.returncode == 3, err
    assert f"sweep job {killed} failed: its worker was killed by SIGKILL (out of memory?" in err
    assert ", ".join(members) in err and "re-run the same command to retry them" in err
    df = pq.read_table(out / "index.parquet").to_pandas()
    assert len(df) == 6 and not set(df.member_id) & set(members)  # the other job finished
    res = sweep.run_sweep(path, out, workers=2, analyze=False)  # the same command again retries it
    assert res.ran_members == 6 and not res.failed
    df = res.index.to_pandas()
    assert len(df) == 12 and df.member_id.is_unique


def test_disk_full_while_writing_results_stops_in_one_line_and_a_rerun_continues(tmp_path, monkeypatch):
    spec = one_class(group=["Z5", "Z7"])
    real = os.replace
    calls = {"n": 0}

    def replace(src, dst, *a, **k):
        if Path(dst).parent.name == "results":
            calls["n"] += 1
            if calls["n"] == 2:  # the second job's results file
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(record.os, "replace", replace)
    out = tmp_path / "out"
    with pytest.raises(GroklabError, match=r"sweep stopped: could not write .*results/.*\.parquet: No space left on device "
                                           r"\(ENOSPC\); its previous complete version is intact; every finished job is kept"):
        sweep.run_sweep(spec, out, workers=1, analyze=False)
    assert len(list((out / "results").glob("*.parquet"))) == 1 and not list(out.rglob(".*.tmp"))
    monkeypatch.undo()
    res = sweep.run_sweep(spec, out, workers=1, analyze=False)
    assert res.ran_members == 6 and res.index.num_rows == 12 and res.index.to_pandas().member_id.is_unique
