#!/bin/bash
# nvidia-h200-x2, call 3 of 3 (issue 6): the dense model on the serving-stack axis, long contexts
# and generated lengths; two single-GPU lanes side by side.
export PYTHONUNBUFFERED=1 CUDA_DEVICE_ORDER=PCI_BUS_ID
O=/root/o; mkdir -p $O /root/cc1
trap 'tar czf $OUT/bundle3.tgz -C $O .' EXIT
P="python3 -m pytest benchmarks/ --gpu h200 --moeperf-gate off -p no:cacheprovider -q"
A="--moeperf-rounds 5 --moeperf-energy-windows 2"
lane0() {
  timeout 320 $P --moeperf-energy-windows 2 --moeperf-models yi-34b --moeperf-contexts 2048 --moeperf-backend static --moeperf-compile-cache /root/cc1 --moeperf-results $O/static-dense.jsonl > $O/static-dense.log 2>&1
  timeout 180 $P $A --moeperf-models qwen3-32b --moeperf-contexts 4096,8192 --moeperf-results $O/context-dense.jsonl > $O/context-dense.log 2>&1
}
lane1() {
  timeout 190 $P $A --moeperf-models gpt-oss-20b --moeperf-contexts 4096,8192 --moeperf-results $O/context-moe.jsonl > $O/context-moe.log 2>&1
  timeout 310 $P $A --moeperf-models gpt-oss-20b,yi-34b --moeperf-contexts 2048 --moeperf-new-tokens 128,256 --moeperf-results $O/newtokens.jsonl > $O/newtokens.log 2>&1
}
CUDA_VISIBLE_DEVICES=0 lane0 & CUDA_VISIBLE_DEVICES=1 lane1 & wait
tail -n 3 $O/*.log
