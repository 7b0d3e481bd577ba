#!/bin/bash
# Every gate comparison of docs/evidence/gate-h200.md's 10 % table, over the H200 runs in
# baselines/h200-runs/2026-11-29b (8 same-code runs in base/, 8 slowed runs in slow/).
# No GPU needed. Run from the repository root: bash studies/gate_pairs.sh > pairs.txt
set -u
R=baselines/h200-runs/2026-11-29b
G=$(mktemp -d); trap 'rm -rf "$G"' EXIT
# compare takes a folder for a pooled baseline: one folder per side and split
for side in base slow; do
  mkdir -p "$G/$side" "$G/${side}odd" "$G/${side}even"
  for i in 1 2 3 4 5 6 7 8; do
    cp "$R/$side/run$i.json" "$G/$side/"
    if [ $((i % 2)) = 1 ]; then cp "$R/$side/run$i.json" "$G/${side}odd/"; else cp "$R/$side/run$i.json" "$G/${side}even/"; fi
  done
done
verdict() { python -m pytest_moeperf compare "$@" 2>&1 | head -1; }
echo "base odd vs even: $(verdict "$G/baseodd" --all-runs "$G"/baseeven/*.json)"
echo "base even vs odd: $(verdict "$G/baseeven" --all-runs "$G"/baseodd/*.json)"
echo "slow odd vs even: $(verdict "$G/slowodd" --all-runs "$G"/sloweven/*.json)"
echo "slow even vs odd: $(verdict "$G/sloweven" --all-runs "$G"/slowodd/*.json)"
echo "slow vs base (improvement direction): $(verdict "$G/slow" --all-runs "$G"/base/*.json)"
echo "base odd vs slow even (4 a side): $(verdict "$G/baseodd" --all-runs "$G"/sloweven/*.json)"
echo "base even vs slow odd (4 a side): $(verdict "$G/baseeven" --all-runs "$G"/slowodd/*.json)"
for side in base slow; do
  for i in 1 2 3 4 5 6 7 8; do for j in 1 2 3 4 5 6 7 8; do [ $i = $j ] && continue
    echo "$side $i->$j $(verdict "$G/$side/run$i.json" "$G/$side/run$j.json")"; done; done
done
for i in 1 2 3 4 5 6 7 8; do for j in 1 2 3 4 5 6 7 8; do
  echo "slowdown $i->$j $(verdict "$G/base/run$i.json" "$G/slow/run$j.json")"; done; done
