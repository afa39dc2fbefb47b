"""Send to a TCP connection at once instead of on the reactor's next turn (and see a paused one's peer close).

Twisted's `transport.write` only buffers: the bytes leave when the reactor next finds the socket
writable. For a server that sends thousands of small WebSocket frames a second that costs, per frame,
two `epoll_ctl` calls (start and stop watching for writability), one more reactor event, and the
latency of waiting for the rest of the current reactor turn. `write_now` tries the socket first when
nothing is queued before the data, and gives the transport only what the socket did not take, so the
bytes still go out in order and a slow peer still fills the transport's buffer as before.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp

# Linux's TCP states (include/net/tcp_states.h) in which the peer has closed its side or the connection is gone.
_PEER_GONE = {7, 8, 9}  # TCP_CLOSE, TCP_CLOSE_WAIT, TCP_LAST_ACK


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


def peer_closed(transport: Any) -> bool:
    """Whether the peer of a plain TCP connection has closed its side, read from the socket's TCP state.

    A transport whose reading is paused never reads the end of the stream, so it cannot learn of the close the
    usual way; the kernel's state says it even with unread data before the FIN. False where it cannot tell.
    """
    if not isinstance(transport, tcp.Connection) or not hasattr(socket, "TCP_INFO"):
        return False
    try:
        return transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in _PEER_GONE
    except OSError:
        return False
