"""Small Deferred helpers shared by the services."""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")


def deferred(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Deferred[T]]:
    """Wrap an ``async def`` so that calling it returns a Deferred (the house style for service methods)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Deferred[T]:
        return Deferred.fromCoroutine(fn(*args, **kwargs))

    return wrapper


async def gather(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """Await several Deferreds/coroutines concurrently; the first failure is raised."""
    from twisted.internet.defer import ensureDeferred, gatherResults

    results = await gatherResults([ensureDeferred(a) for a in awaitables], consumeErrors=True)
    return list(results)
