"""Engine home and configuration: defaults, file, profile, environment, flags."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dxflow import ConfigError
from dxflow._config import DEFAULT_PORT, Home, atomic_write, load_config


def test_defaults_and_home_layout(tmp_path: Path) -> None:
    config = load_config(tmp_path / "h")
    assert config.port == DEFAULT_PORT and config.host == "127.0.0.1" and not config.tls
    config.home.ensure()
    assert config.home.config_file.exists()
    for folder in (
        config.home.root,
        config.home.keys_dir,
        config.home.secrets_dir,
        config.home.run_dir,
    ):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert config.storage_root == config.home.root / "storage"


def test_precedence_file_profile_env_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = Home(tmp_path)
    atomic_write(
        home.config_file,
        b'port = 7500\nlog_level = "debug"\n[profiles.gpu]\nport = 7600\ntls = true\n',
    )
    assert load_config(home).port == 7500
    gpu = load_config(home, "gpu")
    assert (gpu.port, gpu.tls, gpu.log_level) == (7600, True, "debug")
    monkeypatch.setenv("DXFLOW_PORT", "7700")
    monkeypatch.setenv("DXFLOW_TLS", "off")
    env = load_config(home, "gpu")
    assert (env.port, env.tls) == (7700, False)
    assert load_config(home, "gpu", port=7800).port == 7800
    monkeypatch.setenv("DXFLOW_PROFILE", "gpu")
    assert load_config(home).profile == "gpu"


@pytest.mark.parametrize(
    ("document", "match"),
    [
        (b"prot = 7500\n", "unknown setting 'prot'"),
        (b"port = 'many'\n", "port must be"),
        (b"port = \n", "cannot read"),
        (b"[profiles.x]\nhots = 'a'\n", "profile x: unknown setting 'hots'"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, document: bytes, match: str) -> None:
    home = Home(tmp_path)
    atomic_write(home.config_file, document)
    with pytest.raises(ConfigError, match=match):
        load_config(home, "x" if b"profiles.x" in document else None)


def test_unknown_profile_and_bad_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_config(tmp_path, "nope")
    monkeypatch.setenv("DXFLOW_TLS", "perhaps")
    with pytest.raises(ConfigError, match="DXFLOW_TLS"):
        load_config(tmp_path)


def test_secret_files_are_private_and_stable(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.ensure()
    first = home.read_secret(home.token_secret)
    assert stat.S_IMODE(home.token_secret.stat().st_mode) == 0o600
    assert home.read_secret(home.token_secret) == first and len(first) == 32
    home.token_secret.write_bytes(b"short")
    with pytest.raises(ConfigError, match="truncated"):
        home.read_secret(home.token_secret)


def test_engine_identity_is_stable_across_restarts(tmp_path: Path) -> None:
    from dxflow._core import EngineCore

    ids = []
    for _ in range(2):
        core = EngineCore(load_config(tmp_path))
        ids.append(core.engine_id)
        core.close()
    assert ids[0] == ids[1] and ids[0].startswith("dxf-")
    key = Home(tmp_path).master_key
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
