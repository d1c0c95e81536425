"""Post-training on rule-variant group tasks: SFT vs RL from one base, with what each does to the weights.

A base model learns two rules on one group (r1 = the group law, r0 = a documented variant), to
partial competence; then it is post-trained on r0 only, by SFT (cross-entropy on gold answers) and by
RL (policy gradient with a 0/1 verifier reward, with and without a KL anchor to the base), with the
same number of samples. Measured: r0 (in distribution) and r1 (the other rule) accuracy over
post-training, and per weight matrix the rotation, spectral drift, principal-block share and bf16
gate of the update (diagnostics.py). docs/posttrain.md has the method and results.

    >>> from groklab.posttrain import PosttrainConfig, run_posttrain
    >>> cfg = PosttrainConfig.small()       # run_posttrain(cfg, "runs/posttrain") writes the folders
"""

from groklab.posttrain.config import ARMS, BASELINES, PosttrainConfig
from groklab.posttrain.diagnostics import matrix_diagnostics, principal_angles
from groklab.posttrain.experiment import run_posttrain
from groklab.posttrain.rules import RuleTask, make_rule_task

__all__ = ["PosttrainConfig", "ARMS", "BASELINES", "run_posttrain", "make_rule_task", "RuleTask",
           "matrix_diagnostics", "principal_angles"]
