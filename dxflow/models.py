"""The typed models dxflow returns (pydantic v2), and the request models it accepts."""

from ._models import *  # noqa: F403
from ._models import __all__ as __all__
