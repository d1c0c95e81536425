"""The scaling-law analysis: critical sizes from an index, fits that recover known constants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from groklab import science
from groklab.sweep import scaling

MS = [23, 31, 41, 47, 59, 71, 83, 97]


def synthetic_index(n_star, mults=(0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0), seeds=3):
    """Members of Z_M at n = mult * n_c(M); a member generalizes iff n >= n*(M) (seed s shifts
    its threshold by a factor (1 + 0.01 s), so the quorum of 2 of 3 seeds sits near n*)."""
    cols = {k: [] for k in ("member_id", "group", "order", "n_train", "final_test_acc", "critical_size", "seed", "lr")}
    for M in MS:
        nc = science.critical_size(M)
        for c in mults:
            n = round(c * nc)
            for s in range(seeds):
                cols["member_id"].append(f"{M}-{c}-{s}")
                cols["group"].append(f"Z{M}")
                cols["order"].append(M)
                cols["n_train"].append(n)
                cols["final_test_acc"].append(1.0 if n >= n_star(M) * (1 + 0.01 * s) else 0.02)
                cols["critical_size"].append(nc)
                cols["seed"].append(s)
                cols["lr"].append(1e-3)
    return cols


def test_critical_points_bracket_and_interpolate():
    pts = scaling.critical_points(synthetic_index(lambda M: 1.6 * science.critical_size(M)))
    assert [p["order"] for p in pts] == MS
    for p in pts:
        nc = science.critical_size(p["order"])
        lo, hi = p["bracket"]
        assert lo == round(1.5 * nc) and hi == round(2.0 * nc)  # first size with >= half the seeds
        assert p["p_generalized"][:5] == [0, 0, 0, 0, 0] and p["p_generalized"][5] == 1
        assert lo < p["n_crit"] < hi
        # p jumps 0 -> 1 between the grid points: the log-midpoint
        assert p["n_crit"] == pytest.approx(math.sqrt(lo * hi))
        assert p["ratio_li2"] == pytest.approx(p["n_crit"] / nc)


def test_censored_groups_are_left_out():
    pts = scaling.critical_points(synthetic_index(lambda M: 1e9 if M < 30 else (0.1 * M if M > 90 else 2 * science.critical_size(M))))
    by = {p["order"]: p for p in pts}
    assert by[23]["censored"] == "above" and by[23]["n_crit"] is None
    assert by[97]["censored"] == "below" and by[97]["n_crit"] is None
    fit = scaling.fit_scaling(pts)
    assert fit["mlogm"]["points"] == len(MS) - 2


def test_fit_recovers_li2_constant():
    M = np.array(MS, float)
    n = 3.3 * M * np.log(M) * np.exp(0.02 * np.sin(M))  # known c, a little scatter
    f = scaling.fit_mlogm(M, n)
    assert f["c"] == pytest.approx(3.3, rel=0.02)
    lo, hi = f["c_ci95"]
    assert lo < 3.3 < hi and hi - lo < 0.2
    exact = scaling.fit_mlogm(M, 2.7482 * M * np.log(M))
    assert exact["c"] == pytest.approx(2.7482, rel=1e-12)


def test_fit_recovers_power_law():
    M = np.array(MS, float)
    n = 0.8 * M**1.4 * np.log(M) ** 0.5
    f = scaling.fit_power(M, n)
    assert (f["c"], f["alpha"], f["beta"]) == pytest.approx((0.8, 1.4, 0.5), rel=1e-9)
    noisy = scaling.fit_power(M, n * np.exp(0.03 * np.cos(3 * M)))
    assert noisy["alpha_ci95"][0] < 1.4 < noisy["alpha_ci95"][1]
    assert noisy["beta_ci95"][0] < 0.5 < noisy["beta_ci95"][1]
    assert noisy["corr_alpha_beta"] < -0.9  # ln M and ln ln M barely separate over 23..97


def test_fit_recovers_exponent_with_log_factor():
    M = np.array(MS, float)
    f = scaling.fit_power_logm(M, 1.9 * M**1.25 * np.log(M))
    assert (f["c"], f["alpha"]) == pytest.approx((1.9, 1.25), rel=1e-9)
    noisy = scaling.fit_power_logm(M, 1.9 * M**1.25 * np.log(M) * np.exp(0.03 * np.sin(2 * M)))
    lo, hi = noisy["alpha_ci95"]
    assert lo < 1.25 < hi and hi - lo < 0.3  # well determined, unlike the free (alpha, beta) fit


def test_analyze_end_to_end_from_synthetic_index(tmp_path):
    """n* = 4 M ln M exactly at grid points of a fine grid: the fit gives c ~ 4, fit.json and
    phase.png are written, and the printed table names each group."""
    mults = tuple(np.round(np.arange(0.5, 3.01, 0.05), 2))
    fit = scaling.analyze(synthetic_index(lambda M: 4 * M * math.log(M), mults=mults, seeds=3), tmp_path)
    assert fit["c"] == pytest.approx(4.0, rel=0.03)
    assert fit["li2_c"] == 2.7482
    assert (tmp_path / "fit.json").exists() and (tmp_path / "phase.png").stat().st_size > 20_000
    text = scaling.format_fit(fit)
    assert "Z97" in text and "c = 4" in text and "2.7482" in text


def _split(cols, keep):
    rows = [i for i, g in enumerate(cols["group"]) if keep(g)]
    return {k: [v[i] for i in rows] for k, v in cols.items()}


def test_joint_fit_of_two_folders_equals_the_fit_of_their_union():
    """Groups split over two sweeps of one recipe: the joint fit is the one-index fit; a group in
    both, or a recipe field that differs, is refused; a field one folder does not record is named."""
    from groklab.errors import GroklabError

    cols = synthetic_index(lambda M: 1.3 * science.critical_size(M))
    a, b = _split(cols, lambda g: int(g[1:]) < 50), _split(cols, lambda g: int(g[1:]) >= 50)
    joint = scaling.analyze_joint({"A": a, "B": b})
    whole = scaling.analyze(cols)
    assert [p["group"] for p in joint["points"]] == [f"Z{M}" for M in MS]
    assert [p["sweep"] for p in joint["points"]] == ["A"] * 4 + ["B"] * 4
    assert joint["c"] == pytest.approx(whole["c"], rel=1e-12)
    assert joint["power_logm"]["alpha"] == pytest.approx(whole["power_logm"]["alpha"], rel=1e-12)
    assert joint["unrecorded"] == {}
    with pytest.raises(GroklabError, match="group Z23 is in two sweeps"):
        scaling.analyze_joint({"A": a, "B": cols})
    b_lr = {**b, "lr": [2e-3] * len(b["lr"])}
    with pytest.raises(GroklabError, match=r"field lr differs between the sweeps \(A: 0.001, B: 0.002\)"):
        scaling.analyze_joint({"A": a, "B": b_lr})
    a_mixed = {**a, "lr": [1e-3, 2e-3] * (len(a["lr"]) // 2)}
    with pytest.raises(GroklabError, match="field lr varies inside the sweep"):
        scaling.analyze_joint({"A": a_mixed, "B": b})
    b_new = {**b, "init_scale": ["per-operand"] * len(b["lr"])}
    u = scaling.analyze_joint({"A": a, "B": b_new})["unrecorded"]
    assert u == {"init_scale": {"value": "per-operand", "recorded_by": ["B"], "not_recorded_by": ["A"]}}
