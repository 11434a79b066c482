#!/usr/bin/env bash
# Runs the configs/ci.yaml study through a real single-node SLURM (Debian's slurm-wlm + munge,
# started by hand, no systemd) with profiles/slurm, with one saliency shard killed (SIGKILL) after
# its first utterance on its first attempt: SLURM must resubmit it (the profile's retries), the second
# attempt must resume from the partial store, and the tables must equal a local run's. Then checks
# that a lost job is the only one resubmitted, and stops every daemon it started.
#
#   sudo bash tests/slurm/run_slurm_ci.sh [WORKDIR]      (as root; about 10-20 minutes on 2 cores)
#
# The node has no GPU, so GPU rules run with gpu=0 here (the profile's --gpus requests are checked by a
# dry-run in tests/integration). The study folder is WORKDIR/slurm, the local reference WORKDIR/local.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${1:-$(mktemp -d /tmp/caspes-slurm.XXXXXX)}"
STATE="$WORK/slurm-state"
CONF=/etc/slurm/slurm.conf
MARK="# written by caspes tests/slurm/run_slurm_ci.sh"
# The rules that declare gpu=1 in workflow/rules/*.smk (read here, so a new GPU rule is never missed).
mapfile -t GPU_RULES < <(awk '/^rule [A-Za-z_0-9]+:/ {name = substr($2, 1, length($2) - 1)}
                              /^ *gpu *= *1/ && name != "" {print name; name = ""}' "$ROOT"/workflow/rules/*.smk)
started=()

log() { printf '[slurm-ci %(%H:%M:%S)T] %s\n' -1 "$*"; }

if [[ $EUID -ne 0 ]]; then
  echo "run as root (it installs Debian packages and starts munge/slurmctld/slurmd)" >&2
  exit 2
fi
if [[ -e $CONF ]] && ! grep -q "$MARK" "$CONF"; then
  echo "$CONF exists and was not written by this script: not touching a real cluster's config" >&2
  exit 2
fi
for port in 6817 6818; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use: another SLURM runs on this machine (one per machine)" >&2
    exit 2
  fi
done

stop_daemons() {
  log "stopping ${started[*]:-nothing}"
  for name in "${started[@]}"; do
    pidfile="$STATE/$name.pid"
    [[ $name == munged ]] && pidfile=/run/munge/munged.pid
    if [[ -s $pidfile ]]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  sleep 1
  [[ -e $CONF ]] && grep -q "$MARK" "$CONF" && rm -f "$CONF"
}
trap stop_daemons EXIT

# ---------------------------------------------------------------- packages
need=()
for pkg in slurmctld slurmd slurm-client munge; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------- configuration
mkdir -p "$STATE"/{spool,state,log} /etc/slurm
node="$(hostname -s)"
mem_mb=$(( $(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo) - 2000 ))
cpus="$(nproc)"
cat > "$CONF" <<EOF
$MARK
ClusterName=caspes-ci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

# ---------------------------------------------------------------- daemons
log "starting munged, slurmctld, slurmd"
mkdir -p /run/munge && chown munge:munge /run/munge
[[ -s /etc/munge/munge.key ]] || { mungekey --create >/dev/null 2>&1 || create-munge-key -f >/dev/null; }
chown munge:munge /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged && started+=(munged)
slurmctld && started+=(slurmctld)
slurmd && started+=(slurmd)
for _ in $(seq 60); do
  [[ -s $STATE/slurmd.pid ]] && sinfo -h -o %T 2>/dev/null | grep -qE "idle|mixed" && break
  sleep 1
done
sinfo

# ---------------------------------------------------------------- runs
((${#GPU_RULES[@]})) || { echo "no rule in workflow/rules/*.smk declares gpu=1" >&2; exit 2; }
log "GPU rules, run with gpu=0 and 1 thread here: ${GPU_RULES[*]}"
gpu_off=()
for rule in "${GPU_RULES[@]}"; do gpu_off+=("$rule:gpu=0"); done
threads_one=()
for rule in "${GPU_RULES[@]}"; do threads_one+=("$rule=1"); done

run_slurm() {
  # squeue status (no accounting here), quick first status check; threads 1 as the local run.
  timeout -k 30 3600 snakemake -s "$ROOT/Snakefile" -d "$WORK/slurm" --profile "$ROOT/profiles/slurm" \
    --jobs "$cpus" --slurm-status-command squeue --slurm-init-seconds-before-status-checks 2 \
    --default-resources slurm_partition=debug mem_mb=1500 runtime=60 \
    --set-resources "${gpu_off[@]}" --set-threads "${threads_one[@]}" "$@" \
    --configfile "$ROOT/configs/ci.yaml"
}

( while sleep 5; do squeue -h -o "%i %j %T %M %C %m" >> "$WORK/squeue.log" 2>/dev/null || true; done ) &
poller=$!
log "study through SLURM in $WORK/slurm"
start=$SECONDS
# Test-only fault injection (caspes.explain.shards.KILL_SWITCH): the first shard job to finish one
# utterance kills itself; the marker file makes it happen once.
CASPES_TEST_KILL_AFTER="1:$WORK/killed-once" run_slurm > "$WORK/slurm.log" 2>&1 \
  || { tail -50 "$WORK/slurm.log"; kill $poller; exit 1; }
slurm_seconds=$((SECONDS - start))
kill $poller 2>/dev/null || true
log "SLURM run finished in ${slurm_seconds}s; jobs it ran (squeue -t all):"
squeue -t all -h -o "%i %j %T %M %C %m" | sort -n | tee "$WORK/jobs.txt" | tail -5
echo "... $(wc -l < "$WORK/jobs.txt") jobs, $(grep -c COMPLETED "$WORK/jobs.txt") COMPLETED"

log "the same study locally in $WORK/local"
snakemake -s "$ROOT/Snakefile" -d "$WORK/local" --cores "$cpus" --configfile "$ROOT/configs/ci.yaml" \
  > "$WORK/local.log" 2>&1 || { tail -50 "$WORK/local.log"; exit 1; }

status=0
log "the injected failure and its resubmission (retries):"
# Snakemake starts a job's log afresh for each attempt: the second attempt's log says what it resumed.
resumed_log=$(grep -rl "resumed: 1 of" "$WORK/slurm/logs/explain_input" "$WORK/slurm/logs/explain_encoder" | head -1 || true)
if [[ -f $WORK/killed-once && -n $resumed_log ]] && grep -q "Trying to restart job" "$WORK/slurm.log"; then
  grep -E "^Error in rule|Trying to restart job" "$WORK/slurm.log" | head -4
  grep -E "finished by an earlier attempt|resumed:" "$resumed_log" | cut -c1-160
  echo "retries: the killed shard was resubmitted by SLURM and resumed ($resumed_log)"
else
  echo "retries: no killed-and-resubmitted shard found (marker $WORK/killed-once, log '$resumed_log')"
  status=1
fi
# Same seed, same results: every table equal, except the measured seconds-per-utterance columns.
python3 - "$WORK" <<'PY' || status=1
import sys
from pathlib import Path

import pandas as pd

work = Path(sys.argv[1])
files = ["results/quality.tsv", "results/explanations.tsv"] + sorted(
    str(p.relative_to(work / "local")) for p in (work / "local/results/paper").glob("*.csv")
)
bad = 0
for f in files:
    sep = "\t" if f.endswith(".tsv") else ","
    a, b = (pd.read_csv(work / side / f, sep=sep) for side in ("slurm", "local"))
    cols = [c for c in b.columns if "seconds" not in c]
    same = list(a.columns) == list(b.columns) and a[cols].equals(b[cols])
    print(("same: " if same else "DIFFERENT: ") + f)
    bad += not same
sys.exit(1 if bad else 0)
PY

log "a lost shard: only its job (and what depends on it) is resubmitted"
rm "$WORK/slurm/results/base/en-en/test/saliency/smx.shards/1-of-2.zip" \
   "$WORK/slurm/results/base/en-en/test/saliency/smx.zip"
before=$(squeue -t all -h | wc -l)
run_slurm > "$WORK/slurm-rerun.log" 2>&1 || { tail -50 "$WORK/slurm-rerun.log"; exit 1; }
resubmitted=$(grep -c "Job .* has been submitted with SLURM jobid" "$WORK/slurm-rerun.log" || true)
grep -E "^(rule|localrule) " "$WORK/slurm-rerun.log" | sort | uniq -c
if grep -qE "^rule explain_input:" "$WORK/slurm-rerun.log" && [[ $(grep -cE "^rule explain_input:" "$WORK/slurm-rerun.log") -eq 1 ]] \
   && ! grep -qE "^rule (train_model|decode|explain_encoder):" "$WORK/slurm-rerun.log"; then
  echo "rerun: 1 explain_input job and its dependents only ($resubmitted sbatch jobs; $before before)"
else
  echo "rerun submitted more than the lost shard"; status=1
fi
log "done (SLURM study ${slurm_seconds}s); outputs in $WORK"
exit $status
