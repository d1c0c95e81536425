"""`groklab report` on the attention room's run folders: each kind renders a page with its PNGs;
a folder that did not finish, or of an unknown kind, is an error with one line."""

from __future__ import annotations

import json

import pytest

from groklab.attention.experiments import joma_linear_run, joma_toy_run, snap_fig4, snap_grid
from groklab.attention.experiments_hier import joma_hier_run
from groklab.attention.hier import HierConfig
from groklab.attention.joma import LinearConfig
from groklab.errors import GroklabError
from groklab.report import report

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_attention_kind_renders(tmp_path):
    made = {
        "fig4": (lambda p: snap_fig4(p), ["fig4.png"], 'id="loss-vs-log"'),
        "grid": (lambda p: snap_grid(p, num_lasts=(1,), seeds=(1, 2), lr_z=(1.0,), ratios=(1.0, 2.0), niter=20),
                 ["fig6.png", "snap_time.png"], 'id="ent-1-1-2"'),
        "toy": (lambda p: joma_toy_run(p), ["joma_toy.png"], "min_entropy"),
        "linear": (lambda p: joma_linear_run(p, LinearConfig(niter=40)), ["joma_linear.png"], "corr_final_mean"),
        "hier": (lambda p: joma_hier_run(p, HierConfig(d=16, niter=20, eval_every=10, batchsize=16, eval_batch=32,
                                                       test_batch=64)), ["joma_hier.png"], "latent_corr_final"),
    }
    for name, (make, pngs, marker) in made.items():
        run = tmp_path / name
        make(run)
        html = report([run])
        text = html.read_text()
        assert html == run / "report.html" and marker in text, name
        for png in pngs:
            assert (run / png).read_bytes().startswith(PNG), (name, png)


def test_unfinished_and_unknown_attention_folders_are_errors(tmp_path):
    run = tmp_path / "toy"
    joma_toy_run(run)
    (run / "summary.json").unlink()
    with pytest.raises(GroklabError, match="no summary.json"):
        report([run])
    meta = json.loads((run / "config.json").read_text())
    meta["what"] = "snap.unknown"
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(GroklabError, match="unknown kind 'snap.unknown'"):
        report([run])
