"""The engine core: state, services and the dispatcher, assembled from a Config."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from functools import partial
from pathlib import Path

from .._config import Config, atomic_write
from .._durations import parse_duration, parse_size
from .._exceptions import ConfigError
from .._keypairs import PrivateKey, PublicKey, generate_key_pair, load_private_key, parse_public_key
from .._limits import Limits
from .._permissions import Permission
from ._audit import AuditLog
from ._auth import AuthService
from ._bridges import BridgeAgent, BridgeMaster
from ._context import Context, Identity
from ._dispatch import Dispatcher
from ._docker import DockerAdapter
from ._handlers import collect_handlers
from ._key_registry import KeyRegistry
from ._lifecycle import (
    AUDIT_PRUNE_EVERY,
    SHELL_REAP_EVERY,
    TEMP_SWEEP_EVERY,
    UPLOAD_SWEEP_EVERY,
    Lifecycle,
)
from ._objects import (
    ObjectService,
    Quota,
    ShareService,
    Storage,
    UnzipLimits,
    UploadService,
)
from ._objects._paths import STALE_TEMP, parse_mode
from ._platform import PlatformService
from ._proxies import ProxyService, TargetPolicy, Workloads
from ._revocation import OpenCalls
from ._shells import ShellService
from ._state import State
from ._workflows import WorkflowService
from ._workflows._policy import PolicyRoots

__all__ = ["EngineCore"]

MASTER_IDENTITY = "master"


def _engine_id(path: Path) -> str:
    """The engine's identity: made once, then stable across restarts."""
    if not path.exists():
        record = {"engine_id": f"dxf-{secrets.token_hex(8)}", "created_at": time.time()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        atomic_write(tmp, json.dumps(record).encode())
        try:
            os.link(tmp, path)  # never replaces an identity another process just made
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        return str(json.loads(path.read_text())["engine_id"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"the engine identity file {path} is unreadable: {exc}") from None


def _master_key(path: Path) -> PublicKey:
    """The public half of the master key pair, made on first boot.

    The engine itself never signs: reading the .pub file skips validating the private
    key, which costs tens of milliseconds at every boot.
    """
    if not path.exists():
        try:
            generate_key_pair(path)
        except ConfigError:
            if not path.exists():  # not a race with another process: a real failure
                raise
    public = path.with_name(path.name.removesuffix(".pem") + ".pub")
    try:
        return parse_public_key(public.read_text())
    except (OSError, ValueError):
        return load_private_key(path).public  # the .pub is gone or broken: derive it


def _retention(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"audit_retention: {exc}") from None


def _object_services(
    config: Config, state: State, keys: KeyRegistry, audit: AuditLog
) -> tuple[ObjectService, ShareService, UploadService]:
    try:
        file_mode = parse_mode(config.object_file_mode, "object_file_mode", 0o600)
        dir_mode = parse_mode(config.object_dir_mode, "object_dir_mode", 0o700)
    except ValueError as exc:
        raise ConfigError(f"storage settings: {exc}") from None
    storage = Storage(config.storage_root, file_mode, dir_mode)
    try:
        quota = parse_size(config.storage_quota) if config.storage_quota else None
        limits = UnzipLimits(config.unzip_max_entries, parse_size(config.unzip_max_size))
    except ValueError as exc:
        raise ConfigError(f"storage settings: {exc}") from None
    objects = ObjectService(storage, Quota(storage.walker.open_root, quota), limits)
    secret = config.home.read_secret(config.home.token_secret)
    shares = ShareService(state, objects, secret, config.home, keys, audit)
    return objects, shares, UploadService(state, objects, config.upload_expiry)


def _shell_service(config: Config, storage: Storage, workflows: WorkflowService) -> ShellService:
    try:
        scrollback = parse_size(config.shell_scrollback)
    except ValueError as exc:
        raise ConfigError(f"shell_scrollback: {exc}") from None
    return ShellService(
        config.home.run_dir / "shells", storage, scrollback, workflows, config.run_as
    )


def _proxy_service(core: EngineCore, roots: PolicyRoots) -> ProxyService:
    config = core.config
    policy = TargetPolicy(roots, public=config.proxy_public_targets,
                          bridges=core.bridges.socket)  # fmt: skip
    return ProxyService(
        core.state, config, core.lifecycle, core.audit, policy,
        Workloads(core.workflows, core.docker, core.engine_id),
        config.home.read_secret(config.home.token_secret), core.objects,
    )  # fmt: skip


class EngineCore:
    """Everything an engine is, minus its doors (the SDK transports and the server).

    Its background work runs only while `lifecycle` is started (see `_lifecycle`): the
    server's lifespan starts it, and so does the in-process transport that owns the core.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.limits = Limits.of(config)  # a bad limit fails the boot, naming its setting
        home = config.home
        home.ensure()
        self.engine_id = _engine_id(home.identity_file)
        self.state = State(home.state_db)
        self.audit = AuditLog(self.state, _retention(config.audit_retention))
        self.keys = KeyRegistry(self.state)
        master = _master_key(home.master_key)
        if self.keys.get(MASTER_IDENTITY) is None:
            self.keys.add(MASTER_IDENTITY, master, Permission.MASTER)
        self.master = Identity(MASTER_IDENTITY, Permission.MASTER, master.fingerprint)
        self.auth = AuthService(
            self.engine_id,
            home.read_secret(home.token_secret),
            self.keys,
            self.audit,
            config.auth_rate_limit,
            decoy=master,
        )
        self.lifecycle = Lifecycle()
        self.docker = DockerAdapter(config.docker_host)
        self.platform = PlatformService(self.engine_id, str(home.root), self.docker)
        self.objects, self.shares, self.uploads = _object_services(
            config, self.state, self.keys, self.audit
        )
        roots = PolicyRoots.from_config(config)
        self.workflows = WorkflowService(
            self.state, self.docker, roots,
            config.workflow_concurrency, self.engine_id, self.objects.storage.private / "workflows",
            config.workflow_runtime, config.registry,
        )  # fmt: skip
        self.objects.ranges_max = self.limits.ranges
        self.shells = _shell_service(config, self.objects.storage, self.workflows)
        self.bridges = BridgeMaster(self.state, config, self.keys, self.audit, self.engine_id,
                                    master.fingerprint)  # fmt: skip
        self.proxies = _proxy_service(self, roots)
        self.platform.agents = self.bridges.agent_stats
        self.bridge_agent = BridgeAgent(config, self.keys, self.engine_id)
        """Dials this engine's master, if it joined one; the server's lifespan starts it."""
        handlers = collect_handlers(
            self.platform, self.auth, self.keys, self.audit, self.workflows,
            self.objects, self.shares, self.uploads, self.shells, self.proxies, self.bridges,
        )  # fmt: skip
        # A change to a key ends what it holds: its open channels and streams, its links.
        self.open_calls = OpenCalls(self._current_identity)
        self.keys.events.subscribe(self.open_calls.key_changed)
        self.keys.events.subscribe(self.shares.key_changed)
        self.keys.events.subscribe(self.proxies.key_changed)
        self.keys.events.subscribe(self.bridges.key_changed)
        self.dispatcher = Dispatcher(
            handlers, self.audit, self.open_calls, authenticate=self.auth.authenticate
        )
        self.proxies.bind_admission(self.dispatcher.admit_proxy)
        self._housekeeping()

    def _housekeeping(self) -> None:
        """The engine's own background work (the intervals are in `_lifecycle`)."""
        every = self.lifecycle.every
        every("audit.prune", AUDIT_PRUNE_EVERY, self.audit.prune)
        every("shells.reap", SHELL_REAP_EVERY, self.shells.reap)
        every("uploads.sweep", UPLOAD_SWEEP_EVERY, self.uploads.sweep)
        quota = self.objects.quota
        sweep = partial(self.objects.storage.sweep_temp, STALE_TEMP, lambda n: quota.changed(-n))
        every("objects.temp_sweep", TEMP_SWEEP_EVERY, sweep)

    def _current_identity(self, name: str) -> Identity | None:
        base, slash, _caller = name.partition("/")  # a bridge master's call for a caller
        record = self.keys.get(base)
        if record is None:
            return None
        identity = record.identity_of()
        return dataclasses.replace(identity, name=name) if slash else identity

    def local_context(self, key: PrivateKey | None = None) -> Context:
        """The context of in-process calls: MASTER, or the identity `key` is registered as."""
        identity = self.master if key is None else self.auth.identity_for_key(key.public)
        return Context(identity, client="local")

    def close(self) -> None:
        """Release the state and Docker. Whoever started the background work stops it
        first (`await lifecycle.stop()`); if not, it is asked to stop here."""
        self.lifecycle.cancel()
        self.proxies.close()
        self.docker.close()
        self.state.close()
