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
# The home belongs to the job's user, who may have changed anything in it (its pid file
# too): what acts on it runs as that user, and kills only that user's processes.
JOB_UID=${SLURM_JOB_UID:-0}
JOB_GID=${SLURM_JOB_GID:-$(id -g "$JOB_UID" 2>/dev/null || echo 0)}
as_user=()
if [ "$(id -u)" = 0 ] && [ "$JOB_UID" != 0 ]; then
    as_user=(setpriv "--reuid=$JOB_UID" "--regid=$JOB_GID" --init-groups env "HOME=$DIR")
fi
out=$("${as_user[@]}" "$DXFLOW" boot down --home "$DIR" --timeout 10 </dev/null 2>&1)
log "${out:-dxflow boot down printed nothing}"
# Whatever is left of the engine and of its shells (they outlive an engine by design)
# goes with the job: every process of the job's user that names the job's home.
for proc in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null) || continue
    case "$cmd" in
        *"$DIR/"* | *"$DIR "*) ;;
        *) continue ;;
    esac
    [ "$(stat -c %u "$proc" 2>/dev/null)" = "$JOB_UID" ] || continue
    kill -KILL "${proc#/proc/}" 2>/dev/null && log "killed ${proc#/proc/}: $cmd"
done
rm -rf -- "$DIR"
exit 0
