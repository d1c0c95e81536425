"""Timing helpers shared by the benchmarks: best-of-n wall time and the machine's GEMM ceiling."""

from __future__ import annotations

import time
from typing import Callable

import torch

__all__ = ["best_time", "matmul_peak"]


def best_time(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> float:
    """Best of `repeat` timings of fn() (seconds); the best is the least disturbed by other load."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peak(device: torch.device, sync, n: int = 1024, repeat: int = 10) -> float:
    """FLOP/s of a square float32 GEMM: the machine's practical matmul ceiling."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2 * n ** 3 / best_time(lambda: a @ b, repeat, sync)
