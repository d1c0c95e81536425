"""Sweep throughput benchmark (the code lives in groklab.bench.sweep, so `groklab bench` can call it
from an installed package): 16 members of Z47 (K = 256) as one sweep vs one after another.

    python bench/bench_sweep.py [--quick]
"""

from __future__ import annotations

from groklab.bench.sweep import bench_sweep

__all__ = ["bench_sweep"]

if __name__ == "__main__":
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    print(json.dumps(bench_sweep(quick=p.parse_args().quick), indent=2))
