#!/bin/bash
# H200 serving job (issue 18): run under setsid from a copy of the repo; results in /root/o, /root/o/DONE at the end.
export PYTHONUNBUFFERED=1
O=/root/o; mkdir -p $O; export PYTHONPATH=$PWD
C="--gpu h200 --moeperf-gate off --moeperf-contexts 2048 --moeperf-new-tokens 64 --moeperf-results $O/serving.jsonl --moeperf-serving-records $O/serving-records.jsonl -p no:cacheprovider -q --moeperf-point-timeout-s 100"
P="python3 -m pytest benchmarks/test_serving.py $C"
run() { name=$1; shift; echo "$(date +%T) start $name" >> $O/progress.txt; timeout ${T:-400} $P "$@" > $O/$name.log 2>&1; echo "$(date +%T) end $name rc=$?" >> $O/progress.txt; }
run gptoss-cgoff --moeperf-models gpt-oss-20b --moeperf-cuda-graphs off --moeperf-concurrency 1,4,16,32
run qwen3-cgon --moeperf-models qwen3-32b --moeperf-cuda-graphs on --moeperf-concurrency 1,4,16
run yi-cgon --moeperf-models yi-34b --moeperf-cuda-graphs on --moeperf-concurrency 1,4,16
R=$(python3 .gpu/rates.py $O/serving.jsonl gpt-oss-20b 0.5,0.9)
[ -n "$R" ] && T=150 run rates-gpt-oss-20b --moeperf-models gpt-oss-20b --moeperf-cuda-graphs off --moeperf-rate $R --moeperf-sweep full
T=150 run qwen3-cgoff --moeperf-models qwen3-32b --moeperf-cuda-graphs off --moeperf-concurrency 1,4
timeout 150 python3 -m pytest benchmarks/test_deployment.py --gpu h200 --moeperf-gate off -p no:cacheprovider -q --moeperf-models gpt-oss-20b --moeperf-contexts 2048 --moeperf-rounds 5 --moeperf-energy-split --moeperf-results $O/split.jsonl > $O/energy-split.log 2>&1
echo "$(date +%T) end energy-split" >> $O/progress.txt
touch $O/DONE
