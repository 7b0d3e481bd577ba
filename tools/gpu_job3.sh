#!/bin/bash
# H200 call 3: the static backend (cold and warm compile cache), the gate's A/B and
# 10%-slowdown runs on it, routing statistics, then what time allows of the eager ablations.
export PYTHONUNBUFFERED=1
O=/root/o; mkdir -p $O /root/cc
trap 'tar czf $OUT/bundle.tgz -C $O .' EXIT
P="python3 -m pytest benchmarks/ --gpu h200 --moeperf-gate off -p no:cacheprovider -q --moeperf-compile-cache /root/cc"
S="--moeperf-models gpt-oss-20b --moeperf-contexts 2048 --moeperf-backend static"
timeout 200 $P $S --moeperf-routing --moeperf-results $O/static1.jsonl > $O/static1.log 2>&1
timeout 130 $P $S --moeperf-results $O/static2.jsonl > $O/static2.log 2>&1
SLOWDOWN_MS=1 timeout 130 $P $S -p tools.slowdown_plugin --moeperf-results $O/static3.jsonl > $O/static3.log 2>&1
timeout 95 $P --moeperf-models gpt-oss-20b --moeperf-contexts 128 --moeperf-decoding top_p0.9 --moeperf-batch 1,4 --moeperf-rounds 3 --moeperf-energy-windows 1 --moeperf-results $O/ablate.jsonl > $O/ablate.log 2>&1
tail -n 3 $O/*.log
