"""Shared fixtures: the reactor, a MongoDB URI (embedded server or GAMESVC_TEST_MONGO_URI), stores, and redis-server."""

from __future__ import annotations

import os
import secrets
from typing import Any, AsyncIterator, Iterator

import pytest
import pytest_twisted

from gamesvc.store.memory import MemoryStore
from tests.redis_server import redis_server  # noqa: F401  (the session's redis-server, for every test module)


@pytest.fixture
def reactor() -> Any:
    """The global reactor that pytest-twisted runs (imported here, never at module level)."""
    from twisted.internet import reactor as global_reactor

    return global_reactor


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MongoDB server for the session: GAMESVC_TEST_MONGO_URI when set, else the embedded nx-27017."""
    given = os.environ.get("GAMESVC_TEST_MONGO_URI")
    if given:
        yield given
        return
    from twisted.internet import reactor

    from gamesvc.embedded import EmbeddedMongo

    db = EmbeddedMongo(reactor, str(tmp_path_factory.mktemp("mongo")))
    db.startService()
    try:
        yield pytest_twisted.blockon(db.whenReady())
    finally:
        pytest_twisted.blockon(db.stopService())


def fresh_database_uri(base: str) -> str:
    """The URI `base` naming a database no other test uses."""
    scheme, _, rest = base.partition("://")
    hosts, _, tail = rest.partition("/")
    _, _, query = tail.partition("?")
    name = "gamesvc_test_" + secrets.token_hex(4)
    return f"{scheme}://{hosts}/{name}" + (f"?{query}" if query else "")


@pytest_twisted.async_yield_fixture(params=["memory", "mongo"])
async def store(request: pytest.FixtureRequest, reactor: Any, mongo_uri: str) -> AsyncIterator[Any]:
    """Each store implementation, started and empty."""
    if request.param == "memory":
        yield MemoryStore()
        return
    from gamesvc.store.mongo import MongoStore

    uri = fresh_database_uri(mongo_uri)
    mongo = MongoStore(reactor, uri, timeout=10)
    await mongo.start()
    try:
        yield mongo
    finally:
        await mongo.stop()


@pytest_twisted.async_yield_fixture
async def running(request: pytest.FixtureRequest, reactor: Any, mongo_uri: str) -> AsyncIterator[Any]:
    """The real service, started on a free port with a fresh database, stopped afterwards.

    A test module may set `SERVICE_OPTIONS` (a dict of settings) for its service.
    """
    from tests.support import start_service

    options = getattr(request.module, "SERVICE_OPTIONS", {})
    service = await start_service(reactor, fresh_database_uri(mongo_uri), **options)
    try:
        yield service
    finally:
        await service.service.stopService()
