"""The paper's snap-time prediction (Theorem 4, Eq. 14 of arXiv 2305.16380) and its comparison with the grid."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import torch

from groklab.attention.experiments import snap_grid
from groklab.attention.scan_snap import snap_time
from groklab.attention.snap_theory import compare, fit_constant, loglog_slope, transition_time


def test_transition_time_is_theorem_4_by_hand():
    # t0 ~ 2 K ln M / eta_Y; K = 2 next tokens, M = 34 (the Fig. 4 vocabulary): 4 * ln 34 = 14.10544...
    assert abs(float(transition_time(1.0, 2, 34)) - 4 * 3.5263605246161616) < 1e-12
    t = transition_time([0.5, 1.0, 2.0, 10.0], 2, 34)
    assert np.all(np.diff(t) < 0)                                   # a faster decoder snaps earlier
    assert abs(t[0] / t[3] - 20.0) < 1e-12                          # only through eta_Y, as 1/eta_Y
    assert abs(float(transition_time(3.0, 6, 101, c=0.5)) - 0.5 * 6 * math.log(101) / 3.0) < 1e-12


def test_fit_recovers_the_constant_and_the_slope():
    lr_y = np.array([0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
    x = transition_time(lr_y, 2, 33, c=1.0)
    f = fit_constant(0.3 * x, x)
    assert abs(f["c"] - 0.3) < 1e-12 and abs(f["spread_factor"] - 1.0) < 1e-12
    assert abs(loglog_slope(0.3 * x, lr_y) + 1.0) < 1e-12
    # negative control: a snap time that ignores eta_Y has slope 0, and c scatters by the eta_Y range
    flat = np.full_like(x, 40.0)
    assert abs(loglog_slope(flat, lr_y)) < 1e-12
    f = fit_constant(flat, x)
    assert abs(f["c_max"] / f["c_min"] - 60.0) < 1e-9 and f["spread_factor"] > 3


def test_compare_uses_K_M_per_panel_and_skips_never_snapped():
    rows = [{"num_last": 1, "lr_z": 1.0, "lr_y_multi_on_z": r, "snap_mean": 7.0 / r} for r in (1.0, 2.0, 10.0)]
    rows.append({"num_last": 1, "lr_z": 1.0, "lr_y_multi_on_z": 5.0, "snap_mean": None})
    th = compare(rows, {1: (2, 33)})
    assert th["n"] == 3 and abs(th["loglog_slope_vs_eta_y"]["1"] + 1) < 1e-12
    assert abs(th["fit"]["c"] - 7.0 / (2 * math.log(33))) < 1e-12
    assert compare(rows, {1: (2, 33)}, min_ratio=5.0) == {"n": 1}   # too few settings to fit


def test_small_grid_snap_falls_with_eta_y_far_slower_than_the_paper(tmp_path):
    out = tmp_path / "g"
    s = snap_grid(out, num_lasts=(1,), seeds=(1, 2, 3), lr_z=(1.0,), ratios=(1.0, 10.0))
    th = s["snap_theory"]["all"]
    assert s["snap_theory"]["K_M"] == {"1": [2, 33]}                # K = 2 next tokens, M = 10 + 20 + 1 + 2
    rows = s["table"]
    assert abs(rows[0]["snap_t0_paper"] - 4 * math.log(33)) < 1e-9
    # the fitted c is the geometric mean of measured / (K ln M / eta_Y): predictions straddle the data,
    # too late for the slow decoder (ratio 1) and too early for the fast one (ratio 10)
    ratios = [r["snap_pred"] / r["snap_mean"] for r in rows]
    assert abs(math.prod(ratios) - 1.0) < 1e-9 and ratios[0] > 1 > ratios[1]
    # the measured snap comes earlier with a faster decoder, but nowhere near 1/eta_Y (slope -1)
    assert -0.5 < th["loglog_slope_vs_eta_y"]["1"] < 0
    # plumbing: the table's snap mean/std are the snap times of the dz series written to metrics.parquet
    m = pd.read_parquet(out / "metrics.parquet")
    dz = torch.tensor(m.pivot(index="iteration", columns="member", values="dz").to_numpy())
    snap = snap_time(dz, 0.05).double().view(3, 2)                  # (seeds, ratios)
    for j, r in enumerate(rows):
        assert abs(float(snap[:, j].mean()) - r["snap_mean"]) < 1e-9
        assert abs(float(snap[:, j].std()) - r["snap_std"]) < 1e-9
    assert "snap_theory" in json.loads((out / "summary.json").read_text())
