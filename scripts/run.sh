#!/usr/bin/env bash
# The README's main job: set up (Python venv, Docker Engine, a static busybox), boot an
# engine with embedded defaults (~/.dxflow, or DXFLOW_HOME), take a tour of it, then run
# a workflow on it (examples/workflow/hello.yaml: an image built here, a web server with a
# health check, a worker that depends on it), share its result and open a shell in it.
# The engine and the workflow keep running; the last lines say how to look at them and
# how to stop them. Safe to re-run: the workflow and the shell session are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --require-docker
BIN=.venv/bin
DXF="$BIN/dxflow"
"$DXF" boot status >/dev/null 2>&1 || "$DXF" boot up --daemon
"$DXF" boot status
echo; "$DXF" info
echo; "$BIN/python" examples/quickstart.py
echo

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
"$BIN/python" examples/workflow/hello.py | tee "$OUT"
LINK=$(sed -n 's/^ *share link: //p' "$OUT" | tail -n 1)
if [ -n "$LINK" ] && command -v curl >/dev/null 2>&1; then
    echo; echo "\$ curl -s $LINK"
    curl -fsS "$LINK"
fi

cat <<MSG

The engine and the workflow 'hello' keep running. Look at them:
  $DXF ps -p hello                     # services, health, ports (as docker compose ps)
  $DXF logs -p hello -f                # follow the logs (Ctrl-C to stop following)
  $DXF top -p hello                    # the processes of each container
  $DXF shell connect hello-shell       # the shell session in the worker
  $DXF object cat hello/report.txt     # the shared report, from the object store
  curl -s ${LINK:-<share link>}
  $DXF stats -p hello --watch          # CPU, memory, network of its containers
Stop them:
  $DXF down -p hello -v                # the workflow, and its volume
  $DXF boot down                       # the engine
MSG
