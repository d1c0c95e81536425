"""`groklab sweep`: run a sweep spec, or show a sweep folder's status."""

from __future__ import annotations

import argparse
from pathlib import Path

from groklab.errors import GroklabError
from groklab.sweep.execute import run_sweep
from groklab.sweep.spec import load_spec, plan_jobs

__all__ = ["add_parser", "cmd_sweep"]


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the `sweep` verb to the CLI's subparsers (`sub` from add_subparsers, parser_class=_Parser)."""
    p = sub.add_parser("sweep", help="run a sweep spec (many runs, batched into ensembles; resumable)",
                       description="Run the members of a sweep spec not yet done in --out; write index.parquet, fit.json, phase.png. "
                       "A spec with a refine: section then bisects each group's critical size n* to its tolerance "
                       "(refine.json; resumable like a sweep).")
    p.add_argument("spec", nargs="?", help="sweep spec (YAML), e.g. sweeps/li2_scaling.yaml")
    p.add_argument("--out", help="sweep folder (default sweeps_out/<spec name>); re-running resumes it")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes (default) or a Ray cluster")
    p.add_argument("--workers", type=int, help="jobs at once (default: CPU cores / execution.threads; on Ray: the cluster's CPUs)")
    p.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray instance)")
    p.add_argument("--storage", metavar="URI", help="with --executor ray: where running jobs keep checkpoints, readable "
                   "by every node (file:///shared/path, s3://bucket/prefix, gs://...; default: the sweep folder)")
    p.add_argument("--max-retries", type=int, default=3, help="with --executor ray: re-runs of a job whose worker or node died (default 3)")
    p.add_argument("--extend", action="store_true", help="add the spec's new members to an existing sweep folder")
    p.add_argument("--status", metavar="DIR", help="print done / running / left and the ETA of a sweep folder, then exit")
    p.add_argument("--analyze", metavar="DIR", nargs="+", help="rewrite fit.json and phase.png of a sweep folder from its finished "
                   "members (e.g. a stopped refinement), print the table, then exit; several folders of one recipe: one joint "
                   "fit over their groups, printed (and written to --out DIR/fit.json if given)")
    p.add_argument("--dry-run", action="store_true", help="print the members and jobs the spec gives, run nothing")
    p.add_argument("--no-refine", action="store_true", help="run only the grid of a spec with a refine: section (no adaptive rounds)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def cmd_sweep(ns: argparse.Namespace, argv: list[str]) -> int:
    from groklab.sweep.store import status
    from groklab.sweep.view import plan_text, status_text

    if ns.status:
        if ns.spec or ns.dry_run or ns.extend:
            raise GroklabError("--status DIR: takes no spec and no other sweep options")
        print(status_text(status(Path(ns.status))))
        if (Path(ns.status) / "refine.json").exists():  # a refinement: its rounds and brackets so far
            from groklab.sweep.refine import REFINE_FILE, format_brackets
            from groklab.train import record

            print(format_brackets(record.read_json(Path(ns.status) / REFINE_FILE, ns.status)))
        return 0
    if ns.analyze:
        if len(ns.analyze) > 1:
            return _analyze_joint([Path(d) for d in ns.analyze], Path(ns.out) if ns.out else None)
        if ns.out:
            raise GroklabError("--analyze DIR: writes into DIR itself; --out is for a joint fit of several folders")
        return _analyze(Path(ns.analyze[0]))
    if not ns.spec:
        raise GroklabError("groklab sweep: give a spec (groklab sweep SPEC.yaml) or --status DIR")
    if ns.workers is not None and ns.workers < 1:
        raise GroklabError(f"--workers {ns.workers}: must be >= 1")
    sp = load_spec(ns.spec)
    out = Path(ns.out) if ns.out else Path("sweeps_out") / sp.name
    if ns.dry_run:
        print(plan_text(sp, plan_jobs(sp.members, sp.execution), out))
        return 0
    if ns.max_retries < 0:
        raise GroklabError(f"--max-retries {ns.max_retries}: must be >= 0")
    if sp.refine is not None and not ns.no_refine:  # grid = round 0, then adaptive rounds (sweep/refine.py)
        from groklab.sweep.refine import run_refine

        res = run_refine(sp, out, executor=ns.executor, workers=ns.workers, quiet=ns.quiet, ray_address=ns.ray_address)
        return 0 if res.total_members and not res.failed else 3
    res = run_sweep(sp, out, executor=ns.executor, workers=ns.workers, extend=ns.extend, quiet=ns.quiet,
                    ray_address=ns.ray_address, storage=ns.storage, max_retries=ns.max_retries)
    return 0 if res.total_members and not res.failed else 3


def _analyze(out: Path) -> int:
    """fit.json / phase.png from index.parquet as it stands, under the folder's lock (no driver running)."""
    import pyarrow.parquet as pq

    from groklab.sweep.scaling import analyze, format_fit
    from groklab.sweep.store import INDEX, Store

    store = Store(out)
    store.read_plan()  # a sweep folder, or a one-line error
    with store.locked():
        if not (out / INDEX).exists():
            raise GroklabError(f"--analyze {out}: no finished member yet (no {INDEX})")
        fit = analyze(pq.read_table(out / INDEX), out)
    print(format_fit(fit))
    if (out / "refine.json").exists():
        from groklab.sweep.refine import REFINE_FILE, format_brackets
        from groklab.train import record

        print(format_brackets(record.read_json(out / REFINE_FILE, str(out))))
    return 0


def _analyze_joint(dirs: list[Path], out: Path | None) -> int:
    """One fit over the groups of several sweep folders of the same recipe (scaling.analyze_joint)."""
    import pyarrow.parquet as pq

    from groklab.sweep.scaling import analyze_joint, format_fit
    from groklab.sweep.store import INDEX, Store

    if len(set(d.resolve() for d in dirs)) < len(dirs):
        raise GroklabError(f"--analyze: a folder is given twice ({', '.join(map(str, dirs))})")
    indices = {}
    for d in dirs:
        Store(d).read_plan()  # a sweep folder, or a one-line error
        if not (d / INDEX).exists():
            raise GroklabError(f"--analyze {d}: no finished member yet (no {INDEX})")
        indices[str(d)] = pq.read_table(d / INDEX)
    fit = analyze_joint(indices, out)
    print(format_fit(fit))
    print("groups from: " + ", ".join(f"{p['group']} ({p['sweep']})" for p in fit["points"]))
    for k, u in fit["unrecorded"].items():
        print(f"note: {k} = {u['value']!r} in {', '.join(u['recorded_by'])}; not recorded by {', '.join(u['not_recorded_by'])} "
              "(an older groklab): check it there before trusting the joint fit")
    if out is not None:
        print(f"wrote {out / 'fit.json'}, {out / 'phase.png'}")
    return 0
