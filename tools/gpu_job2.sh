#!/bin/bash
# H200 call 2: finish the core matrix into the same results log, the independent checks,
# the gate's A/B and 10%-slowdown runs, and two faults (OOM, another process on the GPU).
# Everything lands in one tarball (the device returns at most 8 files).
export PYTHONUNBUFFERED=1
O=/root/o; mkdir -p $O
P="python3 -m pytest benchmarks/ --gpu h200 --moeperf-gate off -p no:cacheprovider -q"
cp gpu_core_results.jsonl $O/core-results.jsonl
$P --moeperf-models yi-34b --moeperf-contexts 2048 --moeperf-results $O/core-results.jsonl > $O/core_yi2048.log 2>&1
python3 tools/gpu_validate.py --model gpt-oss-20b --context 2048 --rounds 6 --out $O/validate.json > $O/validate.log 2>&1
G="--moeperf-models gpt-oss-20b --moeperf-contexts 2048"
$P $G --moeperf-results $O/runB.jsonl > $O/gateB.log 2>&1
SLOWDOWN_MS=4 $P $G -p tools.slowdown_plugin --moeperf-results $O/runC.jsonl > $O/gateC.log 2>&1
$P --moeperf-models gpt-oss-20b --moeperf-experts batched_mm,grouped_mm --moeperf-contexts 2048 --moeperf-rounds 3 --moeperf-energy-windows 1 --moeperf-results $O/faults.jsonl > $O/oom.log 2>&1
python3 -c "import torch,time; x=torch.empty(4<<30,dtype=torch.uint8,device='cuda'); time.sleep(60)" &
sleep 8
$P --moeperf-models gpt-oss-20b --moeperf-contexts 128 --moeperf-rounds 3 --moeperf-energy-windows 1 --moeperf-results $O/faults.jsonl > $O/otherproc.log 2>&1
kill %1 2>/dev/null
tar czf $OUT/bundle.tgz -C $O .
tail -n 4 $O/*.log
