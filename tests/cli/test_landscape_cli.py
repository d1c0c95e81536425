"""`groklab landscape` end to end: files, the per-size table, the crossing, error cases."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from groklab.cli.main import main


def test_landscape_z23_small(tmp_path, capsys):
    out = tmp_path / "z23"
    argv = ["landscape", "--group", "Z23", "--sizes", "0.25,1,2.5,3", "--subsets", "2", "--random", "12",
            "--steps", "500", "--n-star", "198,248", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "n_c = 198.2" in text and "crossing n×" in text and "measured n* [198, 248]" in text
    meta = json.loads((out / "landscape.json").read_text())
    assert meta["config"]["mults"] == [0.25, 1.0, 2.5] and meta["config"]["dropped_mults"] == [3.0]  # 3 n_c > 529
    assert [s["n"] for s in meta["sizes"]] == [50, 198, 495]
    small, full = meta["sizes"][0], meta["sizes"][-1]
    assert small["E_max_generalizing"]["mean"] is None and small["share_generalizing"]["mean"] == 0.0
    assert full["share_generalizing"]["mean"] == 1.0 and full["E_max_memorizing"]["mean"] is None
    assert meta["crossing"]["bracket"] == [198.0, 495.0] and meta["crossing_vs_n_star"] == "overlaps"  # coarse grid
    t = pq.read_table(out / "maxima.parquet").to_pydict()
    K = 12 + 11 * 2 + 8  # random + 2 per frequency block + Thm 5 points
    assert len(t["E"]) == 3 * 2 * K and set(t["start"]) == {"random", "irrep", "memorization"}
    assert set(t["kind"]) <= {"generalizing", "memorizing", "mixed"}
    assert (out / "landscape.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "landscape.html").read_text()
    assert "<div id=\"landscape\"" in html and "https://" not in html.split("<body>")[1].split("<script")[0]


def test_landscape_errors(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["landscape", "--group", "Z23", "--sizes", "3,4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--sizes 3.0,4.0: every size is ≥ all 529 pairs of Z23" in err and "below 2.67" in err
    assert main(["landscape", "--group", "expr:x**2+y**2 mod 7", "--out", str(out)]) == 2
    assert "not a group" in capsys.readouterr().err
    assert main(["landscape", "--group", "Z23", "--act", "tanh", "--out", str(out)]) == 2
    assert "act" in capsys.readouterr().err
    assert main(["landscape", "--group", "Z23", "--n-star", "5", "--out", str(out)]) == 2
    assert "--n-star '5': must be two numbers" in capsys.readouterr().err
    assert not out.exists()
