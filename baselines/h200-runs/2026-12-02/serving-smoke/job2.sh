#!/bin/bash
# H200 call 2: serving smoke on the real engine, gpt-oss-20b, CUDA graphs on and off.
export PYTHONUNBUFFERED=1
O=$OUT; cd .gpu/h16; export PYTHONPATH=$PWD
COMMON="--gpu h200 --moeperf-gate off --moeperf-contexts 2048 --moeperf-new-tokens 64 --moeperf-results $O/serving.jsonl --moeperf-serving-records $O/serving-records.jsonl -p no:cacheprovider -q"
KV="--moeperf-kv-block-size 256 --moeperf-kv-blocks 1024 --moeperf-max-batch-tokens 8192"
timeout 270 python3 -m pytest benchmarks/test_serving.py $COMMON $KV --moeperf-models gpt-oss-20b --moeperf-cuda-graphs on --moeperf-concurrency 1,4,16,64 --moeperf-point-timeout-s 90 > $O/gptoss-cgon.log 2>&1
timeout 200 python3 -m pytest benchmarks/test_serving.py $COMMON $KV --moeperf-models gpt-oss-20b --moeperf-cuda-graphs off --moeperf-concurrency 1,16 --moeperf-point-timeout-s 80 > $O/gptoss-cgoff.log 2>&1
python3 -m pytest_moeperf results $O/serving.jsonl --json $O/serving-smoke.json > $O/results.log 2>&1
tail -n 25 $O/*.log | cut -c1-400
