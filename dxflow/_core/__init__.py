"""The engine core: the only code that touches Docker, PTYs and the host."""

from ._context import Context, Identity
from ._engine import EngineCore

__all__ = ["Context", "EngineCore", "Identity"]
