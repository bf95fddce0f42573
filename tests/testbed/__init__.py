"""A test bed of hosts made with Linux network namespaces, for multi-host tests of engines.

Pieces (each module's docstring has its design notes):

- `netns`: `Fabric` (a switch namespace with a bridge, one namespace per host) and `Host`
  (run commands in it, partition it, drop or lose its packets).
- `delay`: `DelayProxy`, a TCP proxy run inside a namespace that delays, holds or cuts the
  bytes it forwards (there is no netem on the machines this runs on).
- `engines`: `NsEngine`, a real `dxflow boot up` process inside a host's namespace.
- `swarm`: `SwarmBed`, a Docker Swarm of real `dockerd` processes, one per namespace
  (`tests/swarm/conftest.py` has its fixtures).
- `fixtures`: the pytest fixtures `testbed_ready`, `fabric` and `make_ns_engine`
  (`tests/bridges/conftest.py` imports them).

Needs root (network namespaces, veth pairs, iptables), `ip` (iproute2), `iptables` and
`nsenter` (util-linux); `scripts/setup.sh --dev` installs them.
"""

from .delay import DelayProxy
from .engines import NsEngine, engine_env
from .netns import CommandFailed, Fabric, Host, sweep_stale

__all__ = ["CommandFailed", "DelayProxy", "Fabric", "Host", "NsEngine", "engine_env", "sweep_stale"]
