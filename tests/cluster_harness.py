"""Real multi-node clusters for integration tests: N `twistd gamesvc` processes, the session's Redis and store.

A test module imports the fixtures it uses (they are not in conftest.py)::

    from tests.cluster_harness import Cluster, cluster, make_cluster  # noqa: F401

    pytestmark = pytest.mark.integration
    CLUSTER_NODES = 3                                  # for the `cluster` fixture (default 3)
    CLUSTER_ARGS = ("--lease-seconds", "2")            # more `twistd gamesvc` options for every node

    @pytest_twisted.ensureDeferred
    async def test_x(cluster: Cluster, reactor) -> None:
        ann = await cluster.client(1)                  # a WsClient of node 1
        await cluster.kill(2)                          # SIGKILL, as a crash would
        await cluster.start(2)                         # again, on the same port, until it listens and its bus is up

Every node shares the session's embedded store (the `mongo_uri` fixture, started once per session) through a
database of the cluster's own, and the session's redis-server (`cluster.redis.restart()` makes an outage). Nodes
are `node-1`..`node-N` on distinct loopback ports, so a test chooses which node a client talks to. Waits follow the
nodes' own log lines ("gamesvc listening", "bus connected"), never fixed sleeps; teardown stops every node by its
PID, even when the test failed, and a node dies with the test process should that be killed.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import attrs
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from tests.conftest import fresh_database_uri
from tests.processes import TWISTD, free_port
from tests.redis_server import RedisServer
from tests.support import WsClient, http, within

LISTENING = "gamesvc listening"
BUS_CONNECTED = "bus connected"
START_SECONDS = 60.0
STOP_SECONDS = 15.0
# Options every node gets before the test's own (a later repetition of an option wins in twistd).
BASE_ARGS = ("--bcrypt-cost", "4")
# Run by the child before it becomes twistd: PR_SET_PDEATHSIG (1) kills the node when the test process dies, so a
# crashed or killed pytest leaves no node behind on a shared machine; exec keeps the PID.
_EXEC_DYING_WITH_PARENT = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


@attrs.frozen
class Exit:
    """How a node's process ended: its exit code, or the signal that ended it."""

    code: int | None
    signal: int | None


class NodeExited(Exception):
    """A node ended while a test waited for it to say something."""


@attrs.define
class _Waiter:
    """Someone waiting for `remaining` more lines containing `text`."""

    text: str
    remaining: int
    d: Deferred[str]


class _NodeProcess(ProcessProtocol):
    """One run of a node: copies its output to the node's log file and fires waiters on matching lines."""

    def __init__(self, log_path: Path) -> None:
        self._log = log_path.open("ab")
        self._partial = b""
        self.lines: list[str] = []
        self._waiters: list[_Waiter] = []
        self._end_waiters: list[Deferred[Exit]] = []
        self.exit: Exit | None = None
        self.exited = False

    def outReceived(self, data: bytes) -> None:
        self._log.write(data)
        self._log.flush()
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            for waiter in list(self._waiters):
                if waiter.text in line:
                    waiter.remaining -= 1
                    if waiter.remaining == 0:
                        self._waiters.remove(waiter)
                        waiter.d.callback(line)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.exited = True
        self._log.close()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.d.errback(NodeExited(f"the node exited ({reason.value}) before logging {waiter.text!r}"))
        self.exit = Exit(getattr(reason.value, "exitCode", None), getattr(reason.value, "signal", None))
        end_waiters, self._end_waiters = self._end_waiters, []
        for end in end_waiters:
            end.callback(self.exit)

    def ended(self) -> Deferred[Exit]:
        """Fires with how the process ended, once it has been reaped (a new Deferred each call, so that one
        waiter's timeout cannot cancel another's)."""
        if self.exit is not None:
            return succeed(self.exit)
        d: Deferred[Exit] = Deferred()
        self._end_waiters.append(d)
        return d

    def wait_for(self, text: str, count: int = 1) -> Deferred[str]:
        """The `count`-th line of this run that contains `text` (at once if it was already logged)."""
        seen = [line for line in self.lines if text in line]
        if len(seen) >= count:
            return succeed(seen[count - 1])
        if self.exited:
            return fail(NodeExited(f"the node exited before logging {text!r} {count} times"))
        d: Deferred[str] = Deferred()
        self._waiters.append(_Waiter(text, count - len(seen), d))
        return d


class Node:
    """One `twistd gamesvc` of a cluster: its fixed port, folder, log file and (while it runs) its process."""

    def __init__(self, index: int, directory: Path, argv: list[str]) -> None:
        self.index = index
        self.node_id = f"node-{index}"
        self.port = free_port()
        self.directory = directory
        self.log_path = directory / "twistd.log"
        self.argv = argv + ["--port", str(self.port), "--node-id", self.node_id, "--data-dir", str(directory / "data")]
        self.process: _NodeProcess | None = None
        self.transport: Any = None
        self._pid: int | None = None
        self.runs = 0

    @property
    def url(self) -> str:
        """The node's web site, e.g. for /healthz and /api/*."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """The node's WebSocket endpoint."""
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int | None:
        """The running process's id, or None."""
        return self._pid if self.running else None

    @property
    def running(self) -> bool:
        """True from `start` until the process has exited (and was reaped)."""
        return self.process is not None and not self.process.exited

    def log_text(self) -> str:
        """Everything the node logged, over all its runs."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __repr__(self) -> str:
        return f"<Node {self.node_id} port {self.port} pid {self.pid}>"


class Cluster:
    """N nodes sharing one store database and one Redis; nodes are numbered from 1 like their --node-id."""

    def __init__(
        self, reactor: Any, directory: Path, mongo_uri: str, redis: RedisServer, size: int, args: Sequence[str] = ()
    ) -> None:
        self.reactor = reactor
        self.directory = directory
        self.mongo_uri = mongo_uri
        self.redis = redis
        common = [*BASE_ARGS, "--mongo-uri", mongo_uri, "--redis-uri", redis.uri, *args]
        self.nodes = [Node(i, directory / f"node-{i}", common) for i in range(1, size + 1)]
        self._clients: list[WsClient] = []

    def node(self, i: int) -> Node:
        """Node `i` (1-based)."""
        if not 1 <= i <= len(self.nodes):
            raise IndexError(f"the cluster has nodes 1..{len(self.nodes)}, not {i}")
        return self.nodes[i - 1]

    def spawn(self, i: int) -> None:
        """Start node `i` without waiting for it (see `start`)."""
        node = self.node(i)
        assert not node.running, f"{node} is already running"
        node.directory.mkdir(parents=True, exist_ok=True)
        node.runs += 1
        with node.log_path.open("ab") as f:
            f.write(f"---- run {node.runs} ----\n".encode())
        node.process = _NodeProcess(node.log_path)
        argv = [sys.executable, "-c", _EXEC_DYING_WITH_PARENT, TWISTD, "--pidfile=", "-n", "gamesvc", *node.argv]
        node.transport = self.reactor.spawnProcess(
            node.process, sys.executable, argv, env=dict(os.environ), path=str(node.directory),
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        node._pid = node.transport.pid
        node.transport.closeStdin()

    async def start(self, *indexes: int, bus: bool = True, timeout: float = START_SECONDS) -> None:
        """Start the given nodes (all when none is given) together; return once each listens and, with `bus`,
        once each one's bus has connected to Redis."""
        wanted = list(indexes) or [n.index for n in self.nodes]
        for i in wanted:
            self.spawn(i)
        texts = [LISTENING, BUS_CONNECTED] if bus else [LISTENING]
        await self._all([self.wait_for_log(i, text, timeout=timeout) for i in wanted for text in texts])

    def log_count(self, i: int, text: str) -> int:
        """How many lines of node `i`'s current run contain `text` so far."""
        process = self.node(i).process
        return 0 if process is None else sum(text in line for line in process.lines)

    async def restart_redis(self, timeout: float = START_SECONDS) -> None:
        """Restart the session's redis-server (every bus connection drops, nothing is kept) and return once every
        running node has logged its bus connected again."""
        running = [n.index for n in self.nodes if n.running]
        before = {i: self.log_count(i, BUS_CONNECTED) for i in running}
        self.redis.restart()
        await self._all([self.wait_for_log(i, BUS_CONNECTED, before[i] + 1, timeout) for i in running])

    async def wait_for_log(self, i: int, text: str, count: int = 1, timeout: float = START_SECONDS) -> str:
        """The `count`-th line of node `i`'s current run that contains `text`; fails if the node exits first."""
        node = self.node(i)
        assert node.process is not None, f"{node} was never started"
        try:
            return await within(self.reactor, node.process.wait_for(text, count), timeout)
        except Exception as e:
            raise AssertionError(f"{node}: no {text!r} ({e!r}); its log:\n{node.log_text()[-4000:]}") from e

    async def kill(self, i: int) -> None:
        """SIGKILL node `i`, as a crash would, and return once it is gone (its rooms are not checkpointed)."""
        await self._signal_and_wait(self.node(i), signal.SIGKILL, STOP_SECONDS)

    async def stop(self, i: int, timeout: float = STOP_SECONDS) -> Exit | None:
        """SIGTERM node `i` and wait until it exits (SIGKILL after `timeout` s); returns how it ended."""
        return await self._signal_and_wait(self.node(i), signal.SIGTERM, timeout)

    async def _signal_and_wait(self, node: Node, signum: int, timeout: float) -> Exit | None:
        pid = node.pid
        if pid is None or node.process is None:
            return None
        _kill(pid, signum)
        try:
            return await within(self.reactor, node.process.ended(), timeout)
        except Exception:
            _kill(pid, signal.SIGKILL)
            return await within(self.reactor, node.process.ended(), timeout)

    async def close(self) -> None:
        """Close the clients made by `client`, and stop every running node (by PID, SIGKILL after 15 s)."""
        for client in self._clients:
            if client.protocol is not None and not client.closed.called:
                client.drop()
        await self._all([self._signal_and_wait(n, signal.SIGTERM, STOP_SECONDS) for n in self.nodes if n.running])

    async def healthz(self, i: int) -> tuple[int, Any]:
        """Node `i`'s /healthz: (status, parsed body)."""
        status, _, body = await http(self.reactor, "GET", self.node(i).url + "/healthz")
        return status, body

    async def client(self, i: int) -> WsClient:
        """A WebSocket client connected to node `i` (dropped at teardown if still open)."""
        client = await WsClient.connect(self.reactor, self.node(i).ws_url)
        self._clients.append(client)
        return client

    async def signed_in(self, i: int, username: str, password: str = "cluster-pass-1", signup: bool = True) -> WsClient:
        """A client of node `i` that signed up (or, with `signup=False`, logged in) as `username`."""
        client = await self.client(i)
        await client.ok("signup" if signup else "login", username=username, password=password)
        return client

    async def _all(self, waits: Sequence[Awaitable[Any]]) -> list[Any]:
        """Wait for every coroutine; the first failure is raised once all have finished."""
        results = await DeferredList([Deferred.fromCoroutine(_await(w)) for w in waits], consumeErrors=True)
        for ok, value in results:
            if not ok:
                value.raiseException()
        return [value for _, value in results]


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _kill(pid: int, signum: int) -> None:
    """Signal a process by its PID; one that is already gone is fine."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


ClusterFactory = Callable[..., Awaitable[Cluster]]


@pytest_twisted.async_yield_fixture
async def make_cluster(
    reactor: Any, tmp_path: Path, mongo_uri: str, redis_server: RedisServer
) -> AsyncIterator[ClusterFactory]:
    """`await make_cluster(nodes=3, args=(...), start=True)`: a started cluster with a fresh database; every cluster
    it made is stopped at teardown, whatever the test did."""
    made: list[Cluster] = []
    if not redis_server.running:
        redis_server.start()  # an earlier test stopped it and failed before starting it again

    async def make(nodes: int = 3, args: Sequence[str] = (), start: bool = True) -> Cluster:
        cluster = Cluster(
            reactor, tmp_path / f"cluster-{len(made) + 1}", fresh_database_uri(mongo_uri), redis_server, nodes, args
        )
        made.append(cluster)
        if start:
            await cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            await cluster.close()


@pytest_twisted.async_yield_fixture
async def cluster(request: pytest.FixtureRequest, make_cluster: ClusterFactory) -> AsyncIterator[Cluster]:
    """A started cluster of the module's `CLUSTER_NODES` nodes (default 3) with its `CLUSTER_ARGS` options."""
    nodes = getattr(request.module, "CLUSTER_NODES", 3)
    args = getattr(request.module, "CLUSTER_ARGS", ())
    yield await make_cluster(nodes=nodes, args=args)


__all__ = ["BUS_CONNECTED", "Cluster", "Exit", "LISTENING", "Node", "NodeExited", "cluster", "make_cluster"]
