"""`groklab demo` end to end on a small stand-in for its two runs (the real ones take ~40 s idle)."""

from __future__ import annotations

import json

from groklab.cli import demo as demo_mod


def test_demo_writes_runs_curves_report_and_tells_the_li2_story(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_mod, "DEMO_RUNS", {
        # Z17 groks fully here at 80% (test accuracy 1.0, all 8 frequencies) and only memorizes at 15%.
        "grok": {"group": "Z17", "frac": 0.8, "width": 64, "lr": 5e-3, "steps": 300, "seeds": (0, 1)},
        "memorize": {"group": "Z17", "frac": 0.15, "width": 64, "lr": 5e-3, "steps": 300, "seeds": (0, 1)},
    })
    runs = demo_mod.demo(tmp_path / "d", quiet=True)
    for name in ("grok", "memorize"):
        folder = tmp_path / "d" / name
        assert (folder / "analysis.parquet").is_file() and not (folder / "INCOMPLETE").exists()
        s = json.loads((folder / "summary.json").read_text())
        assert s["stages"]["members"] and s["analysis"]["n_features"] == 8  # Z17: 8 frequencies
    assert (tmp_path / "d" / "curves.png").stat().st_size > 10_000 and (tmp_path / "d" / "report.html").is_file()
    assert min(m["final_test_acc"] for m in runs["grok"].summary["members"]) >= 0.99
    assert max(m["final_test_acc"] for m in runs["memorize"].summary["members"]) < 0.05
    grok, mem = demo_mod.li2_story(runs["grok"]), demo_mod.li2_story(runs["memorize"])
    assert grok.startswith("features generalizing, generalizing; stages (median over seeds) lazy 0–") and grok.endswith("of 8")
    assert mem.startswith("features memorizing, memorizing; stages (median over seeds) lazy 0–")
    assert "interactive" in grok and "interactive" not in mem  # no irreps to fill in a memorizing run
    # the grokking run's units hold more irreps than the memorizing run's (which hold none)
    def covered(r):
        return [m["evidence"]["irreps_covered"] for m in r.summary["stages"]["members"]]
    assert min(covered(runs["grok"])) > max(covered(runs["memorize"])) == 0
    out = capsys.readouterr().out
    assert "grok: features generalizing" in out and "memorize: features memorizing" in out
    assert "irreps (frequencies) covered at step 300" in out


def test_demo_prints_step_zero_as_zero_and_none_as_never():
    assert demo_mod._step(0) == "0" and demo_mod._step(None) == "never" and demo_mod._step(40) == "40"
