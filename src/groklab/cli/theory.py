"""The `theory` and `analyze` verbs of the command line (wired into groklab.cli by `add_parsers`).

    groklab theory --group Z23                 # critical size, irreps, independent-dynamics features
    groklab theory --group S4 --frac 0.5 --json
    groklab analyze runs/z23 [--every 50]      # replay the run, write analysis.parquet + stages

Thin: parse, call the API (theory.li2, groklab.analysis), print. `theory_report` returns as data
everything `groklab theory` prints (and what ``--json`` writes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from groklab.analysis.theory_report import theory_report
from groklab.errors import GroklabError

__all__ = ["add_parsers", "cmd_theory", "cmd_analyze", "theory_report"]


def add_parsers(sub) -> None:
    """Add the `theory` and `analyze` subparsers to groklab's `sub = parser.add_subparsers(...)`."""
    t = sub.add_parser("theory", help="Li2 predictions for a group: critical data size, irreps, the features "
                                      "independent learning finds (energy maxima)")
    t.add_argument("--group", required=True, help="a group: Z<n>, Z<a>xZ<b>, D<n>, S<n>, A<n>, Q8, table:FILE")
    size = t.add_mutually_exclusive_group()
    size.add_argument("--n-train", type=int, help="simulate on N random training pairs (default: all M² pairs)")
    size.add_argument("--frac", type=float, help="simulate on this fraction of the pairs")
    size.add_argument("--crit-mult", type=float, help="simulate on this multiple of the critical size")
    t.add_argument("--act", default="sqr", help="activation σ: sqr|relu|silu|relusqr (default sqr)")
    t.add_argument("--units", type=int, default=64, help="random starts of the independent ascent (default 64)")
    t.add_argument("--steps", type=int, default=400, help="ascent steps (default 400)")
    t.add_argument("--seed", type=int, default=0, help="seed of the starts and of the training subset (default 0)")
    t.add_argument("--json", action="store_true", help="print JSON instead of text")

    a = sub.add_parser("analyze", help="replay a run folder with the analysis (Li2: irreps, E, G_F, stages; "
                                       "transformer / embed-mlp on Z_M: Nanda's progress measures and phases): "
                                       "writes analysis.parquet and the stages in summary.json")
    a.add_argument("run", metavar="RUN", help="a finished run folder")
    a.add_argument("--every", default=None,
                   help="analyse every N steps (a multiple of the run's eval_every), 'eval' or 'ckpt' (default 50)")
    a.add_argument("--allow-mismatch", action="store_true",
                   help="keep the analysis even if the replay does not reproduce metrics.parquet")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.add_argument("--json", action="store_true", help="print the stages and final measures as JSON")


# ---------------------------------------------------------------------------------------------- theory
def _print_theory(r: dict[str, Any]) -> None:
    M = r["order"]
    kind = "cyclic" if r["is_cyclic"] else ("abelian" if r["is_abelian"] else "non-abelian")
    print(f"{r['group']}: order {M}, {kind}, {r['n_classes']} conjugacy classes")
    print(f"critical size (Li2 §6): n_c = {r['critical_n']:.1f} pairs = {r['critical_fraction']:.3f} of the "
          f"{M * M} pairs   [{r['critical_rule']}]")
    dims = r["dims"]
    counts = {d: dims.count(d) for d in sorted(set(dims))}
    print("irreps: " + ", ".join(f"{c} of dimension {d}" for d, c in counts.items())
          + f"   (Σ d² = {r['sum_dim_squared']})")
    print(f"features = non-trivial real blocks: {r['n_features']}"
          + (f"; Li2 Thm 3: K = 2M − 2 = {r['k_sufficient']} units suffice" if r["k_sufficient"] else ""))
    dyn = r["dynamics"]
    where = "all pairs" if dyn["all_pairs"] else f"{dyn['n_pairs']} random training pairs (seed {dyn['seed']})"
    print(f"independent dynamics (Li2 Thm 1): {dyn['units']} random unit starts, σ = {dyn['act']}, {where}, "
          f"{dyn['steps']} ascent steps on the sphere")
    print(f"  {'block':<18} {'kind':<17} {'units':>5} {'E (mean)':>10} {'E* theory':>10}")
    for b in r["blocks"]:
        n = dyn["counts"].get(b["name"], 0)
        e = dyn["energy_mean"].get(b["name"])
        es = b["energy_max_theory"] if dyn["all_pairs"] and dyn["act"] == "sqr" else None
        print(f"  {b['name']:<18} {b['kind'] + ' d=' + str(b['d']):<17} {n:>5} "
              f"{'-' if e is None else f'{e:.4g}':>10} {'-' if es is None else f'{es:.4g}':>10}")
    emerged = sum(1 for b in r["blocks"][1:] if dyn["counts"].get(b["name"], 0) > 0)
    print(f"  features reached: {emerged} of {r['n_features']}; units on no single block "
          f"(purity < threshold): {dyn['unassigned']}; mean purity {dyn['purity_mean']:.3f}")


def cmd_theory(ns: argparse.Namespace, argv: list[str]) -> int:
    r = theory_report(ns.group, n_train=ns.n_train, frac=ns.frac, crit_mult=ns.crit_mult, act=ns.act,
                      units=ns.units, steps=ns.steps, seed=ns.seed)
    if ns.json:
        print(json.dumps(r, indent=2))
    else:
        _print_theory(r)
    return 0


# ---------------------------------------------------------------------------------------------- analyze
def cmd_analyze(ns: argparse.Namespace, argv: list[str]) -> int:
    from groklab.analysis import analyze_run
    from groklab.train import record
    from groklab.train.display import RunProgress

    every: Any = ns.every
    if every is not None and every not in ("eval", "ckpt"):
        try:
            every = int(every)
        except ValueError:
            raise GroklabError(f"--every {every!r}: must be a number of steps, 'eval' or 'ckpt'", "every") from None
    cfg, _ = record.load_config(Path(ns.run))
    with RunProgress(cfg, quiet=ns.quiet or ns.json) as prog:
        res = analyze_run(ns.run, every, allow_mismatch=ns.allow_mismatch, on_eval=prog.update)
    t = res.analysis.to_pydict()
    last = max(t["step"])
    final = {e: i for i, (s, e) in enumerate(zip(t["step"], t["member"])) if s == last}
    cols = [c for c in ("purity_weighted", "irreps_covered", "units_pure", "energy_weighted", "energy_transfer", "gf_norm")
            if c in t]
    if ns.json:
        out = {"run": str(res.dir), "replay": res.replay, "replay_max_abs_diff": res.replay_max_abs_diff,
               "rows": len(t["step"]), "stages": res.summary["stages"],
               "final": {str(e): {c: t[c][i] for c in cols} for e, i in final.items()}}
        print(json.dumps(out, indent=2))
        return 0
    meta = res.summary["analysis"]
    print(f"replayed {res.dir}: {res.replay}" + (f" (max |Δ| {res.replay_max_abs_diff:.2g})" if res.replay != "exact" else "")
          + f"; {len(t['step'])} rows every {meta['every']} steps -> {res.dir / 'analysis.parquet'}")
    for m in res.summary["stages"]["members"]:
        spans = ", ".join(f"{s['name']} {s['start']}–{s['end']}" for s in m["stages"]) or m.get("note", "none")
        e = m["member"]
        fin = "  ".join(f"{c} {t[c][final[e]]:.3g}" for c in cols) if e in final else ""
        feat = f"features {m['features']}; " if m.get("features") else ""  # Li2 runs (analysis.stages)
        print(f"  member {e} (seed {m['seed']}): {feat}{spans}")
        if fin:
            print(f"    at step {last}: {fin}")
    return 0


