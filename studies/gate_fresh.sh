#!/bin/bash
# Issue 21 item 2: the gate on fresh H200 data it was never tuned on (baselines/h200-runs/2026-12-02b):
# 6 same-code static runs (base/), 4 runs each with ~5 % and ~15 % decode slowdowns (slow05/, slow15/,
# studies/slowdown_plugin.py), and the drift-study runs (pin/, warm/). No GPU needed. From the repo root:
#   bash studies/gate_fresh.sh > pairs.txt
set -u
R=${1:-baselines/h200-runs/2026-12-02b}
G=$(mktemp -d); trap 'rm -rf "$G"' EXIT
for side in base slow05 slow15; do
  mkdir -p "$G/$side" "$G/${side}odd" "$G/${side}even"
  for f in "$R/$side"/run*.json; do
    i=$(basename "$f" .json); i=${i#run}
    cp "$f" "$G/$side/"
    if [ $((i % 2)) = 1 ]; then cp "$f" "$G/${side}odd/"; else cp "$f" "$G/${side}even/"; fi
  done
done
verdict() { python -m pytest_moeperf compare "$@" 2>&1 | head -1; }
# the gated decode metrics and energy of a comparison, from its verbose table
line() { python -m pytest_moeperf compare "$@" -v 2>&1 | grep -E "  (tpot_ms|itl_ms_p50|decode_tokens_per_s|e2e_ms_p50|j_per_1k_tokens) \[" ; }
echo "## the recipe: every stored run a side"
for s in slow15 slow05; do
  echo "base (all) -> $s (all): $(verdict "$G/base" --all-runs "$G/$s"/*.json)"
  line "$G/base" --all-runs "$G/$s"/*.json
done
echo "slow15 (all) -> base (all), the improvement direction: $(verdict "$G/slow15" --all-runs "$G"/base/*.json)"
echo "## same code, split odd/even"
echo "base odd -> even: $(verdict "$G/baseodd" --all-runs "$G"/baseeven/*.json)"
echo "base even -> odd: $(verdict "$G/baseeven" --all-runs "$G"/baseodd/*.json)"
for s in slow05 slow15; do
  echo "$s odd -> even: $(verdict "$G/${s}odd" --all-runs "$G/${s}even"/*.json)"
  echo "$s even -> odd: $(verdict "$G/${s}even" --all-runs "$G/${s}odd"/*.json)"
done
echo "## slowdowns, half a side"
for s in slow05 slow15; do
  echo "base odd -> $s even: $(verdict "$G/baseodd" --all-runs "$G/${s}even"/*.json)"
  echo "base even -> $s odd: $(verdict "$G/baseeven" --all-runs "$G/${s}odd"/*.json)"
done
echo "## one run a side"
for a in "$G"/base/run*.json; do for b in "$G"/base/run*.json; do [ "$a" = "$b" ] && continue
  echo "same $(basename "$a" .json)->$(basename "$b" .json) $(verdict "$a" "$b")"; done; done
for s in slow05 slow15; do for a in "$G"/base/run*.json; do for b in "$G/$s"/run*.json; do
  echo "$s $(basename "$a" .json)->$(basename "$b" .json) $(verdict "$a" "$b")"; done; done; done
