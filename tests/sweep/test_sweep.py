"""Sweeps: spec validation, batching, exactly-once resume after SIGKILL, local vs Ray.

Every sweep here is sweeps/tiny.yaml or a cut of it (networks of width 8-12 on Z5 / Z7, 60 steps),
so the cost is mostly process start-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from groklab import RunConfig, sweep
from groklab.errors import GroklabError
from groklab.sweep import execute as sweep_exec

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "sweeps" / "tiny.yaml"
VOLATILE = ["wall_s", "finished"]  # the only index columns that may differ between two runs


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(**changes) -> dict:
    spec = yaml.safe_load(TINY.read_text())
    for k, v in changes.items():
        spec[k] = v if v is not None else spec.pop(k)
    return spec


def cli(argv: list[str]) -> int:
    """The `groklab sweep` verb, through the real CLI."""
    from groklab.cli import main

    return main(["sweep", *argv])


def frame(out: Path):
    return pq.read_table(out / "index.parquet").to_pandas().drop(columns=VOLATILE)


def metrics(out: Path):
    m = pq.read_table(out / "metrics").to_pandas()
    return m.sort_values(["member_id", "step"]).reset_index(drop=True)


# ---- specs --------------------------------------------------------------------------------------------
def test_tiny_spec_members_and_jobs():
    sp = sweep.load_spec(TINY)
    assert len(sp.members) == 2 * 2 * 3 * 2
    jobs = sweep.plan_jobs(sp.members, sp.execution)
    # one job per (group, width): seeds and fractions vary inside a job
    assert len(jobs) == 4 and sorted(len(j.members) for j in jobs) == [6, 6, 6, 6]
    assert len({m.id for m in sp.members}) == 24


@pytest.mark.parametrize("spec, words", [
    (tiny(grid={"group": ["Z5"], "lrr": [0.1]}), ["grid.lrr", "did you mean lr"]),
    (tiny(grid={"group": ["Z5"], "lr": [0.1, -1.0]}), ["--lr -1", "must be > 0", "lr=-1"]),
    (tiny(base={"seeds": [0, 1]}), ["base.seeds", "use `seed`"]),
    (tiny(grid={"group": ["Z5", "Q7"]}), ["Q7"]),
    (tiny(grid={"group": ["Z5"], "frac": [1.5]}), ["--frac 1.5", "must be in (0, 1)"]),
    (tiny(grid={"group": ["Z5"], "crit_mult": [4]}), ["--crit-mult 4", "exclude"]),
    (tiny(execution={"max_members": 0}), ["execution.max_members"]),
    (tiny(grids={}), ["grids", "did you mean grid"]),
])
def test_bad_spec_exits_2_and_names_the_key(tmp_path, capsys, spec, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert cli([str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out").exists()  # nothing written for a bad spec


def test_member_id_is_stable_and_type_blind():
    a = sweep.load_spec({"base": {"group": "Z5", "width": 8, "lr": 1, "crit_mult": 1}})
    b = sweep.load_spec({"base": {"group": "Z5", "width": 8, "lr": 1.0, "crit_mult": 1.0, "seed": 0}})
    c = sweep.load_spec({"base": {"group": "Z5", "width": 8, "lr": "1e0", "crit_mult": 1.0}})  # YAML's 1e0 is a string
    assert a.members[0].id == b.members[0].id == c.members[0].id
    d = sweep.load_spec({"base": {"group": "Z5", "width": 8, "lr": 1.0, "crit_mult": 1.0, "seed": 1}})
    assert d.members[0].id != a.members[0].id


def test_exclude_and_runs():
    sp = sweep.load_spec({"base": {"group": "Z7", "width": 8}, "grid": {"crit_mult": [0.5, 1.0], "seed": [0, 1]},
                          "exclude": [{"crit_mult": 1.0, "seed": 1}], "runs": [{"crit_mult": 0.5, "seed": 0}, {"frac": 0.5}]})
    got = [(m.flat["crit_mult"], m.flat["frac"], m.seed) for m in sp.members]
    assert got == [(0.5, None, 0), (0.5, None, 1), (1.0, None, 0), (None, 0.5, 0)]  # the duplicate run counted once


def test_plan_splits_by_shape_and_limits():
    sp = sweep.load_spec({"base": {"group": "Z7"}, "grid": {"width": [8, 16], "lr": [1e-3, 1e-2], "wd": [0.0, 1e-4],
                                                              "seed": [0, 1, 2]}})
    jobs = sweep.plan_jobs(sp.members, sp.execution)
    assert sorted(len(j.members) for j in jobs) == [12, 12]  # lr, wd and seed ride inside a job
    capped = sweep.plan_jobs(sp.members, {**sp.execution, "max_members": 5})
    assert sorted(len(j.members) for j in capped) == [4] * 6  # 12 alike members: three near-equal jobs each


# ---- running, resuming ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The tiny sweep run without interruption (in this process, one job at a time)."""
    out = tmp_path_factory.mktemp("ref") / "tiny"
    res = sweep.run_sweep(TINY, out, workers=1)
    assert res.ran_members == 24 and res.index.num_rows == 24
    return out


def test_outputs_and_rerun_does_nothing(reference, capsys):
    df = frame(reference)
    assert len(df) == 24 and df.member_id.is_unique
    assert set(df.status) <= {"complete", "stopped"}
    for col in ("group", "width", "frac", "seed", "n_train", "order", "final_test_acc", "step_memorized",
                "step_generalized", "lr", "wd", "steps", "stop_grokked"):
        assert col in df.columns, col
    assert (df.n_train == np.round(df.frac * df.order ** 2)).all()
    m = metrics(reference)
    assert set(m.member_id) == set(df.member_id)
    assert not m.duplicated(["member_id", "step"]).any()
    assert (reference / "phase.png").stat().st_size > 10_000 and (reference / "fit.json").exists()
    before = (reference / "index.parquet").stat().st_mtime_ns
    assert cli([str(TINY), "--out", str(reference)]) == 0
    assert "all 24 members are done; nothing to run" in capsys.readouterr().err
    assert (reference / "index.parquet").stat().st_mtime_ns == before


def test_sigkill_then_rerun_gives_each_member_once(reference, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "groklab.cli", "sweep", str(TINY), "--out", str(out), "--workers", "1", "--quiet"]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "results").glob("*.parquet")):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no job finished in 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done_before = len(list((out / "results").glob("*.parquet")))
    assert 1 <= done_before < 4, "the kill should land part-way"
    st = sweep.sweep_status(out)
    assert st["done"] == 6 * done_before and not st["driver_alive"] and not st["complete"]
    res = sweep.run_sweep(TINY, out, workers=1, analyze=False)  # the same command again
    assert res.ran_members == 24 - 6 * done_before
    df = frame(out)
    assert len(df) == 24 and df.member_id.is_unique
    ref = frame(reference)
    assert df.equals(ref)
    assert metrics(out).equals(metrics(reference))
    assert not list((out / "jobs").glob("*/checkpoint.pt"))  # finished jobs leave no checkpoints


class Crash(Exception):
    pass


def test_resume_from_a_checkpoint_is_bit_exact(reference, tmp_path, monkeypatch):
    """Crash every job once at step 30, just after its evaluation and before its checkpoint: the
    rerun resumes it from the step-20 checkpoint and gives the uninterrupted numbers."""
    out = tmp_path / "crash"
    real = sweep_exec.run_job
    crashed: dict[str, int] = {}

    def crashing(out_, job, flats, on_eval=None):
        def hook(jid, st, m):
            if st.step == 30 and jid not in crashed:
                crashed[jid] = torch.load(Path(out_) / "jobs" / jid / "checkpoint.pt", weights_only=True)["step"]
                raise Crash
            if on_eval:
                on_eval(jid, st, m)
        return real(out_, job, flats, on_eval=hook)

    monkeypatch.setattr(sweep_exec, "run_job", crashing)
    for attempt in range(6):
        try:
            res = sweep.run_sweep(TINY, out, workers=1, analyze=False)
            break
        except Crash:
            assert len(list((out / "jobs").glob("*/checkpoint.pt"))) == 1
    assert attempt == len(crashed) >= 2 and set(crashed.values()) == {20}
    assert res.index.num_rows == 24
    assert frame(out).equals(frame(reference))
    assert metrics(out).equals(metrics(reference))


def test_ctrl_c_checkpoints_at_the_next_step_boundary(reference, tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) sets a flag; the running job saves a checkpoint at its next step boundary
    and the sweep stops; the rerun resumes there and gives the uninterrupted numbers."""
    out = tmp_path / "ctrlc"
    real = sweep_exec.run_job
    seen: list[str] = []

    def interrupting(out_, job, flats, on_eval=None):
        def hook(jid, st, m):
            if st.step == 40 and not seen:
                seen.append(jid)
                sweep_exec._STOP["requested"] = True  # what the SIGINT handler does
        return real(out_, job, flats, on_eval=hook)

    monkeypatch.setattr(sweep_exec, "run_job", interrupting)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(TINY, out, workers=1, analyze=False)
    ck = torch.load(out / "jobs" / seen[0] / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 40
    res = sweep.run_sweep(TINY, out, workers=1, analyze=False)
    assert res.index.num_rows == 24 and res.ran_members == 24
    assert frame(out).equals(frame(reference))
    assert metrics(out).equals(metrics(reference))


def test_changed_spec_is_an_error_unless_extend(reference, tmp_path):
    out = tmp_path / "ext"
    small = tiny(grid={"group": ["Z5"], "width": [8], "frac": [0.4, 0.6], "seed": [0, 1]})
    sweep.run_sweep(small, out, workers=1, analyze=False)
    bigger = tiny(grid={"group": ["Z5"], "width": [8], "frac": [0.4, 0.6, 0.8], "seed": [0, 1]})
    with pytest.raises(GroklabError, match="different sweep.*adds 2 members.*--extend"):
        sweep.run_sweep(bigger, out, workers=1, analyze=False)
    res = sweep.run_sweep(bigger, out, workers=1, analyze=False, extend=True)
    assert res.ran_members == 2 and res.index.num_rows == 6
    again = sweep.run_sweep(bigger, out, workers=1, analyze=False)
    assert again.ran_members == 0
    other = tmp_path / "not_a_sweep"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(GroklabError, match="holds no sweep"):
        sweep.run_sweep(small, other, workers=1)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_pool_of_processes_matches(reference, tmp_path):
    out = tmp_path / "pool"
    sweep.run_sweep(TINY, out, workers=2, analyze=False)
    assert frame(out).equals(frame(reference))


def test_status_cli(reference, capsys):
    assert cli(["--status", str(reference)]) == 0
    text = capsys.readouterr().out
    assert "24 done, 0 running, 0 left of 24 members" in text and "complete" in text


def test_ray_matches_local(reference, tmp_path):
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed here (pip install 'groklab[ray]'); the local executor was tested")
    out = tmp_path / "ray"
    sweep.run_sweep(TINY, out, executor="ray", workers=2, analyze=False)
    assert frame(out).equals(frame(reference))
    assert metrics(out).equals(metrics(reference))


def test_member_id_hashes_only_non_default_fields():
    """A config field added later (at a behaviour-keeping default) must not change existing ids,
    or an upgraded groklab would refuse to resume a user's sweep folder."""
    from groklab.sweep import member_id

    full = RunConfig.from_flat({"group": "Z11", "lr": 3e-3}).flat()
    older = {k: v for k, v in full.items() if k != "warmup"}  # what a version without the field wrote
    assert member_id(full) == member_id(older)
    assert member_id(full) != member_id({**full, "warmup": 10}) != member_id({**full, "lr": 1e-3})


# ---- the Li2 analysis of sweep members (execution.analysis) ---------------------------------------------
def _analysed_spec() -> dict:
    return tiny(base={**tiny()["base"], "dtype": "float64"}, execution={"checkpoint_s": 0, "analysis": 20})


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("an") / "tiny"
    sweep.run_sweep(_analysed_spec(), out, workers=1, analyze=False)
    return out


def test_sweep_analysis_is_kept_and_equals_a_single_run_analysis(analysed):
    """Every member of a sweep run with `execution: {analysis: N}` has the Li2 analysis, measured
    through its last step (stopped members included), and it equals `run_with_analysis` of that
    member alone (float64) at the steps both measured."""
    from groklab.analysis import run_with_analysis
    from groklab.sweep.store import load_analysis

    an = load_analysis(analysed).to_pandas()
    index = pq.read_table(analysed / "index.parquet").to_pandas()
    assert set(an.member_id) == set(index.member_id) and not any((analysed / "jobs").iterdir())  # job folders gone
    last = an.groupby("member_id").step.max()
    assert (last.loc[index.member_id].to_numpy() == index.last_step.to_numpy()).all()
    assert (index.last_step < 60).any()  # some were stopped early, and still measured at their end
    plan = sweep.load_spec(_analysed_spec())
    for m in (plan.members[0], plan.members[-1]):
        flat = {k: v for k, v in m.flat.items() if k != "seed"}
        solo = run_with_analysis(RunConfig.from_flat({**flat, "seeds": (m.seed,)}), out=None, every=20).analysis.to_pandas()
        mine = an[an.member_id == m.id].set_index("step")
        common = sorted(set(mine.index) & set(solo.step))
        assert len(common) >= 3
        for k in ("irreps_covered", "units_pure", "purity_mean", "energy_weighted", "gf_norm", "w_rel_change"):
            np.testing.assert_allclose(mine.loc[common, k].to_numpy(), solo.set_index("step").loc[common, k].to_numpy(),
                                       rtol=1e-7, atol=1e-9, err_msg=k)


def test_sweep_analysis_survives_a_crash_and_resume(analysed, tmp_path, monkeypatch):
    """A job that crashes after its step-20 checkpoint resumes with its analysis rows up to there:
    the finished analysis equals the uninterrupted one."""
    from groklab.sweep.store import load_analysis

    out = tmp_path / "crash"
    real = sweep_exec.run_job
    crashed: set[str] = set()

    def crashing(out_, job, flats, on_eval=None):
        def hook(jid, st, m):
            if st.step == 30 and jid not in crashed:
                crashed.add(jid)
                raise Crash
        return real(out_, job, flats, on_eval=hook)

    monkeypatch.setattr(sweep_exec, "run_job", crashing)
    for _ in range(6):
        try:
            sweep.run_sweep(_analysed_spec(), out, workers=1, analyze=False)
            break
        except Crash:
            assert len(list((out / "jobs").glob("*/analysis_state.pt"))) == 1
    assert len(crashed) >= 2
    key = ["member_id", "step"]
    a = load_analysis(out).to_pandas().sort_values(key).reset_index(drop=True)
    b = load_analysis(analysed).to_pandas().sort_values(key).reset_index(drop=True)
    assert a.equals(b)


def test_sweep_analysis_setting_is_checked(tmp_path):
    with pytest.raises(GroklabError, match="execution.analysis.*multiple of every member's eval_every"):
        sweep.load_spec(tiny(execution={"analysis": 15}))
    with pytest.raises(GroklabError, match="execution.analysis"):
        sweep.load_spec(tiny(execution={"analysis": "often"}))
    with pytest.raises(GroklabError, match="no analysis/ files"):
        from groklab.sweep.store import load_analysis

        load_analysis(tmp_path)


def test_muon_vs_adam_spec_loads():
    """sweeps/muon_vs_adam.yaml loads (it once failed on `grid.seeds`): 80 members, K = 2M − 2 and
    M − 1 per group, the analysis on."""
    sp = sweep.load_spec(ROOT / "sweeps" / "muon_vs_adam.yaml")
    assert len(sp.members) == 80 and sp.execution["analysis"] == 50
    assert {(m.flat["group"], m.flat["width"]) for m in sp.members} == {("Z23", 44), ("Z23", 22), ("Z31", 60), ("Z31", 30)}
