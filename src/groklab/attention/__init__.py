"""Attention dynamics: Scan & Snap (arXiv 2305.16380) and JoMA (arXiv 2310.00535), on CPU.

Faithful to facebookresearch/luckmatters ssl/real-dataset (decoder_only.py, scan_snap/, joma/,
decoder_only_hier.py); see docs/attention.md.
"""

from .scan_snap import FIG4, SnapConfig, fig6_config, freeze_time, snap_time, train_snap
from .snap_data import DataConfig, Facts, build_facts, code_stream
from .snap_model import c_attention, c_entropy, c_entropy_distinct, forward_backward

__all__ = ["DataConfig", "Facts", "build_facts", "code_stream",
           "forward_backward", "c_attention", "c_entropy", "c_entropy_distinct",
           "SnapConfig", "FIG4", "fig6_config", "train_snap", "snap_time", "freeze_time"]
