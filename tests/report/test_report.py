"""Reports: run, sweep and comparison pages; their numbers, their failure modes, and how they
behave in a real headless Chromium (scripts/ensure_chromium.sh installs it)."""

from __future__ import annotations

import json
import math
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from groklab.errors import GroklabError
from groklab.report import report
from groklab.report.common import fmt
from groklab.report.run import load_run, stage_spans
from groklab.science import critical_size

sys.path.insert(0, str(Path(__file__).parent))
import browser  # noqa: E402

NUMBERS = ("final_train_acc", "final_test_acc", "step_memorized", "step_generalized")

# ---------------------------------------------------------------------------------------------
# fixtures: synthetic but format-correct folders (docs/formats.md)


def write_run(d: Path, E: int = 2, steps: int = 3000, every: int = 10, M: int = 23, diverged: int | None = None,
              analysis: bool = False, weights: bool = True, stages=None) -> Path:
    """A run folder with sigmoid grokking curves: member e memorizes near 100+20e and generalizes
    near 800+150e. ``diverged``: member 0's loss goes non-finite after that step."""
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"task": {"group": f"Z{M}", "frac": 0.3}, "model": {"model": "li2", "width": 16, "act": "sqr"},
           "train": {"lr": 1e-3, "wd": 1e-4, "steps": steps, "seeds": list(range(E))}}
    (d / "config.json").write_text(json.dumps({"kind": "groklab.run", "version": 1, "groklab": "0.1.0", "config": cfg,
                                               "argv": ["groklab", "run", "--group", f"Z{M}"], "created": "2025-01-01T00:00:00"}))
    n = M * M
    n_train = int(0.3 * n)
    rng = np.random.default_rng(0)
    np.savez(d / "split.npz", train_idx=np.sort(np.stack([rng.permutation(n)[:n_train] for _ in range(E)]), axis=1),
             member_seed=np.arange(E))
    cols: dict[str, list] = {k: [] for k in ("step", "member", "seed", "train_loss", "train_acc", "test_loss", "test_acc",
                                             "w_norm", "v_norm")}
    members = []
    st = np.arange(0, steps + 1, every)
    for e in range(E):
        tr = 1 / (1 + np.exp(-(st - (100 + 20 * e)) / 20))
        te = 0.001 + 0.998 / (1 + np.exp(-(st - (800 + 150 * e)) / 80))
        tl, vl = np.exp(-st / 300) + 1e-3, np.exp(-np.maximum(st - 800, 0) / 300) + 1e-3
        if diverged is not None and e == 0:
            tl = np.where(st > diverged, np.inf, tl)
            te = np.where(st > diverged, 0.5, te)  # garbage after divergence: must not be shown
        cols["step"] += st.tolist()
        cols["member"] += [e] * len(st)
        cols["seed"] += [e] * len(st)
        for k, v in (("train_loss", tl), ("train_acc", tr), ("test_loss", vl), ("test_acc", te),
                     ("w_norm", 1 + st / 1000), ("v_norm", 2 - st / steps)):
            cols[k] += v.astype(float).tolist()
        ok = st <= diverged if diverged is not None and e == 0 else np.ones(len(st), bool)
        first = lambda mask: int(st[np.argmax(mask)]) if mask.any() else None  # noqa: E731
        members.append({"member": e, "seed": e, "status": "complete", "final_train_acc": float(tr[ok][-1]),
                        "final_test_acc": float(te[ok][-1]), "final_train_loss": float(tl[ok][-1]),
                        "final_test_loss": float(vl[ok][-1]), "step_memorized": first((tr >= 0.99) & ok),
                        "step_generalized": first((te >= 0.99) & ok), "diverged_step": None})
    if diverged is not None:
        members[0].update(status="diverged", diverged_step=diverged)
    pq.write_table(pa.table(cols), d / "metrics.parquet")
    summary = {"kind": "groklab.summary", "version": 1, "status": "diverged" if diverged is not None else "complete",
               "group": f"Z{M}", "order": M, "n_train": n_train, "n_test": n - n_train, "train_frac": n_train / n,
               "steps": steps, "steps_planned": steps, "wall_s": 1.25, "critical_size": critical_size(M),
               "critical_rule": "test", "members": members}
    if analysis:
        B = M // 2 + 1
        a: dict[str, list] = {k: [] for k in ("step", "member", "purity_mean", "irreps_covered", "energy_mean", "gf_norm", "spectrum")}
        for e in range(E):
            for s in range(0, steps + 1, 100):
                a["step"].append(s)
                a["member"].append(e)
                a["purity_mean"].append(min(1.0, 0.2 + s / steps))
                a["irreps_covered"].append(min(B - 1, s // 100))
                a["energy_mean"].append(1.0 + s)
                a["gf_norm"].append(math.exp(-s / 500))
                a["spectrum"].append(np.random.default_rng(s + e).random(B).tolist())
        pq.write_table(pa.table(a), d / "analysis.parquet")
        summary["stages"] = stages if stages is not None else {"lazy": [0, 150], "independent": [150, 800],
                                                               "interactive": [800, steps]}
    (d / "summary.json").write_text(json.dumps(summary))
    if weights:
        from safetensors.numpy import save_file

        K, m = 16, np.arange(M)
        W = np.zeros((E, K, 2 * M), np.float32)
        for k in range(K):  # unit k is a pure frequency 1 + k % (M // 2)
            f = 1 + k % (M // 2)
            W[:, k, :M], W[:, k, M:] = np.cos(2 * np.pi * f * m / M + k), np.cos(2 * np.pi * f * m / M - k)
        save_file({"W": W, "V": rng.standard_normal((E, M, K)).astype(np.float32)}, str(d / "weights.safetensors"),
                  metadata={"model": "li2", "step": str(steps)})
    return d


def write_sweep(d: Path, fit: bool = True, spec: bool = True, runs: int = 2) -> Path:
    """Three groups x crit_mult {0.5, 1, 1.5, 2} x 3 seeds; a member generalizes when
    crit_mult * (1 + 0.1 seed) > 1.2, so each group's measured critical crit_mult is 1.5."""
    d.mkdir(parents=True, exist_ok=True)
    if spec:
        (d / "spec.yaml").write_text("name: test\ngroups: [Z23, Z41, Z71]\ncrit_mult: [0.5, 1, 1.5, 2]\nseeds: 3\n")
    cols: dict[str, list] = {k: [] for k in ("group", "order", "crit_mult", "frac", "n_train", "seed", "final_test_acc",
                                             "step_generalized", "wall_s", "run_dir", "an_extra_column")}
    i = 0
    for g, M in (("Z23", 23), ("Z41", 41), ("Z71", 71)):
        for cm in (0.5, 1.0, 1.5, 2.0):
            for s in range(3):
                n = int(cm * critical_size(M))
                acc = 1.0 if cm * (1 + 0.1 * s) > 1.2 else 0.02 * s
                for k, v in (("group", g), ("order", M), ("crit_mult", cm), ("frac", n / M / M), ("n_train", n), ("seed", s),
                             ("final_test_acc", acc), ("step_generalized", 500 if acc > 0.99 else None), ("wall_s", 1.5),
                             ("run_dir", f"runs/m{i:03d}"), ("an_extra_column", "x")):
                    cols[k].append(v)
                if i < runs:
                    write_run(d / f"runs/m{i:03d}", E=1, M=M, steps=200, weights=False)
                i += 1
    pq.write_table(pa.table(cols), d / "index.parquet")
    if fit:  # the shape groklab.scaling.analyze writes
        def point(g, M, n_crit, censored=None):
            li2 = critical_size(M)
            return {"series": None, "group": g, "order": M, "li2_n": li2, "li2_frac": li2 / M**2, "sizes": [0.5 * li2, li2],
                    "p_generalized": [0.0, 1.0], "seeds": [3, 3], "n_crit": n_crit, "censored": censored,
                    "bracket": [0.5 * li2, None] if censored else [0.5 * li2, li2],
                    "frac_crit": n_crit / M**2 if n_crit else None, "ratio_li2": n_crit / li2 if n_crit else None}
        (d / "fit.json").write_text(json.dumps({
            "kind": "groklab.fit", "version": 1, "rule": "r", "threshold": 0.99, "quorum": 0.5, "li2_c": 2.7482, "c": 3.4,
            "c_ci95": [3.1, 3.7], "mlogm": {"form": "n = c * M * ln(M)", "c": 3.4, "c_ci95": [3.1, 3.7], "points": 2},
            "power_law": {"form": "n = c * M^alpha * ln(M)^beta", "c": 2.0, "alpha": 1.1, "beta": 0.9},
            "points": [point("Z23", 23, 250.0), point("Z41", 41, None, "above"), point("Z71", 71, 1300.0)], "series": None}))
    return d


# ---------------------------------------------------------------------------------------------
# reading pages back


class Page(HTMLParser):
    """Elements with an id (attributes and text) and every src/href of script, link, img, iframe."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.ids: dict[str, dict] = {}
        self.urls: list[tuple[str, str]] = []
        self.scripts = 0
        self._open: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for k in ("src", "href"):
            if a.get(k) is not None and tag in ("script", "link", "img", "iframe", "a", "source", "embed"):
                self.urls.append((tag, a[k]))
        if "id" in a:
            self.ids[a["id"]] = dict(a, text="")
            self._open.append(a["id"])
        elif self._open:
            self._open.append("")

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for i in self._open:
            if i:
                self.ids[i]["text"] += data


def read_page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def assert_numbers_match(page: Page, members: list[dict], prefix: str = "") -> None:
    for m in members:
        for f in NUMBERS + ("status", "diverged_step"):
            el = page.ids[f"{prefix}member-{m['member']}-{f}"]
            assert json.loads(el["data-value"]) == m[f], (f, el)
            assert el["text"] == fmt(m[f]), (f, el["text"])


def assert_offline(path: Path) -> None:
    page = read_page(path)
    ext = [(t, u) for t, u in page.urls if u.lower().startswith(("http:", "https:", "//", "ftp:", "ws:"))]
    assert ext == [], ext
    text = path.read_text(encoding="utf-8")
    from plotly.offline import get_plotlyjs

    assert text.count(get_plotlyjs()[:2000]) == 1  # plotly.js embedded exactly once


def not_blank(png: bytes | Path) -> float:
    import io

    from matplotlib.image import imread

    img = imread(io.BytesIO(png) if isinstance(png, bytes) else png, format="png")[..., :3]
    return float(img.std())


# ---------------------------------------------------------------------------------------------
# runs


def test_run_report_files_and_numbers(tmp_path):
    run = write_run(tmp_path / "z23", E=3)
    out = report([run])
    assert out == run / "report.html"
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "features.png").is_file()  # per-unit map from the weights (cyclic group)
    assert not (run / "analysis.png").exists()
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")] == []
    page = read_page(out)
    summary = json.loads((run / "summary.json").read_text())
    assert_numbers_match(page, summary["members"])
    for f in ("status", "n_train", "order", "steps", "critical_size"):
        assert json.loads(page.ids[f"summary-{f}"]["data-value"]) == summary[f]
    assert {"fig-curves", "fig-features"} <= set(page.ids)
    text = out.read_text()
    assert "analysis not run yet: <code>groklab analyze " in text
    assert "step + 1 (log scale; step 0 = at init)" in text
    assert_offline(out)


def test_run_report_is_offline_and_self_contained(tmp_path):
    out = report([write_run(tmp_path / "r", analysis=True)])
    assert_offline(out)
    page = read_page(out)
    assert all(not u.startswith(("http", "//")) for _, u in page.urls)
    assert {u for t, u in page.urls if t == "a"} <= {"analysis.png", "curves.png", "features.png"}


def test_diverged_run_renders_and_says_so(tmp_path):
    run = write_run(tmp_path / "dv", E=2, diverged=1500, weights=False)
    out = report([run])
    text = out.read_text()
    assert "<b>diverged</b>: member 0 at step 1500" in text
    assert "weights.safetensors missing" in text
    page = read_page(out)
    assert json.loads(page.ids["member-0-status"]["data-value"]) == "diverged"
    assert json.loads(page.ids["member-0-diverged_step"]["data-value"]) == 1500
    assert_numbers_match(page, json.loads((run / "summary.json").read_text())["members"])
    m = load_run(run).metrics  # rows after the divergence are not results
    assert m["step"][m["member"] == 0].max() == 1500
    assert m["step"][m["member"] == 1].max() == 3000


def test_missing_optional_parts_still_render(tmp_path):
    run = write_run(tmp_path / "bare", weights=False)
    (run / "summary.json").unlink()
    (run / "metrics.parquet").unlink()
    (run / "INCOMPLETE").write_text("")
    text = report([run]).read_text()
    assert "summary.json missing" in text
    assert "metrics.parquet missing: no training curves" in text
    assert "analysis not run yet" in text
    assert not (run / "curves.png").exists()


def test_incomplete_run_says_how_far_it_got(tmp_path):
    run = write_run(tmp_path / "half", steps=1000)
    s = json.loads((run / "summary.json").read_text())
    s.update(status="interrupted", steps_planned=3000)
    (run / "summary.json").write_text(json.dumps(s))
    text = report([run]).read_text()
    assert "<b>incomplete</b> (status interrupted): 1000 of 3000 steps" in text


def test_analysis_section(tmp_path):
    run = write_run(tmp_path / "an", E=2, analysis=True)
    out = report([run])
    page = read_page(out)
    assert {"fig-curves", "fig-analysis", "fig-spectrum", "fig-features"} <= set(page.ids)
    assert (run / "analysis.png").is_file()
    text = out.read_text()
    assert "analysis not run yet" not in text
    assert 'data-stage="independent">independent 150–800<' in text


def test_analysis_as_groklab_analyze_writes_it(tmp_path):
    """spectrum_<block> columns, many measures (a second figure), stages per member with a note."""
    run = write_run(tmp_path / "ga", E=2, analysis=True, stages={"rule": "the rule", "members": [
        {"member": 0, "seed": 7, "features": "memorizing", "stages": [{"name": "lazy", "start": 0, "end": 100}]},
        {"member": 1, "stages": [], "note": "G_F never took the independent form"}]})
    a = pq.read_table(run / "analysis.parquet").to_pydict()
    spec = np.array(a.pop("spectrum"))
    a.update({f"spectrum_blk{k}": spec[:, k].tolist() for k in range(spec.shape[1])})
    a.update({f"extra_{i}": [float(i)] * len(a["step"]) for i in range(6)})
    pq.write_table(pa.table(a), run / "analysis.parquet")
    text = report([run]).read_text()
    page = read_page(run / "report.html")
    assert {"fig-analysis", "fig-analysis-more", "fig-spectrum"} <= set(page.ids)
    assert "member 1: G_F never took the independent form" in text and "stage rule: the rule" in text
    assert "member 0 (seed 7): features <b>memorizing</b>" in text  # the verdict (analysis.stages) is shown
    assert '"blk11"' in text  # block labels from the column names


def test_feature_map_of_a_non_cyclic_group(tmp_path):
    run = write_run(tmp_path / "d5", E=1, M=10)
    s = json.loads((run / "summary.json").read_text())
    s["group"] = "D5"
    (run / "summary.json").write_text(json.dumps(s))
    text = report([run]).read_text()
    assert 'id="fig-features"' in text and "irreps of groklab.theory.reps" in text
    assert json.dumps("ρ3 (d=2)")[1:-1] in text  # D5's blocks, not frequencies


@pytest.mark.parametrize("stages, expect", [
    ({"lazy": [0, 150], "independent": [150, 800], "interactive": [800, None]},
     [("lazy", 0, 150), ("independent", 150, 800), ("interactive", 800, 3000)]),
    ({"lazy": 0, "interactive": 900, "independent": 200},  # name -> start step
     [("lazy", 0, 200), ("independent", 200, 900), ("interactive", 900, 3000)]),
    ([{"member": 0, "stages": [{"stage": "lazy", "start": 0, "end": 100}]},
      {"member": 1, "stages": [{"stage": "lazy", "start": 0, "end": 300}]}], [("lazy", 0, 200)]),  # median
    ({"rule": "r", "members": [  # groklab.analysis_stages.detect_stages
        {"member": 0, "seed": 0, "stages": [{"name": "lazy", "start": 0, "end": 10}, {"name": "independent", "start": 10, "end": 40},
                                            {"name": "interactive", "start": 40, "end": 600}]},
        {"member": 1, "seed": 1, "stages": [], "note": "G_F never took the independent form"}]},
     [("lazy", 0, 10), ("independent", 10, 40), ("interactive", 40, 600)]),
    ("something else", []),
])
def test_stage_shapes(tmp_path, stages, expect):
    run = load_run(write_run(tmp_path / "st", analysis=True, stages=stages, weights=False))
    assert stage_spans(run) == [(n, float(a), float(b)) for n, a, b in expect]


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the path, nothing written


def _bad_cases(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    yield empty, "not a groklab run or sweep folder"
    yield tmp_path / "nope", "no such folder"
    f = tmp_path / "file.txt"
    f.write_text("x")
    yield f, "not a folder"
    wrong = write_run(tmp_path / "wrong")
    (wrong / "config.json").write_text(json.dumps({"kind": "something.else"}))
    yield wrong, "kind 'something.else' is not 'groklab.run'"
    badjson = write_run(tmp_path / "badjson")
    (badjson / "summary.json").write_text("{not json")
    yield badjson, "summary.json: not valid JSON"
    badpq = write_run(tmp_path / "badpq")
    (badpq / "metrics.parquet").write_bytes(b"PAR1 this is not parquet")
    yield badpq, "metrics.parquet: not a readable Parquet file"
    cols = write_run(tmp_path / "cols")
    pq.write_table(pa.table({"step": [0, 1]}), cols / "metrics.parquet")
    yield cols, "metrics.parquet: missing column(s) member, train_acc, test_acc"
    badan = write_run(tmp_path / "badan")
    (badan / "analysis.parquet").write_text("garbage")
    yield badan, "analysis.parquet: not a readable Parquet file"
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "spec.yaml").write_text("a: 1\n")
    yield sweep, "sweep folder without index.parquet"
    badsw = write_sweep(tmp_path / "badsw", runs=0)
    (badsw / "index.parquet").write_bytes(b"nope")
    yield badsw, "index.parquet: not a readable Parquet file"


def test_bad_input_raises_one_line_and_writes_nothing(tmp_path):
    for path, expected in _bad_cases(tmp_path):
        before = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
        with pytest.raises(GroklabError) as err:
            report([path])
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg and expected in msg, msg
        if before is not None:
            assert sorted(p.name for p in path.iterdir()) == before


def test_comparison_refuses_a_sweep_and_empty_input(tmp_path):
    with pytest.raises(GroklabError, match="is a sweep folder; a comparison takes run folders only"):
        report([write_run(tmp_path / "a"), write_sweep(tmp_path / "s", runs=0)])
    with pytest.raises(GroklabError, match="at least one"):
        report([])
    assert not (tmp_path / "a" / "compare.html").exists()


# ---------------------------------------------------------------------------------------------
# several runs, output paths


def test_compare_two_runs(tmp_path):
    a, b = write_run(tmp_path / "a", E=2), write_run(tmp_path / "b", E=1, M=41)
    report([b])
    out = report([a, b])
    assert out == a / "compare.html" and (a / "compare_curves.png").is_file()
    page = read_page(out)
    for i, r in enumerate((a, b)):
        assert_numbers_match(page, json.loads((r / "summary.json").read_text())["members"], prefix=f"run-{i}-")
    assert ("a", "../b/report.html") in page.urls
    assert "config-diff" in page.ids and "task.group" in page.ids["config-diff"]["text"]
    assert_offline(out)
    custom = report([str(a), str(b)], out=tmp_path / "cmp" / "ab.html")
    assert custom == tmp_path / "cmp" / "ab.html" and (tmp_path / "cmp" / "ab_curves.png").is_file()
    (tmp_path / "demo").mkdir()  # as `groklab demo` calls it: its own curves.png stays
    (tmp_path / "demo" / "curves.png").write_bytes(b"demo's")
    assert report([a, b], out=tmp_path / "demo" / "report.html") == tmp_path / "demo" / "report.html"
    assert (tmp_path / "demo" / "curves.png").read_bytes() == b"demo's"
    assert (tmp_path / "demo" / "report_curves.png").is_file()


def test_out_folder_for_a_single_run(tmp_path):
    run = write_run(tmp_path / "r")
    (tmp_path / "o").mkdir()
    assert report([run], out=tmp_path / "o") == tmp_path / "o" / "report.html"
    assert (tmp_path / "o" / "curves.png").is_file() and not (run / "report.html").exists()


# ---------------------------------------------------------------------------------------------
# sweeps


def test_sweep_report(tmp_path):
    sw = write_sweep(tmp_path / "li2")
    (sw / "phase.png").write_bytes(b"the sweep's own figure")
    out = report([sw])
    assert out == sw / "report.html" and (sw / "phase_report.png").is_file()
    assert (sw / "phase.png").read_bytes() == b"the sweep's own figure"  # never clobbered
    page = read_page(out)
    assert {"fig-phase", "fig-scaling", "critical", "members", "fit", "spec", "shared"} <= set(page.ids)
    # critical sizes come from fit.json when it has them
    assert json.loads(page.ids["crit-Z23-measured_n"]["data-value"]) == 250.0
    assert json.loads(page.ids["crit-Z41-measured_n"]["data-value"]) is None
    assert json.loads(page.ids["crit-Z71-n_c_li2"]["data-value"]) == pytest.approx(critical_size(71))
    text = out.read_text()
    assert "no size reached the quorum (n* above the largest)" in text
    for label in ("fit: n = 3.4 · M ln M (95% CI 3.1–3.7)", "fit: n = 2 · M^1.10 · (ln M)^0.90"):
        assert json.dumps(label)[1:-1] in text  # as Plotly writes it into the figure's JSON
    assert json.loads(page.ids["member-0-final_test_acc"]["data-value"]) == 0.0
    assert page.ids["member-0-step_generalized"]["text"] == "—"
    links = [u for t, u in page.urls if t == "a" and u.startswith("runs/")]
    assert links == ["runs/m000", "runs/m001"]  # run folders without a report yet
    assert ("a", "phase.png") in page.urls
    assert "an_extra_column" in page.ids["shared"]["text"]  # the same for every member: not a members column
    assert "an_extra_column" not in page.ids["members"]["text"]
    assert_offline(out)


def test_sweep_links_member_reports_and_tolerates_missing_parts(tmp_path):
    sw = write_sweep(tmp_path / "s", fit=False, spec=False, runs=1)
    report([sw / "runs" / "m000"])
    page = read_page(report([sw]))
    assert ("a", "runs/m000/report.html") in page.urls
    text = (sw / "report.html").read_text()
    assert "missing: <code>spec.yaml</code>, <code>fit.json</code>" in text
    assert "fig-scaling" in page.ids  # measured points and the Li2 line, without a fit
    for g, M in (("Z23", 23), ("Z41", 41), ("Z71", 71)):  # computed from the index: first grid point with quorum
        assert json.loads(page.ids[f"crit-{g}-measured_crit_mult"]["data-value"]) == 1.5
        assert json.loads(page.ids[f"crit-{g}-n_c_li2"]["data-value"]) == pytest.approx(critical_size(M))


def test_sweep_with_other_columns_only(tmp_path):
    d = tmp_path / "odd"
    d.mkdir()
    pq.write_table(pa.table({"seed": [0, 1], "lr": [1e-3, 1e-2]}), d / "index.parquet")
    text = report([d]).read_text()
    assert "needs columns group or order, final_test_acc" in text


# ---------------------------------------------------------------------------------------------
# a real run from the engine


def test_report_on_a_real_tiny_run(tmp_path):
    from groklab.train import api
    from groklab.train.config import RunConfig

    r = api.run(RunConfig.from_flat({"group": "Z11", "frac": 0.5, "steps": 40, "width": 32, "seeds": (0, 1)}),
                out=tmp_path / "real")
    out = report([r.dir])
    page = read_page(out)
    assert_numbers_match(page, r.summary["members"])
    assert "fig-curves" in page.ids and "fig-features" in page.ids


# ---------------------------------------------------------------------------------------------
# in a real browser

needs_chromium = pytest.mark.skipif(browser.find_chromium() is None,
                                    reason="no chromium on PATH; run scripts/ensure_chromium.sh (needs root + apt-get)")
LOCAL = ("file://", "data:", "blob:", "about:")


def check_in_browser(html: Path, evaluate: tuple[str, ...] = ()) -> dict:
    got = browser.inspect(html, evaluate=evaluate)
    assert got["exceptions"] == [], got["exceptions"]
    assert got["console"] == [], got["console"]
    assert got["log"] == [], got["log"]
    assert [u for u in got["requests"] if not u.startswith(LOCAL)] == []
    c = got["counts"]
    assert c["plotly"] and c["divs"] >= 1 and c["plots"] == c["divs"] and c["empty"] == [], c
    assert all(n > 0 for _, n in c["traces"]), c
    assert not_blank(got["png"]) > 0.05
    return got


@needs_chromium
def test_run_page_in_chromium(tmp_path):
    got = check_in_browser(report([write_run(tmp_path / "r", E=3, analysis=True)]))
    assert {i for i, _ in got["counts"]["traces"]} == {"fig-curves", "fig-analysis", "fig-spectrum", "fig-features"}


# Click a members-table header (sorts ascending, then descending) and read the first row's cell.
SORT_BY = """(function(){{ var t = document.getElementById('members'); var th = t.tHead.rows[0].cells[{col}];
  th.click(); var a = t.tBodies[0].rows[0].cells[{col}].getAttribute('data-value') || t.tBodies[0].rows[0].cells[{col}].textContent;
  th.click(); var d = t.tBodies[0].rows[0].cells[{col}].getAttribute('data-value') || t.tBodies[0].rows[0].cells[{col}].textContent;
  return [a, d]; }})()"""


@needs_chromium
def test_sweep_and_compare_pages_in_chromium(tmp_path):
    # members columns: group, order, crit_mult, frac, n_train, seed, final_test_acc, ...
    got = check_in_browser(report([write_sweep(tmp_path / "s")]), evaluate=(SORT_BY.format(col=4), SORT_BY.format(col=0)))
    assert {i for i, _ in got["counts"]["traces"]} == {"fig-phase", "fig-scaling"}
    n_train = sorted(int(0.5 * critical_size(M)) for M in (23, 41, 71)) + sorted(int(2 * critical_size(M)) for M in (23, 41, 71))
    assert got["evaluated"][0] == [str(n_train[0]), str(n_train[-1])]  # numeric, not text, order
    assert got["evaluated"][1] == ["Z23", "Z71"]
    got = check_in_browser(report([write_run(tmp_path / "a"), write_run(tmp_path / "b", diverged=900)]))
    assert {i for i, _ in got["counts"]["traces"]} == {"fig-curves"}


@needs_chromium
def test_dump_dom_and_screenshot_of_a_diverged_run(tmp_path):
    out = report([write_run(tmp_path / "dv", diverged=1500)])
    dom = browser.dump_dom(out)
    assert dom.count('class="main-svg"') >= 2 and "js-plotly-plot" in dom
    assert "<b>diverged</b>: member 0 at step 1500" in dom
    png = browser.screenshot(out, tmp_path / "shot.png")
    assert not_blank(png) > 0.05
