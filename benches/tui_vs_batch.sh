#!/usr/bin/env bash
# Training throughput with the interactive monitor open versus --batch, on the
# same plan (a 4,000-image teacher, 2 epochs), alternating twice. Needs tmux and
# a release build (cargo build --release). Prints images/s per epoch.
set -euo pipefail
bin="$(cd "$(dirname "$0")/.." && pwd)/target/release/kdtui"
work="$(mktemp -d)"
trap 'tmux kill-session -t kdtui-tp 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
cat > config.toml <<'TOML'
[plan]
name = "tp"
losses = []
baseline = false
[data]
train_size = 4000
test_size = 500
[teacher]
epochs = 2
TOML
ips() { python3 -c "import json,sys;h=json.load(open(sys.argv[1]))['runs'][0]['history'];print(' '.join('%.1f'%m['images_per_sec'] for m in h))" "$1/results.json"; }
for i in 1 2; do
  # A new start each time, without --fresh (the monitor would ask first).
  rm -rf checkpoints
  "$bin" --batch --device cpu --out "batch$i" > /dev/null
  echo "batch $i: $(ips "batch$i") img/s"
  rm -rf checkpoints
  tmux new-session -d -x 120 -y 40 -s kdtui-tp "$bin --device cpu --out tui$i; sleep 5"
  until grep -q '"finished": true' "tui$i/results.json" 2>/dev/null; do sleep 1; done
  tmux send-keys -t kdtui-tp q; sleep 2; tmux kill-session -t kdtui-tp 2>/dev/null || true
  echo "tui   $i: $(ips "tui$i") img/s"
done
