"""Send to a TCP connection at once instead of on the reactor's next turn.

Twisted's `transport.write` only buffers: the bytes leave when the reactor next finds the socket
writable. For a server that sends thousands of small WebSocket frames a second that costs, per frame,
two `epoll_ctl` calls (start and stop watching for writability), one more reactor event, and the
latency of waiting for the rest of the current reactor turn. `write_now` tries the socket first when
nothing is queued before the data, and gives the transport only what the socket did not take, so the
bytes still go out in order and a slow peer still fills the transport's buffer as before.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


def pending(transport: Any) -> int:
    """Bytes written to the transport but not yet sent to the peer (0 for transports that do not say)."""
    data = getattr(transport, "dataBuffer", b"")
    return len(data) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)


def write_now(transport: Any, data: bytes) -> None:
    """Write `data`: straight to the socket when the transport is a plain TCP connection (no startTLS) with
    nothing queued, the rest (or all of it, otherwise) through `transport.write`."""
    if (
        isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not pending(transport)
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:
            # Would block, or the connection is broken: the transport finds out and reports it as usual.
            sent = 0
        data = data[sent:]
        if not data:
            return
    transport.write(data)
