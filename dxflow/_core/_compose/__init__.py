"""The Compose loader: compose files to the normalized model, in pure Python (no Docker).

    loaded = load_project("shop", "compose.yaml", env={"TAG": "1.2"}, profiles=["debug"])
    loaded.project          # ComposeProject: every short syntax expanded, variables resolved
    loaded.explain("web", "TAG")   # ("1.2", "env")
    loaded.config_hash("web")      # changes iff the service's container config changes
    loaded.order()                 # [["db"], ["web", "worker"]]: start-up waves

Errors are `InvalidRequest` whose message and ``details["path"]`` name the place in the
document (``services.web.ports[1]``).
"""

from ._environment import EnvironmentSources
from ._graph import waves
from ._guard import ReadGuard, guarded_reads, open_plain
from ._loader import LoadedProject, is_compose_path, load_project
from ._project import check_build_contexts
from ._runtimes import runtime_table
from ._supported import KEYS, Key, markdown_table

__all__ = [
    "KEYS",
    "EnvironmentSources",
    "Key",
    "LoadedProject",
    "ReadGuard",
    "check_build_contexts",
    "guarded_reads",
    "is_compose_path",
    "load_project",
    "markdown_table",
    "open_plain",
    "runtime_table",
    "waves",
]
