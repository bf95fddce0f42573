#!/bin/bash
# Slurm TaskProlog: each task of the job finds its node's engine in DXFLOW_HOME, so that
# `dxflow ping` or `dxflow.Engine.from_home()` in the job reaches it. Settings: as
# prolog.sh (only DXFLOW_JOB_ROOT is read). It runs as the job's user; Slurm sets in the
# task what it prints as `export NAME=VALUE`.
[ -r "${DXFLOW_SLURM_ENV:-/etc/dxflow/slurm.env}" ] && . "${DXFLOW_SLURM_ENV:-/etc/dxflow/slurm.env}"
DIR="${DXFLOW_JOB_ROOT:-/tmp}/dxflow-job-$SLURM_JOB_ID-$(hostname -s)"
[ -d "$DIR" ] && echo "export DXFLOW_HOME=$DIR"
exit 0
