#!/bin/bash
# One device call of a tools/gpu_plan.py plan that is longer than a call (10 minutes at most):
#
#   bash tools/gpu_call.sh PLAN [WAIT_S]
#
# Starts the plan in the background (setsid) unless it is already running or has ended, waits up to
# WAIT_S seconds (default 540) for it, then packs the plan's folder into $OUT/NAME.tgz (NAME: the plan's
# file name without .plan) and copies steps.tsv beside it: 2 files, well under the device's 8.
# Run the same line again while the machine is warm (within its idle time) and it only waits and packs
# again. On a fresh machine it first unpacks gpu_out/NAME.tgz if that exists (the last call's tarball,
# carried with `carry: ["gpu_out"]`; gpu_out/ is git-ignored), so finished steps are skipped and pytest
# steps resume from their results logs. DONE in the folder marks the end; delete it to retry failed steps.
set -u
plan=$1
wait_s=${2:-540}
name=$(basename "$plan" .plan)
here=$(dirname "$0")
carried=${GPU_CALL_CARRY:-gpu_out}  # where a previous call's tarball is found (relative to the repository root)
base=${GPU_CALL_DIR:-/root/gpu_call}
run=$base/$name
out=${OUT:-$PWD/gpu_out/local}
mkdir -p "$run" "$out"
if [ -f "$carried/$name.tgz" ] && [ ! -e "$run/.unpacked" ]; then
    tar xzf "$carried/$name.tgz" -C "$base" && echo "resumed from $carried/$name.tgz"
    rm -f "$run/.runner.pid"
    touch "$run/.unpacked"
fi
pidf=$run/.runner.pid
if [ ! -f "$run/DONE" ] && ! { [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }; then
    nvidia-smi > "$run/gpus-$(date +%s).txt" 2>&1
    python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> "$run/versions.txt" 2>&1
    setsid nohup python3 "$here/gpu_plan.py" "$plan" "$run" >> "$run/runner.log" 2>&1 &
    echo $! > "$pidf"
    echo "started $plan -> $run (pid $(cat "$pidf"))"
fi
end=$((SECONDS + wait_s))
while [ $SECONDS -lt $end ] && [ ! -f "$run/DONE" ]; do sleep 2; done
tar czf "$out/$name.tgz" --exclude="*.logits" -C "$base" "$name"  # first-step logits stay on the machine (MBs a run)
cp "$run/steps.tsv" "$out/steps.tsv" 2>/dev/null
ls "$run" | grep '\.done$' | sed 's/\.done$//' | tr '\n' ' ' | sed 's/^/done steps: /'; echo
if [ -f "$run/DONE" ]; then echo "plan ended:"; cat "$run/DONE"; else echo "still running: run the same command again"; fi
