"""Refinement of the critical size (sweep/refine.py) and bracket-aware fits (sweep/scaling.py).

The driver tests replace the training of a job by a known rule (a member of seed s generalizes
iff n_train >= threshold(group) + s), so the true boundary is known and the tests take seconds;
the packing, folder, index and resume code they go through is the real sweep's.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from groklab import science
from groklab.errors import GroklabError
from groklab.sweep import execute as sweep_exec
from groklab.sweep.refine import REFINE_FILE, converged, next_sizes, run_refine
from groklab.sweep.scaling import critical_points, fit_mlogm, fit_power_logm
from groklab.sweep.spec import RefineConfig, load_spec
from groklab.train import record

THRESHOLD = {"Z7": 23, "Z11": 61}  # seed s generalizes iff n >= THRESHOLD + s; quorum 2 of 3 -> n* = THRESHOLD + 1


def spec(**refine) -> dict:
    return {"name": "r", "base": {"model": "li2", "width": 8, "steps": 20, "eval_every": 10},
            "grid": {"group": ["Z7", "Z11"], "crit_mult": [0.5, 1.2], "seed": [0, 1, 2]},
            "refine": {"tolerance": 0.05, **refine}}


def read_state(out):
    return record.read_json(out / REFINE_FILE, str(out))


class FakeTraining:
    """Stands in for run_job: results from THRESHOLD; optionally raises KeyboardInterrupt at call k."""

    def __init__(self, stop_at: int | None = None):
        self.calls, self.stop_at = 0, stop_at

    def __call__(self, out, job, flats, on_eval=None):
        from groklab.sweep.store import metrics_schema
        from groklab.tasks import make_task, split_size

        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        members = []
        for f in flats:
            task = make_task(f["group"])
            n = split_size(task, frac=f["frac"], n_train=f["n_train"], crit_mult=f["crit_mult"])
            ok = n >= THRESHOLD[f["group"]] + f["seed"]
            members.append({"seed": f["seed"], "status": "complete", "n_train": n, "final_train_acc": 1.0,
                            "final_test_acc": 1.0 if ok else 0.1, "final_train_loss": 0.0, "final_test_loss": 0.0,
                            "step_memorized": 10, "step_generalized": 20 if ok else None, "last_step": 20, "diverged_step": None})
        task = make_task(flats[0]["group"])
        summary = {"order": task.order, "critical_size": science.critical_size(task.order), "wall_s": 0.0, "members": members}
        return {"summary": summary, "metrics": metrics_schema().empty_table(), "n_pairs": task.n_pairs, "finished": "now"}


def test_next_sizes_bisect_in_log_n_expand_and_stop():
    rc = RefineConfig()
    mid = next_sizes({"bracket": [100, 400], "censored": None}, rc, 1000)
    assert mid == [200]  # geometric midpoint
    assert next_sizes({"bracket": [100, 400], "censored": None}, RefineConfig(points=3), 1000) == [141, 200, 283]
    assert next_sizes({"bracket": [100, 105], "censored": None}, rc, 1000) == []  # within 5%
    assert next_sizes({"bracket": [100, 106], "censored": None}, rc, 1000) == [103]
    assert next_sizes({"bracket": [10, 11], "censored": None}, rc, 1000) == []  # adjacent integers
    assert next_sizes({"bracket": [None, 40], "censored": "below"}, rc, 1000) == [20]
    assert next_sizes({"bracket": [600, None], "censored": "above"}, rc, 1000) == [1000]  # capped at all pairs
    assert next_sizes({"bracket": [1000, None], "censored": "above"}, rc, 1000) == []
    assert converged(100, 105, 0.05) and not converged(100, 106, 0.05) and not converged(None, 5, 0.05)


def test_refine_finds_the_known_boundary_to_the_tolerance(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_exec, "run_job", FakeTraining())
    res = run_refine(spec(), tmp_path / "r", workers=1)
    state = read_state(tmp_path / "r")
    assert state["finished"] is True
    for g, thr in THRESHOLD.items():
        lo, hi = state["brackets"][g]["bracket"]
        assert lo < thr + 1 <= hi, (g, lo, hi)
        assert hi <= 1.05 * lo or hi - lo <= 1
        assert state["brackets"][g]["converged"] and state["brackets"][g]["monotone"]
    # Z11: [36, 87] (0.5, 1.2 x n_c) down to [61, 62] takes about log2(87 - 36) ~ 6 bisections
    assert 4 <= len(state["rounds"]) <= 8
    pts = {p["group"]: p for p in res.fit["points"]}
    assert pts["Z11"]["bracket"] == state["brackets"]["Z11"]["bracket"]
    # each round is one batch of members: 3 seeds of each group still open
    for r in state["rounds"]:
        assert all(len(s) == 1 for s in r["sizes"].values())



def test_cli_sweep_runs_the_refinement_and_status_shows_the_brackets(tmp_path, monkeypatch, capsys):
    import yaml

    from groklab.cli import main as cli_main

    monkeypatch.setattr(sweep_exec, "run_job", FakeTraining())
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(spec(groups=["Z7"])))
    assert cli_main(["sweep", str(path), "--out", str(tmp_path / "r"), "--workers", "1", "--quiet"]) == 0
    lo, hi = read_state(tmp_path / "r")["brackets"]["Z7"]["bracket"]
    assert (lo, hi) == (23, 24)  # seeds 0, 1 of 3 generalize from 24 = THRESHOLD + 1 on
    capsys.readouterr()
    assert cli_main(["sweep", "--status", str(tmp_path / "r")]) == 0
    assert "Z7: n* in [23, 24]" in capsys.readouterr().out
    (tmp_path / "r" / "fit.json").unlink()
    assert cli_main(["sweep", "--analyze", str(tmp_path / "r")]) == 0  # fit.json again from the index alone
    assert "[23, 24]" in capsys.readouterr().out and (tmp_path / "r" / "fit.json").exists()
    # two folders of one recipe, a group each: one joint fit over both (written with --out)
    for g in ("Z7", "Z11"):
        sp = spec()
        sp["grid"]["group"] = [g]
        (tmp_path / f"{g}.yaml").write_text(yaml.safe_dump(sp))
        assert cli_main(["sweep", str(tmp_path / f"{g}.yaml"), "--out", str(tmp_path / g), "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert cli_main(["sweep", "--analyze", str(tmp_path / "Z7"), str(tmp_path / "Z11"), "--out", str(tmp_path / "joint")]) == 0
    text = capsys.readouterr().out
    assert "[23, 24]" in text and "[61, 63]" in text and f"Z11 ({tmp_path / 'Z11'})" in text
    assert [p["group"] for p in json.loads((tmp_path / "joint" / "fit.json").read_text())["points"]] == ["Z7", "Z11"]
    assert (tmp_path / "joint" / "phase.png").stat().st_size > 10_000
    assert cli_main(["sweep", "--analyze", str(tmp_path / "Z7"), str(tmp_path / "Z7")]) != 0
    assert "is given twice" in capsys.readouterr().err
    assert cli_main(["sweep", "--analyze", str(tmp_path / "r"), str(tmp_path / "Z7")]) != 0
    assert "group Z7 is in two sweeps" in capsys.readouterr().err


def test_refine_resumes_after_a_kill_mid_round_with_the_same_rounds(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_exec, "run_job", FakeTraining())
    run_refine(spec(), tmp_path / "a", workers=1)
    ref = read_state(tmp_path / "a")
    monkeypatch.setattr(sweep_exec, "run_job", FakeTraining(stop_at=7))  # round 0 has 4 jobs: dies inside round 2
    with pytest.raises(KeyboardInterrupt):
        run_refine(spec(), tmp_path / "b", workers=1)
    part = read_state(tmp_path / "b")
    assert 1 <= len(part["rounds"]) < len(ref["rounds"]) and part["finished"] is False
    monkeypatch.setattr(sweep_exec, "run_job", FakeTraining())
    res = run_refine(spec(), tmp_path / "b", workers=1)
    again = read_state(tmp_path / "b")
    assert [r["sizes"] for r in again["rounds"]] == [r["sizes"] for r in ref["rounds"]]
    assert again["brackets"] == ref["brackets"]
    ids = res.index.column("member_id").to_pylist()
    assert len(ids) == len(set(ids))  # every member once


def test_refine_starts_a_group_without_members_and_expands_open_brackets(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_exec, "run_job", FakeTraining())
    s = spec(groups=["Z7", "Z11"], start=[0.1, 0.2])  # Z11 starts far below its boundary: all fail, expand upward
    s["grid"] = {"group": ["Z7"], "crit_mult": [0.5, 1.2], "seed": [0, 1, 2]}
    run_refine(s, tmp_path / "r", workers=1)
    state = read_state(tmp_path / "r")
    assert sorted(state["rounds"][0]["sizes"]["Z11"]) == [round(m * science.critical_size(11)) for m in (0.1, 0.2)]
    lo, hi = state["brackets"]["Z11"]["bracket"]
    assert lo < THRESHOLD["Z11"] + 1 <= hi and state["brackets"]["Z11"]["converged"]


def test_refine_spec_errors_name_the_setting():
    with pytest.raises(GroklabError, match=r"refine\.tolerance -0\.1: must be > 0"):
        load_spec(spec(tolerance=-0.1))
    with pytest.raises(GroklabError, match=r"refine\.tolerans.*did you mean tolerance"):
        load_spec({**spec(), "refine": {"tolerans": 0.1}})
    s = spec()
    s["grid"]["lr"] = [1e-3, 1e-2]
    with pytest.raises(GroklabError, match=r"vary lr .*one recipe"):
        load_spec(s)
    with pytest.raises(GroklabError, match=r"refine\.groups"):
        load_spec(spec(groups=["Q7x"]))
    with pytest.raises(GroklabError, match="has no refine: section"):
        run_refine({k: v for k, v in spec().items() if k != "refine"}, "/nonexistent/never")


def test_monotone_flag_marks_a_later_failure():
    idx = {"member_id": [str(i) for i in range(6)], "group": ["Z7"] * 6, "order": [7] * 6, "critical_size": [37.4] * 6,
           "n_train": [10, 10, 20, 20, 30, 30], "final_test_acc": [0.1, 0.1, 1.0, 1.0, 0.1, 0.1]}
    (p,) = critical_points(idx)
    assert p["bracket"] == [10.0, 20.0] and p["monotone"] is False
    idx["final_test_acc"] = [0.1, 0.1, 1.0, 1.0, 1.0, 1.0]
    (p,) = critical_points(idx)
    assert p["monotone"] is True


M = np.array([23.0, 31, 41, 47, 59, 71])
N = 3.0 * M * np.log(M)  # exactly on n = 3 M ln M


def test_bracket_intervals_contain_the_truth_and_widen_with_the_brackets():
    narrow = fit_mlogm(M, N, N / 1.01, N * 1.01)
    wide = fit_mlogm(M, N, N / 1.25, N * 1.25)
    for f in (narrow, wide):
        assert f["c_ci95"][0] < 3.0 < f["c_ci95"][1]
    assert wide["c_ci95"][1] - wide["c_ci95"][0] > 3 * (narrow["c_ci95"][1] - narrow["c_ci95"][0])
    # no resolution: the exact line has no residual, so the OLS interval is a point; the brackets' is not
    assert narrow["c_ci95_ols"][1] - narrow["c_ci95_ols"][0] < 1e-9
    # within [3/1.25, 3*1.25]: the bracket is the most one point can move
    assert 3 / 1.25 < wide["c_ci95"][0] and wide["c_ci95"][1] < 3 * 1.25
    pl = fit_power_logm(M, N, N / 1.25, N * 1.25)
    assert pl["alpha_ci95"][0] < 1.0 < pl["alpha_ci95"][1] and pl["alpha_ci95"][1] - pl["alpha_ci95"][0] > 0.1
    # exact laws through every bracket: c in [3/1.25, 3*1.25]; alpha: tilting the line about M = sqrt(23*71)
    assert np.allclose(wide["c_range"], [3 / 1.25, 3 * 1.25])
    half = 2 * math.log(1.25) / math.log(71 / 23)  # the steepest line from (23, n/1.25) to (71, n*1.25)
    assert np.allclose(pl["alpha_range"], [1 - half, 1 + half])
    # brackets that no single law passes through: none
    bent = fit_mlogm(M[:2], N[:2] * [1, 2], N[:2] * [1, 2] / 1.1, N[:2] * [1, 2] * 1.1)
    assert bent["c_range"] is None


def test_bracket_intervals_match_ols_when_the_brackets_are_points():
    rng = np.random.default_rng(3)
    n = N * np.exp(rng.normal(0, 0.1, len(M)))
    f = fit_power_logm(M, n, n * (1 - 1e-9), n * (1 + 1e-9))
    for k in ("c", "alpha"):
        a, b = f[f"{k}_ci95"], f[f"{k}_ci95_ols"]
        scale = math.log(b[1] / b[0]) if k == "c" else b[1] - b[0]
        diff = max(abs(math.log(a[0] / b[0])), abs(math.log(a[1] / b[1]))) if k == "c" else max(abs(a[0] - b[0]), abs(a[1] - b[1]))
        assert diff < 0.06 * scale, (k, a, b)  # Monte Carlo (4000 draws) vs the Student-t formula
