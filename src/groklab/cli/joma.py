"""The `joma` verb: JoMA's linear invariant, nonlinear toy and the multilayer hierarchical run.

    groklab joma toy --out runs/joma-toy               # JoMA Fig. 4
    groklab joma linear --seeds 0-9 --out runs/joma-linear     # JoMA Figs. 2-3
    groklab joma hier --out runs/joma-hier             # multilayer: per-layer attention entropy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from groklab.cli.snap import parse_seeds
from groklab.errors import GroklabError

__all__ = ["add_parser", "cmd"]


def add_parser(sub, parser_class=None) -> None:
    """Add the verb to groklab's subparsers (whose parser_class already reports errors in one line)."""
    j = sub.add_parser("joma", help="JoMA: toy (Fig. 4, entropy falls then rises), linear (Figs. 2-3 invariant), "
                                    "hier (multilayer transformer on the hierarchical latent generator)")
    j.add_argument("what", choices=("toy", "linear", "hier"))
    j.add_argument("--out", required=True, help="run folder; must be new or empty")
    j.add_argument("--seeds", default=None, help="linear: seeds (default 0); hier: seeds (default 1)")
    j.add_argument("--niter", type=int, default=None, help="iterations (default: toy 5000, linear 2000, hier 1500)")
    j.add_argument("--nlayer", type=int, default=None, help="hier: transformer layers (default 3)")
    j.add_argument("--lr", type=float, default=None, help="hier: Adam learning rate (default 1e-3)")
    j.add_argument("--wd", type=float, default=None, help="hier: weight decay (default 1e-4, as the paper's command)")


def cmd(ns: argparse.Namespace, argv: list[str]) -> int:
    from groklab.attention.experiments import joma_linear_run, joma_toy_run
    from groklab.attention.joma import LinearConfig, ToyConfig

    if ns.what == "toy":
        if ns.seeds is not None or ns.nlayer is not None or ns.lr is not None or ns.wd is not None:
            raise GroklabError("--seeds/--nlayer/--lr/--wd: not options of `joma toy` (its seed is 0, as draw_figure_4.py)")
        s = joma_toy_run(Path(ns.out), ToyConfig(**({"niter": ns.niter} if ns.niter else {})), argv=argv)
        print(f"JoMA toy: entropy {s['entropy_t0']:.4f} -> minimum {s['min_entropy']:.4f} at iteration "
              f"{s['min_iter']} -> {s['final_entropy']:.4f} at the end")
    elif ns.what == "linear":
        seeds = parse_seeds(ns.seeds) if ns.seeds else (0,)
        s = joma_linear_run(Path(ns.out), LinearConfig(**({"niter": ns.niter} if ns.niter else {})), seeds, argv=argv)
        print(f"JoMA linear ({len(seeds)} seeds): NC(z, z_hat) final {s['corr_final_mean']:.4f} (min over training "
              f"{s['corr_min_over_seeds']:.4f}); first term alone {s['corr1_t0_mean']:.3f} -> {s['corr1_final_mean']:.4f}")
    else:
        from groklab.attention.experiments_hier import joma_hier_run
        from groklab.attention.hier import HierConfig

        kw = {}
        if ns.niter:
            kw["niter"] = ns.niter
        if ns.nlayer:
            kw["nlayer"] = ns.nlayer
        if ns.seeds:
            kw["seeds"] = parse_seeds(ns.seeds)
        if ns.lr is not None:
            kw["lr"] = ns.lr
        if ns.wd is not None:
            kw["wd"] = ns.wd
        s = joma_hier_run(Path(ns.out), HierConfig(**kw), argv=argv)
        print(json.dumps(s["headline"], indent=1))
    print(f"run folder: {ns.out}")
    return 0
