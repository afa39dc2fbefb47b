"""Live sessions: which open connections are signed in with which session, so that logout and expiry reach them.

The store knows sessions; this registry knows the sockets holding them. Logging a session out (over the
WebSocket or HTTP) or reaching its expiry time ends it on every connection that holds it: each gets a
`session.ended` event and is signed out, as after its own logout.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()
LOGGED_OUT = "logged_out"
EXPIRED = "expired"
# Seconds a logged-out session is remembered, so that a sign-in whose store lookup raced the logout is refused.
REMEMBER_ENDED = 60.0


class SessionHolder(Protocol):
    """A connection signed in with a session, as the registry sees it."""

    def end_session(self, reason: str) -> None:
        """Tell the client its session ended (`session.ended`) and sign the connection out."""


class LiveSessions:
    """Open connections by session (keyed by the token's hash, never the token), with one expiry timer each."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._holders: dict[str, set[SessionHolder]] = {}
        self._timers: dict[str, IDelayedCall] = {}
        self._held: dict[SessionHolder, str] = {}
        self._ended: dict[str, float] = {}
        self._ended_order: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._holders)

    def add(self, session: str, holder: SessionHolder, expires: float) -> bool:
        """Record that `holder` is signed in with `session`, which expires at `expires` (clock seconds); False
        (and nothing recorded) when the session was logged out while the sign-in was looking it up."""
        if self._recently_ended(session):
            return False
        self.remove(holder)
        self._held[holder] = session
        self._holders.setdefault(session, set()).add(holder)
        if session not in self._timers:
            delay = max(expires - self._clock.seconds(), 0.0)
            self._timers[session] = self._clock.callLater(delay, self.end, session, EXPIRED)
        return True

    def _recently_ended(self, session: str) -> bool:
        now = self._clock.seconds()
        while self._ended_order and self._ended_order[0][0] <= now - REMEMBER_ENDED:
            at, old = self._ended_order.popleft()
            if self._ended.get(old) == at:
                del self._ended[old]
        return session in self._ended

    def remove(self, holder: SessionHolder) -> None:
        """Forget `holder` (it closed, or signed out or in again); the session's timer goes with its last holder."""
        session = self._held.pop(holder, None)
        if session is None:
            return
        holders = self._holders.get(session)
        if holders is not None:
            holders.discard(holder)
            if not holders:
                del self._holders[session]
                timer = self._timers.pop(session, None)
                if timer is not None and timer.active():
                    timer.cancel()

    def end(self, session: str, reason: str) -> int:
        """End `session` on every connection holding it (`reason`: logged_out or expired); returns how many."""
        timer = self._timers.pop(session, None)
        if timer is not None and timer.active():
            timer.cancel()
        if reason == LOGGED_OUT:
            now = self._clock.seconds()
            self._ended[session] = now
            self._ended_order.append((now, session))
        holders = self._holders.pop(session, set())
        for holder in holders:
            self._held.pop(holder, None)
        for holder in holders:
            try:
                holder.end_session(reason)
            except Exception:
                log.failure("ending a session on a connection failed")
        if holders:
            log.info("session ended ({reason}) on {n} connections", reason=reason, n=len(holders))
        return len(holders)
