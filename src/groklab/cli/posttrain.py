"""`groklab posttrain`: SFT vs RL from one base on rule-variant group tasks (groklab.posttrain).

    groklab posttrain --preset small --out runs/posttrain-small      # the committed numbers (minutes)
    groklab posttrain --out runs/posttrain                           # the full-size comparison
    groklab posttrain spec.yaml --seeds 0-2 --out DIR                # a spec file, options override it
    groklab posttrain --report DIR                                   # re-render DIR/report.html

Writes the run folders (groklab.posttrain.experiment) and DIR/report.html. Bad input raises
GroklabError before anything is written (one line, exit 2). Exposes add_parser(sub) and cmd(ns, argv).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from groklab.cli.args import seeds_arg as _seeds
from groklab.errors import GroklabError


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _strs(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


# list-valued fields and their parsers; every other PosttrainConfig field parses as its default's type
_LISTS = {"arms": _strs, "pools": _ints, "seeds": _seeds}


HELP = {
    "group": "group of both rules: Z<n>, D<n>, S<n>, A<n>, Q8, Z<a>xZ<b>", "r0": "power:<k> (a o b^k) or relabel:<n>",
    "hops": "answer steps: 1 (a o b) or 2 ((a o b) o c)", "frac": "share of operand tuples the base trains on",
    "arms": "subset of sft,rl,rl_kl", "pools": "distinct r0 prompts per member, e.g. 0,64 (0 = all)",
    "seeds": "seeds, e.g. 0,1,2 or 0-4", "samples": "sequences per step per member (matched across arms)",
    "group_size": "RL samples per prompt", "kl_coef": "beta of the rl_kl arm", "baseline": "grpo|mean|loo|none",
    "base_target": "snapshot the base at this mean held-out accuracy", "post_opt": "adam|sgd (SGD: momentum 0.9)", "top_k": "k of the top-k singular subspaces",
}


def add_parser(sub, parser_class=None) -> argparse.ArgumentParser:
    """The verb's parser on `sub` (argparse subparsers, whose parser_class reports errors in one line).
    `parser_class` is accepted for the verb table's uniform call; this verb has no nested subparsers."""
    from groklab.posttrain.config import PosttrainConfig

    p = sub.add_parser("posttrain", help="SFT vs RL (0/1 verifier) from one base on rule-variant group tasks; weight diagnostics")
    p.add_argument("spec", nargs="?", help="YAML or JSON file of PosttrainConfig fields (options override it)")
    p.add_argument("--preset", choices=("full", "small"), default="full", help="defaults to start from (default full)")
    p.add_argument("--out", help="new folder for the run folders and report.html")
    p.add_argument("--report", metavar="DIR", help="only (re)write DIR/report.html from an existing folder")
    p.add_argument("--quiet", action="store_true")
    for f in fields(PosttrainConfig):
        typ = _LISTS.get(f.name, type(f.default))
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=typ, default=None, help=HELP.get(f.name))
    return p


def _load_spec(path: str) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise GroklabError(f"spec {path}: cannot read ({e.strerror})") from None
    try:
        if path.endswith(".json"):
            d = json.loads(text)
        else:
            import yaml

            d = yaml.safe_load(text)
    except Exception as e:
        raise GroklabError(f"spec {path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise GroklabError(f"spec {path}: expected a mapping of PosttrainConfig fields")
    return d


def config_from_args(ns: argparse.Namespace):
    from groklab.posttrain.config import PosttrainConfig

    base = PosttrainConfig.small() if ns.preset == "small" else PosttrainConfig()
    d = base.to_dict()
    if ns.spec:
        d.update(_load_spec(ns.spec))
    d.update({f.name: getattr(ns, f.name) for f in fields(PosttrainConfig) if getattr(ns, f.name) is not None})
    return PosttrainConfig.from_dict(d)


def cmd(ns: argparse.Namespace, argv: list[str]) -> int:
    from groklab.report.posttrain import report_posttrain

    if ns.report:
        print(report_posttrain(Path(ns.report)))
        return 0
    cfg = config_from_args(ns)
    if not ns.out:
        raise GroklabError("--out: required (a new folder for the run folders)")
    from groklab.posttrain.experiment import run_posttrain

    summary = run_posttrain(cfg, ns.out, argv=argv, quiet=ns.quiet)
    html = report_posttrain(Path(ns.out))
    for c in summary["claims"]:
        iv = c["rl_minus_sft"]
        ci = f" ± {iv['ci95']:.4g}" if iv.get("ci95") is not None else ""
        mean = f"{iv['mean']:+.4g}" if iv.get("mean") is not None else "n/a"
        print(f"{c['matching']:>16} | {c['arm']:>5} pool {c['pool']:>4} | {c['metric']:>10} RL-SFT {mean}{ci} | {c['verdict']}")
    print(f"wall {summary['wall_s']:.1f} s; report: {html}", file=sys.stderr)
    return 0
