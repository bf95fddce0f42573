"""Run the examples of the documentation against real engines.

    python docs/hooks/check_examples.py [docs/PAGE.md ...]     # default: every page

For each page, an engine is booted on a fresh home (``--port 0``); then

- every ```` ```python ```` block runs on its own, with ``DXFLOW_HOME`` set to that home
  and ``DXFLOW_URL``/``DXFLOW_KEY`` naming the booted engine;
- the ```` ```bash ```` blocks of the page run in order, as one script
  (``set -euo pipefail``), with ``DXFLOW_HOME`` set and the ``dxflow`` of this Python
  first on ``PATH``.

In both, ``127.0.0.1:7419`` and ``~/.dxflow`` are replaced by the booted engine's address
and home. ```` ```console ```` blocks are transcripts: they are not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)
TIMEOUT = 180


def _dxflow(*args: str, env: dict[str, str]) -> str:
    command = [sys.executable, "-m", "dxflow", *args]
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout


def _run(label: str, command: list[str], env: dict[str, str]) -> bool:
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"FAIL {label}: timed out after {TIMEOUT} s")
        return False
    if done.returncode != 0:
        print(f"FAIL {label} (exit {done.returncode})\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return False
    print(f"ok   {label}")
    return True


def check_page(page: Path) -> bool:
    text = page.read_text()
    blocks = [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in BLOCK.finditer(text)
    ]
    if not blocks:
        return True
    home = tempfile.mkdtemp(prefix="dxflow-docs-")
    env = {**os.environ, "DXFLOW_HOME": home}
    for name in ("DXFLOW_URL", "DXFLOW_KEY", "DXFLOW_PROFILE"):
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    _dxflow("boot", "up", "--port", "0", "--daemon", env=env)
    try:
        url = json.loads(_dxflow("boot", "status", "--json", env=env))["url"]
        address = url.split("://", 1)[1]

        def localize(code: str) -> str:
            return code.replace("127.0.0.1:7419", address).replace("~/.dxflow", home)

        ok = True
        python_env = {**env, "DXFLOW_URL": url, "DXFLOW_KEY": f"{home}/keys/master.pem"}
        for lang, code, line in blocks:
            if lang == "python":
                label = f"{page.name}:{line} python"
                ok &= _run(label, [sys.executable, "-c", localize(code)], python_env)
        script = "\n".join(localize(code) for lang, code, _ in blocks if lang == "bash")
        if script:
            label = f"{page.name} bash ({sum(lang == 'bash' for lang, _, _ in blocks)} blocks)"
            ok &= _run(label, ["bash", "-euo", "pipefail", "-c", script], env)
        return ok
    finally:
        _dxflow("boot", "down", env=env)
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str]) -> int:
    pages = [Path(p) for p in argv] or sorted(DOCS.glob("*.md"))
    results = [check_page(page) for page in pages]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
