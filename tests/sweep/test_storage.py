"""sweep.storage: the --storage location of running jobs' checkpoints and progress (issue 15)."""

from __future__ import annotations

import pytest
import torch
import yaml

from groklab import sweep
from groklab.errors import GroklabError
from groklab.sweep import execute as sweep_exec
from groklab.sweep.storage import JobStorage, StorageError, normalize


def test_put_get_delete_and_atomic_on_a_path(tmp_path):
    st = JobStorage(tmp_path / "st")
    assert st.uri == f"file://{tmp_path / 'st'}" and normalize(st.uri) == st.uri
    st.put("job1", "a.bin", b"hello")
    assert st.get("job1", "a.bin") == b"hello" and st.get("job1", "missing") is None
    assert sorted(p.name for p in (tmp_path / "st" / "job1").iterdir()) == ["a.bin"]  # no temporary left
    ck = {"step": 7, "w": torch.arange(3.0)}
    st.put_checkpoint("job1", ck)
    back = st.get_checkpoint("job1", "cpu")
    assert back["step"] == 7 and torch.equal(back["w"], ck["w"])
    st.put_json("job1", "progress.json", {"step": 3})
    assert st.progress(["job1", "job2"]) == {"job1": {"step": 3}}
    st.delete("job1")
    assert not (tmp_path / "st" / "job1").exists()


def test_bad_uri_and_unwritable_storage_are_one_line(tmp_path):
    with pytest.raises(GroklabError, match=r"--storage nosuch://x: cannot open it"):
        JobStorage("nosuch://x").open()
    (tmp_path / "afile").write_text("x")
    st = JobStorage(tmp_path / "afile" / "jobs")  # its parent is a file: nothing can be created there, even as root
    with pytest.raises(StorageError, match=r"could not write file://.*/afile/jobs/j/a.bin"):
        st.put("j", "a.bin", b"x")


def _one_job():
    sp = sweep.load_spec({"name": "s", "base": {"group": "Z5", "width": 8, "steps": 40, "eval_every": 10, "ckpt_every": 10,
                                                "lr": 1e-2}, "grid": {"frac": [0.6], "seed": [0, 1]},
                          "execution": {"checkpoint_s": 0}})
    j = sweep.plan_jobs(sp.members, sp.execution)[0]
    job = {"id": j.id, "members": list(j.members), "work": j.work, "steps": 40, "threads": 1, "checkpoint_s": 0}
    return job, [m.flat for m in sp.members if m.id in j.members]


def test_a_job_on_storage_never_touches_out_and_matches_the_local_job(tmp_path, monkeypatch):
    job, flats = _one_job()
    local = sweep_exec.run_job(str(tmp_path / "out"), job, flats)
    st = JobStorage(tmp_path / "st")
    seen = []
    real = st.put
    monkeypatch.setattr(st, "put", lambda jid, name, data: (seen.append(name), real(jid, name, data)))
    remote = sweep_exec.run_job(None, job, flats, None, st, False)
    assert "checkpoint.pt" in seen and "progress.json" in seen
    assert remote["metrics"].equals(local["metrics"]) and remote["note"] is None and remote["resumed_from"] == 0
    # a retry finds the checkpoint (left at step 30: the last one before the end) and resumes from it
    again = sweep_exec.run_job(None, job, flats, None, st, False)
    assert again["resumed_from"] == 30 and again["metrics"].equals(local["metrics"])


def test_default_storage_that_a_node_cannot_write_runs_without_checkpoints_and_says_so(tmp_path):
    job, flats = _one_job()
    (tmp_path / "afile").write_text("x")
    res = sweep_exec.run_job(None, job, flats, None, JobStorage(tmp_path / "afile" / "jobs"), True)
    assert res["note"].startswith(f"job {job['id']} ran without checkpoints on ")
    assert "give --storage URI" in res["note"]
    with pytest.raises(GroklabError, match="could not write"):  # a --storage the user named must work
        sweep_exec.run_job(None, job, flats, None, JobStorage(tmp_path / "afile" / "jobs"), False)


def test_storage_needs_the_ray_executor(tmp_path, capsys):
    from groklab.cli import main

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "base": {"group": "Z5", "width": 8, "steps": 5}}))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--storage", str(tmp_path / "st"), "--quiet"]) == 2
    assert "--storage" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_live_analysis_state_goes_to_the_storage_and_a_retry_continues_it(tmp_path):
    job, flats = _one_job()
    job = {**job, "analysis": 10}  # execution.analysis: measure every 10 steps during the job
    local = sweep_exec.run_job(str(tmp_path / "out"), job, flats)
    st = JobStorage(tmp_path / "st")
    first = sweep_exec.run_job(None, job, flats, None, st, False)
    assert st.get(job["id"], "analysis_state.pt") is not None  # beside the checkpoint, in the storage
    again = sweep_exec.run_job(None, job, flats, None, st, False)  # resumes at 30 with the analysis so far
    assert again["resumed_from"] == 30
    for res in (first, again):
        assert res["analysis"].equals(local["analysis"])
