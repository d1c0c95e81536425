"""Reports a researcher would rather look at: one self-contained HTML page (Plotly, works offline)
plus static PNGs (matplotlib) for a run, a sweep, or several runs compared on the same axes.

    >>> from groklab.report import report            # doctest: +SKIP
    >>> report(["runs/z97"])                          # doctest: +SKIP
    PosixPath('runs/z97/report.html')

Every input is read and checked before anything is written; a folder that is not a groklab run
or sweep, or a damaged file, raises `GroklabError` with one line naming the path. Output files are
written atomically. Numbers from summary.json carry stable ids (``member-0-final_test_acc``) and
their exact JSON value in ``data-value``.

Pieces: report_common (readers, HTML, page shell), report_run (run folders, training curves),
report_analysis (stages, purity, spectra, feature map), report_sweep (sweep folders).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from groklab.errors import GroklabError
from groklab.report.common import (
    cell,
    esc,
    flatten,
    kv_table,
    note,
    page,
    plotly_div,
    read_json,
    rel_link,
    table,
    write_atomic,
)
from groklab.report.run import (
    MEMBER_FIELDS,
    Run,
    curves_figure,
    curves_png,
    is_run,
    load_run,
)
from groklab.report.sweep import Sweep, is_sweep, load_sweep, sweep_body

__all__ = ["report"]

SUMMARY_FIELDS = ("status", "group", "order", "n_train", "n_test", "train_frac", "steps", "steps_planned", "wall_s",
                  "critical_size")


def report(paths: Sequence[str | Path] | str | Path, out: Path | str | None = None) -> Path:
    """Write the HTML report (and PNGs beside it) and return the HTML path.

    One run folder -> ``DIR/report.html``; one sweep folder -> ``DIR/report.html``; several run
    folders -> a comparison at ``out`` or ``FIRST_RUN/compare.html``. ``out`` may name the HTML
    file or a folder for it. PNGs go next to the HTML: ``curves.png``, ``analysis.png`` (run),
    ``phase_report.png`` (sweep; ``phase.png`` is the sweep's own); for a comparison, or another
    HTML name, they are prefixed with the HTML's stem (``compare_curves.png``).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise GroklabError("report: give at least one run or sweep folder")
    if len(paths) == 1 and paths[0].is_dir():
        from groklab.report.attention import attention_report, is_attention_run

        if is_attention_run(paths[0]):
            return attention_report(paths[0], out)
    loaded = [_load(p) for p in paths]
    if len(loaded) == 1 and isinstance(loaded[0], Sweep):
        s = loaded[0]
        html_path = _out_path(out, s.path, "report.html")
        body, pngs = sweep_body(s, html_path.parent)
        title, sub = f"groklab sweep: {s.path.name}", f"{esc(s.path)} · {s.n} members"
    elif len(loaded) == 1:
        run = loaded[0]
        html_path = _out_path(out, run.path, "report.html")
        body, pngs = run_body(run)
        title, sub = f"groklab run: {run.path.name}", _run_subtitle(run)
    else:
        sweeps = [x.path for x in loaded if isinstance(x, Sweep)]
        if sweeps:
            raise GroklabError(f"{sweeps[0]}: is a sweep folder; a comparison takes run folders only")
        html_path = _out_path(out, loaded[0].path, "compare.html")
        body, pngs = compare_body(loaded, html_path.parent)
        title, sub = f"groklab: {len(loaded)} runs compared", " · ".join(esc(r.path) for r in loaded)
    # PNGs beside the HTML: plain names for a run's or sweep's report.html, else prefixed with the
    # HTML's stem (a comparison must not overwrite a run's own curves.png, e.g. in `groklab demo`).
    prefix = "" if html_path.name == "report.html" and len(loaded) == 1 else html_path.stem + "_"
    files: dict[Path, bytes | str] = {html_path.parent / f"{prefix}{k}.png": v for k, v in pngs.items()}
    files[html_path] = page(title, sub, _png_links(files, html_path) + body)
    write_atomic(files)
    return html_path


def _load(p: Path) -> Run | Sweep:
    if not p.exists():
        raise GroklabError(f"{p}: no such folder")
    if not p.is_dir():
        raise GroklabError(f"{p}: not a folder (expected a groklab run or sweep folder)")
    if is_run(p):
        meta = read_json(p / "config.json")
        if isinstance(meta, dict) and str(meta.get("kind", "")).startswith("groklab.sweep"):
            return load_sweep(p)
        return load_run(p)
    if is_sweep(p):
        return load_sweep(p)
    raise GroklabError(f"{p}: not a groklab run or sweep folder (no config.json with kind groklab.run, no index.parquet)")


def _out_path(out: Path | str | None, folder: Path, name: str) -> Path:
    if out is None:
        return folder / name
    out = Path(out)
    return out / name if out.is_dir() or not out.suffix else out


def _png_links(files: dict, html_path: Path) -> str:
    pngs = [p for p in files if p.suffix == ".png"]
    if not pngs:
        return ""
    return '<p class="sub">static figures: ' + ", ".join(
        f'<a href="{esc(p.name)}">{esc(p.name)}</a>' for p in sorted(pngs)) + "</p>"


# ---------------------------------------------------------------------------------------------
# one run


def _run_subtitle(run: Run) -> str:
    s = run.summary or {}
    bits = [esc(run.path), f"group {esc(s.get('group', (run.config.get('task') or {}).get('group', '?')))}",
            f"{len(run.members) or '?'} member(s)", f"status {esc(s.get('status', 'unknown'))}"]
    if run.meta.get("created"):
        bits.append(f"created {esc(run.meta['created'])}")
    if run.meta.get("groklab"):
        bits.append(f"groklab {esc(run.meta['groklab'])}")
    return " · ".join(bits)


def status_notes(run: Run, prefix: str = "") -> list[str]:
    """What a reader must know before trusting the curves: divergence, incompleteness, gaps."""
    out = []
    s = run.summary
    p = f"<code>{esc(run.path.name)}</code>: " if prefix else ""
    if s is None:
        out.append(note(p + "summary.json missing: no final numbers or grokking times (run still starting, or killed early?)", "missing"))
    else:
        status = s.get("status")
        div = [m for m in run.members if isinstance(m, dict) and (m.get("status") == "diverged" or m.get("diverged_step") is not None)]
        if status == "diverged" or div:
            what = ", ".join(f"member {esc(m.get('member'))} at step {esc(m.get('diverged_step'))}" for m in div) or "see members"
            out.append(note(f"{p}<b>diverged</b>: {what} (non-finite loss); metrics after that step are not results and "
                            "are not drawn", "warn"))
        if status in ("interrupted", "running") or run.incomplete:
            done, plan = s.get("steps"), s.get("steps_planned")
            out.append(note(f"{p}<b>incomplete</b> (status {esc(status)}{', INCOMPLETE marker present' if run.incomplete else ''}): "
                            f"{esc(done)} of {esc(plan)} steps; this report shows what exists so far", "warn"))
    if run.metrics is None:
        out.append(note(p + "metrics.parquet missing: no training curves", "missing"))
    elif len(run.metrics["step"]) == 0:
        out.append(note(p + "metrics.parquet has no rows yet: no training curves", "missing"))
    else:
        lacking = [c for c in ("train_loss", "test_loss", "w_norm", "v_norm") if c not in run.metrics]
        if lacking:
            out.append(note(p + "metrics.parquet lacks " + ", ".join(f"<code>{c}</code>" for c in lacking) + ": those panels are empty", "missing"))
    if "weights.safetensors" in run.missing and not prefix:
        out.append(note("weights.safetensors missing (optional: final weights, used for the per-unit feature map)", "info"))
    return out


def summary_tables(run: Run, id_prefix: str = "") -> str:
    s = run.summary or {}
    top = [[f"<th>{esc(k)}</th>", cell(s.get(k), f"{id_prefix}summary-{k}", field=k)] for k in SUMMARY_FIELDS if k in s]
    if s.get("critical_size") and s.get("n_train"):
        top.append(["<th>n_train / critical_size</th>", cell(s["n_train"] / s["critical_size"])])
    if s.get("critical_rule"):
        top.append(["<th>critical_rule</th>", cell(s["critical_rule"])])
    rows = []
    for m in run.members:
        if not isinstance(m, dict):
            continue
        k = m.get("member")
        rows.append([cell(k)] + [cell(m.get(f), f"{id_prefix}member-{k}-{f}", member=k, field=f) for f in MEMBER_FIELDS])
    out = table(["field", "value"], top, cls="kv", ident=f"{id_prefix}summary") if top else ""
    if rows:
        out += table(["member", *MEMBER_FIELDS], rows, cls="sortable", ident=f"{id_prefix}members")
    return out


def run_body(run: Run) -> tuple[str, dict[str, bytes]]:
    from groklab.report.analysis import analysis_section

    parts = status_notes(run)
    parts.append("<h2>Summary</h2>")
    parts.append(summary_tables(run) if run.summary is not None else note("no summary.json yet", "missing"))
    pngs: dict[str, bytes] = {}
    parts.append("<h2>Training curves</h2>")
    if run.metrics is not None:
        parts.append('<p class="sub">Markers: ▲ step_memorized (train acc ≥ 0.99), ★ step_generalized (test acc ≥ 0.99), '
                     "✕ diverged; dotted lines at the median over members. Hover for values, drag to zoom, "
                     "double-click to reset.</p>")
        parts.append(plotly_div(curves_figure([run], run.label), "fig-curves"))
        pngs["curves"] = curves_png([run], run.label)
    parts.append("<h2>Analysis</h2>")
    html, more = analysis_section(run)
    parts.append(html)
    pngs.update(more)
    parts.append(config_section(run))
    return "\n".join(parts), pngs


def config_section(run: Run) -> str:
    cfg = run.config
    out = ["<h2>Config</h2>", '<div class="cols">']
    for part in ("task", "model", "train"):
        if isinstance(cfg.get(part), dict):
            out.append(f"<div><h3>{part}</h3>{kv_table(cfg[part], ident=f'config-{part}')}</div>")
    rest = {k: v for k, v in cfg.items() if k not in ("task", "model", "train")}
    if rest:
        out.append(f"<div><h3>other</h3>{kv_table(rest)}</div>")
    out.append("</div>")
    if run.meta.get("argv"):
        out.append(f"<p>command: <code>{esc(' '.join(map(str, run.meta['argv'])))}</code></p>")
    present = sorted(p.name for p in run.path.iterdir() if p.is_file() and not p.name.startswith("."))
    out.append("<p class=\"sub\">files: " + ", ".join(f"<code>{esc(n)}</code>" for n in present) + "</p>")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# several runs


def compare_body(runs: list[Run], where: Path) -> tuple[str, dict[str, bytes]]:
    parts = [n for r in runs for n in status_notes(r, prefix="run")]
    rows = []
    for i, r in enumerate(runs):
        s = r.summary or {}
        accs = [m.get("final_test_acc") for m in r.members if isinstance(m, dict) and m.get("final_test_acc") is not None]
        own = r.path / "report.html"
        link = f'<a href="{esc(rel_link(own, where))}">report</a>' if own.is_file() else ""
        rows.append([f"<td>{esc(r.path)}</td>", cell(s.get("group")), cell(s.get("status"), f"run-{i}-status"),
                     cell(len(r.members)), cell(s.get("n_train")), cell(s.get("train_frac")),
                     cell(sum(accs) / len(accs) if accs else None), f"<td>{link}</td>"])
    parts.append("<h2>Runs</h2>" + table(["run", "group", "status", "members", "n_train", "train_frac",
                                          "mean final test acc", ""], rows, cls="sortable", ident="runs"))
    parts.append("<h2>Training curves (same axes)</h2>")
    pngs: dict[str, bytes] = {}
    if any(r.metrics is not None for r in runs):
        parts.append('<p class="sub">One colour per run: train dashed, test solid; members thin, mean bold.</p>')
        parts.append(plotly_div(curves_figure(runs, "runs compared"), "fig-curves"))
        pngs["curves"] = curves_png(runs, "runs compared")
    parts.append("<h2>Config differences</h2>" + config_diff(runs))
    parts.append("<h2>Members</h2>")
    for i, r in enumerate(runs):
        parts.append(f"<h3>{esc(r.path)}</h3>" + summary_tables(r, id_prefix=f"run-{i}-"))
    return "\n".join(parts), pngs


def config_diff(runs: list[Run]) -> str:
    flat = [flatten(r.config) for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
    if not differ:
        return "<p>The configs are identical.</p>"
    rows = [[f"<th>{esc(k)}</th>"] + [cell(f.get(k)) for f in flat] for k in differ]
    return table(["field"] + [r.path.name for r in runs], rows, cls="kv", ident="config-diff")
