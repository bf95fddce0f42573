#!/bin/bash
# Slurm Prolog: boot a dxflow engine for this job on this node, joined to a master as
# the agent "<hostname>-<job id>"; the job talks to it through its unix socket
# (DXFLOW_HOME, set in the job by task-prolog.sh), the master through the bridge.
#
#   slurm.conf:  Prolog=/etc/dxflow/prolog.sh  Epilog=/etc/dxflow/epilog.sh
#                TaskProlog=/etc/dxflow/task-prolog.sh  PrologFlags=Alloc
#
# slurmd runs it as root, with an environment of its own (no PATH of yours, no venv), so
# the settings come from a file: $DXFLOW_SLURM_ENV, default /etc/dxflow/slurm.env, shell
# assignments (a wrapper can point DXFLOW_SLURM_ENV elsewhere and exec this script):
#   DXFLOW             the dxflow executable                 [/usr/local/bin/dxflow]
#   DXFLOW_TOKEN_FILE  a join token from the master: `dxflow bridge token --uses N
#                      --expires 30d` (readable by root only) [/etc/dxflow/join-token]
#   DXFLOW_JOB_ROOT    where the job's engine home is made: DXFLOW_JOB_ROOT/
#                      dxflow-job-<job id>-<hostname> (keyed by host too: nodes may
#                      share a file system)                  [/tmp]
#   DXFLOW_ALLOW       what the master may do on the engine  [dxflow's default]
#   DXFLOW_LOG         this script's and the epilog's log    [/var/log/dxflow-slurm.log]
#   DXFLOW_STRICT      1: a failed boot fails the prolog (Slurm then drains the node and
#                      requeues the job); 0: it is logged and the job runs without an
#                      engine                                [0]
# The engine runs as the job's user (SLURM_JOB_UID), so the job, and only the job, can
# use its socket. The settings file is read by task-prolog.sh as the job's user too: keep
# it readable by all (the token is in a file of its own, readable by root only). The
# token reaches `dxflow boot up` in its environment (DXFLOW_JOIN), never on a command
# line: only the job's user and root can read a process's environment.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
[ -r "${DXFLOW_SLURM_ENV:-/etc/dxflow/slurm.env}" ] && . "${DXFLOW_SLURM_ENV:-/etc/dxflow/slurm.env}"
DXFLOW=${DXFLOW:-/usr/local/bin/dxflow}
DXFLOW_TOKEN_FILE=${DXFLOW_TOKEN_FILE:-/etc/dxflow/join-token}
DXFLOW_JOB_ROOT=${DXFLOW_JOB_ROOT:-/tmp}
DXFLOW_LOG=${DXFLOW_LOG:-/var/log/dxflow-slurm.log}
DXFLOW_STRICT=${DXFLOW_STRICT:-0}

HOST=$(hostname -s)
JOB=${SLURM_JOB_ID:?the prolog runs under slurmd (no SLURM_JOB_ID)}
DIR="$DXFLOW_JOB_ROOT/dxflow-job-$JOB-$HOST"
NAME="$HOST-$JOB"
JOB_UID=${SLURM_JOB_UID:-0}
JOB_GID=${SLURM_JOB_GID:-$(id -g "$JOB_UID" 2>/dev/null || echo 0)}

log() { echo "$(date -u +%FT%TZ) prolog job $JOB on $HOST: $*" >>"$DXFLOW_LOG" 2>/dev/null || true; }
failed() {
    log "error: $*"
    [ "$DXFLOW_STRICT" = 1 ] && exit 1
    exit 0
}

[ -x "$DXFLOW" ] || failed "no dxflow executable at $DXFLOW (set DXFLOW)"
[ -r "$DXFLOW_TOKEN_FILE" ] || failed "no join token at $DXFLOW_TOKEN_FILE (set DXFLOW_TOKEN_FILE)"
TOKEN=$(tr -d ' \n\r\t' <"$DXFLOW_TOKEN_FILE")
[ -n "$TOKEN" ] || failed "$DXFLOW_TOKEN_FILE is empty"

# A fresh home, the job user's own. Made with a plain mkdir, which fails on anything
# already there (a symlink planted in a shared /tmp included), after removing what a
# crashed job left.
mkdir -p -- "$DXFLOW_JOB_ROOT" || failed "cannot make $DXFLOW_JOB_ROOT"
rm -rf -- "$DIR"
mkdir -m 0700 -- "$DIR" || failed "cannot make $DIR"
as_user=()
if [ "$(id -u)" = 0 ] && [ "$JOB_UID" != 0 ]; then
    chown "$JOB_UID:$JOB_GID" "$DIR" || failed "cannot give $DIR to uid $JOB_UID"
    as_user=(setpriv "--reuid=$JOB_UID" "--regid=$JOB_GID" --init-groups
             env "HOME=$DIR" "USER=${SLURM_JOB_USER:-}" "LOGNAME=${SLURM_JOB_USER:-}")
fi
export DXFLOW_JOIN="$TOKEN"
args=(boot up --daemon --home "$DIR" --port 0 --name "$NAME")
[ -n "${DXFLOW_ALLOW:-}" ] && args+=(--allow "$DXFLOW_ALLOW")
if out=$("${as_user[@]}" "$DXFLOW" "${args[@]}" </dev/null 2>&1); then
    log "engine up in $DIR as agent $NAME: $out"
else
    failed "dxflow boot up failed: $out"
fi
exit 0
