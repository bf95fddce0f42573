"""Shell sessions: PTYs held by small processes that outlive the engine."""

from ._link import HolderLink
from ._service import ShellService

__all__ = ["HolderLink", "ShellService"]
