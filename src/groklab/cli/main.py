"""The command line: parses, calls the API, prints. User errors are one line on stderr, exit 2.

    groklab run --group Z97 --crit-mult 2 --steps 3000 --out runs/z97
    groklab run --resume runs/z97
    groklab demo | bench | sweep | theory | analyze | report | superposition | snap | joma | posttrain
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from groklab.cli.args import Parser as _Parser
from groklab.cli.args import seeds_arg as _seeds
from groklab.errors import GroklabError
from groklab.train.config import (
    ACTIVATIONS,
    DEVICES,
    DTYPES,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    RunConfig,
)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true/false")


# Every RunConfig field is an option; type and help live here once.
OPTIONS: dict[str, tuple[type, str]] = {
    "group": (str, "task: Z<n>, Z<a>xZ<b>, D<n>, S<n>, A<n>, Q8, table:FILE, 'expr:x/y mod 97'"),
    "frac": (float, "training fraction of all pairs, in (0, 1) (default 0.3)"),
    "n_train": (int, "number of training pairs"),
    "crit_mult": (float, "training size as a multiple of the Li2 critical size"),
    "split_seed": (int, "one split for all members (default: each member's own seed)"),
    "model": (str, "|".join(MODELS)),
    "width": (int, "hidden width K (default 512)"),
    "act": (str, "|".join(ACTIVATIONS)),
    "loss": (str, "|".join(LOSSES)),
    "ridge": (float, "solve the top layer in closed form with ridge λ every step (mse)"),
    "init": (str, "start from W, V in a .safetensors file"),
    "init_scale": (str, "li2 first-layer init: joint = U(±1/√(2M)), the current Li2 code's nn.Linear(2M, K) (default); "
                        "per-operand = U(±1/√M), its older layera/layerb"),
    "d_model": (int, "transformer width"), "n_heads": (int, "transformer heads"), "d_mlp": (int, "MLP width"),
    "opt": (str, "|".join(OPTIMIZERS)),
    "lr": (float, "learning rate (default 1e-3)"), "wd": (float, "weight decay (default 1e-4)"),
    "beta1": (float, "Adam β1"), "beta2": (float, "Adam β2"), "momentum": (float, "SGD momentum"),
    "muon_momentum": (float, "Muon EMA momentum (default 0.99)"),
    "steps": (int, "optimizer steps (default 3000)"), "eval_every": (int, "evaluate every N steps (default 10)"),
    "ckpt_every": (int, "checkpoint every N steps (default 500)"),
    "seeds": (_seeds, "ensemble seeds, e.g. 0,1,2 or 0-7 (default 0)"),
    "batch_size": (int, "minibatch size (default: full batch)"),
    "dtype": (str, "|".join(DTYPES)), "device": (str, "|".join(DEVICES)),
    "stop_grokked": (int, "stop a member N steps after test acc >= 0.99"),
    "stop_plateau": (int, "stop a member once train acc is 1 and test acc has not moved for N steps"),
    "grokfast": (str, "none|ema|ma (Lee et al. 2024)"), "grokfast_alpha": (float, "EMA α"),
    "grokfast_lamb": (float, "amplification λ"), "grokfast_window": (int, "MA window"),
    "warmup": (int, "linear lr warm-up over the first N updates (Nanda's and Grokfast's code use 10)"),
    "orth_grad": (_bool, "⊥Grad: remove the gradient component along the weights (Prieto et al. 2025)"),
}


def _add_config_options(p: argparse.ArgumentParser) -> None:
    assert set(OPTIONS) == set(RunConfig.field_names()), "every config field needs a CLI option"
    for name, (typ, help_) in OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_)


def _config_from_args(ns: argparse.Namespace) -> RunConfig:
    flat = {k: getattr(ns, k) for k in OPTIONS if getattr(ns, k) is not None}
    return RunConfig.from_flat(flat)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="groklab", description="A laboratory for grokking on finite groups (Li2 theory alongside).")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="train one run (an ensemble of seeds) and write a run folder")
    _add_config_options(r)
    r.add_argument("--out", help="run folder (default runs/<group>-<time>); must be new")
    r.add_argument("--resume", metavar="DIR", help="continue an interrupted run folder")
    r.add_argument("--keep-ckpt", action="store_true", help="keep checkpoint.pt after the run completes")
    r.add_argument("--quiet", action="store_true", help="no progress bar")

    d = sub.add_parser("demo", help="one run that groks and one that only memorizes, side by side (~1-3 min)")
    d.add_argument("--out", default="demo_out", help="folder for the two runs and the plot (default demo_out)")
    d.add_argument("--quiet", action="store_true")

    b = sub.add_parser("bench", help="performance figures as ratios measured in one process")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    b.add_argument("--quick", action="store_true", help="fewer repetitions (for tests)")
    b.add_argument("--device", default="auto", choices=DEVICES)

    rp = sub.add_parser("report", help="HTML (+PNG) report of a run, a sweep, or several runs compared")
    rp.add_argument("paths", nargs="+", help="run folder(s) or a sweep folder")
    rp.add_argument("--out", help="where to write the HTML (default: inside the first folder)")

    for add_parser, _ in _verb_modules():
        add_parser(sub)
    return p


def cmd_run(ns: argparse.Namespace, argv: list[str]) -> int:
    from groklab.train import api
    from groklab.train.display import RunProgress, print_summary

    if ns.resume:
        given = [k for k in OPTIONS if getattr(ns, k) is not None] + (["out"] if ns.out else [])
        if given:
            raise GroklabError(f"--resume {ns.resume}: takes no other run options (got --{given[0].replace('_', '-')}); the folder's config.json is used")
        cfg, _ = api.record.load_config(Path(ns.resume))
        with RunProgress(cfg, quiet=ns.quiet) as prog:
            result = api.resume(ns.resume, on_eval=prog.update, keep_checkpoint=ns.keep_ckpt)
    else:
        cfg = _config_from_args(ns)
        with RunProgress(cfg, quiet=ns.quiet) as prog:
            result = api.run(cfg, ns.out or "auto", argv=argv, on_eval=prog.update, keep_checkpoint=ns.keep_ckpt)
    print_summary(result)
    return 0 if result.summary["status"] == "complete" else 3


def cmd_demo(ns: argparse.Namespace, argv: list[str]) -> int:
    from groklab.cli.demo import demo

    demo(Path(ns.out), quiet=ns.quiet)
    return 0


def cmd_bench(ns: argparse.Namespace, argv: list[str]) -> int:
    from groklab.bench import main as bench_main

    return bench_main(json_path=ns.json, quick=ns.quick, device=ns.device)


def cmd_report(ns: argparse.Namespace, argv: list[str]) -> int:
    from groklab.report import report

    print(report(ns.paths, out=ns.out))
    return 0


def _verb_modules() -> list[tuple]:
    """The verbs that live in modules of their own: (add their parser to `sub`, {verb: command})."""
    from groklab.cli import (
        joma,
        landscape,
        posttrain,
        snap,
        superposition,
        sweep,
        theory,
    )

    return [(sweep.add_parser, {"sweep": sweep.cmd_sweep}),
            (theory.add_parsers, {"theory": theory.cmd_theory, "analyze": theory.cmd_analyze}),
            (landscape.add_parser, {"landscape": landscape.cmd_landscape}),
            (lambda sub: snap.add_parser(sub, _Parser), {"snap": snap.cmd}),
            (lambda sub: joma.add_parser(sub, _Parser), {"joma": joma.cmd}),
            (lambda sub: posttrain.add_parser(sub, _Parser), {"posttrain": posttrain.cmd}),
            (lambda sub: superposition.add_parser(sub, _Parser), {"superposition": superposition.cmd})]


def commands() -> dict:
    """Every verb and the function that runs it: (ns, argv) -> exit status."""
    table = {"run": cmd_run, "demo": cmd_demo, "bench": cmd_bench, "report": cmd_report}
    for _, cmds in _verb_modules():
        table.update(cmds)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from groklab.train.api import Interrupted

    try:
        ns = build_parser().parse_args(argv)
        return commands()[ns.verb](ns, argv)
    except GroklabError as e:
        print(f"groklab: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"groklab: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("groklab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
