"""The proxies' plain parts, each alone: rates, CIDRs, buckets, the pool, health
thresholds, percentiles, targets and their policy, specs and their refusals."""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path

import pytest

from dxflow._core._proxies._contract import Refused, Upstream
from dxflow._core._proxies._listen import _bind_error, bind
from dxflow._core._proxies._pool import EJECT_AFTER, Pool, Target
from dxflow._core._proxies._rules import Buckets, Networks, parse_networks, parse_rate
from dxflow._core._proxies._spec import check_shape, merged, normalized
from dxflow._core._proxies._stats import Stats, percentiles
from dxflow._core._proxies._targets import TargetPolicy, parse_target
from dxflow._core._workflows._policy import PolicyRoots
from dxflow._exceptions import Conflict, InvalidRequest, PermissionDenied
from dxflow._models import ProxyCreate, ProxyUpdate

# -- rates, networks, buckets -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100/min", (100, 60.0)), ("5/s", (5, 1.0)), ("1000/h", (1000, 3600.0)),
     ("10 / 5min", (10, 300.0)), ("3/second", (3, 1.0)), ("7/hours", (7, 3600.0)),
     ("1/d", (1, 86400.0))],
)  # fmt: skip
def test_rates_parse(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "100", "100/", "/min", "0/s", "-1/s", "5/fortnight", "x/s"])
def test_bad_rates_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match='like "100/min"'):
        parse_rate(text)


def test_networks_deny_wins_and_allow_restricts() -> None:
    rules = Networks(parse_networks(["10.0.0.0/8", "::1"], "allow"),
                     parse_networks(["10.0.0.7"], "deny"))  # fmt: skip
    rules.check("10.1.2.3")
    rules.check("::1")
    rules.check("::ffff:10.0.0.8")  # a dual-stack socket's IPv4 client
    for refused in ("10.0.0.7", "::ffff:10.0.0.7", "192.168.1.1", "unix"):
        with pytest.raises(Refused) as caught:
            rules.check(refused)
        assert caught.value.status == 403 and caught.value.reason == "denied"
    Networks([], []).check("unix")  # no rules: anyone


def test_bad_cidrs_name_the_field_and_the_entry() -> None:
    with pytest.raises(ValueError, match=r"deny: '10\.0\.0\.300/8' is not a CIDR"):
        parse_networks(["10.0.0.0/8", "10.0.0.300/8"], "deny")


def test_buckets_refill_and_say_when_to_retry() -> None:
    buckets = Buckets(2, 60.0, burst=None)  # 2 per minute, burst 2
    buckets.take("a", now=100.0)
    buckets.take("a", now=100.0)
    with pytest.raises(Refused) as caught:
        buckets.take("a", now=100.0)
    assert caught.value.status == 429 and caught.value.reason == "rate"
    assert caught.value.headers["Retry-After"] == "30"
    buckets.take("b", now=100.0)  # one bucket per key
    buckets.take("a", now=130.0)  # refilled by one after 30 s
    with pytest.raises(Refused):
        buckets.take("a", now=130.0)


def test_a_burst_allows_more_at_once() -> None:
    buckets = Buckets(1, 1.0, burst=5)
    for _ in range(5):
        buckets.take("a", now=0.0)
    with pytest.raises(Refused):
        buckets.take("a", now=0.0)


# -- the pool ---------------------------------------------------------------------------


def _ups(*ports: int) -> list[Upstream]:
    return [Upstream(label=f"127.0.0.1:{p}", scheme="tcp", host="127.0.0.1", port=p) for p in ports]


def test_round_robin_takes_each_in_turn_and_skips_excluded() -> None:
    pool = Pool(_ups(1, 2, 3))
    picks = [pool.pick("c").upstream.port for _ in range(6)]  # type: ignore[union-attr]
    assert sorted(picks[:3]) == [1, 2, 3] and picks[:3] == picks[3:]
    first = pool.targets[0]
    for _ in range(6):
        assert pool.pick("c", frozenset({first})) is not first
    assert pool.pick("c", frozenset(pool.targets)) is None


def test_least_conn_prefers_the_idle_target() -> None:
    pool = Pool(_ups(1, 2), "least_conn")
    busy = pool.targets[0]
    pool.begin(busy)
    assert all(pool.pick("c") is pool.targets[1] for _ in range(5))
    pool.end(busy, ok=True)
    assert {pool.pick("c").upstream.port for _ in range(4)} == {1, 2}  # type: ignore[union-attr]


def test_ip_hash_is_sticky_and_moves_only_the_clients_of_a_target_that_left() -> None:
    pool = Pool(_ups(1, 2, 3), "ip_hash")
    clients = [f"10.0.0.{i}" for i in range(60)]
    before = {c: pool.pick(c) for c in clients}
    assert all(pool.pick(c) is before[c] for c in clients)
    assert len({t.upstream.port for t in before.values() if t}) == 3  # spread over all
    gone = pool.targets[0]
    gone.checked_ok = False
    for client, target in before.items():
        now = pool.pick(client)
        assert now is not gone
        if target is not gone:
            assert now is target


def test_passive_ejection_after_consecutive_failures_only() -> None:
    pool = Pool(_ups(1, 2))
    bad = pool.targets[0]
    for _ in range(EJECT_AFTER - 1):
        pool.begin(bad)
        pool.end(bad, ok=False)
    pool.begin(bad)
    pool.end(bad, ok=True)  # a success in between: the count starts again
    assert bad.healthy
    for _ in range(EJECT_AFTER):
        pool.begin(bad)
        pool.end(bad, ok=False)
    assert not bad.healthy and bad.health == "unhealthy"
    assert all(pool.pick("c") is pool.targets[1] for _ in range(4))
    bad.ejected_until = time.monotonic() - 1  # its time out is over: tried again
    assert bad.healthy
    assert bad.failures == 2 * EJECT_AFTER - 1 and bad.requests == 2 * EJECT_AFTER


def test_active_checks_flip_by_thresholds() -> None:
    target = Target(_ups(1)[0])
    target.checked(True, healthy=2, unhealthy=3)
    assert target.health == "healthy"  # a new target passing its first check is in
    target.checked(False, 2, 3, "refused")
    target.checked(False, 2, 3, "refused")
    assert target.healthy
    target.checked(False, 2, 3, "refused")
    assert not target.healthy and target.state().error == "refused"
    target.checked(True, 2, 3)
    assert not target.healthy
    target.checked(True, 2, 3)
    assert target.healthy and target.state().error is None


def test_exhausted_pool_asks_for_resolution() -> None:
    pool = Pool([])
    asked: list[bool] = []
    pool.exhausted = lambda: asked.append(True)
    assert pool.pick("c") is None and asked == [True]


def test_replace_keeps_the_state_of_targets_that_stay() -> None:
    pool = Pool(_ups(1, 2))
    kept = pool.targets[1]
    pool.begin(kept)
    pool.replace(_ups(2, 3), "least_conn")
    assert pool.targets[0] is kept and kept.open_connections == 1
    assert [t.upstream.port for t in pool.targets] == [2, 3] and pool.balance == "least_conn"


# -- stats ------------------------------------------------------------------------------


def test_percentiles_and_counters() -> None:
    assert percentiles([]) == {}
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    p = percentiles(samples)
    assert p["p50"] == 51.0 and p["p90"] == 91.0 and p["p99"] == 100.0
    stats = Stats()
    stats.request()
    stats.response(204, 0.001)
    stats.response(502, 0.002)
    stats.response(101, 0.002)
    stats.transferred(10, 20)
    stats.opened()
    stats.closed()
    stats.closed()
    stats.refuse("rate")
    assert stats.responses == {"2xx": 1, "5xx": 1, "1xx": 1}
    assert (stats.bytes_in, stats.bytes_out, stats.open_connections) == (10, 20, 0)
    assert stats.refused == {"rate": 1}


# -- targets and the policy -------------------------------------------------------------


def test_target_forms() -> None:
    assert parse_target("127.0.0.1:8888", "http") == Upstream(
        "127.0.0.1:8888", "http", "127.0.0.1", 8888
    )
    assert parse_target("127.0.0.1:6379", "tcp").scheme == "tcp"
    up = parse_target("https://localhost:8443/app/", "http")
    assert (up.scheme, up.host, up.port, up.base) == ("https", "localhost", 8443, "/app")
    assert parse_target("[::1]:80", "http").host == "::1"
    assert parse_target("unix:/srv/../srv/app.sock", "http").socket_path == "/srv/app.sock"
    assert parse_target("tcp://10.0.0.1:5432", "tcp").port == 5432


@pytest.mark.parametrize(
    ("text", "protocol", "match"),
    [("127.0.0.1", "http", "no valid port"), ("127.0.0.1:0", "http", "no valid port"),
     ("127.0.0.1:70000", "http", "no valid port"), ("ftp://h:21", "http", "is not one of"),
     ("http://h:80", "tcp", "does not fit a tcp proxy"), ("unix:rel.sock", "http", "absolute"),
     ("http://h:80/?q=1", "http", "is not one of")],
)  # fmt: skip
def test_bad_targets_say_what_to_write(text: str, protocol: str, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match) as caught:
        parse_target(text, protocol)
    assert caught.value.details["field"] == "targets"


def _policy(tmp_path: Path, public: bool = False, storage: Path | None = None) -> TargetPolicy:
    roots = PolicyRoots.create(
        storage or tmp_path / "storage", tmp_path / "home", (str(tmp_path / "shared"),)
    )
    return TargetPolicy(roots, public=public)


@pytest.mark.parametrize(
    "target", ["127.0.0.1:80", "10.1.2.3:80", "172.16.0.1:80", "192.168.7.7:80", "[::1]:80",
               "[fd00::1]:80", "localhost:80"],
)  # fmt: skip
def test_the_engines_host_is_allowed(tmp_path: Path, target: str) -> None:
    up = _policy(tmp_path).check(parse_target(target, "http"), master=False)
    assert up.host is not None and up.host != "localhost"  # a name: the address checked


@pytest.mark.parametrize(
    ("target", "kind"),
    [("169.254.169.254:80", "link-local"), ("[fe80::1]:80", "link-local"),
     ("[::ffff:169.254.169.254]:80", "link-local"), ("0.0.0.0:80", "unspecified"),
     ("224.0.0.1:80", "multicast"), ("8.8.8.8:53", "public"), ("[2001:4860::8888]:53", "public")],
)  # fmt: skip
def test_other_addresses_are_refused_to_keys(tmp_path: Path, target: str, kind: str) -> None:
    with pytest.raises(PermissionDenied, match=f"is a {kind} address"):
        _policy(tmp_path).check(parse_target(target, "http"), master=False)
    _policy(tmp_path).check(parse_target(target, "http"), master=True)  # MASTER: anything


def test_public_targets_follow_the_config(tmp_path: Path) -> None:
    _policy(tmp_path, public=True).check(parse_target("8.8.8.8:53", "tcp"), master=False)
    with pytest.raises(PermissionDenied, match="proxy_public_targets"):
        _policy(tmp_path).check(parse_target("8.8.8.8:53", "tcp"), master=False)
    with pytest.raises(PermissionDenied, match="link-local"):  # never, whatever the config
        _policy(tmp_path, public=True).check(parse_target("169.254.1.1:80", "tcp"), False)


def test_unix_sockets_are_confined(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    for ok in (tmp_path / "storage" / "a" / "app.sock", tmp_path / "shared" / "x.sock"):
        assert policy.check(parse_target(f"unix:{ok}", "http"), False).socket_path == str(ok)
    for refused, why in (
        (tmp_path / "home" / "run" / "engine.sock", "the engine home"),
        (Path("/var/run/docker.sock"), "the Docker socket"),
        (tmp_path / "elsewhere.sock", "outside the storage root"),
        (tmp_path / "storage" / ".." / "home" / "x.sock", "the engine home"),
    ):
        with pytest.raises(PermissionDenied, match=why):
            policy.check(parse_target(f"unix:{refused}", "http"), False)
        policy.check(parse_target(f"unix:{refused}", "http"), True)


def test_the_default_storage_root_inside_the_home_is_allowed(tmp_path: Path) -> None:
    """The default layout: storage is a folder of the home; its sockets are the user's."""
    policy = _policy(tmp_path, storage=tmp_path / "home" / "storage")
    ok = tmp_path / "home" / "storage" / "app" / "web.sock"
    assert policy.check(parse_target(f"unix:{ok}", "http"), False).socket_path == str(ok)
    with pytest.raises(PermissionDenied, match="inside the engine home"):
        policy.check(parse_target(f"unix:{tmp_path}/home/run/engine.sock", "http"), False)


def test_a_hard_link_to_a_docker_socket_is_refused(tmp_path: Path) -> None:
    (tmp_path / "storage").mkdir()
    real = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(real))
        os.link(real, tmp_path / "storage" / "innocent.sock")
        roots = PolicyRoots.create(
            tmp_path / "storage", tmp_path / "home", docker_host=f"unix://{real}"
        )
        with pytest.raises(PermissionDenied, match="Docker socket"):
            TargetPolicy(roots).check(
                parse_target(f"unix:{tmp_path}/storage/innocent.sock", "tcp"), False
            )


def test_a_symlink_cannot_point_a_socket_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "storage").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "storage" / "sneaky.sock").symlink_to(tmp_path / "home" / "engine.sock")
    with pytest.raises(PermissionDenied, match="the engine home"):
        _policy(tmp_path).check(parse_target(f"unix:{tmp_path}/storage/sneaky.sock", "tcp"), False)


# -- specs ------------------------------------------------------------------------------


def test_defaults_are_filled_and_tcp_has_no_http_auth() -> None:
    spec = normalized(ProxyCreate(name="web", targets=["127.0.0.1:1"]))
    assert (spec.balance, spec.auth, spec.permission, spec.rate_key) == (
        "round_robin", "token", "PROXY", "client",
    )  # fmt: skip
    assert (spec.max_connections, spec.timeout, spec.connect_timeout, spec.retries) == (0, 60, 5, 1)
    assert spec.verify is True and spec.health is None
    tcp = normalized(ProxyCreate(name="db", targets=["127.0.0.1:1"], protocol="tcp", port=0))
    assert tcp.auth == "none"


@pytest.mark.parametrize(
    ("fields", "field", "match"),
    [({}, "targets", "needs targets"),
     ({"targets": ["127.0.0.1:1"], "workflow": "w"}, "targets", "not both"),
     ({"service": "web"}, "workflow", "give workflow"),
     ({"workflow": "w", "service_port": 80}, "service", "needs service"),
     ({"workflow": "w", "service": "web"}, "service_port", "needs service_port"),
     ({"targets": ["127.0.0.1:1"], "protocol": "tcp"}, "port", "port=0"),
     ({"targets": ["127.0.0.1:1"], "protocol": "tcp", "port": 0, "auth": "link"}, "auth",
      "TCP carries no HTTP credentials"),
     ({"targets": ["127.0.0.1:1"], "protocol": "tcp", "port": 0, "health": {"path": "/h"}},
      "health.path", "by connecting"),
     ({"targets": ["127.0.0.1:1"], "tls": True}, "tls", "port=0"),
     ({"targets": ["127.0.0.1:1"], "port": 0, "tls": True, "tls_cert": "c.pem"}, "tls_key",
      "go together"),
     ({"targets": ["127.0.0.1:1"], "port": 0, "tls_cert": "c", "tls_key": "k"}, "tls",
      "tls=True"),
     ({"targets": ["127.0.0.1:1"], "burst": 5}, "burst", "give rate too"),
     ({"targets": ["127.0.0.1:1"], "rate": "lots"}, "rate", '"100/min"'),
     ({"targets": ["127.0.0.1:1"], "allow": ["nope"]}, "allow", "not a CIDR"),
     ({"targets": ["127.0.0.1:1"], "permission": "ROOT"}, "permission", "unknown permission"),
     ({"targets": ["127.0.0.1:1"], "permission": "PROXY,SHELL"}, "permission", "one permission")],
)  # fmt: skip
def test_bad_specs_name_the_field_and_the_fix(fields: dict, field: str, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match) as caught:
        check_shape(normalized(ProxyCreate(name="p", **fields)))
    assert caught.value.details["field"] == field
    assert str(caught.value).startswith(f"{field}: ")


def test_an_update_merges_and_targets_replace_a_workflow() -> None:
    stored = normalized(ProxyCreate(name="p", workflow="w", service="web", service_port=80,
                                    rate="5/s", burst=9))  # fmt: skip
    changed = merged(stored, ProxyUpdate(name="p", targets=["127.0.0.1:1"], balance="ip_hash"))
    assert changed.targets == ["127.0.0.1:1"] and changed.workflow is None
    assert changed.balance == "ip_hash" and changed.rate == "5/s" and changed.burst == 9
    no_rate = merged(changed, ProxyUpdate(name="p", rate=""))
    assert no_rate.rate is None and no_rate.burst is None
    back = merged(no_rate, ProxyUpdate(name="p", workflow="w", service="web", service_port=81))
    assert back.targets == [] and back.service_port == 81


# -- listening ----------------------------------------------------------------------------


def test_bind_errors_say_what_to_do() -> None:
    busy = _bind_error(OSError(errno.EADDRINUSE, "in use"), "127.0.0.1", 5000, "p")
    assert isinstance(busy, Conflict) and "port=0" in str(busy)
    privileged = _bind_error(OSError(errno.EACCES, "denied"), "127.0.0.1", 80, "p")
    assert isinstance(privileged, PermissionDenied) and "privileged" in str(privileged)
    nowhere = _bind_error(OSError(errno.EADDRNOTAVAIL, "no"), "10.9.9.9", 5000, "p")
    assert isinstance(nowhere, InvalidRequest) and str(nowhere).startswith("host: ")


def test_a_port_in_use_is_a_conflict() -> None:
    first = bind("127.0.0.1", 0, "a")
    try:
        with pytest.raises(Conflict, match="port=0"):
            bind("127.0.0.1", first.getsockname()[1], "b")
    finally:
        first.close()
