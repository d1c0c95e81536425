"""Run folders, resume, and the command line: end to end through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file, save_file

from groklab import RunConfig, load_run, run
from groklab.cli import main

CLI = [sys.executable, "-m", "groklab.cli"]
SMALL = ["--group", "Z11", "--frac", "0.5", "--width", "32", "--eval-every", "5", "--quiet"]


def cli(*args, cwd=None):
    """Run the real CLI in a subprocess; returns (exit code, stdout, stderr)."""
    p = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    return p.returncode, p.stdout, p.stderr


def test_run_folder_has_every_file_and_consistent_summary(tmp_path):
    r = run(RunConfig.from_flat({"group": "Z11", "frac": 0.5, "width": 32, "steps": 40, "eval_every": 5, "seeds": (0, 1)}), tmp_path / "r")
    d = tmp_path / "r"
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "metrics.parquet", "split.npz", "summary.json", "weights.safetensors"]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["kind"] == "groklab.run" and cfg["config"]["task"]["group"] == "Z11"
    m = pq.read_table(d / "metrics.parquet").to_pydict()
    assert sorted(set(m["step"])) == list(range(0, 41, 5)) and sorted(set(m["member"])) == [0, 1]
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "w_norm", "v_norm", "seed"} <= set(m)
    w = load_file(str(d / "weights.safetensors"))
    assert w["W"].shape == (2, 32, 22) and w["V"].shape == (2, 11, 32)
    split = np.load(d / "split.npz")
    assert split["train_idx"].shape == (2, 60) and list(split["member_seed"]) == [0, 1]  # round(0.5 * 121)
    s = r.summary
    assert s["status"] == "complete" and s["steps"] == 40 and s["n_train"] == 60
    last = [i for i, st in enumerate(m["step"]) if st == 40]
    assert [s["members"][m["member"][i]]["final_test_acc"] for i in last] == [m["test_acc"][i] for i in last]
    assert load_run(d).summary == s


def test_weights_file_rebuilds_the_model_outputs(tmp_path):
    """W's first M columns act on the first operand: recompute the final test accuracy from the file."""
    r = run(RunConfig.from_flat({"group": "Z11", "frac": 0.8, "width": 48, "steps": 200, "lr": 1e-2}), tmp_path / "r")
    w = load_file(str(tmp_path / "r" / "weights.safetensors"))
    W, V = w["W"][0].astype(np.float64), w["V"][0].astype(np.float64)
    a, b = np.divmod(np.arange(121), 11)
    o = V @ (W[:, a] + W[:, 11 + b]) ** 2
    acc = ((o.argmax(0) == (a + b) % 11)).mean()
    train = np.load(tmp_path / "r" / "split.npz")["train_idx"][0]
    test = np.setdiff1d(np.arange(121), train)
    assert abs(((o.argmax(0) == (a + b) % 11)[test]).mean() - r.summary["members"][0]["final_test_acc"]) < 1e-6
    assert 0 <= acc <= 1


def test_init_file_starts_from_given_weights(tmp_path):
    first = run(RunConfig.from_flat({"group": "Z11", "frac": 0.5, "width": 32, "steps": 30}), tmp_path / "a")
    init = tmp_path / "init.safetensors"
    w = load_file(str(tmp_path / "a" / "weights.safetensors"))
    save_file({"W": w["W"][0], "V": w["V"][0]}, str(init))  # one member's (K, 2M), (M, K)
    second = run(RunConfig.from_flat({"group": "Z11", "frac": 0.5, "width": 32, "steps": 5, "init": str(init)}), tmp_path / "b")
    assert second.metrics.to_pydict()["train_loss"][0] == pytest.approx(first.summary["members"][0]["final_train_loss"], rel=1e-6)


@pytest.mark.parametrize("shape", ["one", "per-member"])
def test_init_file_float64_loads_bit_identically_under_float64(tmp_path, shape):
    """--init FILE --dtype float64: the model starts from the file's float64 numbers exactly (the
    file is loaded after the cast to float64, not rounded through float32); a float64 run from it
    equals one from the same tensors handed to the engine directly."""
    import torch
    from safetensors.torch import save_file as save_torch

    from groklab.train import api
    from groklab.train.engine import init_state

    g = torch.Generator().manual_seed(7)
    E, K, M = 2, 32, 11
    W = torch.randn(E, K, 2 * M, generator=g, dtype=torch.float64) / 5
    V = torch.randn(E, M, K, generator=g, dtype=torch.float64) / 6
    assert (W.float().double() != W).float().mean() > 0.99  # these numbers are not float32 numbers
    f = tmp_path / "init.safetensors"
    save_torch({"W": W[0], "V": V[0]} if shape == "one" else {"W": W, "V": V}, str(f))
    cfg = RunConfig.from_flat({"group": "Z11", "frac": 0.5, "width": K, "steps": 3, "dtype": "float64",
                               "seeds": (0, 1), "init": str(f)})
    job = api.prepare(cfg)  # reads --init as `groklab run` does
    st = init_state(job, torch.device("cpu"), torch.float64)
    got = st.model.export()
    want_W, want_V = (W[:1].expand(E, -1, -1), V[:1].expand(E, -1, -1)) if shape == "one" else (W, V)
    assert got["W"].dtype == torch.float64
    assert torch.equal(got["W"], want_W) and torch.equal(got["V"], want_V)  # bit-identical
    r = run(cfg, tmp_path / "r")
    assert r.metrics.to_pydict()["step"][0] == 0
    w0 = torch.as_tensor(W[0] if shape == "one" else W[1])
    # the recorded step-0 weight norm is the file's float64 norm (member 1)
    assert r.metrics.to_pydict()["w_norm"][1] == pytest.approx(w0.norm().item(), rel=1e-13, abs=0)


def test_config_written_before_init_scale_replays_with_the_old_init(tmp_path):
    """A config.json without model.init_scale (written before issue 13) is read as "per-operand",
    the init those runs drew; one with opt muon is refused (its per-block Muon no longer exists)."""
    from groklab.errors import GroklabError
    from groklab.train import record

    conf = RunConfig.from_flat({"group": "Z11"}).to_dict()
    del conf["model"]["init_scale"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / record.CONFIG).write_text(json.dumps({"kind": "groklab.run", "version": record.FORMAT_VERSION, "config": conf}))
    assert record.load_config(tmp_path / "old")[0].model.init_scale == "per-operand"
    conf["train"]["opt"] = "muon"
    (tmp_path / "old" / record.CONFIG).write_text(json.dumps({"kind": "groklab.run", "version": record.FORMAT_VERSION, "config": conf}))
    with pytest.raises(GroklabError, match="earlier Muon.*cannot be replayed"):
        record.load_config(tmp_path / "old")
    new = RunConfig.from_flat({"group": "Z11", "opt": "muon"}).to_dict()  # written now: read as written
    (tmp_path / "old" / record.CONFIG).write_text(json.dumps({"kind": "groklab.run", "version": record.FORMAT_VERSION, "config": new}))
    assert record.load_config(tmp_path / "old")[0].model.init_scale == "joint"


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name} appeared"
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


def test_sigkill_then_resume_is_bit_exact(tmp_path):
    args = [*SMALL, "--steps", "3000", "--ckpt-every", "50", "--seeds", "0,1", "--opt", "adamw"]
    assert cli("run", *args, "--out", tmp_path / "ref")[0] == 0
    proc = subprocess.Popen([*CLI, "run", *args, "--out", str(tmp_path / "k")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(tmp_path / "k" / "checkpoint.pt", proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "k" / "INCOMPLETE").exists()
    assert json.loads((tmp_path / "k" / "summary.json").read_text())["status"] == "running"
    code, out, err = cli("run", "--resume", tmp_path / "k", "--quiet")
    assert code == 0, err
    assert not (tmp_path / "k" / "INCOMPLETE").exists() and not (tmp_path / "k" / "checkpoint.pt").exists()
    ref, got = pq.read_table(tmp_path / "ref" / "metrics.parquet"), pq.read_table(tmp_path / "k" / "metrics.parquet")
    assert ref.equals(got)
    wr, wg = load_file(str(tmp_path / "ref" / "weights.safetensors")), load_file(str(tmp_path / "k" / "weights.safetensors"))
    assert all(np.array_equal(wr[k], wg[k]) for k in wr)
    code, _, err = cli("run", "--resume", tmp_path / "k")
    assert code == 2 and "already complete" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_between_steps_and_resumes_bit_exact(tmp_path, sig):
    """The signal only raises a flag; the loop stops at the next step boundary and checkpoints that
    exact state (never a half-applied update), so --resume equals an uninterrupted run."""
    args = [*SMALL, "--steps", "3000", "--ckpt-every", "100000", "--seeds", "0,1", "--opt", "adamw"]
    assert cli("run", *args, "--out", tmp_path / "ref")[0] == 0
    proc = subprocess.Popen([*CLI, "run", *args, "--out", str(tmp_path / "i")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "i" / "INCOMPLETE", proc)
    time.sleep(1.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the 3000-step run finished before the signal arrived (very fast machine)")
    assert proc.returncode == 130
    assert f"resume with: groklab run --resume {tmp_path / 'i'}" in err
    s = json.loads((tmp_path / "i" / "summary.json").read_text())
    assert s["status"] == "interrupted" and 0 < s["steps"] < 3000
    assert (tmp_path / "i" / "checkpoint.pt").exists()
    code, _, err = cli("run", "--resume", tmp_path / "i", "--quiet")
    assert code == 0, err
    ref, got = pq.read_table(tmp_path / "ref" / "metrics.parquet"), pq.read_table(tmp_path / "i" / "metrics.parquet")
    assert ref.equals(got)
    wr, wg = load_file(str(tmp_path / "ref" / "weights.safetensors")), load_file(str(tmp_path / "i" / "weights.safetensors"))
    assert all(np.array_equal(wr[k], wg[k]) for k in wr)


def _not_a_group(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("0,1,2\n1,0,0\n2,0,1\n")  # 0 is an identity, but (1∘1)∘2 != 1∘(1∘2)
    return f"table:{p}"


def _corrupt_npy(tmp_path):
    p = tmp_path / "t.npy"
    p.write_bytes(b"\x93NUMPY garbage")
    return f"table:{p}"


BAD = [
    (lambda t: ["--group", "Foo3"], "--group 'Foo3': expected one of Z<n>"),
    (lambda t: ["--group", "Z11", "--frac", "1.5"], "--frac 1.5: must be in (0, 1)"),
    (lambda t: ["--group", "Z11", "--frac", "0"], "--frac 0: must be in (0, 1)"),
    (lambda t: ["--group", "Z11", "--lr", "-0.1"], "--lr -0.1: must be > 0"),
    (lambda t: ["--group", "Z11", "--width", "-4"], "--width -4: must be >= 1"),
    (lambda t: ["--group", "Z11", "--opt", "lion"], "--opt 'lion': expected one of sgd, adam, adamw, muon"),
    (lambda t: ["--group", _not_a_group(t)], "is not associative"),
    (lambda t: ["--group", _corrupt_npy(t)], "t.npy"),
    (lambda t: ["--group", f"table:{t}/missing.csv"], "missing.csv"),
    (lambda t: ["--group", "Z11", "--init", f"{t}/nope.safetensors"], "--init"),
    (lambda t: ["--group", "Z11", "--crit-mult", "50"], "--crit-mult 50"),
]


@pytest.mark.parametrize("make_args,message", BAD)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, make_args, message, capsys):
    out = tmp_path / "out"
    code = main(["run", *make_args(tmp_path), "--out", str(out), "--quiet", "--steps", "5"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("groklab: error: ") and message in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_resume_of_a_foreign_folder_and_existing_out_are_errors(tmp_path, capsys):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text('{"name": "something else"}')
    assert main(["run", "--resume", str(tmp_path / "foreign")]) == 2
    assert "not a groklab run folder" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{not json")
    assert main(["run", "--resume", str(tmp_path / "junk")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["run", *SMALL, "--steps", "5", "--out", str(tmp_path / "busy")]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_cli_run_end_to_end_prints_summary(tmp_path):
    code, out, err = cli("run", *SMALL, "--steps", "20", "--seeds", "0-2", "--out", tmp_path / "r")
    assert code == 0, err
    assert "memorized at" in out and "run folder:" in out
    assert len(json.loads((tmp_path / "r" / "summary.json").read_text())["members"]) == 3


def test_diverged_run_exits_3_and_records_it(tmp_path):
    code, out, err = cli("run", *SMALL, "--steps", "30", "--opt", "sgd", "--lr", "10000", "--out", tmp_path / "d")
    assert code == 3
    s = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert s["status"] == "diverged" and s["members"][0]["diverged_step"] is not None
    assert s["members"][0]["final_test_acc"] is None and "diverged at step" in out
