"""Rate limits on an injected clock: sliding windows for logins and signups, token buckets for messages."""

from __future__ import annotations

from collections import deque

from twisted.internet.interfaces import IReactorTime


class SlidingWindow:
    """At most `limit` events per key within the last `window` seconds."""

    # Sweep idle keys every so many hits so that many one-off keys cannot grow memory without bound.
    SWEEP_EVERY = 1024

    def __init__(self, clock: IReactorTime, limit: int, window: float) -> None:
        self._clock = clock
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}
        self._hits = 0

    def _recent(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may act again, or None when it may act now."""
        now = self._clock.seconds()
        events = self._recent(key, now)
        if events is None or len(events) < self.limit:
            return None
        # The key may act again once enough events have left the window to bring the count below the limit.
        return max(events[-self.limit] + self.window - now, 0.001)

    def hit(self, key: str) -> float:
        """Count one event for `key`; returns its time, for `undo`."""
        now = self._clock.seconds()
        self._events.setdefault(key, deque()).append(now)
        self._hits += 1
        if self._hits % self.SWEEP_EVERY == 0:
            for stale in list(self._events):
                self._recent(stale, now)
        return now

    def undo(self, key: str, at: float) -> None:
        """Take back one event of `key` counted at time `at` (no error when it is already gone)."""
        events = self._events.get(key)
        if events is None:
            return
        try:
            events.remove(at)
        except ValueError:
            return
        if not events:
            del self._events[key]

    def reset(self, key: str) -> None:
        """Forget `key`'s events."""
        self._events.pop(key, None)

    def __len__(self) -> int:
        return len(self._events)


class TokenBucket:
    """A bucket of `burst` tokens refilled at `rate` per second; each message takes one."""

    __slots__ = ("_clock", "_rate", "_burst", "_tokens", "_last")

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = clock.seconds()

    def take(self) -> bool:
        """Take a token if there is one; False means the caller is over the limit."""
        now = self._clock.seconds()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next token."""
        return max((1.0 - self._tokens) / self._rate, 0.0)
