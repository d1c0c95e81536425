"""Sweeps on a real Ray cluster without a shared filesystem (issue 15).

A "cluster" on this machine: a head node (no CPUs, so it runs no jobs) and a worker node, each
started with `ray start` in its own temporary folder, with token authentication on (the setup the
README describes). The driver is the real CLI in a subprocess connecting by address. The worker
node's Python processes cannot touch the driver's sweep folder: tests/sweep/ray_guard's
sitecustomize refuses and logs any open/mkdir/rename/remove under it. The jobs' checkpoints go to
a separate --storage folder. Skipped with the reason where Ray cannot start.

The cluster's processes are stopped by their pids (the ones whose command line names this test's
temporary folders, and their children), never with `ray stop`, which would stop every Ray on the
machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from groklab import sweep
from groklab.train import record

ROOT = Path(__file__).resolve().parents[2]
GUARD = Path(__file__).resolve().parent / "ray_guard"
RAY = Path(sys.executable).parent / "ray"
SPEC = {"name": "cluster", "base": {"steps": 60, "eval_every": 10, "ckpt_every": 20, "lr": 1e-2},
        "grid": {"group": ["Z5", "Z7"], "width": [8], "frac": [0.4, 0.6], "seed": [0, 1]},
        "execution": {"checkpoint_s": 0}}  # 8 members in 2 jobs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_of(marks: list[str]) -> list[int]:
    """Processes whose command line names one of `marks` (our temp folders), and their descendants."""
    procs = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            procs[int(d.name)] = (ppid, cmd)
    ours = {pid for pid, (_, cmd) in procs.items() if any(m in cmd for m in marks)}
    grew = True
    while grew:
        kids = {pid for pid, (ppid, _) in procs.items() if ppid in ours} - ours
        grew = bool(kids)
        ours |= kids
    return sorted(ours - {os.getpid()})


class Cluster:
    def __init__(self, base: Path):
        self.base = base
        self.head_tmp = Path(tempfile.mkdtemp(prefix="glrh", dir="/tmp"))  # short: Ray's socket paths have a length limit
        self.worker_tmp = Path(tempfile.mkdtemp(prefix="glrw", dir="/tmp"))
        self.forbid_log = base / "forbidden.log"
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = secrets.token_hex(16)
        common = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "OMP_NUM_THREADS": "1",
                  "RAY_USAGE_STATS_ENABLED": "0"}
        self.driver_env = {**os.environ, **common, "PYTHONPATH": str(ROOT / "src")}
        self.head_env = {**self.driver_env}
        self.worker_env = {**os.environ, **common, "PYTHONPATH": f"{GUARD}{os.pathsep}{ROOT / 'src'}",
                           "GROKLAB_TEST_FORBID": str(base / "driver"), "GROKLAB_TEST_FORBID_LOG": str(self.forbid_log)}

    def start(self) -> None:
        head = [str(RAY), "start", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1", "--num-cpus=0",
                f"--temp-dir={self.head_tmp}", "--include-dashboard=false", "--disable-usage-stats",
                "--object-store-memory=100000000"]
        worker = [str(RAY), "start", f"--address={self.address}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                  f"--temp-dir={self.worker_tmp}", "--disable-usage-stats", "--object-store-memory=100000000"]
        for cmd, env, cwd in ((head, self.head_env, self.head_tmp), (worker, self.worker_env, self.worker_tmp)):
            p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
            if p.returncode != 0:
                last = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"`{' '.join(cmd[:3])}` failed: {last[0]}")

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = _pids_of([str(self.head_tmp), str(self.worker_tmp)])
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if pids and sig == signal.SIGTERM:
                time.sleep(2)
        shutil.rmtree(self.head_tmp, ignore_errors=True)
        shutil.rmtree(self.worker_tmp, ignore_errors=True)

    def sweep_cmd(self, spec: Path, out: Path, storage: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "groklab.cli", "sweep", str(spec), "--out", str(out), "--executor", "ray",
                "--ray-address", self.address, "--storage", str(storage), "--quiet", *extra]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not RAY.exists():
        pytest.skip(f"Ray's `ray` command is not installed next to {sys.executable} (pip install 'groklab[ray]')")
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        c.stop()
        pytest.skip(f"a local Ray cluster could not start here: {e}")
    yield c
    c.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same spec on the local executor, one job at a time in this process."""
    out = tmp_path_factory.mktemp("ref") / "ref"
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sweep.run_sweep(SPEC, out, workers=1, analyze=False)
    finally:
        torch.set_num_threads(old)
    return out


def _frame(out: Path):
    df = pq.read_table(out / "index.parquet").to_pandas().drop(columns=["wall_s", "finished"])
    return df.sort_values("member_id").reset_index(drop=True)


def _metrics(out: Path):
    m = pq.read_table(out / "metrics").to_pandas()
    return m.sort_values(["member_id", "step"]).reset_index(drop=True)


def test_workers_never_touch_the_driver_folder_and_the_folder_is_complete(cluster, reference):
    base = cluster.base
    spec = base / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out, storage = base / "driver" / "sweep", base / "storage"
    p = subprocess.run(cluster.sweep_cmd(spec, out, storage), env=cluster.driver_env, cwd=base,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "Token authentication" not in p.stderr  # the driver connects with the cluster's token, silently
    assert not cluster.forbid_log.exists(), cluster.forbid_log.read_text()  # no worker tried the sweep folder
    assert not (out / "jobs").exists()  # checkpoints and progress went to --storage only
    assert _frame(out).equals(_frame(reference)) and _metrics(out).equals(_metrics(reference))
    assert not list(storage.glob("*/checkpoint.pt"))  # finished jobs' checkpoints are dropped


def test_a_worker_killed_mid_job_is_retried_from_its_checkpoint_and_each_member_is_written_once(cluster):
    base = cluster.base / "kill"
    base.mkdir()
    # Long enough that a quiet machine cannot finish a job between two polls (1000 steps could).
    spec_d = {**SPEC, "base": {**SPEC["base"], "steps": 6000, "eval_every": 50, "ckpt_every": 100}}
    spec = base / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_d))
    out, storage = cluster.base / "driver" / "killed", base / "storage"
    proc = subprocess.Popen(cluster.sweep_cmd(spec, out, storage), env=cluster.driver_env, cwd=base,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None:  # a job that has a checkpoint and is still running: kill its worker
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no job checkpointed in 300 s"
            for ck in storage.glob("*/checkpoint.pt"):
                prog = ck.parent / "progress.json"
                try:
                    r = record.read_json(prog, "progress")
                except Exception:
                    continue
                if 100 <= r["step"] < r["steps"] - 300:
                    os.kill(r["pid"], signal.SIGKILL)
                    killed = (ck.parent.name, r["step"])
                    break
            time.sleep(0.05)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err  # retried by Ray, not failed
    df = pq.read_table(out / "index.parquet").to_pandas()
    assert len(df) == 8 and df.member_id.is_unique  # every member exactly once
    m = pq.read_table(out / "metrics").to_pandas()
    assert not m.duplicated(["member_id", "step"]).any()
    killed_members = record.read_json(out / "plan.json", "plan")
    members = next(j["members"] for j in killed_members["jobs"] if j["id"] == killed[0])
    assert set(members) <= set(df.member_id)
    # the retried job resumed from a checkpoint (not from step 0): its result says so in the log line
    assert f"job {killed[0]} resumed from step" in err, err


def test_the_guard_refuses_the_driver_folder_on_the_worker_node(cluster):
    """Negative control: a task that does try to write the sweep folder is refused and logged, so the
    first test's empty log means something."""
    target = cluster.base / "driver" / "probe.txt"
    code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False)\n"
            "def f(p):\n    open(p, 'w').write('x')\n"
            "try:\n    ray.get(ray.remote(num_cpus=1, max_retries=0)(f).remote(sys.argv[2]))\nexcept Exception as e:\n"
            "    print('refused' if 'test guard' in str(e) else 'other: ' + str(e)[:300])\nelse:\n    print('written')\n")
    p = subprocess.run([sys.executable, "-c", code, cluster.address, str(target)], env=cluster.driver_env,
                       capture_output=True, text=True, timeout=300)
    assert p.stdout.strip().splitlines()[-1] == "refused", p.stdout + p.stderr
    assert not target.exists() and str(target) in cluster.forbid_log.read_text()
    cluster.forbid_log.unlink()
