"""The embedded database: an nx-27017 child process that gamesvc reaches through txmongo.

Used when no ``--mongo-uri`` is configured.  ``EmbeddedMongo`` runs
``python -m gamesvc._nxlaunch`` on loopback, reads the port it announces,
restarts it on the same port if it dies, and stops it with the service.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from typing import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["EmbeddedMongo", "EmbeddedMongoError"]

_LAUNCHER_MODULE = "gamesvc._nxlaunch"
# Directory that contains the gamesvc package, so the child can import it
# whatever its working directory is.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MAX_LINE = 64 * 1024
_STDERR_TAIL = 20


class EmbeddedMongoError(Exception):
    """The embedded database could not be started or was stopped before it was ready."""


def _describe_exit(reason: Failure) -> str:
    """Say how a child process ended, e.g. ``exit code 1`` or ``signal 9``."""
    sig = getattr(reason.value, "signal", None)
    if sig is not None:
        return f"signal {sig}"
    return f"exit code {getattr(reason.value, 'exitCode', None)}"


def _uri_host(host: str) -> str:
    """Return the address a client should dial for a server listening on ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host:
        return f"[{host}]"
    return host


class _LauncherProtocol(ProcessProtocol):
    """Talks to one launcher process: reads its PORT line, forwards its stderr."""

    def __init__(
        self,
        log: Logger,
        on_port: Callable[[_LauncherProtocol, int], None],
        on_end: Callable[[_LauncherProtocol, Failure], None],
    ) -> None:
        self._log = log
        self._on_port = on_port
        self._on_end = on_end
        self._buffers: dict[int, bytes] = {1: b"", 2: b""}
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL)

    @property
    def pid(self) -> int | None:
        """The child's process id, or None once it has been reaped."""
        return getattr(self.transport, "pid", None)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """Split the child's stdout/stderr into lines."""
        buf = self._buffers.get(childFD, b"") + data
        *lines, rest = buf.split(b"\n")
        if len(rest) > _MAX_LINE:  # never buffer an endless line
            lines.append(rest)
            rest = b""
        self._buffers[childFD] = rest
        for raw in lines:
            self._lineReceived(childFD, raw.decode("utf-8", "replace").rstrip("\r"))

    def _lineReceived(self, childFD: int, line: str) -> None:
        """Handle one complete line from the child."""
        if childFD == 1:
            word, _, value = line.partition(" ")
            if word == "PORT" and value.strip().isdigit():
                self._on_port(self, int(value))
            elif line:
                self._log.warn("nx-27017[{pid}] stdout: {line}", pid=self.pid, line=line)
            return
        if not line:
            return
        self.stderr_tail.append(line)
        # The launcher logs "LEVEL name: message"; tracebacks and anything
        # unprefixed are worth a warning.
        if line.startswith(("DEBUG ", "INFO ")):
            self._log.info("nx-27017[{pid}]: {line}", pid=self.pid, line=line)
        else:
            self._log.warn("nx-27017[{pid}]: {line}", pid=self.pid, line=line)

    def processEnded(self, reason: Failure) -> None:
        """Flush partial lines and report the exit to the owner."""
        for fd, rest in list(self._buffers.items()):
            if rest:
                self._buffers[fd] = b""
                self._lineReceived(fd, rest.decode("utf-8", "replace"))
        self._on_end(self, reason)


class EmbeddedMongo(Service):
    """Runs nx-27017 as a supervised child process and hands out its MongoDB URI."""

    log = Logger()

    def __init__(
        self,
        reactor: IReactorProcess,
        data_dir: str,
        python: str = sys.executable,
        host: str = "127.0.0.1",
        restart_delay: float = 1.0,
        stop_timeout: float = 5.0,
    ) -> None:
        """Prepare (but do not start) a database stored in ``data_dir``.

        ``reactor`` must provide both IReactorProcess and IReactorTime.
        """
        self._reactor = reactor
        self._clock: IReactorTime = reactor  # type: ignore[assignment]
        self._data_dir = os.path.abspath(data_dir)
        self._python = python
        self._host = host
        self._restart_delay = restart_delay
        self._stop_timeout = stop_timeout

        self._child: _LauncherProtocol | None = None
        self._port: int | None = None
        self._uri: str | None = None
        self._ready = False
        self._ever_ready = False
        self._startup_failure: Failure | None = None
        self._restarts = 0
        self._ready_waiters: list[Deferred[str]] = []
        self._stop_waiters: list[Deferred[None]] = []
        self._restart_call: IDelayedCall | None = None
        self._kill_call: IDelayedCall | None = None

    @property
    def uri(self) -> str | None:
        """``mongodb://host:port/`` once the database has first been ready, else None."""
        return self._uri

    @property
    def port(self) -> int | None:
        """The TCP port the database listens on (kept across restarts), or None."""
        return self._port

    @property
    def pid(self) -> int | None:
        """The current child's process id, or None when no child is running."""
        return self._child.pid if self._child is not None else None

    @property
    def restarts(self) -> int:
        """How many times the child was restarted after dying unexpectedly."""
        return self._restarts

    def whenReady(self) -> Deferred[str]:
        """Fire with the MongoDB URI once the database accepts connections.

        Fires at once if it is up; fails with EmbeddedMongoError if the first
        launch died before listening, or if the service stops first.
        """
        if self._ready:
            assert self._uri is not None
            return succeed(self._uri)
        if self._startup_failure is not None:
            return fail(self._startup_failure)
        d: Deferred[str] = Deferred(self._cancelReadyWaiter)
        self._ready_waiters.append(d)
        return d

    def _cancelReadyWaiter(self, d: Deferred[str]) -> None:
        """Forget a whenReady() Deferred its caller cancelled."""
        if d in self._ready_waiters:
            self._ready_waiters.remove(d)

    def startService(self) -> None:
        """Launch the child process."""
        super().startService()
        self._startup_failure = None
        if self._child is None:
            self._spawn()

    def stopService(self) -> Deferred[None]:
        """Stop the child (SIGTERM, then SIGKILL after ``stop_timeout``); fire once it has exited."""
        super().stopService()
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
        self._restart_call = None
        self._failReadyWaiters(Failure(EmbeddedMongoError("embedded MongoDB was stopped")))

        child = self._child
        if child is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._stop_waiters.append(d)
        if self._kill_call is None:
            self.log.info("stopping embedded MongoDB (pid {pid})", pid=child.pid)
            # Closing stdin alone would also stop it; the signal is faster.
            child.transport.closeStdin()  # type: ignore[union-attr]
            self._signal(child, "TERM")
            self._kill_call = self._clock.callLater(
                self._stop_timeout, self._forceKill, child
            )
        return d

    def kill(self) -> None:
        """SIGKILL the child, as a crash would; a running service restarts it."""
        if self._child is not None:
            self._signal(self._child, "KILL")

    def _spawn(self) -> None:
        """Start a launcher process, reusing the previous port if there was one."""
        argv = [
            self._python,
            "-m",
            _LAUNCHER_MODULE,
            "--data-dir",
            self._data_dir,
            "--host",
            self._host,
            "--port",
            str(self._port or 0),
        ]
        child = _LauncherProtocol(self.log, self._childListening, self._childEnded)
        self._child = child
        self._reactor.spawnProcess(
            child,
            self._python,
            argv,
            env=self._childEnv(),
            childFDs={0: "w", 1: "r", 2: "r"},
        )
        self.log.info(
            "started embedded MongoDB (pid {pid}) on {host}:{port} for {dataDir}",
            pid=child.pid,
            host=self._host,
            port=self._port or "(any)",
            dataDir=self._data_dir,
        )

    def _childEnv(self) -> dict[str, str]:
        """The environment for the child: ours, plus the path to import gamesvc from."""
        env = dict(os.environ)
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if _PACKAGE_ROOT not in paths:
            paths.insert(0, _PACKAGE_ROOT)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def _childListening(self, child: _LauncherProtocol, port: int) -> None:
        """The child announced its port: record the URI and wake waiters."""
        if child is not self._child:
            return
        self._port = port
        self._uri = f"mongodb://{_uri_host(self._host)}:{port}/"
        self._ready = True
        self._ever_ready = True
        self.log.info("embedded MongoDB (pid {pid}) ready at {uri}", pid=child.pid, uri=self._uri)
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(self._uri)

    def _childEnded(self, child: _LauncherProtocol, reason: Failure) -> None:
        """The child exited: finish a stop, give up on a failed first launch, or restart."""
        if child is not self._child:
            return
        self._child = None
        self._ready = False
        how = _describe_exit(reason)

        if not self.running:
            if self._kill_call is not None and self._kill_call.active():
                self._kill_call.cancel()
            self._kill_call = None
            self.log.info("embedded MongoDB exited ({how})", how=how)
            waiters, self._stop_waiters = self._stop_waiters, []
            for d in waiters:
                d.callback(None)
            return

        if not self._ever_ready:
            # It never listened (bad interpreter, unwritable data dir...):
            # retrying would only spin, so report it to whoever waits.
            tail = "\n".join(child.stderr_tail)
            self.log.critical(
                "embedded MongoDB failed to start ({how}); giving up", how=how
            )
            self._startup_failure = Failure(
                EmbeddedMongoError(f"embedded MongoDB failed to start ({how}):\n{tail}")
            )
            self._failReadyWaiters(self._startup_failure)
            return

        self.log.warn(
            "embedded MongoDB died ({how}); restarting on port {port} in {delay}s",
            how=how,
            port=self._port,
            delay=self._restart_delay,
        )
        self._restart_call = self._clock.callLater(self._restart_delay, self._restart)

    def _restart(self) -> None:
        """Relaunch after a crash, unless the service was stopped meanwhile."""
        self._restart_call = None
        if not self.running or self._child is not None:
            return
        self._restarts += 1
        self._spawn()

    def _forceKill(self, child: _LauncherProtocol) -> None:
        """SIGKILL a child that ignored SIGTERM for ``stop_timeout`` seconds."""
        self._kill_call = None
        if child is self._child:
            self.log.warn(
                "embedded MongoDB (pid {pid}) ignored SIGTERM for {timeout}s; killing it",
                pid=child.pid,
                timeout=self._stop_timeout,
            )
            self._signal(child, "KILL")

    def _signal(self, child: _LauncherProtocol, name: str) -> None:
        """Send a signal to a child, ignoring one that has already exited."""
        try:
            child.transport.signalProcess(name)  # type: ignore[union-attr]
        except ProcessExitedAlready:
            pass

    def _failReadyWaiters(self, failure: Failure) -> None:
        """Errback everyone waiting in whenReady()."""
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.errback(failure)
