"""The wire models: the core's return values, the HTTP bodies and the CLI's --json output."""

from ._auth import *  # noqa: F403
from ._auth import __all__ as _auth_all
from ._base import Request, Response
from ._bridge import *  # noqa: F403
from ._bridge import __all__ as _bridge_all
from ._compose import *  # noqa: F403
from ._compose import __all__ as _compose_all
from ._engine import *  # noqa: F403
from ._engine import __all__ as _engine_all
from ._object import *  # noqa: F403
from ._object import __all__ as _object_all
from ._proxy import *  # noqa: F403
from ._proxy import __all__ as _proxy_all
from ._shell import *  # noqa: F403
from ._shell import __all__ as _shell_all
from ._workflow import *  # noqa: F403
from ._workflow import __all__ as _workflow_all

__all__ = [
    "Request",
    "Response",
    *_auth_all,
    *_bridge_all,
    *_compose_all,
    *_engine_all,
    *_object_all,
    *_proxy_all,
    *_shell_all,
    *_workflow_all,
]
