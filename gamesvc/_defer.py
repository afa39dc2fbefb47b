"""Small Deferred helpers shared by the services."""

from __future__ import annotations

import functools
from typing import Any, Callable, Coroutine, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")


def deferred(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Deferred[T]]:
    """Wrap an ``async def`` so that calling it returns a Deferred (the house style for service methods)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Deferred[T]:
        return Deferred.fromCoroutine(fn(*args, **kwargs))

    return wrapper

