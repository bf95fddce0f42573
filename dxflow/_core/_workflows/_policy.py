"""The workflow policy: what a Compose project may ask of the host, by profile.

Modelled on Kubernetes Pod Security Standards. ``privileged`` allows anything (MASTER
always has it). ``baseline`` (the default of every other key) refuses what reaches the
host: privileged containers, host namespaces, capabilities beyond Docker's default set,
devices, unconfining security options, the Docker socket, and host paths (bind sources,
env files, build contexts, secret and config files, the working folder) outside the
storage root and the operator's ``host_paths``, the engine home above all.
``restricted`` adds: no bind mounts, ``no-new-privileges``, a non-root user, ``cap_drop:
[ALL]`` and no added capability but NET_BIND_SERVICE.

Whatever the profile, a caller other than MASTER may not set the labels the engine owns
(``io.dxflow.*``, ``com.docker.compose.*``) on services, networks or volumes: they say
which engine and project own a container, and a workflow that set them could pass its
containers off as another engine's, or as nobody's (out of reach of its own `down`).

Pure functions over the normalized project and the file system (``realpath``, so a
symlink inside storage that leads out is caught); no Docker.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..._config import Config
from ..._exceptions import Conflict, InvalidRequest, NotFound, PermissionDenied
from ..._models import ComposeProject
from ..._models._compose import Mount, Service
from .._compose import LoadedProject, guarded_reads, open_plain
from .._context import Identity
from .._objects._walker import Walker

__all__ = [
    "PROFILES",
    "FileGuard",
    "PolicyRoots",
    "Violation",
    "admit",
    "check_exec_user",
    "check_project",
    "profile_for",
    "refusal",
]

PROFILES = ("privileged", "baseline", "restricted")

# Docker's default capability set (moby's oci/caps/defaults.go).
DEFAULT_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})  # fmt: skip
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock")
_NETWORK_MODES = ("none", "bridge", "default")
_NO_NEW_PRIVILEGES = ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
_CONFINING = ("apparmor=docker-default", "apparmor:docker-default", "no-new-privileges:false",
              "no-new-privileges=false")  # fmt: skip
_VOLUME_TYPES = ("tmpfs", "nfs", "nfs4", "cifs")  # memory, or file systems over the network
_REMOTE = ("http://", "https://", "git://", "git@", "ssh://", "github.com/")
_PRIVATE = ".dxflow"  # the object store's own folder (objects._paths.PRIVATE)
RESERVED_LABELS = ("io.dxflow.", "com.docker.compose.")
"""Label prefixes the engine sets (owner, project, service, hash): not the caller's."""
_RESERVED_RULE = (
    "is a reserved label: io.dxflow.* and com.docker.compose.* labels are set by the engine "
    "(they say which engine and project own a container, network or volume); only a MASTER "
    "key may set them"
)
MAX_MESSAGE = 4000
_OUTSIDE = "is outside the storage root and the engine's host_paths"
_LINK = "links are never followed for a workflow's files (one may lead out of the allowed folders)"
_FIX = (
    "keep host paths in the storage root or a folder listed in the engine's host_paths; "
    "a MASTER key can set another policy: dxflow key update NAME --workflow-policy PROFILE"
)


@dataclass(frozen=True)
class Violation:
    path: str
    """The Compose key path (``services.web.volumes[0]``)."""
    value: object
    rule: str

    def text(self, profile: str) -> str:
        return f"{self.path}: {self.value!r} {self.rule} (policy {profile})"


def _real(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass(frozen=True)
class PolicyRoots:
    """The host folders the policy rules on, resolved once (realpath)."""

    storage: str
    home: str
    host_paths: tuple[str, ...] = ()
    sockets: tuple[str, ...] = DOCKER_SOCKETS
    default: str = "baseline"
    storage_names: tuple[str, ...] = ()
    """The storage root as resolved and as configured (a path naming a file in it may use
    either), for the rule that a link in storage is never followed."""

    @property
    def allowed(self) -> tuple[str, ...]:
        """The folders (real paths) a non-privileged workflow's host files may be in."""
        return (self.storage, *self.host_paths)

    @classmethod
    def create(
        cls,
        storage: str | os.PathLike[str],
        home: str | os.PathLike[str],
        host_paths: Iterable[str] = (),
        docker_host: str | None = None,
        default: str = "baseline",
    ) -> PolicyRoots:
        sockets = {*DOCKER_SOCKETS, *(_real(s) for s in DOCKER_SOCKETS)}
        host = docker_host or os.environ.get("DOCKER_HOST") or ""
        if host.startswith("unix://"):
            sockets |= {host.removeprefix("unix://"), _real(host.removeprefix("unix://"))}
        named = os.path.normpath(os.path.abspath(os.fspath(storage)))
        return cls(
            storage=_real(os.fspath(storage)),
            storage_names=tuple(sorted({named, _real(os.fspath(storage))})),
            home=_real(os.fspath(home)),
            host_paths=tuple(_real(p) for p in host_paths),
            sockets=tuple(sorted(sockets)),
            default=default,
        )

    @classmethod
    def from_config(cls, config: Config) -> PolicyRoots:
        return cls.create(
            config.storage_root,
            config.home.root,
            config.host_paths,
            config.docker_host,
            config.workflow_policy,
        )

    def host_path_rule(
        self, path: str, *, must_exist: bool = True, contents: bool = True, real: str = ""
    ) -> str | None:
        """Why `path` may not reach a container or the loader, or None when it may.

        `contents`: what is below `path` is reached too (a bind, a build context), so it
        may not contain the engine home, the Docker socket or the private folder. `real`:
        `path` resolved already (what the caller will open: judged as it is).
        """
        if "\0" in path:
            return "contains a NUL byte"
        real = real or _real(path)
        storage_in_home = _inside(self.storage, self.home) and self.storage != self.home
        private = os.path.join(self.storage, _PRIVATE)
        blocked = []  # never reachable, whatever the operator allowed
        if real == self.home or (contents and _inside(self.home, real)):
            blocked.append("it is or contains the engine home")
        elif _inside(real, self.home) and not (storage_in_home and _inside(real, self.storage)):
            blocked.append("it is inside the engine home")
        if any(real == s or (contents and _inside(s, real)) for s in self.sockets):
            blocked.append("it is or contains the Docker socket")
        if _inside(real, private) or (contents and _inside(private, real)):
            blocked.append(f"it is or contains the object store's private folder {_PRIVATE}/")
        moved = [f"it resolves to {real!r}"] if real != os.path.normpath(path) else []
        why = f" ({'; '.join(blocked + moved)})" if blocked or moved else ""
        allowed = _inside(real, self.storage) or any(_inside(real, p) for p in self.host_paths)
        if not allowed:
            return f"{_OUTSIDE}{why}"
        if blocked:
            return f"is not allowed{why}"
        if must_exist and not os.path.exists(real):
            return "does not exist (a host path is never created for a workflow; create it first)"
        return None


@dataclass
class FileGuard:
    """The loader's read guard (see `_compose._guard`): it judges each host file the loader
    would read, records each refused one, and opens the others itself, so that what is read
    is what was judged.

    An allowed file is opened from the allowed folder it lies in, one component at a time
    and never through a link (the object store's walker): a link planted after the
    judgement (by a container that binds the folder) is refused, never followed. Under
    privileged any host file may be read, but one named in the storage root, which keys
    short of MASTER write into, is never read through a link that leads out of it.
    """

    roots: PolicyRoots
    profile: str
    violations: list[Violation] = field(default_factory=list)

    def __call__(self, path: str, where: str) -> int | None:
        where = where or "env_file"
        if self.profile == "privileged":
            return self._privileged(path, where)
        real = "" if "\0" in path else _real(path)  # once: the path judged is the path opened
        rule = self.roots.host_path_rule(path, must_exist=False, contents=False, real=real)
        if rule is not None:
            return self._refuse(where, path, rule)
        return self._beneath(path, where, real, self.roots.allowed)

    def _refuse(self, where: str, path: str, rule: str) -> int | None:
        """None (the file is read as empty, never opened), the refusal recorded."""
        self.violations.append(Violation(where, path, rule))
        return None

    def _privileged(self, path: str, where: str) -> int | None:
        if "\0" in path:  # no file has that name: the loader says so (a 422)
            raise ValueError("the path contains a NUL byte")
        real = _real(path)
        if _inside(real, self.roots.storage):
            return self._beneath(path, where, real, (self.roots.storage,))
        named = os.path.normpath(os.path.abspath(path))
        if any(_inside(named, root) for root in self.roots.storage_names):
            rule = (
                f"leads out of the storage root through a link (it resolves to {real!r}); {_LINK}"
            )
            return self._refuse(where, path, rule)
        return open_plain(path)  # MASTER's own host file: read as Compose would

    def _beneath(self, path: str, where: str, real: str, roots: Iterable[str]) -> int | None:
        """`real` (a path with no link in it when it was resolved) opened from the deepest
        of `roots` that holds it, so a link swapped in since is met and refused."""
        root = max((r for r in roots if _inside(real, r)), key=len, default=None)
        if root is None:
            return self._refuse(
                where, path, "is outside the storage root and the engine's host_paths"
            )
        parts = [p for p in os.path.relpath(real, root).split("/") if p not in ("", ".")]
        try:
            fd, _ = Walker(root).open_file(parts, real)
        except NotFound:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from None
        except PermissionDenied:  # the file's own mode keeps the engine out: say so, a 422
            raise PermissionError(errno.EACCES, "Permission denied", path) from None
        except (InvalidRequest, Conflict):
            return self._refuse(
                where, path, f"is not a regular file reached without a link; {_LINK}"
            )
        return fd


def profile_for(identity: Identity | None, default: str) -> str:
    """MASTER (and the engine's own calls) is always privileged; else the key's, else default."""
    if identity is None or identity.is_master:
        return "privileged"
    return identity.workflow_policy or default


def refusal(name: str, profile: str, violations: list[Violation]) -> PermissionDenied:
    """One 403 listing every violation (capped), with the detail the audit record keeps."""
    texts = [v.text(profile) for v in violations]
    shown: list[str] = []
    size = 0
    for text in texts:
        if size + len(text) > MAX_MESSAGE and shown:
            break
        shown.append(text)
        size += len(text) + 2
    more = f"; and {len(texts) - len(shown)} more" if len(shown) < len(texts) else ""
    fix = _FIX
    if any(v.rule == _RESERVED_RULE for v in violations):  # another profile would not help
        fix = f"rename the labels that start with {' or '.join(RESERVED_LABELS)}; {fix}"
    message = f"workflow {name!r} is refused: {'; '.join(shown)}{more}. Fix: {fix}"
    error = PermissionDenied(
        message, workflow=name, policy=profile, violations=[v.path for v in violations[:100]]
    )
    error.audit_detail = "; ".join(shown) + more  # type: ignore[attr-defined]
    return error


def admit(
    name: str,
    profile: str,
    roots: PolicyRoots,
    load: Callable[[], LoadedProject],
    working_dir: str | None = None,
    *,
    everyone: bool,
) -> LoadedProject:
    """`load()` under `profile`, or a 403 listing every violation.

    Every host file the loader would read is first offered to the policy, which opens it
    (a refused one is never opened); then the loaded project is checked. `everyone`: the
    caller is MASTER (it may set the engine's reserved labels).
    """
    guard = FileGuard(roots, profile)
    try:
        with guarded_reads(guard):
            loaded = load()
    except InvalidRequest:
        if guard.violations:  # a refused file, read as empty, may break the load
            raise refusal(name, profile, guard.violations) from None
        raise
    found = [
        *guard.violations,
        *check_project(loaded.project, profile, roots, working_dir, everyone=everyone),
    ]
    if found:
        raise refusal(name, profile, found)
    return loaded


def check_project(
    project: ComposeProject,
    profile: str,
    roots: PolicyRoots,
    working_dir: str | None = None,
    *,
    everyone: bool,
) -> list[Violation]:
    """Every violation of `profile` in `project` (its env files: see `FileGuard`).

    `working_dir` is the folder the caller chose (None: the engine's default, not the
    caller's). `everyone`: the caller is MASTER; any other caller (a key registered
    `privileged` too) is refused the reserved labels.
    """
    found: list[Violation] = [] if everyone else list(_reserved_labels(project))
    if profile == "privileged":
        return found
    if working_dir is not None:  # only a base for relative paths: what it contains is not
        found += _paths(roots, [("working_dir", working_dir)], contents=False)
    for kind, files in (("secrets", project.secrets), ("configs", project.configs)):
        entries = [(f"{kind}.{k}.file", ref.file) for k, ref in files.items() if ref.file]
        found += _paths(roots, entries, contents=False)
    found += list(_networks(project))
    found += list(_volumes(project, profile, roots))
    for name, service in project.services.items():
        found += list(_service(f"services.{name}", service, profile, roots))
    return found


def _reserved_labels(project: ComposeProject) -> Iterator[Violation]:
    owners = [
        *((f"services.{k}.labels", s.labels) for k, s in project.services.items()),
        *((f"services.{k}.deploy.labels", s.deploy.labels) for k, s in project.services.items()),
        *((f"networks.{k}.labels", n.labels) for k, n in project.networks.items()),
        *((f"volumes.{k}.labels", v.labels) for k, v in project.volumes.items()),
    ]
    for where, labels in owners:
        for label, value in labels.items():
            if label.lower().startswith(RESERVED_LABELS):
                yield Violation(f"{where}.{label}", value, _RESERVED_RULE)


def _paths(
    roots: PolicyRoots, entries: Iterable[tuple[str, str]], contents: bool = True
) -> list[Violation]:
    found = []
    for where, path in entries:
        rule = roots.host_path_rule(path, contents=contents)
        if rule is not None:
            found.append(Violation(where, path, rule))
    return found


def _networks(project: ComposeProject) -> Iterator[Violation]:
    for key, network in project.networks.items():
        if network.driver == "host":
            yield Violation(f"networks.{key}.driver", "host", "shares the host's network")
        elif network.driver in ("macvlan", "ipvlan"):
            rule = "attaches containers to a host interface"
            yield Violation(f"networks.{key}.driver", network.driver, rule)
        elif network.external and network.name == "host":
            yield Violation(f"networks.{key}.name", "host", "is the host's network")


def _volumes(project: ComposeProject, profile: str, roots: PolicyRoots) -> Iterator[Violation]:
    """The local driver's options are mount(8)'s: a bind (`o: bind`, `type: none`) is a bind
    mount by another name, and other types mount host devices or folders (`ext4` on
    `/dev/sda1`, `overlay` with `lowerdir=/`): only tmpfs and network file systems pass."""
    for key, volume in project.volumes.items():
        opts = volume.driver_opts
        if volume.driver not in (None, "local") or not opts:
            continue
        where = f"volumes.{key}.driver_opts"
        device, kind = opts.get("device", ""), opts.get("type")
        flags = {flag.strip() for flag in opts.get("o", "").split(",")}
        if flags & {"bind", "rbind"} or kind in ("none", "bind", "rbind"):
            if profile == "restricted":
                yield Violation(where, device, "is a bind mount; bind mounts are not allowed")
            else:
                yield from _paths(roots, [(f"{where}.device", device)])
        elif kind not in _VOLUME_TYPES:
            rule = f"mounts a host device or folder (types allowed: {', '.join(_VOLUME_TYPES)})"
            yield Violation(f"{where}.type", kind, rule)


def _service(where: str, service: Service, profile: str, roots: PolicyRoots) -> Iterator[Violation]:
    if service.privileged:
        yield Violation(f"{where}.privileged", True, "is not allowed")
    yield from _network_mode(where, service.network_mode)
    yield from _capabilities(where, service, profile)
    for index, device in enumerate(service.devices):
        rule = "maps a host device (GPUs: deploy.resources.reservations.devices or gpus)"
        yield Violation(f"{where}.devices[{index}]", device, rule)
    for index, mount in enumerate(service.volumes):
        yield from _mount(f"{where}.volumes[{index}]", mount, profile, roots)
    if service.build is not None:
        yield from _build(f"{where}.build", service, roots)
    yield from _security_opt(where, service.security_opt, profile)
    if profile == "restricted":
        yield from _user(where, service.user)


def _network_mode(where: str, mode: str | None) -> Iterator[Violation]:
    if mode is None or mode in _NETWORK_MODES or mode.startswith("service:"):
        return
    if mode == "host":
        rule = "shares the host's network namespace"
    elif mode.startswith("container:"):
        rule = "joins a container the workflow does not own (use `service:NAME`)"
    else:
        rule = "joins a network by name (attach through `networks:`)"
    yield Violation(f"{where}.network_mode", mode, rule)


def _capability(name: str) -> str:
    name = name.strip().upper()
    return name.removeprefix("CAP_")


def _capabilities(where: str, service: Service, profile: str) -> Iterator[Violation]:
    allowed = RESTRICTED_CAPABILITIES if profile == "restricted" else DEFAULT_CAPABILITIES
    for index, cap in enumerate(service.cap_add):
        if _capability(cap) not in allowed:
            rule = (
                "is not allowed (only NET_BIND_SERVICE may be added)"
                if profile == "restricted"
                else "is not in Docker's default capability set"
            )
            yield Violation(f"{where}.cap_add[{index}]", cap, rule)
    if profile == "restricted" and "ALL" not in {_capability(c) for c in service.cap_drop}:
        rule = "must drop ALL capabilities (add `cap_drop: [ALL]`)"
        yield Violation(f"{where}.cap_drop", service.cap_drop, rule)


def _mount(where: str, mount: Mount, profile: str, roots: PolicyRoots) -> Iterator[Violation]:
    if mount.type != "bind" or mount.source is None:
        return
    if profile == "restricted":
        yield Violation(where, mount.source, "is a bind mount; bind mounts are not allowed")
    else:
        yield from _paths(roots, [(where, mount.source)])


def _build(where: str, service: Service, roots: PolicyRoots) -> Iterator[Violation]:
    assert service.build is not None
    context = service.build.context
    if context.startswith(_REMOTE):
        return
    yield from _paths(roots, [(f"{where}.context", context)])
    dockerfile = os.path.join(context, service.build.dockerfile)
    if not _inside(_real(dockerfile), _real(context)):
        rule = "is outside the build context"
        yield Violation(f"{where}.dockerfile", service.build.dockerfile, rule)


def _security_opt(where: str, options: list[str], profile: str) -> Iterator[Violation]:
    for index, option in enumerate(options):
        text = option.strip().lower()
        if text not in _NO_NEW_PRIVILEGES and text not in _CONFINING:
            rule = "unconfines or replaces the default confinement"
            yield Violation(f"{where}.security_opt[{index}]", option, rule)
        elif profile == "restricted" and text.endswith("false"):
            yield Violation(f"{where}.security_opt[{index}]", option, "must not be false")
    enabled = any(o.strip().lower() in _NO_NEW_PRIVILEGES for o in options)
    if profile == "restricted" and not enabled:
        rule = "must include no-new-privileges (add `security_opt: [no-new-privileges:true]`)"
        yield Violation(f"{where}.security_opt", options, rule)


def _is_root(user: str) -> bool:
    uid = user.split(":", 1)[0].strip()
    return uid in ("", "0", "root")


def _user(where: str, user: str | None) -> Iterator[Violation]:
    if user is None:
        rule = 'must be set to a non-root user (add `user: "1000:1000"`)'
        yield Violation(f"{where}.user", None, rule)
    elif _is_root(user):
        yield Violation(f"{where}.user", user, "is root; the user must not be root")


def check_exec_user(user: str | None, profile: str) -> list[Violation]:
    """Under restricted an exec may not run as root (the service's user is never root)."""
    if profile == "restricted" and user is not None and _is_root(user):
        return [Violation("user", user, "is root; the user must not be root")]
    return []
