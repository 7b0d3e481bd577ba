#!/bin/bash
# nvidia-h200-x2, call 1 of 3: two single-GPU lanes side by side (separate processes, one GPU each).
#   GPU 0: the gate's acceptance runs (issue 4): static backend three times, then a 1 ms synced
#          sleep per decode step; then the dense model on the decoding axis (issue 6).
#   GPU 1: issue 6's precision, batch and decoding axes for gpt-oss-20b and a dense model.
export PYTHONUNBUFFERED=1 CUDA_DEVICE_ORDER=PCI_BUS_ID
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
O=/root/o; mkdir -p $O /root/cc0
trap 'tar czf $OUT/bundle1.tgz -C $O .' EXIT
nvidia-smi -L > $O/gpus.txt
P="python3 -m pytest benchmarks/ --gpu h200 --moeperf-gate off -p no:cacheprovider -q"
A="--moeperf-rounds 5 --moeperf-energy-windows 2"
lane0() {
  S="--moeperf-models gpt-oss-20b --moeperf-contexts 2048 --moeperf-backend static --moeperf-compile-cache /root/cc0"
  timeout 180 $P $S --moeperf-results $O/sB1.jsonl > $O/sB1.log 2>&1      # cold compile: warm-up run
  timeout 95 $P $S --moeperf-results $O/sB2.jsonl > $O/sB2.log 2>&1
  timeout 95 $P $S --moeperf-results $O/sB3.jsonl > $O/sB3.log 2>&1
  SLOWDOWN_MS=1 timeout 95 $P $S -p tools.slowdown_plugin --moeperf-results $O/sC.jsonl > $O/sC.log 2>&1
  timeout 105 $P $A --moeperf-models yi-34b --moeperf-contexts 512 --moeperf-decoding top_p0.9,top_k50,temp1.5,temp0.3 --moeperf-results $O/decoding-dense.jsonl > $O/decoding-dense.log 2>&1
}
lane1() {
  timeout 200 $P $A --moeperf-models gpt-oss-20b,yi-34b --moeperf-contexts 128 --moeperf-dtype fp16,fp32 --moeperf-results $O/precision.jsonl > $O/precision.log 2>&1
  timeout 170 $P $A --moeperf-models gpt-oss-20b,yi-34b --moeperf-contexts 512 --moeperf-batch 4,16 --moeperf-results $O/batch.jsonl > $O/batch.log 2>&1
  timeout 140 $P $A --moeperf-models gpt-oss-20b --moeperf-contexts 512 --moeperf-decoding top_k50,temp1.5,temp0.3 --moeperf-results $O/decoding-moe.jsonl > $O/decoding-moe.log 2>&1
}
CUDA_VISIBLE_DEVICES=0 lane0 & CUDA_VISIBLE_DEVICES=1 lane1 & wait
tail -n 3 $O/*.log
