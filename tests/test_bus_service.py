"""The bus in the service: the cluster options, /healthz and /metrics with and without a bus, a Redis outage
seen by a running node, and --reuse-port."""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.python import usage

from gamesvc.config import Settings
from gamesvc.service import default_node_id, listen_reuse_port
from gamesvc.tap import Options
from tests.conftest import fresh_database_uri
from tests.processes import free_port
from tests.support import http, memory_services, start_service, within

pytestmark = pytest.mark.integration


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    options = Options(environ=env or {})
    options.parseOptions(argv)
    return options.settings


def test_cluster_options_parse_and_default_to_running_alone() -> None:
    """--redis-uri, --node-id and --reuse-port parse from the command line or GAMESVC_*; by default a node runs
    alone (no Redis, no SO_REUSEPORT) under a generated node id."""
    alone = parse([])
    assert alone.redis_uri is None and alone.node_id is None and alone.reuse_port is False
    given = parse(["--redis-uri", "redis://:pw@cache:6380/2", "--node-id", "web-1.a_b", "--reuse-port"])
    assert (given.redis_uri, given.node_id, given.reuse_port) == ("redis://:pw@cache:6380/2", "web-1.a_b", True)
    env = parse([], {"GAMESVC_REDIS_URI": "redis://cache", "GAMESVC_NODE_ID": "n2", "GAMESVC_REUSE_PORT": "yes"})
    assert (env.redis_uri, env.node_id, env.reuse_port) == ("redis://cache", "n2", True)


@pytest.mark.parametrize(
    "argv",
    [["--redis-uri", "cache:6379"], ["--redis-uri", "redis://:secretpw@h:99999"], ["--node-id", "a b"],
     ["--node-id", "x" * 65], ["--node-id", "nöde"]],
)
def test_bad_cluster_options_are_usage_errors(argv: list[str]) -> None:
    """A malformed Redis URI or node id is a usage error naming the option, without echoing a password."""
    with pytest.raises(usage.UsageError) as caught:
        parse(argv)
    assert argv[0] in str(caught.value) and "secretpw" not in str(caught.value)


def test_node_ids() -> None:
    """The default node id is host-pid-random, valid as --node-id and different each time; --node-id wins."""
    a, b = default_node_id(), default_node_id()
    assert a != b and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", a)
    parse(["--node-id", a])
    assert memory_services(node_id="n7").node_id == "n7"
    assert memory_services().bus is None


async def _health(reactor: Any, url: str) -> tuple[int, Any]:
    status, _, body = await http(reactor, "GET", url + "/healthz")
    return status, body


async def _metrics(reactor: Any, url: str) -> str:
    _, _, body = await http(reactor, "GET", url + "/metrics")
    return body.decode() if isinstance(body, bytes) else str(body)


@pytest_twisted.ensureDeferred
async def test_a_node_alone_has_no_bus(reactor: Any, mongo_uri: str) -> None:
    """Without --redis-uri: no bus, /healthz as before (no "bus" field), no bus gauge."""
    running = await start_service(reactor, fresh_database_uri(mongo_uri))
    try:
        assert running.service.bus is None and running.service.app.bus is None
        assert await _health(reactor, running.url) == (200, {"status": "ok"})
        assert "gamesvc_bus_connected" not in await _metrics(reactor, running.url)
    finally:
        await running.service.stopService()


def _state(bus: Any, connected: bool) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    bus.on_state(lambda now: d.callback(None) if now == connected and not d.called else None)
    return d


@pytest_twisted.ensureDeferred
async def test_a_redis_outage_shows_in_healthz_and_metrics_and_heals(reactor: Any, mongo_uri: str, redis_server: Any) -> None:
    """With --redis-uri the node connects its bus; when Redis stops /healthz stays 200 with "bus": "down" and the
    gauge drops to 0; when Redis comes back the bus reconnects by itself; stopping the service stops the bus."""
    running = await start_service(
        reactor, fresh_database_uri(mongo_uri), redis_uri=redis_server.uri, node_id="node-a"
    )
    bus = running.service.bus
    try:
        assert bus is not None and running.service.app.bus is bus and running.service.app.node_id == "node-a"
        if not bus.connected:
            await within(reactor, _state(bus, True))
        assert await _health(reactor, running.url) == (200, {"status": "ok", "bus": "up"})
        assert "gamesvc_bus_connected 1.0" in await _metrics(reactor, running.url)
        down = _state(bus, False)
        redis_server.stop()
        await within(reactor, down)
        assert await _health(reactor, running.url) == (200, {"status": "ok", "bus": "down"})
        assert "gamesvc_bus_connected 0.0" in await _metrics(reactor, running.url)
        up = _state(bus, True)
        redis_server.start()
        await within(reactor, up)
        assert (await _health(reactor, running.url))[1]["bus"] == "up"
    finally:
        if not redis_server.running:
            redis_server.start()
        await running.service.stopService()
    assert not bus.connected


@pytest_twisted.ensureDeferred
async def test_an_unreachable_redis_does_not_hold_start_up(reactor: Any, mongo_uri: str) -> None:
    """A node whose Redis does not answer still starts, listens and serves, reporting "bus": "down"."""
    running = await start_service(reactor, fresh_database_uri(mongo_uri), redis_uri=f"redis://127.0.0.1:{free_port()}")
    try:
        assert await _health(reactor, running.url) == (200, {"status": "ok", "bus": "down"})
    finally:
        await running.service.stopService()


@pytest_twisted.ensureDeferred
async def test_reuse_port_lets_two_services_share_a_port(reactor: Any, mongo_uri: str) -> None:
    """With --reuse-port two services listen on the same port and both serve it."""
    port = free_port()
    uri = fresh_database_uri(mongo_uri)
    first = await start_service(reactor, uri, port=port, reuse_port=True)
    try:
        second = await start_service(reactor, uri, port=port, reuse_port=True)
        try:
            assert first.port == second.port == port
            assert (await _health(reactor, first.url))[0] == 200
        finally:
            await second.service.stopService()
    finally:
        await first.service.stopService()


def test_listen_reuse_port_on_ipv4_and_ipv6(reactor: Any) -> None:
    """listen_reuse_port binds twice to one port on IPv4 and on IPv6, while a plain socket cannot join them."""
    from twisted.internet.protocol import Factory

    hosts = ["127.0.0.1"] + (["::1"] if socket.has_ipv6 and _ipv6_loopback() else [])
    for host in hosts:
        port = free_port()
        a = listen_reuse_port(reactor, port, host, Factory())
        b = listen_reuse_port(reactor, port, host, Factory())
        try:
            assert a.getHost().port == b.getHost().port == port
            plain = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            with plain, pytest.raises(OSError):
                plain.bind((host, port))
        finally:
            a.stopListening()
            b.stopListening()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_memory_services_of_simulated_nodes_share_a_clock_and_a_hub() -> None:
    """memory_services takes a shared clock, store and a MemoryBus, so that cluster tests can run several nodes in
    memory; the bus gauge then appears in the metrics."""
    from twisted.internet.task import Clock

    from gamesvc.bus import MemoryHub
    from gamesvc.store.memory import MemoryStore

    clock, store = Clock(), MemoryStore()
    hub = MemoryHub(clock)
    a = memory_services(clock=clock, store=store, bus=hub.bus(), node_id="a")
    b = memory_services(clock=clock, store=store, bus=hub.bus(), node_id="b")
    assert a.clock is b.clock is clock and a.raw_store is b.raw_store is store
    assert a.bus is not b.bus and (a.node_id, b.node_id) == ("a", "b")
    a.bus.start()
    assert b"gamesvc_bus_connected 1.0" in a.metrics.exposition()
    assert b"gamesvc_bus_connected 0.0" in b.metrics.exposition()


def test_lease_options() -> None:
    """--lease-seconds defaults to 10 and --lease-renew-seconds to none (a quarter of the lease); a renewal
    interval of a third of the lease or more is a usage error, since a node must renew well before its lease ends."""
    default = parse([])
    assert default.lease_seconds == 10.0 and default.lease_renew_seconds is None
    assert parse(["--lease-seconds", "2"]).lease_seconds == 2.0
    assert parse(["--lease-seconds", "9", "--lease-renew-seconds", "2.5"]).lease_renew_seconds == 2.5
    with pytest.raises(usage.UsageError):
        parse(["--lease-seconds", "9", "--lease-renew-seconds", "3"])
    with pytest.raises(usage.UsageError):
        parse(["--lease-seconds", "0.5"])
