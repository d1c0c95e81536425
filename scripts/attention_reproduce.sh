#!/usr/bin/env bash
# Regenerates every number of docs/attention.md (and the README's "Attention dynamics" section).
# Usage: scripts/attention_reproduce.sh [OUT_DIR]   (default runs/attention; ~20 min on one core)
set -euo pipefail
OUT=${1:-runs/attention}
G=${GROKLAB:-groklab}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
t() { local name=$1; shift; local s=$(date +%s.%N); "$@" | tee "$OUT/$name.txt"; \
      echo "wall_s $(echo "$(date +%s.%N) - $s" | bc)" | tee -a "$OUT/$name.txt"; }
t snap-fig4   $G snap fig4 --out "$OUT/snap-fig4"
t snap-fig6   $G snap grid --out "$OUT/snap-fig6"
t joma-toy    $G joma toy --out "$OUT/joma-toy"
t joma-linear $G joma linear --seeds 0-9 --out "$OUT/joma-linear"
t joma-hier   $G joma hier --seeds 1-3 --out "$OUT/joma-hier"
t joma-hier-wd0 $G joma hier --seeds 1-3 --wd 0 --out "$OUT/joma-hier-wd0"
for d in snap-fig4 snap-fig6 joma-toy joma-linear joma-hier joma-hier-wd0; do $G report "$OUT/$d"; done
