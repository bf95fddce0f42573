"""The README and the documentation run as written, each page on a fresh home.

Every fenced block is executed (bash, python) or declared data (console output, text,
json, toml, yaml); the checker, docs/hooks/check_examples.py, refuses any other fence.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from .conftest import boot, dxflow

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "docs" / "hooks" / "check_examples.py"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_examples", CHECKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check = _checker()


def _run_checker(*pages: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), *map(str, pages)],
        capture_output=True, text=True, timeout=560,
    )  # fmt: skip


@pytest.mark.timeout(600)  # a page boots an engine; the workflow pages build and run images
@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_block_of_the_page_runs(page: Path) -> None:
    missing = [tool for tool in ("jq", "openssl", "curl", "docker") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the documentation's examples need {missing} (scripts/setup.sh --dev)")
    blocks = check.parse(page.read_text(), page.name)
    done = _run_checker(page)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    # Every executed block reported ok (twice for one that reads DXFLOW_URL); every
    # excused one listed with its reason.
    for block in blocks:
        if block.lang not in check.EXECUTED:
            continue
        line = f"{block.line} {block.lang}"
        if block.not_run is not None:
            assert f"not run  {_name(page)}:{line}: {block.not_run}" in done.stdout
        else:
            assert f"ok   {_name(page)}:{line}\n" in done.stdout, done.stdout


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def test_the_checker_covers_the_readme_and_every_page() -> None:
    assert [page.name for page in check.pages()] == [page.name for page in PAGES]
    assert "README.md" in {page.name for page in PAGES}
    assert "registry.md" in {page.name for page in PAGES}
    nav = (ROOT / "mkdocs.yml").read_text()
    assert "registry.md" in nav


@pytest.mark.parametrize("fence", ["py", "sh", "shell", "", "python3", "ini"])
def test_an_unknown_fence_fails_the_page(fence: str) -> None:
    page = f"# Page\n\n```{fence}\nprint('never run')\n```\n"
    with pytest.raises(check.PageError, match=r"page\.md:3: a ```"):
        check.parse(page, "page.md")


def test_every_fence_of_the_docs_is_a_known_kind() -> None:
    for page in PAGES:
        for block in check.parse(page.read_text(), page.name):
            assert block.lang in check.EXECUTED | check.DATA, block


def test_a_console_block_holds_output_only() -> None:
    page = "```console\n$ dxflow ping\npong\n```\n"
    with pytest.raises(check.PageError, match="output only, not commands"):
        check.parse(page, "page.md")
    output = "```console\nengine started (pid 1)\n```\n"
    assert [b.lang for b in check.parse(output, "page.md")] == ["console"]


@pytest.mark.parametrize("value", ["~/.dxflow/keys/a.pem", "http://127.0.0.1:7419/api"])
@pytest.mark.parametrize("lang", ["bash", "python"])
def test_an_executed_block_may_not_hard_code_a_home_or_port(lang: str, value: str) -> None:
    page = f"```{lang}\nx = '{value}'\n```\n"
    with pytest.raises(check.PageError, match="hard-codes"):
        check.parse(page, "page.md")
    # In a comment, or as data or output, it is prose.
    check.parse(f"```{lang}\nx = 1  # default {value}\n```\n", "page.md")
    check.parse(f"```console\nurl  {value}\n```\n", "page.md")


def test_data_blocks_must_parse() -> None:
    for lang, bad in [("json", "{oops"), ("toml", "a = = 1"), ("yaml", "a: [1, 2")]:
        with pytest.raises(check.PageError, match=f"this ```{lang} block does not parse"):
            check.parse(f"```{lang}\n{bad}\n```\n", "page.md")
    check.parse('```json\n{"a": 1}\n```\n```toml\na = 1\n```\n```yaml\na: [1]\n```\n', "p.md")


def test_only_an_executed_block_is_excused_and_only_with_a_reason() -> None:
    excused = "<!-- docs: not run: needs a registry -->\n```bash\ndocker pull x\n```\n"
    (block,) = check.parse(excused, "page.md")
    assert block.not_run == "needs a registry"
    with pytest.raises(check.PageError, match="excuses bash and python blocks only"):
        check.parse("<!-- docs: not run: why -->\n```text\nx\n```\n", "page.md")
    # Without a reason the comment is no excuse: the block runs (and is checked).
    (block,) = check.parse("<!-- docs: not run: -->\n```bash\ntrue\n```\n", "page.md")
    assert block.not_run is None


@pytest.mark.timeout(180)
def test_a_failing_block_fails_its_page_and_is_named(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\necho first\n```\n\n"
        "```python\nimport dxflow\nwith dxflow.Engine.from_home() as e:\n    e.ping()\n```\n\n"
        '```bash\ntest -n "$DXFLOW_HOME" && test -z "${DXFLOW_URL:-}"\nfalse\n```\n\n'
        "```bash\necho never\n```\n"
    )
    done = _run_checker(page)
    assert done.returncode == 1
    assert "ok   page.md:1 bash" in done.stdout
    assert "ok   page.md:5 python" in done.stdout
    assert "FAIL page.md:11 bash" in done.stdout
    assert "page.md:16" not in done.stdout  # after a failure, nothing more runs


@pytest.mark.timeout(180)
def test_the_documented_rate_limit_is_the_one_enforced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handshake budget: the same figure in every page and in the code, and a fresh
    engine with the default settings answers 429 (with Retry-After) past it."""
    from dxflow._config import load_config

    monkeypatch.delenv("DXFLOW_AUTH_RATE_LIMIT", raising=False)
    default = load_config(tmp_path / "config-home").auth_rate_limit
    docs = ROOT / "docs"
    documented = {
        "authentication.md": re.findall(
            r"`auth_rate_limit` events per minute \((\d+) by default\)",
            (docs / "authentication.md").read_text(),
        ),
        "security.md": re.findall(
            r"\| Authentication budgets \| (\d+) a minute \|", (docs / "security.md").read_text()
        ),
        "getting-started.md": re.findall(
            r"\| `auth_rate_limit` \| `(\d+)` \|", (docs / "getting-started.md").read_text()
        ),
    }
    assert documented == {page: [str(default)] for page in documented}

    engine = boot(tmp_path / "home")
    try:
        url = f"{engine.url}/api/auth/challenge"
        with httpx.Client(timeout=30) as client:
            codes = [client.post(url, json={}).status_code for _ in range(default)]
            refused = client.post(url, json={})
        assert codes == [200] * default
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        body = json.loads(refused.text)
        assert body["error"]["code"] == "too_many_requests"
        assert body["error"]["details"]["retry_after"] >= 1
    finally:
        dxflow("boot", "down", "--home", engine.home, check=False)
