"""What DxflowFileSystem needs besides the engine: URLs and paths, errors as fsspec
callers expect them, listing entries, and the instance cache per engine."""

from __future__ import annotations

import errno
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.spec import _Cached
from fsspec.utils import tokenize

from ._exceptions import Conflict, NotFound, PermissionDenied

if TYPE_CHECKING:
    from ._models import ObjectInfo

__all__ = [
    "CachedPerEngine",
    "entry",
    "file_size",
    "has_magic",
    "kwargs_from_url",
    "os_errors",
    "stringify",
    "strip_protocol",
]

_ENGINE_URL = ("dxflow+https://", "dxflow+http://")


def strip_protocol(text: str) -> str:
    """The store path a ``dxflow://``, ``dxflow+https://host/`` or plain path names."""
    if text.startswith(_ENGINE_URL):
        text = text.partition("://")[2].partition("/")[2]
    elif text.startswith("dxflow://"):
        text = text[len("dxflow://") :]
    elif text.startswith("dxflow::"):
        text = text[len("dxflow::") :]
    return _clean(text)


def kwargs_from_url(path: str) -> dict[str, Any]:
    """``dxflow+https://node:7419/x`` names the engine: ``url="https://node:7419"``."""
    if not path.startswith(_ENGINE_URL):
        return {}
    scheme, _, rest = path.partition("://")
    return {"url": f"{scheme.removeprefix('dxflow+')}://{rest.partition('/')[0]}"}


def stringify(path: Any) -> str:
    return str(fsspec.utils.stringify_path(path))


@contextmanager
def os_errors(path: str, conflict: int = errno.EEXIST) -> Iterator[None]:
    """dxflow errors as the OSErrors fsspec callers catch (the original is the cause)."""
    try:
        yield
    except NotFound as error:
        raise OSError(errno.ENOENT, error.message, path) from error
    except Conflict as error:
        raise OSError(conflict, error.message, path) from error
    except PermissionDenied as error:
        raise OSError(errno.EACCES, error.message, path) from error


def entry(item: ObjectInfo) -> dict[str, Any]:
    return {
        "name": item.path,
        "size": item.size,
        "type": item.type,
        "mtime": item.modified.timestamp(),
        "etag": item.etag,
    }


def has_magic(path: str) -> bool:
    return any(char in path for char in "*?[")


def _clean(path: str) -> str:
    return "/".join(part for part in path.split("/") if part not in ("", "."))


class CachedPerEngine(_Cached):  # type: ignore[misc]
    """fsspec caches filesystems by the text of their arguments, which cannot tell two
    engine objects apart: one made over a given engine is cached by that engine's
    identity instead, for as long as the filesystem lives."""

    _lent: weakref.WeakValueDictionary[tuple[int, str], Any] = weakref.WeakValueDictionary()

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        engine = kwargs.get("engine")
        if engine is None or kwargs.get("skip_instance_cache"):
            return super().__call__(*args, **kwargs)
        token = (id(engine), tokenize(args, {k: v for k, v in kwargs.items() if k != "engine"}))
        fs = cls._lent.get(token)
        if fs is None:  # the engine lives as long as its filesystem: its id stays its own
            fs = cls._lent[token] = super().__call__(*args, skip_instance_cache=True, **kwargs)
        return fs


def file_size(path: str) -> int | None:
    """A local file's size; None for a folder."""
    return None if os.path.isdir(path) else os.path.getsize(path)
