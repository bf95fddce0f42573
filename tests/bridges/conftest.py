"""Multi-host tests of engines on the network-namespace test bed (tests/testbed)."""

from tests.testbed.fixtures import fabric, make_ns_engine, testbed_ready

__all__ = ["fabric", "make_ns_engine", "testbed_ready"]
