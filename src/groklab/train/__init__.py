"""Training: the run config, the one training loop (engine), optimizers, losses, gradient tricks,
run folders (record) and the run/resume API. Imports: models, tasks, theory, errors, science."""

from groklab.train.numerics import flush_subnormals

# Before anything computes: flush subnormal floats to zero in every thread (train/numerics.py says why).
flush_subnormals()

from groklab.train.api import Run, load_run, resume, run  # noqa: E402
from groklab.train.config import ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402

__all__ = ["Run", "load_run", "resume", "run", "RunConfig", "TaskConfig", "ModelConfig", "TrainConfig", "flush_subnormals"]
