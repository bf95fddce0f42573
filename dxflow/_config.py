"""The engine home and its configuration.

The home (``DXFLOW_HOME``, default ``~/.dxflow``) holds everything an engine owns:
``config.toml`` with named profiles, the SQLite state, the storage root, keys, TLS
material, secrets, logs and the runtime files of a booted server.

A setting comes from, lowest first: the built-in default, the top level of
``config.toml``, the ``[profiles.NAME]`` table of the chosen profile, the environment
variable ``DXFLOW_<KEY>``, and an explicit override (a CLI flag).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._exceptions import ConfigError

__all__ = ["DEFAULT_PORT", "WORKFLOW_POLICIES", "Config", "Home", "atomic_write", "load_config"]

DEFAULT_PORT = 7419
WORKFLOW_POLICIES = ("privileged", "baseline", "restricted")
WORKFLOW_RUNTIMES = ("docker", "swarm")

_CONFIG_TEMPLATE = """\
# dxflow engine configuration. Every key can be overridden by DXFLOW_<KEY>
# (for example DXFLOW_PORT=7500) and by the matching `dxflow boot up` flag.
# A profile overrides the top level: `dxflow boot up --profile NAME` or DXFLOW_PROFILE=NAME.

host = "127.0.0.1"
port = {port}
tls = false
log_level = "info"
# auth_rate_limit = 120     # per minute: challenges and failed credentials per client
#                           # address, logins per identity (see docs/security.md)
# json_body_max = "1M"      # bytes of a JSON request body (413 past it)
# compose_body_max = "32M"  # bytes of a workflows.create/update body (413 past it)
# ranges_max_bytes = "8M"    # bytes one objects.ranges call may return (413 past it)
# header_timeout = 10       # seconds a client has to send a request's head
# keep_alive_timeout = 5    # seconds an idle keep-alive connection stays open
# log_max_size = "10M"      # logs/engine.log rotates at this size...
# log_backups = 5           # ...keeping this many old files (engine.log.1 ...)
# storage = "/data/dxflow"  # the object store root (default: <home>/storage)
# workflow_concurrency = 16 # services a workflow's `up` creates and starts at once
# workflow_runtime = "docker"  # what runs workflows made without runtime=: docker or swarm
# registry = "10.0.0.1:5000"   # runtime swarm: where built images are pushed for every node
# storage_quota = "20G"     # bytes the object store may hold (default: no quota)
# unzip_max_size = "8G"     # uncompressed bytes one unzip may write
# unzip_max_entries = 100000
# object_file_mode = "0600" # mode of stored files, whatever the umask ("0640", "0644" to share)
# object_dir_mode = "0700"  # mode of folders the store creates ("0750", "0755")
# upload_expiry = 86400     # seconds an unfinished resumable upload is kept
# shell_scrollback = "2M"   # output each shell session keeps for reconnecting clients
# audit_retention = "90d"   # how long audit records are kept ("0": for ever)
# workflow_policy = "baseline"  # non-MASTER keys: baseline, restricted or privileged
# run_as = "dxflow"         # OS user host shells of non-MASTER keys run as (engine run as root)
# host_paths = ["/data"]    # host folders workflows of non-MASTER keys may bind, besides storage
# proxy_public_targets = false  # proxies of non-MASTER keys may forward to public addresses
# proxy_domain = "example.test" # Host NAME.example.test on the engine's listener: proxy NAME
# bridge_interval = 5       # seconds between two heartbeats of a bridge link
# bridge_grace = 30         # seconds without a heartbeat before an agent is "lost"
# bridge_wait = 5           # seconds a call to a disconnected agent waits for it

# [profiles.public]
# host = "0.0.0.0"
# tls = true
"""


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temp file and a rename, with `mode` from birth."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # lazily: the CLI reads paths of a home on every run

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Home:
    """The paths inside an engine home."""

    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Home:
        raw = home or os.environ.get("DXFLOW_HOME") or Path.home() / ".dxflow"
        return cls(Path(raw).expanduser().absolute())

    config_file = property(lambda self: self.root / "config.toml")
    identity_file = property(lambda self: self.root / "engine.json")
    state_db = property(lambda self: self.root / "state.db")
    keys_dir = property(lambda self: self.root / "keys")
    master_key = property(lambda self: self.root / "keys" / "master.pem")
    tls_dir = property(lambda self: self.root / "tls")
    secrets_dir = property(lambda self: self.root / "secrets")
    token_secret = property(lambda self: self.root / "secrets" / "token.key")
    logs_dir = property(lambda self: self.root / "logs")
    log_file = property(lambda self: self.root / "logs" / "engine.log")
    run_dir = property(lambda self: self.root / "run")
    socket = property(lambda self: self.root / "run" / "engine.sock")
    pidfile = property(lambda self: self.root / "run" / "engine.pid")
    lockfile = property(lambda self: self.root / "run" / "engine.lock")
    runtime_file = property(lambda self: self.root / "run" / "engine.json")

    def ensure(self) -> None:
        """Create the home's folders (private to the engine user) and its config file.

        The home and its secret folders are made 0700 even when they already existed
        looser: the OS users that shells of keys other than MASTER run as must not read
        the keys, the token secret or the shells' sockets.
        """
        try:
            for folder in (self.root, self.keys_dir, self.secrets_dir, self.run_dir):
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                if folder.stat().st_mode & 0o077:
                    folder.chmod(0o700)
            self.logs_dir.mkdir(exist_ok=True)
            if not self.config_file.exists():
                atomic_write(self.config_file, _CONFIG_TEMPLATE.format(port=DEFAULT_PORT).encode())
        except OSError as exc:
            raise ConfigError(f"cannot prepare the engine home {self.root}: {exc}") from None

    def read_secret(self, path: Path, size: int = 32) -> bytes:
        """Read a secret file, creating it (mode 0600) with `size` random bytes if missing."""
        if not path.exists():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    import secrets

                    handle.write(secrets.token_bytes(size))
        data = path.read_bytes()
        if len(data) < size:
            raise ConfigError(f"the secret file {path} is truncated; remove it to make a new one")
        return data


@dataclass(frozen=True)
class Config:
    """Resolved engine settings."""

    home: Home
    profile: str = "default"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls: bool = False
    cert: str | None = None
    cert_key: str | None = None
    storage: str | None = None
    log_level: str = "info"
    auth_rate_limit: int = 120
    """Per minute: challenges and failed credentials per client address, logins per identity."""
    json_body_max: str = "1M"
    """Bytes of a JSON request body; larger ones are refused with 413 before they are read."""
    compose_body_max: str = "32M"
    """Bytes of a `workflows.create` or `workflows.update` body (a Compose file in JSON)."""
    ranges_max_bytes: str = "8M"
    """Bytes one `objects.ranges` call may return in all."""
    header_timeout: int = 10
    """Seconds a client has to send a request's line and headers before it is disconnected."""
    keep_alive_timeout: int = 5
    """Seconds an idle keep-alive connection is kept open."""
    log_max_size: str = "10M"
    """`logs/engine.log` is rotated when it reaches this size."""
    log_backups: int = 5
    """How many rotated logs are kept (`engine.log.1` ... `engine.log.N`)."""
    docker_host: str | None = None
    workflow_concurrency: int = 16
    workflow_runtime: str = "docker"
    """What runs a workflow created without `runtime=`: docker (this machine's Docker
    Engine) or swarm (the Docker Swarm that Docker Engine manages)."""
    registry: str = ""
    """Runtime swarm: a registry (`host:port`) every node pulls from; images a workflow
    builds are pushed there. None: images are loaded onto the nodes this engine reaches."""
    storage_quota: str | None = None
    """Bytes the object store may hold (`500M`, `20G`); none by default."""
    unzip_max_size: str = "8G"
    unzip_max_entries: int = 100_000
    object_file_mode: str = "0600"
    """Mode (octal) of files the object store writes, applied whatever the umask."""
    object_dir_mode: str = "0700"
    """Mode (octal) of folders the object store creates."""
    upload_expiry: int = 86_400
    """Seconds an unfinished resumable upload is kept."""
    shell_scrollback: str = "2M"
    """Bytes of output each shell session keeps for reconnecting clients."""
    audit_retention: str = "90d"
    """How long audit records are kept (`30d`, `1w`; `0` keeps them for ever)."""
    workflow_policy: str = "baseline"
    """The workflow policy profile of keys that are not MASTER and name none of their own."""
    run_as: str = "dxflow"
    """The OS user host shells of non-MASTER keys run as, unless their key names another."""
    host_paths: tuple[str, ...] = ()
    """Host folders (besides the storage root) that workflows of non-MASTER keys may bind."""
    proxy_public_targets: bool = False
    """Proxies of keys other than MASTER may forward to public addresses (not only to the
    engine's host: loopback and private ranges)."""
    proxy_domain: str = ""
    """A domain whose names route to proxies on the engine's listener: Host
    `{name}.{domain}` is the proxy `name` (the DNS entries are the user's)."""
    bridge_interval: float = 5.0
    """Seconds between two heartbeats of a bridge link (the master sends, the agent echoes)."""
    bridge_grace: float = 30.0
    """Seconds without a heartbeat before a master calls an agent `lost` (before that it
    is `disconnected`: a partition, a restart). Nothing is ever stopped or moved for it."""
    bridge_wait: float = 5.0
    """Seconds a call to a disconnected agent waits for its link to come back."""

    @property
    def storage_root(self) -> Path:
        return Path(self.storage).expanduser() if self.storage else self.home.root / "storage"


_KEYS = {f.name: f for f in dataclasses.fields(Config) if f.name not in ("home", "profile")}


def _coerce(key: str, value: Any, source: str) -> Any:
    kind = _KEYS[key].type
    try:
        if "bool" in str(kind) and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return lowered in ("1", "true", "yes", "on")
        if "int" in str(kind) and not isinstance(value, bool):
            return int(value)
        if "float" in str(kind) and not isinstance(value, bool):
            return float(value)
        if "tuple" in str(kind):
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError(value)
            return tuple(item.strip() for item in items if item.strip())
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} must be {kind}, got {value!r}") from None
    return value


def _read_file(home: Home) -> dict[str, Any]:
    import tomllib

    if not home.config_file.exists():
        return {}
    try:
        return tomllib.loads(home.config_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {home.config_file}: {exc}") from None


def load_config(
    home: str | os.PathLike[str] | Home | None = None,
    profile: str | None = None,
    **overrides: Any,
) -> Config:
    """Resolve the settings of `profile` in `home` (see the module docstring)."""
    home = home if isinstance(home, Home) else Home.resolve(home)
    profile = profile or os.environ.get("DXFLOW_PROFILE") or "default"
    document = _read_file(home)
    profiles = document.pop("profiles", {})
    if profile != "default" and profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none defined"
        raise ConfigError(f"unknown profile {profile!r} in {home.config_file} ({known})")
    values: dict[str, Any] = {}
    layers = [(document, str(home.config_file)), (profiles.get(profile, {}), f"profile {profile}")]
    for layer, source in layers:
        for key, value in layer.items():
            if key not in _KEYS:
                raise ConfigError(f"{source}: unknown setting {key!r} (known: {', '.join(_KEYS)})")
            values[key] = _coerce(key, value, source)
    for key in _KEYS:
        env = os.environ.get(f"DXFLOW_{key.upper()}")
        if env is not None:
            values[key] = _coerce(key, env, f"DXFLOW_{key.upper()}")
    for key, value in overrides.items():
        if key not in _KEYS:
            raise ConfigError(f"unknown setting {key!r}")
        if value is not None:
            values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    if not 0 <= values.get("port", DEFAULT_PORT) <= 65535:
        raise ConfigError(f"port must be 0-65535 (0 picks a free one), got {values['port']}")
    config = Config(home=home, profile=profile, **values)
    if config.workflow_runtime not in WORKFLOW_RUNTIMES:
        raise ConfigError(
            f"workflow_runtime must be one of {', '.join(WORKFLOW_RUNTIMES)},"
            f" got {config.workflow_runtime!r}"
        )
    if config.workflow_policy not in WORKFLOW_POLICIES:
        raise ConfigError(
            f"workflow_policy must be one of {', '.join(WORKFLOW_POLICIES)},"
            f" got {config.workflow_policy!r}"
        )
    return config
