"""The operation table: every API call, listed once.

Server routes, the HTTP client, the permission check, the audit log and the OpenAPI
document are all derived from this table. A new capability adds rows here and handlers
in the core; it never touches the plumbing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from . import _models as m
from ._permissions import Permission

__all__ = ["OPENAPI_PATH", "OPERATIONS", "Operation", "operation"]

Kind = Literal["call", "stream", "channel", "download", "upload"]
"""call: one model back; stream: NDJSON models; channel: a WebSocket; download: bytes
back (ranges, ETag); upload: bytes in (the request's fields travel in the query)."""
_PATH_PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Operation:
    """One API call: its name, its route, its models and its access rules."""

    name: str
    method: str
    path: str
    summary: str
    request: type[m.Request] | None = None
    response: type[m.Response] | None = None
    kind: Kind = "call"
    permission: Permission | None = None
    """What the caller needs; None means any authenticated identity."""
    public: bool = False
    """Callable without credentials (health, the authentication handshake)."""
    mutating: bool = False
    """Changes state: blocked by READ_ONLY and written to the audit log."""
    idempotent: bool = True
    """Safe to retry after a lost connection."""
    target: str | None = None
    """The request field that names what the call acts on, for the audit log."""
    writes_when: str | None = None
    """A boolean request field that makes an otherwise read-only call mutating."""
    also_requires: tuple[tuple[str, Permission], ...] = ()
    """(field, permission) pairs: when the request sets `field` (not None, empty or
    false), the caller needs `permission` too (a shell in a workflow's container needs
    WORKFLOW). The dispatcher checks them, like `permission`."""
    custom_route: bool = False
    """Served by a hand-written route (a protocol of its own, e.g. tus), not a generated one."""
    self_audited: bool = False
    """The handler writes the call's audit records itself: it knows what the request does
    not (a share link's id, and the link as the identity that acts)."""
    path_params: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path_params", tuple(_PATH_PARAM.findall(self.path)))

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def body_in_query(self) -> bool:
        return self.method in ("GET", "DELETE", "HEAD") or self.kind == "upload"


_MASTER = Permission.MASTER
_PLATFORM = Permission.PLATFORM
_WORKFLOW = Permission.WORKFLOW
_OBJECT = Permission.OBJECT
_SHELL = Permission.SHELL

_TABLE: tuple[Operation, ...] = (
    # -- engine -----------------------------------------------------------------------
    Operation("engine.health", "GET", "/api/health", "Is the engine up?",
              response=m.Health, public=True),
    Operation("engine.ping", "GET", "/api/ping", "Authenticated round trip.",
              response=m.Pong),
    Operation("engine.info", "GET", "/api/info",
              "Identity, version, host, CPU, memory, disks, GPUs and Docker.",
              response=m.EngineInfo, permission=_PLATFORM),
    Operation("engine.stats", "GET", "/api/stats",
              "CPU per core, memory, disk per mount, network per interface.",
              response=m.EngineStats, permission=_PLATFORM),
    Operation("engine.stats.watch", "GET", "/api/stats/watch",
              "A stream of stats samples (NDJSON).", request=m.StatsWatch,
              response=m.EngineStats, kind="stream", permission=_PLATFORM),
    # -- authentication ---------------------------------------------------------------
    Operation("auth.challenge", "POST", "/api/auth/challenge",
              "Issue a single-use nonce to sign (expires after 60 s).",
              response=m.Challenge, public=True,
              idempotent=False),
    Operation("auth.verify", "POST", "/api/auth/verify",
              "Exchange a signed nonce for a bearer token.", request=m.Verify,
              response=m.Token, public=True, idempotent=False),
    Operation("auth.token", "POST", "/api/auth/token",
              "Issue a new token for the calling identity.", request=m.TokenRequest,
              response=m.Token, idempotent=False),
    Operation("auth.whoami", "GET", "/api/auth/whoami",
              "The calling identity and its permissions.", response=m.WhoAmI),
    # -- keys -------------------------------------------------------------------------
    Operation("keys.list", "GET", "/api/keys", "Registered keys.",
              response=m.KeyList, permission=_MASTER),
    Operation("keys.get", "GET", "/api/keys/{identity}", "One registered key.",
              request=m.KeyRef, response=m.KeyInfo, permission=_MASTER),
    Operation("keys.register", "POST", "/api/keys", "Register a public key.",
              request=m.KeyRegister, response=m.KeyInfo, permission=_MASTER,
              mutating=True, idempotent=False, target="identity"),
    Operation("keys.unregister", "DELETE", "/api/keys/{identity}",
              "Unregister a key; its tokens stop working at once.", request=m.KeyRef,
              response=m.KeyInfo, permission=_MASTER, mutating=True, target="identity"),
    Operation("keys.update", "PATCH", "/api/keys/{identity}",
              "Change a key's permissions, run-as user or workflow policy.",
              request=m.KeyUpdate, response=m.KeyInfo, permission=_MASTER,
              mutating=True, target="identity"),
    Operation("keys.rotate", "POST", "/api/keys/{identity}/rotate",
              "Replace a key's public key; its tokens stop working at once.",
              request=m.KeyRotate, response=m.KeyInfo, permission=_MASTER,
              mutating=True, idempotent=False, target="identity"),
    # -- workflows ------------------------------------------------------------------------
    Operation("workflows.create", "POST", "/api/workflows",
              "Validate, interpolate and store a Compose project (no containers yet).",
              request=m.WorkflowCreate, response=m.WorkflowInfo, permission=_WORKFLOW,
              mutating=True, idempotent=False, target="name"),
    Operation("workflows.list", "GET", "/api/workflows", "Stored workflows.",
              response=m.WorkflowList, permission=_WORKFLOW),
    Operation("workflows.projects", "GET", "/api/compose-projects",
              "This engine's Compose projects; for MASTER, every one on the Docker Engine.",
              response=m.ComposeProjectList, permission=_WORKFLOW),
    Operation("workflows.get", "GET", "/api/workflows/{name}", "One workflow.",
              request=m.WorkflowRef, response=m.WorkflowInfo, permission=_WORKFLOW),
    Operation("workflows.config", "GET", "/api/workflows/{name}/config",
              "The normalized, interpolated Compose model.", request=m.WorkflowRef,
              response=m.ComposeProject, permission=_WORKFLOW),
    Operation("workflows.status", "GET", "/api/workflows/{name}/status",
              "Per service: state, health, exit code, containers, published ports.",
              request=m.WorkflowRef, response=m.WorkflowStatus, permission=_WORKFLOW),
    Operation("workflows.up", "POST", "/api/workflows/{name}/up",
              "Create and start services along depends_on; a stream of progress events.",
              request=m.WorkflowUp, response=m.WorkflowEvent, kind="stream",
              permission=_WORKFLOW, mutating=True, idempotent=False, target="name"),
    Operation("workflows.down", "POST", "/api/workflows/{name}/down",
              "Stop and remove containers and networks (volumes on request); events.",
              request=m.WorkflowDown, response=m.WorkflowEvent, kind="stream",
              permission=_WORKFLOW, mutating=True, idempotent=False, target="name"),
    Operation("workflows.start", "POST", "/api/workflows/{name}/start",
              "Start existing containers.", request=m.WorkflowStop,
              response=m.WorkflowStatus, permission=_WORKFLOW, mutating=True, target="name"),
    Operation("workflows.stop", "POST", "/api/workflows/{name}/stop",
              "Stop containers (SIGTERM, then SIGKILL after the timeout).",
              request=m.WorkflowStop, response=m.WorkflowStatus, permission=_WORKFLOW,
              mutating=True, target="name"),
    Operation("workflows.restart", "POST", "/api/workflows/{name}/restart",
              "Restart containers.", request=m.WorkflowStop, response=m.WorkflowStatus,
              permission=_WORKFLOW, mutating=True, target="name"),
    Operation("workflows.update", "PUT", "/api/workflows/{name}",
              "Replace parts of a stored workflow; the next up recreates what changed.",
              request=m.WorkflowUpdate, response=m.WorkflowInfo, permission=_WORKFLOW,
              mutating=True, target="name"),
    Operation("workflows.env", "GET", "/api/workflows/{name}/env",
              "Where a service's variable gets its value.", request=m.EnvQuery,
              response=m.EnvExplanation, permission=_WORKFLOW),
    Operation("workflows.logs", "GET", "/api/workflows/{name}/logs",
              "Log lines tagged with service and stream (NDJSON; follow to keep reading).",
              request=m.WorkflowLogs, response=m.LogLine, kind="stream", permission=_WORKFLOW),
    Operation("workflows.events", "GET", "/api/workflows/{name}/events",
              "Typed container events of the workflow as they happen (NDJSON).",
              request=m.WorkflowEventsQuery, response=m.WorkflowEvent, kind="stream",
              permission=_WORKFLOW),
    Operation("workflows.pause", "POST", "/api/workflows/{name}/pause",
              "Pause containers.", request=m.WorkflowStop, response=m.WorkflowStatus,
              permission=_WORKFLOW, mutating=True, target="name"),
    Operation("workflows.unpause", "POST", "/api/workflows/{name}/unpause",
              "Unpause containers.", request=m.WorkflowStop, response=m.WorkflowStatus,
              permission=_WORKFLOW, mutating=True, target="name"),
    Operation("workflows.kill", "POST", "/api/workflows/{name}/kill",
              "Send a signal to containers.", request=m.WorkflowKill,
              response=m.WorkflowStatus, permission=_WORKFLOW, mutating=True, target="name"),
    Operation("workflows.exec", "POST", "/api/workflows/{name}/exec",
              "Run a command in a service's container; its exit code and output.",
              request=m.WorkflowExec, response=m.ExecResult, permission=_WORKFLOW,
              mutating=True, idempotent=False, target="name"),
    Operation("workflows.stats", "GET", "/api/workflows/{name}/stats",
              "Per container: CPU, memory against its limit, network, block I/O.",
              request=m.WorkflowRef, response=m.WorkflowStats, permission=_WORKFLOW),
    Operation("workflows.stats.watch", "GET", "/api/workflows/{name}/stats/watch",
              "Stats samples, one after another (NDJSON).", request=m.WorkflowRef,
              response=m.WorkflowStats, kind="stream", permission=_WORKFLOW),
    Operation("workflows.remove", "DELETE", "/api/workflows/{name}",
              "Bring the workflow down and forget it.", request=m.WorkflowRef,
              response=m.WorkflowInfo, permission=_WORKFLOW, mutating=True, target="name"),
    # -- objects --------------------------------------------------------------------------
    Operation("objects.list", "GET", "/api/objects", "A directory's entries, paged.",
              request=m.ObjectList, response=m.ObjectListing, permission=_OBJECT),
    Operation("objects.info", "GET", "/api/objects/info", "One file or directory.",
              request=m.ObjectPath, response=m.ObjectInfo, permission=_OBJECT),
    Operation("objects.checksum", "GET", "/api/objects/checksum", "A file's sha256.",
              request=m.ObjectPath, response=m.ObjectChecksum, permission=_OBJECT),
    Operation("objects.read", "GET", "/api/objects/content",
              "A file's bytes (Range, ETag, HEAD); a directory as a zip made on the fly.",
              request=m.ObjectRead, kind="download", permission=_OBJECT),
    Operation("objects.write", "PUT", "/api/objects/content",
              "Stream bytes into a file, committed atomically when complete (and verified).",
              request=m.ObjectWrite, response=m.ObjectInfo, kind="upload",
              permission=_OBJECT, mutating=True, idempotent=False, target="path"),
    Operation("objects.ranges", "POST", "/api/objects/ranges",
              "Many byte ranges of many files in one round trip.",
              request=m.ObjectRanges, response=m.ObjectRangesData, permission=_OBJECT),
    Operation("objects.mkdir", "POST", "/api/objects/mkdir", "Make a directory.",
              request=m.ObjectMkdir, response=m.ObjectInfo, permission=_OBJECT,
              mutating=True, target="path"),
    Operation("objects.remove", "POST", "/api/objects/remove",
              "Remove a file, or a directory with recursive.", request=m.ObjectRemove,
              response=m.ObjectResult, permission=_OBJECT, mutating=True, target="path"),
    Operation("objects.remove_many", "POST", "/api/objects/remove-many",
              "Remove many paths; a result per path.", request=m.ObjectRemoveMany,
              response=m.ObjectResults, permission=_OBJECT, mutating=True),
    Operation("objects.move", "POST", "/api/objects/move", "Move or rename.",
              request=m.ObjectTransfer, response=m.ObjectInfo, permission=_OBJECT,
              mutating=True, idempotent=False, target="src"),
    Operation("objects.copy", "POST", "/api/objects/copy", "Copy a file or a directory.",
              request=m.ObjectTransfer, response=m.ObjectInfo, permission=_OBJECT,
              mutating=True, target="src"),
    Operation("objects.zip", "POST", "/api/objects/zip",
              "Archive a file or directory into a zip; progress events (NDJSON).",
              request=m.ObjectZip, response=m.ObjectProgress, kind="stream",
              permission=_OBJECT, mutating=True, idempotent=False, target="path"),
    Operation("objects.unzip", "POST", "/api/objects/unzip",
              "Extract a zip safely (no zip slip, size and entry limits); progress events.",
              request=m.ObjectZip, response=m.ObjectProgress, kind="stream",
              permission=_OBJECT, mutating=True, idempotent=False, target="path"),
    # -- resumable uploads (tus 1.0) -----------------------------------------------------
    Operation("uploads.create", "POST", "/api/uploads",
              "Start a resumable upload (tus creation).", request=m.UploadCreate,
              response=m.UploadInfo, permission=_OBJECT, mutating=True,
              idempotent=False, target="path", custom_route=True),
    Operation("uploads.status", "HEAD", "/api/uploads/{id}",
              "An upload's offset (tus).", request=m.UploadRef, response=m.UploadInfo,
              permission=_OBJECT, custom_route=True),
    Operation("uploads.append", "PATCH", "/api/uploads/{id}",
              "Append bytes at the offset (tus core, checksum).", request=m.UploadAppend,
              response=m.UploadInfo, kind="upload", permission=_OBJECT, mutating=True,
              idempotent=False, target="id", custom_route=True),
    Operation("uploads.delete", "DELETE", "/api/uploads/{id}",
              "Abandon an upload (tus termination).", request=m.UploadRef,
              response=m.UploadInfo, permission=_OBJECT, mutating=True, target="id",
              custom_route=True),
    # -- share links ------------------------------------------------------------------------
    Operation("shares.create", "POST", "/api/shares",
              "A signed, expiring, revocable link to a file or directory.",
              request=m.ShareCreate, response=m.ShareLink, permission=_OBJECT,
              idempotent=False, target="path", writes_when="writable", self_audited=True),
    Operation("shares.list", "GET", "/api/shares",
              "Your share links, live and past (MASTER: everyone's, without their URLs).",
              response=m.ShareList, permission=_OBJECT),
    Operation("shares.revoke", "DELETE", "/api/shares/{id}",
              "Revoke one of your share links (MASTER: anyone's).",
              request=m.ShareRef, response=m.ShareLink, permission=_OBJECT,
              mutating=True, target="id"),
    Operation("shares.read", "GET", "/s/{token}",
              "Download through a share link (no credentials: the link is the key).",
              request=m.ShareToken, kind="download", public=True, self_audited=True),
    Operation("shares.write", "PUT", "/s/{token}",
              "Upload through a writable share link (audited by the link's id, never its token).",
              request=m.ShareToken, response=m.ObjectInfo, kind="upload", public=True,
              mutating=True, idempotent=False, target="share_id", self_audited=True),
    # -- shells ---------------------------------------------------------------------------
    Operation("shells.create", "POST", "/api/shells",
              "Start a persistent PTY session on the host or in a workflow's container.",
              request=m.ShellCreate, response=m.ShellInfo, permission=_SHELL,
              mutating=True, idempotent=False, target="name",
              also_requires=(("workflow", _WORKFLOW), ("record", _OBJECT))),
    Operation("shells.list", "GET", "/api/shells", "Sessions, running and exited.",
              response=m.ShellList, permission=_SHELL),
    Operation("shells.get", "GET", "/api/shells/{name}", "One session.",
              request=m.ShellRef, response=m.ShellInfo, permission=_SHELL),
    Operation("shells.send", "POST", "/api/shells/{name}/input",
              "Type bytes into a session (base64 in JSON).", request=m.ShellInput,
              response=m.ShellInfo, permission=_SHELL, mutating=True, idempotent=False,
              target="name"),
    Operation("shells.read", "GET", "/api/shells/{name}/output",
              "Output from an offset (waits up to timeout for some).", request=m.ShellRead,
              response=m.ShellOutput, permission=_SHELL),
    Operation("shells.resize", "POST", "/api/shells/{name}/resize",
              "Set the terminal's size (the latest request wins).", request=m.ShellResize,
              response=m.ShellInfo, permission=_SHELL, mutating=True, target="name"),
    Operation("shells.kill", "POST", "/api/shells/{name}/kill",
              "Signal the session's process group.", request=m.ShellKill,
              response=m.ShellInfo, permission=_SHELL, mutating=True, target="name"),
    Operation("shells.run", "POST", "/api/shells/{name}/run",
              "Run a command in the session; its exit code and output.", request=m.ShellRun,
              response=m.ShellResult, permission=_SHELL, mutating=True, idempotent=False,
              target="name"),
    Operation("shells.remove", "DELETE", "/api/shells/{name}",
              "End a session and forget it.", request=m.ShellRef, response=m.ShellInfo,
              permission=_SHELL, mutating=True, target="name"),
    Operation("shells.prune", "DELETE", "/api/shells",
              "Remove every session that has ended (running ones stay).",
              response=m.ShellList, permission=_SHELL, mutating=True),
    Operation("shells.attach", "GET", "/api/shells/{name}/attach",
              "Attach over a WebSocket: terminal bytes both ways, JSON control frames.",
              request=m.ShellRead, kind="channel", permission=_SHELL, target="name"),
    # -- audit ------------------------------------------------------------------------
    Operation("audit.list", "GET", "/api/audit", "Audit records, newest first.",
              request=m.AuditQuery, response=m.AuditRecords, permission=_MASTER),
)  # fmt: skip

OPERATIONS: dict[str, Operation] = {op.name: op for op in _TABLE}

OPENAPI_PATH = "/api/openapi.json"
"""The server's own document of this table: a route, not an operation."""


def operation(name: str) -> Operation:
    return OPERATIONS[name]
