"""`groklab demo` (what `make demo` runs): grokking and its absence, side by side, in about a minute.

Two runs on Z47 with the Li2 defaults (K = 512, x², MSE, Adam lr 1e-3, wd 1e-4), 3 seeds each:
2.5x the Li2 critical training size (science.md §4), which groks, and 0.5x, which only memorizes.
Both run with the Li2 analysis attached (analysis.run_with_analysis), so the demo also prints each
run's features verdict per seed (what the hidden units climbed to: generalizing irrep features,
memorization maxima, or nothing; analysis.stages), its stages (lazy / independent / interactive) and
how many of Z47's 23 frequencies its hidden units hold at the end. Writes both run folders, curves.png and an HTML report.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from groklab.analysis import load_analysis, run_with_analysis
from groklab.train import api
from groklab.train.config import RunConfig
from groklab.train.display import RunProgress

DEMO_RUNS = {
    "grok": {"group": "Z47", "crit_mult": 2.5, "steps": 1500, "seeds": (0, 1, 2)},
    "memorize": {"group": "Z47", "crit_mult": 0.5, "steps": 1500, "seeds": (0, 1, 2)},
}


def plot_curves(runs: dict[str, api.Run], path: Path) -> Path:
    """Train (dashed) and test (solid) accuracy of every member against step, one panel per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), sharey=True, squeeze=False)
    for ax, (name, r) in zip(axes[0], runs.items()):
        df = r.metrics.to_pydict()
        s = r.summary
        for e in sorted(set(df["member"])):
            idx = [i for i, m in enumerate(df["member"]) if m == e]
            step = [df["step"][i] + 1 for i in idx]  # +1: log axis, step 0 is the init
            ax.plot(step, [df["train_acc"][i] for i in idx], "--", color="C0", lw=1, alpha=0.8, label="train" if e == 0 else None)
            ax.plot(step, [df["test_acc"][i] for i in idx], "-", color="C3", lw=1.5, alpha=0.8, label="test" if e == 0 else None)
        ax.set_xscale("log")
        ax.set_title(f"{name}: {s['group']}, {s['n_train']} train pairs ({s['train_frac']:.0%})")
        ax.set_xlabel("step + 1")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _step(x: int | None) -> str:
    """A step for the table: "never" only when there is none (step 0 is a step)."""
    return "never" if x is None else str(x)


def li2_story(r: api.Run) -> str:
    """One line of the Li2 analysis of a demo run: its stages (median over seeds, from
    summary.json) and how many of the group's irreps (frequencies) its hidden units hold at the end."""
    from groklab.report.run import median_stage_spans, member_features

    raw = r.summary.get("stages")
    spans = median_stage_spans(raw, r.summary.get("steps"))
    stages = " · ".join(f"{name} {a:.0f}–{b:.0f}" for name, a, b in spans) or "none detected"
    t = load_analysis(r.dir).to_pydict()
    last = max(t["step"])
    covered = [c for s_, c in zip(t["step"], t["irreps_covered"]) if s_ == last]
    n_feat = r.summary["analysis"]["n_features"]
    return (f"features {', '.join(member_features(raw)) or 'not analysed'}; stages (median over seeds) {stages}; "
            f"irreps (frequencies) covered at step {last}: {', '.join(str(int(c)) for c in covered)} of {n_feat}")


def demo(out: Path, quiet: bool = False) -> dict[str, api.Run]:
    out = Path(out)
    console = Console()
    # The demo owns its folder: a previous demo's runs are replaced (nothing else is touched).
    for name in DEMO_RUNS:
        if (out / name / "config.json").exists():
            shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name, flat in DEMO_RUNS.items():
        cfg = RunConfig.from_flat(flat)
        size = (f"{flat['crit_mult']}x the Li2 critical size" if "crit_mult" in flat
                else f"training fraction {flat.get('frac', cfg.task.frac)}")
        console.print(f"[bold]{name}[/bold]: {flat['group']} at {size}, seeds {list(flat['seeds'])}")
        with RunProgress(cfg, quiet=quiet) as prog:  # with the Li2 analysis: stages and features
            done = run_with_analysis(cfg, out / name, argv=["demo"], on_eval=prog.update)
        runs[name] = api.load_run(done.dir)
    table = Table(title="groklab demo: Z47, Li2 defaults (K=512, x², MSE, Adam 1e-3, wd 1e-4)")
    for col in ("run", "train pairs", "seed", "memorized at", "generalized at", "final test acc"):
        table.add_column(col, justify="right")
    for name, r in runs.items():
        for m in r.summary["members"]:
            table.add_row(name, str(r.summary["n_train"]), str(m["seed"]), _step(m["step_memorized"]),
                          _step(m["step_generalized"]), f"{m['final_test_acc']:.3f}")
    console.print(table)
    for name, r in runs.items():
        console.print(f"{name}: {li2_story(r)}")
    png = plot_curves(runs, out / "curves.png")
    console.print(f"learning curves: {png}")
    try:
        from groklab.report import report
    except ImportError:
        report = None
    if report is not None:
        html = report([out / n for n in runs], out=out / "report.html")
        console.print(f"report: {html}  (open it in a browser)")
    return runs
