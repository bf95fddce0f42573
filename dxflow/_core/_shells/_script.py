"""`run`: a command typed into an interactive shell, with its output and exit code back.

The command travels as octal escapes decoded by the shell's own `printf`, in short lines
(canonical-mode terminals cut lines at 4 KiB), and is `eval`ed between two markers that
only appear, expanded, in the command's output: the terminal's echo of what was typed
never contains them. It works the same in bash, dash, busybox sh and zsh.
"""

from __future__ import annotations

import re
import secrets

__all__ = ["RunScript"]

_LINE = 200  # bytes of the command per line (each byte is 4 characters once escaped)


class RunScript:
    def __init__(self, command: str) -> None:
        self.tag = f"__DXF{secrets.token_hex(6)}"
        self._command = command.encode()
        self._end = re.compile(rf"{self.tag}_E_(\d+)".encode())
        self._start = f"{self.tag}_S".encode()

    def lines(self) -> bytes:
        """What to type: build the command in a variable, then run it between markers."""
        var = f"{self.tag}c"
        out = [f" {var}=''"]
        for i in range(0, len(self._command), _LINE):
            piece = "".join(f"\\{byte:03o}" for byte in self._command[i : i + _LINE])
            out.append(f' {var}="${var}$(printf \'{piece}_\')"; {var}="${{{var}%_}}"')
        out.append(
            f" printf '%s_S\\n' {self.tag}; eval \"${var}\"; "
            f"printf '\\n%s_E_%d\\n' {self.tag} $?; unset {var}"
        )
        return ("\n".join(out) + "\n").encode()

    def result(self, output: bytes) -> tuple[int, str] | None:
        """(exit code, output) once the end marker has arrived, else None."""
        end = self._end.search(output)
        if end is None:
            return None
        start = output.find(self._start)
        begin = output.find(b"\n", start) + 1 if start >= 0 else 0
        body = output[begin : end.start()].replace(b"\r\n", b"\n")
        if body.endswith(b"\n"):  # the newline printed before the end marker
            body = body[:-1]
        return int(end.group(1)), body.decode(errors="replace")
