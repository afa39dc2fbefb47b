"""Password hashing with bcrypt on a thread pool, so the reactor thread never waits for it."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import bcrypt
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer


class IHasher(Interface):
    """Hashes and checks passwords; both return Deferreds."""

    def hash(password: bytes) -> Deferred:
        """A new salted hash of `password`."""

    def check(password: bytes, hashed: bytes) -> Deferred:
        """True when `password` matches `hashed`."""

    def pending() -> int:
        """Hashing jobs queued or running."""


_thread_state = threading.local()


def lower_thread_priority(nice: int) -> None:
    """Raise the calling thread's niceness once (Linux: per thread), so that CPU-bound hashing yields to the reactor.

    bcrypt releases the GIL, but on a busy core its threads still take time slices from the reactor thread;
    at a lower priority they use what the reactor leaves.
    """
    if nice <= 0 or getattr(_thread_state, "nice", 0) >= nice:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # not Linux, or not allowed: hashing still works, at normal priority
        pass
    _thread_state.nice = nice


@implementer(IHasher)
class BcryptHasher:
    """bcrypt at a configurable cost, run on a dedicated thread pool at a lower CPU priority."""

    def __init__(self, reactor: IReactorFromThreads, pool: ThreadPool, cost: int, nice: int = 10) -> None:
        self._reactor = reactor
        self._pool = pool
        self._cost = cost
        self._nice = nice
        self._pending = 0

    def _run(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        self._pending += 1

        def done(result: object) -> object:
            self._pending -= 1
            return result

        def work() -> Any:
            lower_thread_priority(self._nice)
            return fn(*args)

        return deferToThreadPool(self._reactor, self._pool, work).addBoth(done)

    def hash(self, password: bytes) -> Deferred:
        return self._run(lambda: bcrypt.hashpw(password, bcrypt.gensalt(self._cost)))

    def check(self, password: bytes, hashed: bytes) -> Deferred:
        return self._run(bcrypt.checkpw, password, hashed)

    def pending(self) -> int:
        return self._pending


@implementer(IHasher)
class PlainHasher:
    """A synchronous, insecure stand-in for unit tests; counts its checks."""

    def __init__(self) -> None:
        self.checks = 0
        self.hashes = 0

    def hash(self, password: bytes) -> Deferred:
        self.hashes += 1
        return succeed(b"plain$" + password)

    def check(self, password: bytes, hashed: bytes) -> Deferred:
        self.checks += 1
        return succeed(hashed == b"plain$" + password)

    def pending(self) -> int:
        return 0
