"""Give freed heap memory back to the operating system after large buffers are let go (glibc's malloc_trim).

Requests of up to --max-message-bytes (64 KiB) are below glibc's mmap threshold, so their buffers come from
the heap; when hundreds of connections that queued them close, the freed chunks sit between live objects
and the process keeps the memory (the memory flood benchmark kept +47 MiB of RSS). `malloc_trim(0)` returns
the free pages anywhere in the heap; it takes a few milliseconds, so it runs once, a moment after the first
such close, however many closes follow. Where the C library has no malloc_trim it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()
TRIM_DELAY = 1.0  # seconds: closes arriving together are trimmed for once


def _malloc_trim() -> Callable[[int], Any] | None:
    """glibc's malloc_trim, or None elsewhere."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


class HeapTrimmer:
    """Runs malloc_trim once, TRIM_DELAY seconds after the first request, however many requests come meanwhile."""

    def __init__(self, clock: IReactorTime, trim: Callable[[int], Any] | None = None) -> None:
        self._clock = clock
        self._trim = trim if trim is not None else _malloc_trim()
        self._call: IDelayedCall | None = None
        self.trims = 0

    def request(self) -> None:
        """Ask for a trim soon."""
        if self._call is None and self._trim is not None:
            self._call = self._clock.callLater(TRIM_DELAY, self._run)

    def _run(self) -> None:
        self._call = None
        self.trims += 1
        self._trim(0)  # type: ignore[misc]

    def stop(self) -> None:
        """Cancel a pending trim (at shutdown)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
