#!/bin/bash
# H200: the gate's acceptance runs (issue 4). Same code twice, then a real ~10% decode
# slowdown, on the static backend (GPU-bound, ~10 ms/token) and on eager with enough rounds.
# Compare afterwards here:  python -m pytest_moeperf compare B.json C.json
export PYTHONUNBUFFERED=1
O=/root/o; mkdir -p $O /root/cc
trap 'tar czf $OUT/bundle.tgz -C $O .' EXIT
P="python3 -m pytest benchmarks/ --gpu h200 --moeperf-gate off -p no:cacheprovider -q --moeperf-compile-cache /root/cc"
S="--moeperf-models gpt-oss-20b --moeperf-contexts 2048 --moeperf-backend static"
timeout 200 $P $S --moeperf-results $O/sB1.jsonl > $O/sB1.log 2>&1      # cold compile, discarded as warm-up run
timeout 120 $P $S --moeperf-results $O/sB2.jsonl > $O/sB2.log 2>&1
timeout 120 $P $S --moeperf-results $O/sB3.jsonl > $O/sB3.log 2>&1
SLOWDOWN_MS=1 timeout 120 $P $S -p tools.slowdown_plugin --moeperf-results $O/sC.jsonl > $O/sC.log 2>&1
tail -n 2 $O/*.log
