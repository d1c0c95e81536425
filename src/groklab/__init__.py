"""groklab: a laboratory for grokking on finite groups, with the Li2 theory alongside.

    >>> import groklab
    >>> cfg = groklab.RunConfig.from_flat({"group": "Z23", "crit_mult": 2.0, "steps": 1500})
    >>> # groklab.run(cfg) trains and writes a run folder; see README.md

The package is split into rooms by purpose (README "Layout"); imports only point down, and
tests/test_layout.py keeps it so. This face re-exports the public API.
"""

from groklab.errors import GroklabError
from groklab.science import VERSION as __version__
from groklab.tasks import make_task
from groklab.train.api import Run, load_run, resume, run
from groklab.train.config import ModelConfig, RunConfig, TaskConfig, TrainConfig

__all__ = ["run", "resume", "load_run", "Run", "RunConfig", "TaskConfig", "ModelConfig", "TrainConfig",
           "GroklabError", "make_task", "__version__"]
