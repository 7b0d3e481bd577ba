#!/bin/bash
# H200 (one GPU): the gate against a ~10% decode slowdown with 8 runs a side (docs/gate.md:
# one run a side cannot FAIL 10% at the measured 3.5% run-to-run drift). Not run yet.
# Base and slowed runs alternate on one GPU, so slow drift of the machine hits both sides.
# First calibrate: SLOWDOWN_SYNC=0 SLOWDOWN_MS=1 gave +1.4% TPOT, synced 1 ms +25-34%;
# pick SLOWDOWN_MS (unsynced) for ~+10% from a short calibration run before the 16 runs.
# ~60 s a run with a warm compile cache: split over two calls with FIRST/LAST (run numbers).
# Afterwards here:  python -m pytest_moeperf compare base/ --all-runs slow/*.json
export PYTHONUNBUFFERED=1
O=/root/o; mkdir -p $O/base $O/slow /root/cc
trap 'tar czf $OUT/bundle.tgz -C $O .' EXIT
P="python3 -m pytest benchmarks/ --gpu h200 --moeperf-gate off -p no:cacheprovider -q --moeperf-compile-cache /root/cc"
S="--moeperf-models gpt-oss-20b --moeperf-contexts 2048 --moeperf-backend static --moeperf-rounds 20 --moeperf-energy-windows 2"
for i in $(seq ${FIRST:-1} ${LAST:-8}); do
  timeout 240 $P $S --benchmark-json $O/base/run$i.json > $O/base/run$i.log 2>&1
  SLOWDOWN_SYNC=0 SLOWDOWN_MS=${SLOWDOWN_MS:-3} timeout 150 $P $S -p tools.slowdown_plugin \
    --benchmark-json $O/slow/run$i.json > $O/slow/run$i.log 2>&1
done
tail -n 1 $O/*/*.log
