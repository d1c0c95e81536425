#!/usr/bin/env bash
# SFT vs RL on rule-variant group tasks (docs/posttrain.md): the commands behind every number there.
#
#   scripts/posttrain_compare.sh small [OUT]   # the committed numbers: 3 reduced comparisons, ~5-10 min each on 1 core
#   scripts/posttrain_compare.sh full  [OUT]   # the full-size comparison (defaults of PosttrainConfig), ~20 min on 1 core
#
# Each call writes run folders and a report.html per comparison under OUT (default runs/posttrain).
set -euo pipefail
what=${1:-small}
out=${2:-runs/posttrain}
py=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
gl() { "$py" -m groklab.cli posttrain "$@"; }
case "$what" in
  small)
    gl --preset small --out "$out/small-h2"                           # 2-step answers, r0 = a + 2b (mod 17)
    gl --preset small --r0 relabel:3 --out "$out/small-h2-relabel"    # r0: the last 3 elements read as the one below
    gl --preset small --post-opt sgd --post-lr 0.002 --out "$out/small-h2-sgd"  # SGD (momentum 0.9) instead of Adam
    ;;
  full)
    gl --out "$out/full-h2"
    ;;
  *) echo "usage: $0 small|full [OUT]" >&2; exit 2 ;;
esac
