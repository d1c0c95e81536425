"""The paper's probes (Fig. 6 / Table 1 groups) read on the exact construction, on the training
data's graphs: the reference a trained Coconut model would match if it learned the construction.

    PYTHONPATH=src python scripts/superposition_construction_probes.py [--depth 3 --n-min 8 --n-max 10 --n-tokens 12 --graphs 128]
"""

import argparse
import json

import numpy as np

from groklab.superposition.data import DataConfig, make_graph
from groklab.superposition.probes import probe_construction

ap = argparse.ArgumentParser()
ap.add_argument("--depth", type=int, default=3)
ap.add_argument("--n-min", type=int, default=8)
ap.add_argument("--n-max", type=int, default=10)
ap.add_argument("--n-tokens", type=int, default=12)
ap.add_argument("--graphs", type=int, default=128)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
cfg = DataConfig(n_min=a.n_min, n_max=a.n_max, depth=a.depth, n_tokens=a.n_tokens)
rng = np.random.default_rng(a.seed)
p = probe_construction([make_graph(rng, cfg) for _ in range(a.graphs)], a.n_tokens)
out = {k: [{g: (None if s["mean"] is None else round(s["mean"], 4)) for g, s in step.items()} for step in v] for k, v in p.items()}
print(json.dumps(out, indent=1))
