#!/bin/bash
# nvidia-h200-x2, a short call with the session's last device minutes: the dense decoding case
# the first call's time limit cut (yi-34b temp0.3), then a dense model under its tensor-parallel
# plan over both GPUs (qwen3-32b, ctx 128). Writes straight to $OUT so a cut call keeps what ended.
export PYTHONUNBUFFERED=1 CUDA_DEVICE_ORDER=PCI_BUS_ID
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
CUDA_VISIBLE_DEVICES=0 timeout 75 python3 -m pytest benchmarks/ --gpu h200 --moeperf-gate off -p no:cacheprovider -q \
  --moeperf-rounds 5 --moeperf-energy-windows 2 --moeperf-models yi-34b --moeperf-contexts 512 \
  --moeperf-decoding temp0.3 --moeperf-results $OUT/decoding-dense-2.jsonl > $OUT/decoding-dense-2.log 2>&1
timeout 80 python3 -m torch.distributed.run --nproc-per-node 2 -m pytest_moeperf.multigpu --model qwen3-32b \
  --contexts 128 --new-tokens 64 --rounds 5 --json $OUT/tp-qwen3-32b.json > $OUT/tp-qwen3.log 2>&1
tail -n 3 $OUT/*.log
