"""The engine core: the only code that touches Docker, PTYs and the host."""

from ._context import Context, Identity
from ._engine import EngineCore
from ._objects import CHECKSUM_ALGORITHMS, Blob, LocalFile

__all__ = ["CHECKSUM_ALGORITHMS", "Blob", "Context", "EngineCore", "Identity", "LocalFile"]
