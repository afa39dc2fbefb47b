"""`make cluster NODES=4`: several gamesvc nodes on one machine, for trying a cluster out.

Starts one redis-server (persistence off, on a free loopback port), one embedded store (`gamesvc._nxlaunch` in
--data-dir) and N `twistd gamesvc` nodes sharing --port with --reuse-port, each with its own --node-id, all in the
foreground. Ctrl-C (or SIGTERM, or any child exiting) stops the nodes first, so that they checkpoint their rooms,
then the store, then Redis.

Usage: ``python -m gamesvc.devcluster [--nodes 4] [--port 5000] [--interface 127.0.0.1] [--data-dir DIR]``;
arguments after ``--`` go to every node (e.g. ``-- --bcrypt-cost 4``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

log = Logger(namespace="gamesvc.devcluster")

STOP_SECONDS = 30.0


class Stop(Exception):
    """SIGINT or SIGTERM arrived: stop the cluster."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m gamesvc.devcluster", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4, help="how many gamesvc processes (1..64; default 4)")
    parser.add_argument("--port", type=int, default=5000, help="the port they share (default 5000)")
    parser.add_argument("--interface", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--data-dir", default="./gamesvc-data", help="folder of the shared embedded store")
    parser.add_argument("node_args", nargs="*", help="more `twistd gamesvc` options for every node, after --")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 64:
        parser.error("--nodes must be 1..64")
    if not 1 <= args.port <= 65535:
        parser.error("--port must be 1..65535")
    return args


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a starting process
    raise RuntimeError(f"redis-server did not listen on port {port}")


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop()


class Cluster:
    """The child processes of one development cluster, in start order."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a child in a session of its own, so that a terminal's Ctrl-C reaches only this launcher."""
        process: subprocess.Popen[bytes] = subprocess.Popen(argv, start_new_session=True, **kwargs)  # type: ignore[call-overload]
        self.children.append((name, process))
        log.info("started {name} (pid {pid})", name=name, pid=process.pid)
        return process

    def wait_any(self) -> None:
        """Block until a child exits (or a signal raises Stop) and say which one."""
        pid, status = os.wait()
        for name, process in self.children:
            if process.pid == pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                log.warn("{name} exited ({code}); stopping the cluster", name=name, code=process.returncode)

    def stop(self) -> None:
        """SIGTERM the nodes together, then the store, then Redis (the nodes checkpoint their rooms on the way out)."""
        nodes = [child for child in self.children if child[0].startswith("node-")]
        others = [child for child in reversed(self.children) if child not in nodes]
        for group in (nodes, *([child] for child in others)):
            for _, process in group:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for name, process in group:
                try:
                    process.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    log.warn("{name} ignored SIGTERM for {s}s; killing it", name=name, s=STOP_SECONDS)
                    process.kill()
                    process.wait()
                log.info("{name} stopped", name=name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the cluster until Ctrl-C; the exit code is 0 after a requested stop, 1 when a child died."""
    args = parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    redis = shutil.which("redis-server")
    if redis is None:
        log.error("redis-server is not installed (on Debian: apt-get install redis-server)")
        return 2
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    twistd = str(Path(sys.executable).with_name("twistd"))
    cluster = Cluster()
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    requested = False
    try:
        redis_port = free_port()
        redis_process = cluster.spawn(
            "redis-server",
            [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(data_dir), "--loglevel", "warning"],
            stdin=subprocess.DEVNULL,
        )
        _wait_for_port(redis_port, redis_process)
        store = cluster.spawn(
            "embedded store",
            [sys.executable, "-m", "gamesvc._nxlaunch", "--data-dir", str(data_dir), "--port", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert store.stdout is not None
        word, _, value = store.stdout.readline().decode().partition(" ")
        if word != "PORT":
            raise RuntimeError("the embedded store did not start")
        mongo_uri = f"mongodb://127.0.0.1:{int(value)}/"
        redis_uri = f"redis://127.0.0.1:{redis_port}/0"
        log.info("store at {mongo}, Redis at {redis}; {n} nodes on http://{host}:{port}/",
                 mongo=mongo_uri, redis=redis_uri, n=args.nodes, host=args.interface, port=args.port)
        for i in range(1, args.nodes + 1):
            cluster.spawn(
                f"node-{i}",
                [twistd, "--pidfile=", "-n", "gamesvc", "--port", str(args.port), "--interface", args.interface,
                 "--reuse-port", "--redis-uri", redis_uri, "--mongo-uri", mongo_uri, "--node-id", f"node-{i}",
                 *args.node_args],
                stdin=subprocess.DEVNULL,
            )
        cluster.wait_any()
    except Stop:
        requested = True
        log.info("stopping the cluster")
    except (OSError, RuntimeError) as e:
        log.error("cannot start the cluster: {why}", why=str(e))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
    return 0 if requested else 1


if __name__ == "__main__":
    sys.exit(main())
