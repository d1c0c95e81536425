"""`groklab analyze` on the peer models: Nanda's progress measures over training and the dated phases."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from groklab import RunConfig, run
from groklab.analysis import analyze_run
from groklab.analysis.phases import CIRCUIT_FRAC, member_phases
from groklab.cli import main
from groklab.errors import GroklabError


def test_phase_boundaries_follow_the_rule_exactly():
    # restricted loss 5 at step 0; the 10% level (0.5) is crossed between steps 300 (1.5) and 400 (0.25)
    r = member_phases([0, 100, 200, 300, 400, 500], [5.0, 4.0, 3.0, 1.5, 0.25, 0.1], 600, 80, 520)
    assert CIRCUIT_FRAC == 0.1 and r["t_circuit"] == 380
    assert r["stages"] == [{"name": "memorization", "start": 0, "end": 80},
                           {"name": "circuit formation", "start": 80, "end": 380},
                           {"name": "cleanup", "start": 380, "end": 520},
                           {"name": "generalized", "start": 520, "end": 600}]
    # the circuit never forms: no cleanup, circuit formation runs to the end
    r = member_phases([0, 100, 200], [5.0, 4.0, 3.0], 200, 50, None)
    assert [s["name"] for s in r["stages"]] == ["memorization", "circuit formation"] and r["t_circuit"] is None
    # never memorized: no phases, and a note says why
    assert member_phases([0, 100], [5.0, 0.1], 100, None, None)["stages"] == []


def test_transformer_run_gets_progress_measures_and_phases(tmp_path):
    cfg = RunConfig.from_flat({"group": "Z17", "model": "transformer", "d_model": 32, "n_heads": 4, "d_mlp": 64,
                               "loss": "ce", "opt": "adamw", "lr": 1e-2, "wd": 1.0, "beta2": 0.98, "frac": 0.7,
                               "steps": 200, "eval_every": 10, "seeds": (0, 1)})
    r = run(cfg, tmp_path / "t")
    res = analyze_run(tmp_path / "t", every=50)
    assert res.replay == "exact"
    t = pq.read_table(tmp_path / "t" / "analysis.parquet").to_pandas()
    assert {"restricted_loss", "excluded_loss", "gini", "sum_sq_weights", "n_key_freqs"} <= set(t.columns)
    spec = t[[f"spectrum_freq {k}" for k in range(1, 9)]].to_numpy()
    np.testing.assert_allclose(spec.sum(1), 1.0, rtol=1e-9)  # shares of the embeddings' Fourier norm
    assert sorted(t.step.unique())[:2] == [0, 10] and t.step.max() == 200 and sorted(t.member.unique()) == [0, 1]
    s = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert s["analysis"]["kind"] == "progress" and len(s["analysis"]["final_key_freqs"]) == 2
    for m, info in zip(s["stages"]["members"], r.summary["members"]):
        st = m["stages"]
        assert st[0] == {"name": "memorization", "start": 0, "end": info["step_memorized"]}
        assert all(a["end"] == b["start"] for a, b in zip(st, st[1:])) and st[-1]["end"] == 200


def test_progress_measures_need_modular_addition(tmp_path, capsys):
    run(RunConfig.from_flat({"group": "D4", "model": "embed-mlp", "width": 16, "frac": 0.5, "steps": 10}), tmp_path / "d")
    with pytest.raises(GroklabError, match="--group D4: the embed-mlp analysis is Nanda"):
        analyze_run(tmp_path / "d")
    assert main(["analyze", str(tmp_path / "d")]) == 2
    assert "(a + b) mod M" in capsys.readouterr().err
    assert not (tmp_path / "d" / "analysis.parquet").exists()
