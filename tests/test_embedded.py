"""Integration tests for the embedded nx-27017 database (real reactor, real child processes)."""

from __future__ import annotations

import os
import re
import signal
import stat
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from gamesvc import _nxlaunch
from gamesvc.embedded import EmbeddedMongo, EmbeddedMongoError

T = TypeVar("T")

# Generous bound for anything that waits on a child process.
TIMEOUT = 15.0


@pytest.fixture
def reactor() -> Any:
    """The global reactor pytest-twisted runs (imported lazily, never at module level)."""
    from twisted.internet import reactor as global_reactor

    return global_reactor


@pytest_twisted.async_yield_fixture
async def make_db(reactor: Any) -> AsyncIterator[Callable[..., EmbeddedMongo]]:
    """Build started EmbeddedMongo services, and stop them all after the test."""
    services: list[EmbeddedMongo] = []

    def make(data_dir: Path, **kwargs: Any) -> EmbeddedMongo:
        kwargs.setdefault("restart_delay", 0.1)
        svc = EmbeddedMongo(reactor, str(data_dir), **kwargs)
        svc.startService()
        services.append(svc)
        return svc

    yield make
    for svc in services:
        if svc.running:
            await within(reactor, svc.stopService())


def within(reactor: Any, d: Deferred[T], seconds: float = TIMEOUT) -> Deferred[T]:
    """Fail ``d`` with a TimeoutError unless it fires within ``seconds``."""
    return d.addTimeout(seconds, reactor)


async def sleep(reactor: Any, seconds: float) -> None:
    """Wait on the reactor without blocking it."""
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


async def eventually(reactor: Any, attempt: Callable[[], Awaitable[T]]) -> T:
    """Retry ``attempt`` every 0.1s until it succeeds, for at most TIMEOUT seconds."""
    deadline = reactor.seconds() + TIMEOUT
    while True:
        try:
            return await within(reactor, Deferred.fromCoroutine(_await(attempt)), 2.0)
        except Exception:
            if reactor.seconds() > deadline:
                raise
        await sleep(reactor, 0.1)


async def _await(attempt: Callable[[], Awaitable[T]]) -> T:
    """Adapt an awaitable factory to a coroutine for Deferred.fromCoroutine."""
    return await attempt()


def pool_for(uri: str) -> Any:
    """A txmongo pool that reconnects quickly, so restarts are noticed within the test."""
    from txmongo.connection import ConnectionPool

    return ConnectionPool(uri, retry_delay=0.1, max_delay=0.5)


def is_alive(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class LauncherProcess(ProcessProtocol):
    """Runs the launcher directly and records its port and exit."""

    def __init__(self) -> None:
        self.port: Deferred[int] = Deferred()
        self.ended: Deferred[BaseException] = Deferred()
        self._stdout = b""

    def outReceived(self, data: bytes) -> None:
        """Fire ``port`` when the PORT line arrives."""
        self._stdout += data
        match = re.match(rb"PORT (\d+)\n", self._stdout)
        if match and not self.port.called:
            self.port.callback(int(match.group(1)))

    def processEnded(self, reason: Failure) -> None:
        """Fire ``ended`` with the ProcessDone/ProcessTerminated exception."""
        self.ended.callback(reason.value)  # a Failure would errback


def test_data_dir_is_created_private_and_an_existing_one_narrowed(tmp_path: Path) -> None:
    """The launcher creates the data folder mode 0700, and narrows an existing folder to 0700 and its files to 0600."""
    fresh = tmp_path / "fresh"
    assert _nxlaunch.secure_data_dir(str(fresh)) == str(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    (old / "gamesvc.db").write_bytes(b"")
    (old / "gamesvc.db").chmod(0o644)
    _nxlaunch.secure_data_dir(str(old))
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
    assert stat.S_IMODE((old / "gamesvc.db").stat().st_mode) == 0o600


def test_ismaster_reply_has_ismaster_field(tmp_path: Path) -> None:
    """The launcher's patch adds ``ismaster: true`` to legacy handshakes, which txmongo requires."""
    from nx_27017.handler import NeoSQLiteHandler

    _nxlaunch.patch_ismaster()
    _nxlaunch.patch_ismaster()  # idempotent: must not wrap twice
    handler = NeoSQLiteHandler(":memory:", data_dir=str(tmp_path))
    try:
        msg = {"request_id": 1, "sections": [("body", {"ismaster": 1, "$db": "admin"})]}
        _, doc = handler.handle_command(msg)
        assert doc["ismaster"] is True
        assert doc["ok"] == 1
    finally:
        handler.close_all()


@pytest_twisted.ensureDeferred
async def test_ready_uri_serves_txmongo_crud(reactor: Any, make_db: Any, tmp_path: Path) -> None:
    """The service starts a child, whenReady gives a loopback URI, and txmongo can write and read."""
    svc = make_db(tmp_path / "db")
    uri = await within(reactor, svc.whenReady())

    assert re.fullmatch(r"mongodb://127\.0\.0\.1:\d+/", uri)
    assert svc.uri == uri
    assert svc.pid is not None and is_alive(svc.pid)
    assert svc.whenReady().called, "whenReady fires at once when already up"

    pool = pool_for(uri)
    try:
        assert (await within(reactor, pool.games.command("ping")))["ok"] == 1
        await within(reactor, pool.games.rooms.insert_one({"_id": "r1", "seats": 4}))
        doc = await within(reactor, pool.games.rooms.find_one({"_id": "r1"}))
        assert doc == {"_id": "r1", "seats": 4}
    finally:
        await pool.disconnect()


@pytest_twisted.ensureDeferred
async def test_data_survives_service_restart(reactor: Any, make_db: Any, tmp_path: Path) -> None:
    """Documents written before stopService are there for a new service on the same data dir."""
    data_dir = tmp_path / "db"
    first = make_db(data_dir)
    pool = pool_for(await within(reactor, first.whenReady()))
    try:
        await within(reactor, pool.games.users.insert_one({"_id": "ann", "elo": 1200}))
    finally:
        await pool.disconnect()
    await within(reactor, first.stopService())

    second = make_db(data_dir)
    pool = pool_for(await within(reactor, second.whenReady()))
    try:
        doc = await within(reactor, pool.games.users.find_one({"_id": "ann"}))
        assert doc == {"_id": "ann", "elo": 1200}
    finally:
        await pool.disconnect()


@pytest_twisted.ensureDeferred
async def test_killed_child_restarts_on_same_port(reactor: Any, make_db: Any, tmp_path: Path) -> None:
    """After a crash the child comes back on the same port and an existing txmongo pool works again."""
    svc = make_db(tmp_path / "db")
    uri = await within(reactor, svc.whenReady())
    old_pid = svc.pid
    assert old_pid is not None
    pool = pool_for(uri)
    try:
        await within(reactor, pool.games.moves.insert_one({"_id": 1, "move": "e4"}))

        svc.kill()

        async def restarted() -> None:
            assert svc.restarts == 1 and svc.pid not in (None, old_pid)
            assert svc.whenReady().called

        await eventually(reactor, restarted)
        assert svc.uri == uri
        assert not is_alive(old_pid)

        doc = await eventually(reactor, lambda: pool.games.moves.find_one({"_id": 1}))
        assert doc == {"_id": 1, "move": "e4"}
    finally:
        await pool.disconnect()


@pytest_twisted.ensureDeferred
async def test_stop_leaves_no_child(reactor: Any, make_db: Any, tmp_path: Path) -> None:
    """stopService fires only after the child has exited, and nothing is restarted afterwards."""
    svc = make_db(tmp_path / "db", restart_delay=0.05)
    await within(reactor, svc.whenReady())
    pid = svc.pid
    assert pid is not None

    await within(reactor, svc.stopService())

    assert svc.pid is None
    assert not is_alive(pid)
    await sleep(reactor, 0.3)  # several restart delays
    assert svc.pid is None
    assert svc.restarts == 0


@pytest_twisted.ensureDeferred
async def test_first_launch_failure_fails_whenReady(reactor: Any, make_db: Any, tmp_path: Path) -> None:
    """A child that dies before listening fails whenReady instead of being retried forever."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    svc = make_db(blocker / "db", restart_delay=0.05)  # makedirs fails in the child

    with pytest.raises(EmbeddedMongoError):
        await within(reactor, svc.whenReady())
    assert svc.pid is None
    await sleep(reactor, 0.3)  # several restart delays
    assert svc.pid is None
    assert svc.restarts == 0


@pytest.mark.parametrize("how", ["stdin-eof", "sigterm"])
@pytest_twisted.ensureDeferred
async def test_launcher_exits_cleanly(reactor: Any, tmp_path: Path, how: str) -> None:
    """The launcher creates its data dir, announces its port, and exits 0 on stdin EOF or SIGTERM."""
    data_dir = tmp_path / "new" / "db"
    proto = LauncherProcess()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    reactor.spawnProcess(
        proto,
        sys.executable,
        [sys.executable, "-m", "gamesvc._nxlaunch", "--data-dir", str(data_dir)],
        env=env,
        childFDs={0: "w", 1: "r", 2: "r"},
    )
    try:
        port = await within(reactor, proto.port)
        assert port > 0
        assert data_dir.is_dir()

        if how == "stdin-eof":
            proto.transport.closeStdin()
        else:
            proto.transport.signalProcess(signal.SIGTERM)
        ended = await within(reactor, proto.ended)
        assert getattr(ended, "exitCode", None) == 0, ended
    finally:
        if not proto.ended.called:
            proto.transport.signalProcess("KILL")
            await within(reactor, proto.ended)


@pytest_twisted.ensureDeferred
async def test_stop_kills_child_that_ignores_sigterm(reactor: Any, make_db: Any, tmp_path: Path) -> None:
    """A child still alive ``stop_timeout`` seconds after SIGTERM is SIGKILLed, and stopService fires."""
    stubborn = tmp_path / "stubborn"
    # Stands in for the interpreter: announces a port, ignores SIGTERM and stdin EOF.
    stubborn.write_text("#!/bin/sh\ntrap '' TERM\necho PORT 1\nexec sleep 60\n")
    stubborn.chmod(0o755)
    svc = make_db(tmp_path / "db", python=str(stubborn), stop_timeout=0.5)
    await within(reactor, svc.whenReady())
    pid = svc.pid
    assert pid is not None

    started = reactor.seconds()
    await within(reactor, svc.stopService())

    assert reactor.seconds() - started >= 0.5
    assert not is_alive(pid)
