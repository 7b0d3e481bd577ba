#!/bin/bash
# nvidia-h200-x2, call 2 of 3 (issue 8): the core matrix spread over both GPUs with pytest-xdist
# (one worker per GPU, --dist loadgroup keeps each model on one worker), then gpt-oss-120b
# (bf16, ~234 GB: larger than one H200) sharded over both GPUs under torchrun.
export PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
O=/root/o; mkdir -p $O
trap 'tar czf $OUT/bundle2.tgz -C $O .' EXIT
python3 -c 'import xdist, torch; print("xdist", xdist.__version__, "gpus", torch.cuda.device_count())' > $O/env.txt 2>&1
t0=$(date +%s)
timeout 430 python3 -m pytest benchmarks/ --gpu h200 -n 2 --dist loadgroup --moeperf-gate off -p no:cacheprovider -q \
  --moeperf-results $O/x2.jsonl --benchmark-json $O/x2-core.json > $O/x2.log 2>&1
echo "xdist core matrix wall_s $(( $(date +%s) - t0 ))" >> $O/env.txt
t0=$(date +%s)
timeout 150 python3 -m torch.distributed.run --nproc-per-node 2 -m pytest_moeperf.multigpu --model gpt-oss-120b \
  --contexts 128,2048 --new-tokens 64 --rounds 10 --json $O/tp-gpt-oss-120b.json > $O/tp.log 2>&1
echo "tp wall_s $(( $(date +%s) - t0 ))" >> $O/env.txt
cat $O/env.txt; tail -n 5 $O/x2.log $O/tp.log
