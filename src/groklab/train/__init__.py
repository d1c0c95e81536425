"""Training: the run config, the one training loop (engine), optimizers, losses, gradient tricks,
run folders (record) and the run/resume API. Imports: models, tasks, theory, errors, science."""

from groklab.train.api import Run, load_run, resume, run
from groklab.train.config import ModelConfig, RunConfig, TaskConfig, TrainConfig

__all__ = ["Run", "load_run", "resume", "run", "RunConfig", "TaskConfig", "ModelConfig", "TrainConfig"]
