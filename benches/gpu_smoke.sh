#!/usr/bin/env bash
# The first run of kdtui on a GPU, as one command (README, "Running on a GPU").
#
#   benches/gpu_smoke.sh [--device cuda:N|wgpu:N|cpu] [--bin PATH] [--python PATH]
#
# From the repository root, with a release binary already built (default
# target/release/kdtui; the GPU machine needs no Rust). Everything goes to
# $OUT (default: a new directory under /tmp); the last line is the verdict.
# About 5-9 minutes on one GPU. `--device cpu` runs the same flow on the CPU,
# to check the script itself on a machine without a GPU; `--device wgpu` runs
# it on the wgpu backend (on an NVIDIA GPU, run it with both).
#
# Steps: the environment (nvidia-smi, kdtui doctor); a short plan (teacher 2
# epochs, the student without a teacher, one distilled student) with the GPU's
# utilisation sampled; the same command again (everything reused); each model
# file evaluated on the CPU against the accuracy the device measured; kdtui
# bench (PyTorch beside it when --python has torch); a SIGTERM in the middle
# of a run, then the resume.
set -uo pipefail

device=cuda:0
bin=target/release/kdtui
python=python3
while [ $# -gt 0 ]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "gpu_smoke.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -x "$bin" ] || { echo "gpu_smoke.sh: no kdtui binary at $bin (cargo build --release, or --bin PATH)" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
OUT=${OUT:-$(mktemp -d /tmp/kdtui-smoke.XXXXXX)}
mkdir -p "$OUT"
cd "$OUT" || exit 2
failures=()
fail() { failures+=("$1"); echo "FAILED: $1"; }
step() { echo; echo "== $1 ($(date +%T))"; }
started=$(date +%s)

step "environment"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi | tee nvidia-smi.txt
else
    echo "no nvidia-smi on this machine"
fi
"$bin" doctor --device "$device" | tee doctor.txt
[ "${PIPESTATUS[0]}" = 0 ] || fail "kdtui doctor --device $device"

cat > config.toml <<'TOML'
[plan]
name = "gpu-smoke"
losses = ["hard_soft"]
temperatures = [15.0]
baseline = true
[data]
train_size = 4000
test_size = 2000
[teacher]
epochs = 2
[student]
epochs = 2
TOML

sampler=
if [ "${device%%:*}" = cuda ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -lms 500 > gpu-utilisation.csv &
    sampler=$!
fi

step "the plan on $device"
t0=$(date +%s.%N)
"$bin" --batch --device "$device" > plan.txt 2>&1
code=$?
t1=$(date +%s.%N)
[ -n "$sampler" ] && kill "$sampler"
cat plan.txt
[ $code = 0 ] || fail "the plan exited $code"
echo "plan wall time: $(echo "$t1 - $t0" | bc) s"
if [ -s gpu-utilisation.csv ]; then
    awk -F', ' '{gsub(/ %/, "", $2); s += $2; n++; if ($2 > m) m = $2} END {printf "GPU utilisation over %d samples: mean %.0f%%, max %d%%\n", n, s / n, m}' gpu-utilisation.csv
fi
grep -q '"device"' results/results.json 2>/dev/null && grep -o '"device": *"[^"]*"' results/results.json | sort -u

step "the same command again: everything reused"
"$bin" --batch --device "$device" > again.txt 2>&1 || fail "the second session exited $?"
cat again.txt
grep -q "3 of 3 runs already finished" again.txt || fail "the second session did not reuse the three runs"

step "each model file on the CPU against the device's accuracy"
for model in results/models/*.safetensors; do
    run=$(basename "$model" .safetensors)
    device_accuracy=$("$python" - "$run" <<'PY' 2>/dev/null || jq -r --arg r "$run" '.runs[] | select(.run_id == $r) | .final_test_accuracy' results/results.json
import json, sys
runs = json.load(open("results/results.json"))["runs"]
print(next(r["final_test_accuracy"] for r in runs if r["run_id"] == sys.argv[1]))
PY
)
    line=$("$bin" eval "$model" | grep "test accuracy")
    echo "$run: device $device_accuracy, cpu: $line"
    echo "$run $device_accuracy $line" >> eval-on-cpu.txt
done
[ -s eval-on-cpu.txt ] || fail "no model files to evaluate"

step "kdtui bench --device $device"
"$bin" bench --device "$device" --python "$python" --eager-only --seconds 5 --rounds 1 > bench.txt 2> bench-progress.txt
code=$?
cat bench.txt
[ $code = 0 ] || fail "kdtui bench exited $code: $(tail -1 bench-progress.txt)"

step "a SIGTERM in the middle of a run, then the resume"
sed -e 's/name = "gpu-smoke"/name = "gpu-smoke-stop"/' -e 's/^epochs = 2$/epochs = 4/' config.toml > stop.toml
"$bin" --batch --device "$device" --config stop.toml --out stopped > stop.txt 2>&1 &
pid=$!
until grep -q '"event":"epoch"' stopped/metrics/teacher.jsonl 2>/dev/null || ! kill -0 $pid 2>/dev/null; do sleep 0.5; done
kill -TERM $pid 2>/dev/null
wait $pid
code=$?
cat stop.txt
[ $code = 0 ] || fail "the stopped session exited $code, not 0"
"$bin" --batch --device "$device" --config stop.toml --out stopped > resume.txt 2>&1 || fail "the resumed session exited $?"
cat resume.txt
grep -q "resum" resume.txt || fail "the second session did not resume"

elapsed=$(( $(date +%s) - started ))
echo
if [ ${#failures[@]} = 0 ]; then
    echo "VERDICT: kdtui on $device passed every step in ${elapsed} s; files in $OUT"
else
    echo "VERDICT: kdtui on $device FAILED ${#failures[@]} step(s) in ${elapsed} s: $(IFS=';'; echo "${failures[*]}"); files in $OUT"
    exit 1
fi
