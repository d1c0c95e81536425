"""`groklab bench`: the figures are consistent with each other (no timing is asserted: speed is
measured by the bench, never by tests)."""

from __future__ import annotations

import json

import pytest

from groklab.bench import li2 as bench


def test_core_bench_figures_are_consistent(tmp_path):
    r = bench.run_bench(quick=True, device="cpu")
    z = r["li2_z97"]
    assert (z["M"], z["K"], z["n_train"]) == (97, 512, 2823)  # round(0.3 · 97²)
    assert z["useful_flops_per_step"] == 6 * 97 * 512 * 2823 == 841_208_832
    assert z["achieved_gflops"] == pytest.approx(z["useful_flops_per_step"] / z["step_ms"] / 1e6)
    assert z["ratio_to_peak"] == pytest.approx(z["achieved_gflops"] / z["peak_gflops"])
    ref = r["reference_loop"]
    assert ref["groklab_ms_per_step_incl_eval"] == pytest.approx(z["step_ms"] + z["eval_ms"] / 10)
    assert ref["speedup"] == pytest.approx(ref["step_ms"] / ref["groklab_ms_per_step_incl_eval"])
    e = r["ensemble_z47_k256_e8"]
    assert e["speedup"] == pytest.approx(e["sequential_s"] / e["ensemble_s"])
    json.dumps(r)  # --json writes exactly this


def test_every_extra_bench_is_registered_and_the_report_bench_runs():
    names = [n for n, _ in bench._extra_benches()]
    assert any(n.startswith("sweep") for n in names) and any(n.startswith("transformer") for n in names)
    assert "analysis overhead" in names and "report of a run" in names
    rep = bench.bench_report(quick=True)
    assert rep["steps"] == 600 and rep["seconds"] > 0 and rep["target"] == "< 5 s"


def test_late_state_bench_really_plants_subnormals_and_reports_ratios():
    """The late-training state must hold subnormals as bits (so the flush cannot hide the planting),
    and the figures must be ratios of what was timed."""
    from groklab.bench.numerics import DEAD_SHARE, late_step_ratio

    r = late_step_ratio(steps=1, width=16)
    assert abs(r["subnormal_share_after_kill"] - DEAD_SHARE) < 0.05
    assert r["ratio"] == pytest.approx(r["late_ms"] / r["fresh_ms"])
    assert r["flush_subnormals"] is True
    names = [n for n, _ in bench._extra_benches()]
    assert any("subnormal" in n for n in names)
