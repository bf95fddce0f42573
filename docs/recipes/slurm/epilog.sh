#!/bin/bash
# Slurm Epilog: stop the engine prolog.sh booted for this job on this node and remove its
# home. The master then sees the agent "<hostname>-<job id>" disconnected, then lost
# (after its bridge_grace); `dxflow bridge rm NAME` on the master forgets it.
# Settings: as prolog.sh (the file $DXFLOW_SLURM_ENV, default /etc/dxflow/slurm.env).
# It always exits 0: a failing Epilog would drain the node.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
[ -r "${DXFLOW_SLURM_ENV:-/etc/dxflow/slurm.env}" ] && . "${DXFLOW_SLURM_ENV:-/etc/dxflow/slurm.env}"
DXFLOW=${DXFLOW:-/usr/local/bin/dxflow}
DXFLOW_JOB_ROOT=${DXFLOW_JOB_ROOT:-/tmp}
DXFLOW_LOG=${DXFLOW_LOG:-/var/log/dxflow-slurm.log}

HOST=$(hostname -s)
JOB=${SLURM_JOB_ID:?the epilog runs under slurmd (no SLURM_JOB_ID)}
DIR="$DXFLOW_JOB_ROOT/dxflow-job-$JOB-$HOST"

log() { echo "$(date -u +%FT%TZ) epilog job $JOB on $HOST: $*" >>"$DXFLOW_LOG" 2>/dev/null || true; }

[ -d "$DIR" ] || { log "no $DIR: nothing to stop"; exit 0; }
out=$("$DXFLOW" boot down --home "$DIR" --timeout 10 </dev/null 2>&1)
log "${out:-dxflow boot down printed nothing}"
# Whatever is left of the engine and of its shells (they outlive an engine by design)
# goes with the job: every process that names the job's home.
for proc in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null) || continue
    case "$cmd" in
        *"$DIR/"* | *"$DIR "*) kill -KILL "${proc#/proc/}" 2>/dev/null && log "killed ${proc#/proc/}: $cmd" ;;
    esac
done
rm -rf -- "$DIR"
exit 0
