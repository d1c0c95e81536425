"""groklab: a laboratory for grokking on finite groups, with the Li2 theory alongside.

    >>> import groklab
    >>> cfg = groklab.RunConfig.from_flat({"group": "Z23", "crit_mult": 2.0, "steps": 1500})
    >>> # groklab.run(cfg) trains and writes a run folder; see README.md
"""

__version__ = "0.1.0"

from .api import Run, load_run, resume, run  # noqa: E402
from .config import ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402
from .errors import GroklabError  # noqa: E402
from .tasks import make_task  # noqa: E402

__all__ = ["run", "resume", "load_run", "Run", "RunConfig", "TaskConfig", "ModelConfig", "TrainConfig",
           "GroklabError", "make_task", "__version__"]
