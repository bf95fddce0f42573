"""Private key files as users have them (issue 10): made by `ssh-keygen`, or left readable.

An OpenSSH key (what `ssh-keygen` writes, Ed25519 or RSA) is accepted as it is: no
conversion exists for Ed25519 (`ssh-keygen -p -m PKCS8` leaves it in OpenSSH format). A
key file that others may read is refused, as ssh refuses it, with the `chmod` to run; a
passphrase, a public key given as the private one and an unsupported type each say what
to do. The SDK and the CLI say the same.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

import dxflow

from .conftest import Booted
from .conftest import dxflow as run_cli

pytestmark = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs ssh-keygen")


def ssh_keygen(path: Path, key_type: str, passphrase: str = "") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-C", "test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    assert path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    return path


@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
def test_an_ssh_keygen_key_works_as_it_is(booted: Booted, tmp_path: Path, key_type: str) -> None:
    key = ssh_keygen(tmp_path / f"id_{key_type}", key_type)
    identity = f"ssh-{key_type}"
    run_cli("key", "register", f"{key}.pub", "--identity", identity, "--home", booted.home)
    try:
        pong = run_cli("ping", "--url", booted.url, "--key", key)
        assert pong.returncode == 0
        with dxflow.Engine(booted.url, key=key) as remote:
            assert remote.whoami().identity == identity
        with dxflow.Engine(home=booted.home, key=key) as local:
            assert local.whoami().identity == identity
    finally:
        run_cli("key", "unregister", identity, "--home", booted.home)


def test_a_key_others_may_read_is_refused_with_the_chmod_to_run(
    booted: Booted, tmp_path: Path
) -> None:
    key = tmp_path / "my keys" / "wide.pem"
    key.parent.mkdir()
    shutil.copy(booted.master_key, key)
    key.chmod(0o644)
    chmod = f"chmod 600 {shlex.quote(str(key))}"
    with pytest.raises(dxflow.ConfigError, match="readable by others") as refused:
        dxflow.Engine(booted.url, key=key)
    assert chmod in refused.value.message and "0644" in refused.value.message
    cli = run_cli("ping", "--url", booted.url, "--key", key, check=False)
    assert cli.returncode == 1 and chmod in cli.stderr, cli.stderr
    assert "Traceback" not in cli.stderr
    subprocess.run(shlex.split(chmod), check=True)  # the command the error names
    assert run_cli("ping", "--url", booted.url, "--key", key).returncode == 0
    key.chmod(0o640)  # group-readable is refused too; owner-only read (0400) is fine
    with pytest.raises(dxflow.ConfigError, match="chmod 600"):
        dxflow.Engine(booted.url, key=key)
    key.chmod(0o400)
    with dxflow.Engine(booted.url, key=key) as engine:
        assert engine.whoami().identity == "master"


def test_a_passphrase_says_how_to_make_a_copy_without_one(booted: Booted, tmp_path: Path) -> None:
    key = ssh_keygen(tmp_path / "locked", "ed25519", passphrase="s3cret")
    with pytest.raises(dxflow.ConfigError, match="passphrase") as refused:
        dxflow.Engine(booted.url, key=key)
    hint = f"ssh-keygen -p -N '' -f {key}.dxflow"
    assert f"cp {key} {key}.dxflow" in refused.value.message and hint in refused.value.message
    # The hint, run as given (-P answers the prompt for the old passphrase here).
    subprocess.run(["cp", str(key), f"{key}.dxflow"], check=True)
    subprocess.run(
        ["ssh-keygen", "-p", "-P", "s3cret", "-N", "", "-f", f"{key}.dxflow"],
        check=True,
        capture_output=True,
    )
    run_cli("key", "register", f"{key}.pub", "--identity", "unlocked", "--home", booted.home)
    try:
        with dxflow.Engine(booted.url, key=f"{key}.dxflow") as engine:
            assert engine.whoami().identity == "unlocked"
    finally:
        run_cli("key", "unregister", "unlocked", "--home", booted.home)


def test_other_key_files_say_what_to_do(booted: Booted, tmp_path: Path) -> None:
    ed = ssh_keygen(tmp_path / "id_ed25519", "ed25519")
    ecdsa = ssh_keygen(tmp_path / "id_ecdsa", "ecdsa")
    for given, says in [
        (f"{ed}.pub", "is a public key: give the private half"),
        (str(ecdsa), "only RSA and Ed25519 keys are supported"),
    ]:
        with pytest.raises(dxflow.ConfigError, match=says):
            dxflow.Engine(booted.url, key=given)
        cli = run_cli("ping", "--url", booted.url, "--key", given, check=False)
        assert cli.returncode == 1 and says in cli.stderr, cli.stderr


def test_cli_key_update_changes_permissions_and_keeps_the_token(
    booted: Booted, tmp_path: Path
) -> None:
    """`dxflow key update`, the way out a second `register` names: no token dies."""
    key = ssh_keygen(tmp_path / "id_ivy", "ed25519")
    run_cli("key", "register", f"{key}.pub", "--identity", "ivy", "--permissions", "PLATFORM",
            "--home", booted.home)  # fmt: skip
    try:
        again = run_cli("key", "register", f"{key}.pub", "--identity", "ivy",
                        "--home", booted.home, check=False)  # fmt: skip
        assert again.returncode == 1 and "dxflow key update ivy" in again.stderr
        token = run_cli("token", "--url", booted.url, "--key", key).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{booted.url}/api/objects", headers=headers).status_code == 403
        changed = run_cli("key", "update", "ivy", "--permissions", "PLATFORM,OBJECT",
                          "--home", booted.home)  # fmt: skip
        assert "OBJECT" in changed.stdout
        whoami = httpx.get(f"{booted.url}/api/auth/whoami", headers=headers)
        assert whoami.status_code == 200  # the token made before the update still works
        assert set(whoami.json()["permissions"]) == {"PLATFORM", "OBJECT"}
        assert httpx.get(f"{booted.url}/api/objects", headers=headers).status_code == 200
    finally:
        run_cli("key", "unregister", "ivy", "--home", booted.home)
