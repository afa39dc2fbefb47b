"""Run nx-27017 (a SQLite-backed MongoDB wire-protocol server) as gamesvc's embedded database.

Why this exists instead of nx-27017's own CLI:

* nx-27017 answers the legacy ``ismaster`` handshake without an ``ismaster``
  field; txmongo reads that as "not primary" and reconnects forever.  We patch
  the reply before serving.
* The parent (``gamesvc.embedded.EmbeddedMongo``) needs the listening port,
  so we bind (port 0 = any free port) and print exactly one ``PORT <n>`` line
  on stdout; everything else goes to stderr through ``logging``.
* The server must never outlive the service: it exits 0 on SIGTERM/SIGINT
  and also when stdin reaches EOF, which happens when the parent dies (even
  by SIGKILL) because the parent holds the other end of the pipe.

Usage: ``python -m gamesvc._nxlaunch --data-dir DIR [--host H] [--port N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any, Sequence

from nx_27017 import handler as nx_handler
from nx_27017 import server as nx_server

log = logging.getLogger("gamesvc.nxlaunch")

_LEGACY_HELLO_KEYS = ("ismaster", "isMaster")


def patch_ismaster() -> None:
    """Make nx-27017 include ``ismaster: true`` in legacy handshake replies (idempotent)."""
    cls = nx_handler.NeoSQLiteHandler
    if getattr(cls.handle_command, "_gamesvc_ismaster_patch", False):
        return
    original = cls.handle_command

    def handle_command(self: Any, msg: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request_id, doc = original(self, msg)
        for section, body in msg.get("sections", []):
            if section == "body" and isinstance(body, dict) and any(
                k in body for k in _LEGACY_HELLO_KEYS
            ):
                doc = dict(doc)
                doc.setdefault("ismaster", True)
                break
        return request_id, doc

    handle_command._gamesvc_ismaster_patch = True  # type: ignore[attr-defined]
    cls.handle_command = handle_command  # type: ignore[method-assign]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the launcher's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m gamesvc._nxlaunch",
        description="Serve a SQLite-backed MongoDB-compatible database for gamesvc.",
    )
    parser.add_argument(
        "--data-dir", required=True, help="folder holding one <db>.db file per database"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="stderr logging level (default WARNING)"
    )
    return parser.parse_args(argv)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Block reading stdin until EOF (the parent went away), then request shutdown."""
    # Raw os.read rather than sys.stdin: a daemon thread parked inside the
    # buffered reader's lock can abort interpreter shutdown.
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    log.info("stdin closed; shutting down")
    try:
        loop.call_soon_threadsafe(stop.set)
    except RuntimeError:
        pass  # loop already closed: we are exiting anyway


async def serve(handler: nx_handler.NeoSQLiteHandler, host: str, port: int) -> None:
    """Listen on ``host:port``, announce the port, and serve until told to stop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    server = await asyncio.start_server(
        lambda r, w: nx_server.handle_client(r, w, handler),
        host,
        port,
        reuse_address=True,  # a restart must rebind the port of the killed child
    )
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {bound}\n")
    sys.stdout.flush()
    log.info("serving %s on %s:%d", handler.db_path, host, bound)

    threading.Thread(
        target=_watch_stdin, args=(loop, stop), name="stdin-watch", daemon=True
    ).start()

    def quiet_cancellations(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        # At shutdown the open client tasks are cancelled; nx-27017's handler reports that as an error.
        if not isinstance(context.get("exception"), asyncio.CancelledError):
            loop.default_exception_handler(context)

    loop.set_exception_handler(quiet_cancellations)
    try:
        await stop.wait()
    finally:
        # No wait_closed(): on newer Pythons it waits for idle client
        # connections to hang up, which txmongo clients never do.
        server.close()


def secure_data_dir(path: str) -> str:
    """Create the data folder mode 0700 (or narrow an existing one to it) with its files 0600; returns its
    absolute path. The store holds password and session hashes: other local users must not read them.
    """
    data_dir = os.path.abspath(path)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)
    for entry in os.scandir(data_dir):
        if entry.is_file(follow_symlinks=False):
            os.chmod(entry.path, 0o600)
    return data_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse arguments, run the server, return the exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Files SQLite creates later (journals, new databases) are private too.
    os.umask(0o077)
    data_dir = secure_data_dir(args.data_dir)
    patch_ismaster()
    handler = nx_handler.NeoSQLiteHandler(":memory:", data_dir=data_dir)
    try:
        # asyncio.run cancels client tasks and joins the query threads, so
        # nothing still uses the SQLite connections when we close them.
        asyncio.run(serve(handler, args.host, args.port))
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, e)
        return 1
    finally:
        handler.close_all()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
