"""`run`: a command typed into an interactive shell, with its output and exit code back.

The command travels as octal escapes decoded by the shell's own `printf`, in short lines
(busybox's line editor cuts lines at 1 KiB, canonical-mode terminals at 4 KiB), and is
`eval`ed between two marks: OSC escape sequences (`ESC ] 633 ; dxflow ; TAG ; S BEL`,
then `...;E;CODE BEL`) in the manner of VS Code's and iTerm2's shell integration. The
holder hides what the shell echoes of this machinery, shows the command in its place as
if it had been typed, and strips the marks (see `_holder_runs.py`): the scrollback,
every client and the recording see the command and its output only. The terminal's
echo of what was typed never holds a mark (the escape byte and the tag are only put
together by `printf`).

In bash, `history -s` makes the command itself the history entry in place of the
machinery (which also starts with a space, for `HISTCONTROL=ignorespace`); `$?` is the
previous command's status when the command starts, and the command's own afterwards.
`command eval` keeps a syntax error from aborting the whole line in dash and busybox
ash. It works the same in bash, dash, busybox sh and zsh, but for history: only bash's
can be rewritten (zsh and ash keep the machinery line in theirs; docs/shells.md).
"""

from __future__ import annotations

import re
import secrets

__all__ = ["MARK", "RunScript"]

MARK = b"\x1b]633;dxflow;"
"""How every mark of `run` starts (the holder strips them)."""

_PIECE = 150  # bytes of the command per `printf` (each byte is 4 characters once escaped)
_LINE = 800  # characters per typed line: busybox's line editor takes at most 1023 (and a
# canonical-mode terminal 4095)


def _caret(match: re.Match[str]) -> str:
    return "^" + chr(ord(match.group(0)) ^ 0x40)


class RunScript:
    def __init__(self, command: str) -> None:
        self.tag = f"__DXF{secrets.token_hex(6)}"
        self.command = command
        self._bytes = command.encode(errors="surrogateescape")
        self._start = MARK + f"{self.tag};S\x07".encode()
        self._end = re.compile(re.escape(MARK + f"{self.tag};E;".encode()) + rb"(\d+)\x07")

    def lines(self) -> bytes:
        """What to type: build the command in a variable, then run it between the marks."""
        tag = self.tag
        c, s, e = f"{tag}c", f"{tag}s", f"{tag}e"
        build = [
            f'{c}="${c}$(printf \'{_octal(self._bytes[i : i + _PIECE])}_\')"; {c}="${{{c}%_}}"'
            for i in range(0, len(self._bytes), _PIECE)
        ]
        head = f" {s}=$?; {c}=''; {e}=command; [ -z \"${{ZSH_VERSION-}}\" ] || {e}=builtin"
        tail = (
            f'[ -z "${{BASH_VERSION-}}" ] || ! shopt -oq history || history -s -- "${c}"; '
            f"printf '\\033]633;dxflow;%s;S\\007' {tag}; {_status(s)}; ${e} eval \"${c}\"; "
            f"{s}=$?; printf '\\033]633;dxflow;%s;E;%d\\007' {tag} ${s}; unset {c} {e}; "
            f'eval "unset {s}; {_status(s)}"'
        )
        one = "; ".join([head, *build, tail])
        if len(one) <= _LINE:
            return (one + "\n").encode()
        # One compound command over several lines: one history entry, which
        # `history -s` then replaces.
        lines, line = [head + "; {"], ""
        for part in build:
            if line and len(line) + len(part) > _LINE:
                lines.append(line)
                line = ""
            line = f"{line}; {part}" if line else part
        lines += [line, tail + "; }"]
        return ("\n".join(lines) + "\n").encode()

    def echo(self) -> str:
        """The command as a terminal shows it typed: continuation lines after `> `."""
        shown = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", _caret, self.command)
        return shown.replace("\n", "\r\n> ") + "\r\n"

    def request(self) -> dict[str, str]:
        """The holder's `C` frame: what to type, the tag of its marks, the echo to show."""
        return {"tag": self.tag, "input": self.lines().decode("ascii"), "echo": self.echo()}

    def result(self, output: bytes) -> tuple[int, str] | None:
        """(exit code, output) once the end mark is in `output` (a holder that strips
        no marks: one started by an older dxflow), else None."""
        end = self._end.search(output)
        if end is None:
            return None
        start = output.find(self._start)
        begin = start + len(self._start) if start >= 0 else 0
        body = output[begin : end.start()].replace(b"\r\n", b"\n")
        return int(end.group(1)), body.decode(errors="replace")


def _status(variable: str) -> str:
    """Set `$?` to the variable's value: a subshell only when it is not 0 (a fork)."""
    return f"[ ${variable} = 0 ] || (exit ${variable})"


def _octal(data: bytes) -> str:
    return "".join(f"\\{byte:03o}" for byte in data)
