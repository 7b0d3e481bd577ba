#!/bin/bash
# H200: the ablation axes of issue 6 not yet run there (precision, batch 16, the other decoding
# presets, long contexts, a dense model on each axis). Each phase appends to its own log.
export PYTHONUNBUFFERED=1
O=/root/o; mkdir -p $O
trap 'tar czf $OUT/bundle.tgz -C $O .' EXIT
P="python3 -m pytest benchmarks/ --gpu h200 --moeperf-gate off -p no:cacheprovider -q --moeperf-rounds 5 --moeperf-energy-windows 2"
timeout 150 $P --moeperf-models gpt-oss-20b --moeperf-contexts 128 --moeperf-dtype fp16,fp32 --moeperf-results $O/precision.jsonl > $O/precision.log 2>&1
timeout 150 $P --moeperf-models gpt-oss-20b,yi-34b --moeperf-contexts 512 --moeperf-batch 4,16 --moeperf-results $O/batch.jsonl > $O/batch.log 2>&1
timeout 150 $P --moeperf-models gpt-oss-20b,yi-34b --moeperf-contexts 512 --moeperf-decoding top_k50,temp1.5,temp0.3 --moeperf-results $O/decoding.jsonl > $O/decoding.log 2>&1
timeout 120 $P --moeperf-models gpt-oss-20b --moeperf-contexts 4096,8192 --moeperf-new-tokens 64,256 --moeperf-results $O/context.jsonl > $O/context.log 2>&1
tail -n 2 $O/*.log
