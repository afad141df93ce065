#!/bin/bash
# A kdtui study on a real Slurm: starts a one-node cluster on localhost
# (munged, slurmctld and slurmd, a minimal slurm.conf, all under a scratch
# folder), writes the scripts with `kdtui slurm`, submits them, follows them
# with `kdtui watch` in tmux, kills one array task with `scancel
# --signal=KILL` in the middle of a run, sees its row in kdtui watch turn
# `lost?` (no heartbeat), requeues it with `scontrol requeue`, sees the row
# run again, waits, and checks that
#   - every job ended COMPLETED (the killed task after its restart),
#   - every run finished exactly once and has one row in the merged table,
#   - the merged table equals that of a single-machine `kdtui --batch` of the
#     same config (wall times aside),
#   - the killed run was resumed from its checkpoint, not started over.
# It stops the daemons it started, whatever happens.
#
# Needs Debian's slurm-wlm and munge, and root (slurmd runs jobs as their
# user). Usage: tests/slurm/one_node.sh path/to/kdtui [scratch dir]
# (tests/slurm.rs runs it; KEEP=1 keeps the scratch folder).
set -euo pipefail

KDTUI=$(realpath "${1:?usage: $0 path/to/kdtui [scratch dir]}")
WORK=${2:-$(mktemp -d /tmp/kdtui-slurm.XXXXXX)}
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
for tool in munged slurmctld slurmd sbatch squeue scontrol scancel python3 tmux; do
    command -v "$tool" >/dev/null || { echo "one_node.sh: $tool not found (apt-get install slurm-wlm munge tmux)" >&2; exit 2; }
done

say() { echo "[slurm test $(date +%T)] $*"; }
CLUSTER=$WORK/cluster
STUDY=$WORK/study
SINGLE=$WORK/single
rm -rf "$CLUSTER" "$STUDY" "$SINGLE"
mkdir -p "$CLUSTER"/{munge,state,spool,log} "$STUDY" "$SINGLE"

WATCH=kdtui-slurm-watch-$$
cleanup() {
    local rc=$?
    tmux kill-session -t "$WATCH" 2>/dev/null || true
    for pidfile in "$CLUSTER/slurmd.pid" "$CLUSTER/slurmctld.pid" "$CLUSTER/munge/munged.pid"; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    # Whatever a job left running (a kdtui of this study) goes too.
    pkill -f "$STUDY/config.toml" 2>/dev/null || true
    sleep 1
    if [ "$rc" -ne 0 ]; then
        echo "--- slurmctld log (tail)"; tail -n 20 "$CLUSTER/log/slurmctld.log" 2>/dev/null || true
        echo "--- job logs"; tail -n 30 "$STUDY"/slurm/logs/* 2>/dev/null || true
    fi
    if [ -z "${KEEP:-}" ] && [ "$rc" -eq 0 ]; then rm -rf "$WORK"; else echo "scratch kept in $WORK"; fi
    exit "$rc"
}
trap cleanup EXIT

# --- the cluster -------------------------------------------------------------
# Ports from this shell's pid, so two test runs on one machine do not meet.
PORT=$((20000 + ($$ % 10000) * 2))
dd if=/dev/urandom of="$CLUSTER/munge/munge.key" bs=1024 count=1 status=none
chmod 700 "$CLUSTER/munge"
chmod 400 "$CLUSTER/munge/munge.key"
MUNGE_SOCKET=$CLUSTER/munge/munge.socket
munged --force --key-file="$CLUSTER/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$CLUSTER/munge/munged.pid" --log-file="$CLUSTER/munge/munged.log" \
    --seed-file="$CLUSTER/munge/munged.seed"
# munged checks that every user may reach its socket's folder.
chmod 755 "$CLUSTER/munge"

cat > "$CLUSTER/slurm.conf" <<EOF
ClusterName=kdtuitest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$CLUSTER/state
SlurmdSpoolDir=$CLUSTER/spool
SlurmctldPidFile=$CLUSTER/slurmctld.pid
SlurmdPidFile=$CLUSTER/slurmd.pid
SlurmctldLogFile=$CLUSTER/log/slurmctld.log
SlurmdLogFile=$CLUSTER/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
NodeName=localhost CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$CLUSTER/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 60); do
    sinfo -h -o %t 2>/dev/null | grep -q idle && break
    sleep 0.5
done
sinfo -h -o %t | grep -q idle || { echo "the node did not come up"; exit 1; }
say "one-node cluster up (slurm $(slurmctld -V | cut -d' ' -f2), ports $PORT-$((PORT + 1)))"

# --- the study -----------------------------------------------------------------
# Five student runs in three shards; each run takes a few seconds, so a kill
# can land inside one.
cat > "$STUDY/config.toml" <<'EOF'
[plan]
name = "slurmtest"
seeds = [1]
losses = ["soft", "gt_soft"]
temperatures = [5.0, 15.0]
[data]
train_size = 3072
test_size = 256
[train]
batch_size = 64
eval_batch_size = 256
[teacher]
epochs = 2
widths = [8, 16, 16]
hidden = 32
[student]
epochs = 4
widths = [8, 16, 16]
hidden = 32
[watch]
# Seconds, so that the test sees a killed task turn lost? within its run.
heartbeat_seconds = 1.0
lost_after_seconds = 4.0
EOF
cp "$STUDY/config.toml" "$SINGLE/config.toml"
cd "$STUDY"
"$KDTUI" slurm --array-size 3 --device cpu -- --cpus-per-task=1
submitted=$(sh slurm/submit.sh)
echo "$submitted"
TEACHER=$(echo "$submitted" | sed -n 's/.*teacher job \([0-9]*\);.*/\1/p')
ARRAY=$(echo "$submitted" | sed -n 's/.*students job array \([0-9]*\) .*/\1/p')
[ -n "$TEACHER" ] && [ -n "$ARRAY" ] || { echo "cannot read the job ids"; exit 1; }

# The single-machine reference meanwhile (same config, same seeds).
(cd "$SINGLE" && "$KDTUI" --batch --device cpu > batch.log 2>&1) &
SINGLE_PID=$!

# --- follow it in kdtui watch -----------------------------------------------------
tmux new-session -d -s "$WATCH" -x 150 -y 40 "$KDTUI watch $STUDY/results"
screen() { tmux capture-pane -p -J -t "$WATCH"; }
# The screen line of a run (its row in the table).
row_of() { screen | grep -m1 "│[› ]$1 " || true; }
wait_for_row() { # run, pattern, seconds
    for _ in $(seq $(($3 * 5))); do
        row_of "$1" | grep -q "$2" && return 0
        sleep 0.2
    done
    echo "kdtui watch: the row of $1 never showed '$2' in $3 s; the screen:"; screen; return 1
}

# --- kill one array task in the middle of a run, then requeue it ----------------
VICTIM=${ARRAY}_0
say "waiting for task $VICTIM to be inside a run"
victim_run=""
for _ in $(seq 600); do
    victim_run=$(python3 - "$STUDY/results/metrics" <<'EOF'
import json, os, sys
d = sys.argv[1]
# Shard 0 of 3 trains the plan's student runs 0 and 3: baseline-s1, gt_soft-T5-s1.
for run in ["baseline-s1", "gt_soft-T5-s1"]:
    try:
        entries = [json.loads(l) for l in open(os.path.join(d, run + ".jsonl")) if l.strip()]
    except OSError:
        continue
    kinds = [e["event"] for e in entries]
    if "epoch" in kinds and "finished" not in kinds:
        started = [e for e in entries if e["event"] == "started"][-1]
        print(run, started["pid"])
        break
EOF
)
    [ -n "$victim_run" ] && break
    sleep 0.2
done
[ -n "$victim_run" ] || { echo "task $VICTIM never got inside a run"; exit 1; }
read -r run pid <<< "$victim_run"
wait_for_row "$run" "run [0-9]/4" 10
say "scancel --signal=KILL of task $VICTIM (kdtui pid $pid) in $run"
scancel --signal=KILL --batch "$VICTIM"
for _ in $(seq 100); do
    state=$(scontrol show job "$VICTIM" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    [ "$state" != RUNNING ] && [ "$state" != COMPLETING ] && break
    sleep 0.2
done
say "task $VICTIM is $state; scontrol requeue $VICTIM"
[ "$state" = FAILED ] || { echo "expected the killed task to be FAILED, it is $state"; exit 1; }
# Nothing tells kdtui watch that the task died but the heartbeats that stop.
wait_for_row "$run" "lost? [0-9]*s" 15
say "kdtui watch: $(row_of "$run" | tr -s ' ' | cut -c1-60)"
scontrol requeue "$VICTIM"
# Slurm makes a requeued job wait a while (its BeginTime, about two minutes
# here) before it may start again; the test need not.
sleep 1
scontrol update JobId="$VICTIM" StartTime=now

# --- wait for everything ---------------------------------------------------------
for _ in $(seq 900); do
    [ -z "$(squeue -h -o %i)" ] && break
    sleep 1
done
[ -z "$(squeue -h -o %i)" ] || { echo "jobs still queued after 15 minutes:"; squeue; exit 1; }
wait "$SINGLE_PID" || { echo "the single-machine run failed:"; cat "$SINGLE/batch.log"; exit 1; }
say "all jobs left the queue"
# The requeued run was followed again to its end.
wait_for_row "$run" "done" 10
# The watch reads the metric files four times a second: the last runs'
# `finished` lines may land a poll after the queue empties.
for _ in $(seq 50); do
    screen | head -1 | grep -q FINISHED && break
    sleep 0.2
done
screen | head -1 | grep -q FINISHED || { echo "kdtui watch does not say FINISHED within 10 s:"; screen; exit 1; }

bad=0
for job in "$TEACHER" "${ARRAY}_0" "${ARRAY}_1" "${ARRAY}_2"; do
    line=$(scontrol show job "$job")
    state=$(echo "$line" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    restarts=$(echo "$line" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
    say "job $job: $state, restarts $restarts"
    [ "$state" = COMPLETED ] || bad=1
done
[ "$bad" -eq 0 ] || { echo "a job did not complete"; exit 1; }
grep -q "continuing $run (from epoch" "$STUDY"/slurm/logs/kdtui-slurmtest-students-"${ARRAY}"_0.out \
    || { echo "the requeued task did not resume $run from its checkpoint"; exit 1; }

python3 - "$STUDY/results" "$SINGLE/results" "$run" <<'EOF'
import csv, json, os, sys
merged, single, killed = sys.argv[1:4]

def table(d):
    rows = list(csv.DictReader(open(os.path.join(d, "results.csv"))))
    for r in rows:
        del r["wall_seconds"]
    return rows

m, s = table(merged), table(single)
ids = [r["run_id"] for r in m]
assert len(ids) == len(set(ids)) == 6, f"one row per run: {ids}"
assert m == s, "merged table differs from the single machine's:\n" + "\n".join(
    f"  {a}\n  {b}" for a, b in zip(m, s) if a != b)
results = json.load(open(os.path.join(merged, "results.json")))
assert results["finished"], "results.json says the study has not finished"
assert [r["run_id"] for r in results["runs"]] == ids
for run in ids:
    entries = [json.loads(l) for l in open(os.path.join(merged, "metrics", run + ".jsonl")) if l.strip()]
    kinds = [e["event"] for e in entries]
    assert kinds.count("finished") == 1, f"{run} finished {kinds.count('finished')} times"
    assert entries[-1]["result"]["status"] == "done"
    starts = kinds.count("started")
    assert starts == (2 if run == killed else 1), f"{run} started {starts} times"
    if run == killed:
        resumed = [e for e in entries if e["event"] == "started"][1]
        assert resumed["history"], "the requeued run started over instead of resuming"
print(f"merged table = single machine ({len(ids)} runs); {killed} resumed after the kill; every run finished once")
EOF
say "passed"
