"""Process-wide floating-point settings, decided once: subnormal floats are flushed to zero.

Why: weight decay drives the weights and Adam moments of units that stop learning towards zero
until they become subnormal (|x| < 1.18e-38 in float32). On x86, arithmetic on subnormals is
microcoded and can be 10-100x slower, so a long run slowed down 10-16x as units died (issue 12:
Z97, K = 2048, lr 5e-4, wd 2e-4 went from ~25 to 3 steps/s). Flushing them (FTZ: results that
would be subnormal become 0; DAZ: subnormal inputs are read as 0) keeps every step at the speed
of the first.

What it changes numerically: only values below the smallest normal float (1.18e-38 in float32,
2.2e-308 in float64) become 0. Such a value is 1e-30 times smaller than any weight that matters;
the demo, the grok boundary and the float64 reference comparisons are unchanged (tests, README).

Where it is applied: `flush_subnormals()` runs when `groklab` is imported (groklab.train's face
calls it), so the CLI, the Python API, local sweep workers and Ray workers (both import groklab
before they compute) all run with it. The MXCSR flags are per thread: torch applies them to the
calling thread, and threads created later inherit them. Where the intra-op thread pool already
existed (a library user who ran torch code before importing groklab), the probe below detects
threads that still keep subnormals and the setting is broadcast to every OpenMP thread.
`GROKLAB_FLUSH_DENORMAL=0` in the environment turns all of it off (to measure what it saves).
"""

from __future__ import annotations

import ctypes
import os
import threading

import torch

__all__ = ["ENV", "flush_subnormals", "subnormals_flushed", "numerics_state"]

ENV = "GROKLAB_FLUSH_DENORMAL"
_STATE: dict = {}


def _wanted() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def subnormals_flushed() -> bool:
    """Probe every intra-op thread: an elementwise op and a GEMM on subnormal inputs, both large
    enough to be split over all threads, must give exact zeros (DAZ) when the setting is on."""
    n = 1 << 18  # elements per probe: well above ATen's grain size (32768) times the thread count
    tiny = torch.full((n,), 1e-39, dtype=torch.float32)  # subnormal float32
    elementwise = tiny * 0.5 + tiny  # (n,): 1.5e-39 without DAZ, 0 with it
    gemm = torch.full((256, 256), 1e-39) @ torch.ones(256, 64)  # (256, 64): 2.56e-37 without DAZ
    return bool((elementwise == 0).all()) and bool((gemm == 0).all())


def _each_omp_thread(fn) -> set[int]:
    """Run `fn()` once on every thread of the OpenMP team torch computes with (GOMP_parallel with
    torch's thread count); returns the idents of the threads that ran it."""
    try:
        gomp = ctypes.CDLL("libgomp.so.1")
    except OSError:
        return set()
    ran: set[int] = set()

    def body(_):  # GOMP_parallel runs it exactly once on each thread of the team
        fn()
        ran.add(threading.get_ident())

    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(body)
    gomp.GOMP_parallel(callback, None, ctypes.c_uint(torch.get_num_threads()), ctypes.c_uint(0))
    return ran


def flush_subnormals() -> dict:
    """Turn flush-to-zero on for this process (idempotent) and return what was done, as recorded in
    config.json and summary.json: {"flush_subnormals": bool, "how": str}."""
    if _STATE.get("threads") == torch.get_num_threads():
        return numerics_state()
    if not _wanted():
        torch.set_flush_denormal(False)
        _STATE.update(on=False, how=f"off ({ENV}=0)")
    elif not torch.set_flush_denormal(True):
        _STATE.update(on=False, how="not supported by this CPU (no SSE3)")
    elif subnormals_flushed():
        _STATE.update(on=True, how="torch.set_flush_denormal")
    else:  # the thread pool predates the call: set the flags in every OpenMP thread, then check again
        _each_omp_thread(lambda: torch.set_flush_denormal(True))
        ok = subnormals_flushed()
        _STATE.update(on=ok, how="broadcast to the OpenMP threads" if ok else
                      "FAILED in some threads: import groklab before running torch code")
    _STATE["threads"] = torch.get_num_threads()
    return numerics_state()


def numerics_state() -> dict:
    """{"flush_subnormals": bool, "how": str}: what `flush_subnormals` did in this process."""
    if not _STATE:
        return {"flush_subnormals": False, "how": "not set"}
    return {"flush_subnormals": bool(_STATE["on"]), "how": _STATE["how"]}
