"""``volumes`` (short ``src:dst[:opts]`` and long syntax) and ``tmpfs`` as mounts."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ..._models._compose import Mount
from ._errors import child, invalid, item
from ._values import as_bool, as_bytes, as_mode, as_str, as_str_list, expect, expect_list

__all__ = ["MountContext", "normalize_tmpfs", "normalize_volumes"]

_TYPES = ("bind", "volume", "tmpfs")
_SHORT_OPTIONS = ("ro", "rw", "z", "Z", "nocopy")


@dataclass(frozen=True)
class MountContext:
    working_dir: str
    volumes: Collection[str]
    expand_user: Callable[[str], str]


def _is_path(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def _host_path(source: str, ctx: MountContext) -> str:
    if source.startswith("~"):
        source = ctx.expand_user(source)
    return os.path.normpath(os.path.join(ctx.working_dir, source))


def _target(value: str, path: str) -> str:
    if not value.startswith("/"):
        raise invalid(path, f"the container path {value!r} must be absolute")
    return value


def _volume_key(name: str, path: str, ctx: MountContext) -> str:
    if name not in ctx.volumes:
        raise invalid(path, f"undeclared volume {name!r} (declare it under top-level `volumes`)")
    return name


def _short(text: str, path: str, ctx: MountContext) -> Mount:
    parts = text.split(":")
    if len(parts) == 1:
        return Mount(type="volume", target=_target(parts[0], path))
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise invalid(path, f"bad volume {text!r} (expected SOURCE:TARGET[:OPTIONS])")
    source, target = parts[0], _target(parts[1], path)
    fields: dict[str, Any] = {"target": target}
    for option in parts[2].split(",") if len(parts) == 3 else []:
        if option not in _SHORT_OPTIONS:
            supported = ", ".join(_SHORT_OPTIONS)
            raise invalid(path, f"bad volume option {option!r} (supported: {supported})")
        if option in ("ro", "rw"):
            fields["read_only"] = option == "ro"
        elif option == "nocopy":
            fields["nocopy"] = True
        else:
            fields["selinux"] = option
    if _is_path(source):
        return Mount(type="bind", source=_host_path(source, ctx), **fields)
    return Mount(type="volume", source=_volume_key(source, path, ctx), **fields)


def _options(raw: dict[str, Any], kind: str, path: str) -> dict[str, Any]:
    for other in ("bind", "volume", "tmpfs"):
        if other in raw and other != kind:
            raise invalid(child(path, other), f"`{other}` options on a {kind} mount")
    section = raw.get(kind) or {}
    where = child(path, kind)
    options: dict[str, Any] = {}
    if "create_host_path" in section:
        options["create_host_path"] = as_bool(
            section["create_host_path"], child(where, "create_host_path")
        )
    if "selinux" in section:
        options["selinux"] = _selinux(section["selinux"], child(where, "selinux"))
    if "nocopy" in section:
        options["nocopy"] = as_bool(section["nocopy"], child(where, "nocopy"))
    if "size" in section:
        options["tmpfs_size"] = as_bytes(section["size"], child(where, "size"))
    if "mode" in section:
        options["tmpfs_mode"] = as_mode(section["mode"], child(where, "mode"))
    return options


def _selinux(value: Any, path: str) -> str:
    text = as_str(value, path)
    if text not in ("z", "Z"):
        raise invalid(path, f"bad selinux option {text!r} (supported: z, Z)")
    return text


def _long(raw: dict[str, Any], path: str, ctx: MountContext) -> Mount:
    if "type" not in raw:
        raise invalid(path, "missing `type` (bind, volume or tmpfs)")
    kind = as_str(raw["type"], child(path, "type"))
    if kind not in _TYPES:
        raise invalid(
            child(path, "type"), f"unsupported mount type {kind!r} (supported: bind, volume, tmpfs)"
        )
    if "target" not in raw:
        raise invalid(path, "missing `target` (the path in the container)")
    fields = _options(raw, kind, path)
    fields["target"] = _target(as_str(raw["target"], child(path, "target")), child(path, "target"))
    if "read_only" in raw:
        fields["read_only"] = as_bool(raw["read_only"], child(path, "read_only"))
    source = as_str(raw["source"], child(path, "source")) if "source" in raw else None
    where = child(path, "source")
    if kind == "bind":
        if not source:
            raise invalid(path, "a bind mount needs a `source` (the host path)")
        fields["source"] = _host_path(source, ctx)
    elif kind == "volume":
        fields["source"] = _volume_key(source, where, ctx) if source else None
    elif source:
        raise invalid(where, "a tmpfs mount has no source")
    return Mount(type=kind, **fields)


def normalize_volumes(value: Any, path: str, ctx: MountContext) -> list[Mount]:
    mounts: list[Mount] = []
    for index, entry in enumerate(expect_list(value, path)):
        where = item(path, index)
        expect(entry, where, ("string", "mapping"))
        if isinstance(entry, dict):
            mounts.append(_long(entry, where, ctx))
        else:
            mounts.append(_short(as_str(entry, where), where, ctx))
    return mounts


def _tmpfs_entry(text: str, path: str) -> Mount:
    target, _, options = text.partition(":")
    fields: dict[str, Any] = {"target": _target(target, path)}
    for option in filter(None, options.split(",")):
        name, _, value = option.partition("=")
        if name == "size":
            fields["tmpfs_size"] = as_bytes(value, path)
        elif name == "mode":
            fields["tmpfs_mode"] = as_mode(value, path)
        else:
            raise invalid(path, f"bad tmpfs option {option!r} (supported: size=, mode=)")
    return Mount(type="tmpfs", **fields)


def normalize_tmpfs(value: Any, path: str) -> list[Mount]:
    """``tmpfs: /run`` or a list of ``path[:size=..,mode=..]``."""
    texts = as_str_list(value, path, single=True)
    where = [item(path, i) if isinstance(value, list) else path for i in range(len(texts))]
    return [_tmpfs_entry(text, at) for text, at in zip(texts, where, strict=True)]
