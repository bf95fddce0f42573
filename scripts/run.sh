#!/usr/bin/env bash
# The README's run command: set up, boot an engine with embedded defaults (~/.dxflow,
# or DXFLOW_HOME), and show it working. The engine keeps running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BIN=.venv/bin
"$BIN/dxflow" boot status >/dev/null 2>&1 || "$BIN/dxflow" boot up --daemon
"$BIN/dxflow" boot status
echo; "$BIN/dxflow" ping
echo; "$BIN/dxflow" info
echo; "$BIN/python" examples/quickstart.py
echo
echo "The engine keeps running. Try: $BIN/dxflow stats --watch   Stop it: $BIN/dxflow boot down"
