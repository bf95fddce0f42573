"""A folder's compose file and the project name it gives, in the standard library alone.

`_project` (the click commands) and `_fast` (the pre-click fast path) both find the file
and read its top-level `name:` here, so they cannot disagree. A YAML parser costs more
than the rest of a `dxflow ps`, so the name is read by a scan when the file is plainly
simple, and `plain_name` says when it is not: then the caller parses the file.
"""

from __future__ import annotations

import errno
import os
import re
import stat

__all__ = ["COMPOSE_FILES", "compose_file_in", "is_file", "normalize_name", "plain_name"]

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

# What pathlib.Path.is_file() takes for "no such file" rather than an error to raise.
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


def is_file(path: str) -> bool:
    """`Path(path).is_file()`: False when missing, a PermissionError (and the like) raised."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError as exc:
        if exc.errno not in _MISSING:
            raise
        return False
    except ValueError:  # a NUL in the path
        return False


def compose_file_in(folder: str) -> str | None:
    """The compose file of `folder` (absolute) or of its nearest parent that has one."""
    while True:
        for name in COMPOSE_FILES:
            candidate = os.path.join(folder, name)
            if is_file(candidate):
                return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def normalize_name(text: str) -> str:
    """A project name as compose makes it from a folder: `My App.v2` -> `myappv2`."""
    name = re.sub(r"[^a-z0-9_-]", "", text.lower()).lstrip("_-")
    return name[:63]


# A top-level key of a block mapping at column 0, as a plain (unquoted) scalar.
_KEY_LINE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*[ ]*:(?: |$)")
_NAME_KEY = re.compile(r"name[ ]*:")
# `name: shop` or `name: shop  # comment`: a plain scalar YAML reads as that very string
# (it starts with a letter: no number, date, .inf; the words below are booleans or null).
_PLAIN_NAME = re.compile(r"name: +([A-Za-z][A-Za-z0-9_.-]*)(?: +#.*)? *")
_NOT_STRINGS = {
    f(word)
    for word in ("yes", "no", "true", "false", "on", "off", "null")
    for f in (str.lower, str.capitalize, str.upper)
}


def plain_name(text: str) -> tuple[bool, str | None]:
    """(True, the top-level `name:` or None when there is none) when the file is simple
    enough to be sure without YAML; (False, None) when it must be parsed.

    Simple: the document is a block mapping at column 0 whose every top-level line is a
    plain `key:` (no quoted or explicit keys, merge keys, anchors, tags, flow style at the
    top, `---`, tabs or CRs there), and the `name:` line, if any, holds one plain word on
    its own (not continued on the next lines)."""
    names: list[int] = []
    lines = text.split("\n")
    seen_top = False
    for index, line in enumerate(lines):
        content = line.lstrip(" ")
        if not content or content.startswith("#"):
            continue  # blank, or a comment
        if line[0] == " ":
            if not seen_top:
                return False, None  # the top-level mapping itself is indented
            continue  # inside a value: cannot be a top-level key
        seen_top = True
        if not _KEY_LINE.match(line):
            return False, None
        if _NAME_KEY.match(line):
            names.append(index)
    if not names:
        return True, None
    if len(names) > 1:
        return False, None  # YAML would keep the last one: let it say so
    index = names[0]
    found = _PLAIN_NAME.fullmatch(lines[index])
    if found is None or found.group(1) in _NOT_STRINGS:
        return False, None
    for line in lines[index + 1 :]:  # a plain scalar goes on over more indented lines
        if line.startswith(" ") and line.strip(" "):
            return False, None
        if line and not line.startswith(("#", " ")):
            break  # the next top-level key
    return True, found.group(1)
