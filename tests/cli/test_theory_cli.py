"""`groklab theory` and `groklab analyze` end to end (groklab.theory.cli), error cases included."""

from __future__ import annotations

import json

import pytest
import torch

from groklab import RunConfig, run

torch.set_num_threads(1)


def main(argv: list[str]) -> int:
    """The real CLI."""
    from groklab.cli import main as cli_main

    return cli_main(argv)


@pytest.mark.parametrize("group, M, n_blocks", [("Z23", 23, 12), ("S4", 24, 5), ("Q8", 8, 5)])
def test_theory_json(group, M, n_blocks, capsys):
    assert main(["theory", "--group", group, "--units", "16", "--steps", "300", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["order"] == M and sum(d * d for d in r["dims"]) == M == r["sum_dim_squared"]
    assert len(r["blocks"]) == n_blocks and r["n_features"] == n_blocks - 1
    dyn = r["dynamics"]
    assert sum(dyn["counts"].values()) + dyn["unassigned"] == 16 and dyn["all_pairs"]
    # with all pairs and σ = x², every start ends on one block, at that block's E* (Li2 Thm 2)
    assert dyn["unassigned"] == 0 and dyn["counts"][r["blocks"][0]["name"]] == 0
    for b in r["blocks"][1:]:
        if b["name"] in dyn["energy_mean"]:
            assert dyn["energy_mean"][b["name"]] == pytest.approx(b["energy_max_theory"], rel=1e-3)


def test_theory_text_and_subset(capsys):
    assert main(["theory", "--group", "Z23"]) == 0
    out = capsys.readouterr().out
    assert "n_c = 198.2 pairs = 0.375" in out and "K = 2M − 2 = 44" in out and "features reached: 11 of 11" in out
    assert main(["theory", "--group", "Z23", "--crit-mult", "2", "--units", "8", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert not r["dynamics"]["all_pairs"] and r["dynamics"]["n_pairs"] == 396


@pytest.mark.parametrize("argv, msg", [
    (["theory", "--group", "Z1x"], "--group 'Z1x': expected one of"),
    (["theory", "--group", "expr:x/y mod 7"], "not a group"),
    (["theory", "--group", "Z7", "--units", "0"], "--units 0: must be >= 1"),
    (["theory", "--group", "Z7", "--act", "tanh"], "--act 'tanh': expected one of sqr"),
    (["theory", "--group", "Z7", "--frac", "0.5", "--n-train", "3"], "not allowed with argument --frac"),
    (["analyze", "/nonexistent/run"], "no such run folder"),
    (["analyze", "."], "not a groklab run folder"),
])
def test_errors_are_one_line(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_analyze_cli(tmp_path, capsys):
    d = tmp_path / "r"
    run(RunConfig.from_flat({"group": "Z11", "frac": 0.6, "steps": 120, "width": 24, "seeds": (0, 1)}), d)
    assert main(["analyze", str(d), "--every", "40", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "replayed" in out and ": exact;" in out and "member 1 (seed 1): features " in out
    assert (d / "analysis.parquet").exists()
    assert main(["analyze", str(d), "--every", "eval", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["replay"] == "exact" and r["rows"] == 2 * 13 and set(r["final"]) == {"0", "1"}
    assert main(["analyze", str(d), "--every", "7"]) == 2
    assert "--every 7: must be a multiple" in capsys.readouterr().err
