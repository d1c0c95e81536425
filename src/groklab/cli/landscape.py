"""The `landscape` verb: the two peaks of the Li2 energy on training subsets as data grows.

    groklab landscape --group Z23 --out out/z23 [--sizes 0.25,0.5,1,2] [--act sqr|relu|silu]
                      [--subsets 3] [--n-star 198,248]

Thin: parse, call analysis.landscape, write with report.landscape, print the per-size table.
"""

from __future__ import annotations

import argparse
from typing import Any

from groklab.errors import GroklabError

__all__ = ["add_parser", "cmd_landscape"]


def _mults(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of multiples of n_c like 0.25,0.5,1,2") from None


def add_parser(sub) -> None:
    p = sub.add_parser("landscape", help="Li2 energy maxima on training subsets as data grows: generalizing vs "
                                         "memorizing peaks, their basins and the crossing size (Li2 Thm 4-5)")
    p.add_argument("--group", required=True, help="a group: Z<n>, Z<a>xZ<b>, D<n>, S<n>, A<n>, Q8, table:FILE")
    p.add_argument("--sizes", type=_mults, default=None,
                   help="training sizes as multiples of the Li2 critical size n_c (default 0.25,0.5,0.75,1,1.25,"
                        "1.5,1.75,2,2.5,3; sizes with all pairs or more are dropped)")
    p.add_argument("--act", default="sqr", help="activation σ: sqr|relu|silu|relusqr (default sqr)")
    p.add_argument("--subsets", type=int, default=3, help="random training sets per size, seeds 0..S-1 (default 3)")
    p.add_argument("--random", type=int, default=48, help="random starts per training set (default 48)")
    p.add_argument("--steps", type=int, default=800, help="ascent steps at most (default 800)")
    p.add_argument("--seed", type=int, default=0, help="seed of the starts (default 0)")
    p.add_argument("--n-star", default=None, help="the trained network's measured n* bracket LO,HI in pairs, to "
                                                  "compare the crossing with (e.g. 198,248 for Z23)")
    p.add_argument("--out", required=True, help="folder for landscape.json, maxima.parquet, landscape.png/.html")
    p.add_argument("--json", action="store_true", help="print landscape.json instead of the table")


def _f(v: Any, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def cmd_landscape(ns: argparse.Namespace, argv: list[str]) -> int:
    import json

    from groklab.analysis.landscape import landscape, parse_bracket
    from groklab.report.landscape import write_landscape

    if ns.random < 1:
        raise GroklabError(f"--random {ns.random}: must be ≥ 1 (the basin shares come from random starts)", "random")
    res = landscape(ns.group, mults=ns.sizes, subsets=ns.subsets, act=ns.act, n_random=ns.random, steps=ns.steps,
                    seed=ns.seed, n_star=parse_bracket(ns.n_star))
    files = write_landscape(res, ns.out)
    if ns.json:
        print(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=2))
        return 0
    print(f"{res['group']}: σ = {res['act']}, n_c = {res['n_c']:.1f}, {res['config']['subsets']} subsets per size, "
          f"{ns.random} random starts each ({res['wall_s']:.1f} s)")
    print(f"  {'n':>5} {'n/n_c':>6} | {'E gen':>7} {'E mem':>7} {'E mixed':>7} | {'#gen':>5} {'#mem':>5} | "
          f"{'share gen':>9} {'mem':>5} {'mixed':>5}")
    for s in res["sizes"]:
        print(f"  {s['n']:>5} {s['n_over_nc']:>6.2f} | {_f(s['E_max_generalizing']['mean']):>7} "
              f"{_f(s['E_max_memorizing']['mean']):>7} {_f(s['E_max_mixed']['mean']):>7} | "
              f"{_f(s['n_distinct_generalizing']['mean'], '.1f'):>5} {_f(s['n_distinct_memorizing']['mean'], '.1f'):>5} | "
              f"{_f(s['share_generalizing']['mean'], '.2f'):>9} {_f(s['share_memorizing']['mean'], '.2f'):>5} "
              f"{_f(s['share_mixed']['mean'], '.2f'):>5}")
    b = res["crossing"]
    br = lambda x, d=0: "[" + ", ".join("?" if v is None else f"{v:.{d}f}" for v in x) + "]"  # noqa: E731
    print(f"crossing n× (generalization peak above the memorization one from there on): {br(b['bracket'])} pairs "
          f"= {br(b['bracket_over_nc'], 2)} × n_c; per subset {', '.join(br(x) for x in b['per_subset'])}")
    c = res["crossing_highest"]
    print(f"the generalization peak the highest of all (mixed maxima included): {br(c['bracket'])} pairs "
          f"= {br(c['bracket_over_nc'], 2)} × n_c")
    print(f"memorization maxima gone: {br(res['memorization_vanishes']['bracket'])}; most random starts generalize: "
          f"{br(res['basin_crossing']['bracket'])}")
    if res["n_star"]:
        print(f"measured n* {br(res['n_star'])} (given): the crossing comes {res['crossing_vs_n_star']} "
              f"(the highest-of-all one: {res['crossing_highest_vs_n_star']})".replace("comes overlaps", "overlaps it"))
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0
