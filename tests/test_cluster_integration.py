"""The cluster with real processes: three `twistd gamesvc` nodes sharing one store (the session's embedded
database, a fresh database per test) and one redis-server; players on different nodes play in one room."""

from __future__ import annotations

import secrets
import signal
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted

from tests.conftest import fresh_database_uri
from tests.play import next_event, play_out, resumed, signed_in, until_state
from tests.processes import Twistd
from tests.support import Running, WsClient, http

pytestmark = pytest.mark.integration

OPTIONS = ("--lease-seconds", "3", "--lease-renew-seconds", "0.5", "--store-timeout", "2", "--message-rate", "1000",
           "--message-burst", "1000", "--grace-seconds", "60", "--turn-seconds", "60")


class Cluster:
    """Three nodes named a, b and c (with a per-test suffix); `running[name]` reaches one."""

    def __init__(self, tmp_path: Path, mongo_uri: str, redis_uri: str) -> None:
        suffix = secrets.token_hex(3)
        uri = fresh_database_uri(mongo_uri)
        self.nodes: dict[str, Twistd] = {}
        for name in ("a", "b", "c"):
            data = tmp_path / name / "data"
            data.mkdir(parents=True)
            self.nodes[name] = Twistd(
                data, "--mongo-uri", uri, "--redis-uri", redis_uri, "--node-id", f"{name}-{suffix}", *OPTIONS
            )
        self.running = {name: Running(None, node.port) for name, node in self.nodes.items()}  # type: ignore[arg-type]

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


@pytest.fixture
def nodes(tmp_path: Path, mongo_uri: str, redis_server: Any) -> Any:
    cluster = Cluster(tmp_path, mongo_uri, redis_server.uri)
    try:
        yield cluster
    finally:
        if not redis_server.running:
            redis_server.start()
        cluster.stop()


async def three_players(reactor: Any, nodes: Cluster) -> tuple[dict[str, WsClient], dict[str, str], str]:
    """carol (on c) creates a room; ann (on a) and bob (on b) join it; returns clients, tokens and the room id."""
    signed = {
        name: await signed_in(reactor, nodes.running[node], name) for name, node in
        (("carol", "c"), ("ann", "a"), ("bob", "b"))
    }
    clients = {name: client for name, (client, _) in signed.items()}
    tokens = {name: token for name, (_, token) in signed.items()}
    room_id = (await clients["carol"].ok("room.create", name="cluster", seats=4))["room"]["id"]
    for name in ("ann", "bob"):
        await clients[name].ok("room.join", room=room_id)
    return clients, tokens, room_id


async def stats(reactor: Any, running: Running, token: str) -> tuple[int, int]:
    """(wins, games) of the user of `token`, read through `me`."""
    client = await resumed(reactor, running, token)
    try:
        user = (await client.ok("me"))["user"]
        return user["wins"], user["games"]
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_players_on_different_nodes_play_a_whole_game_in_a_room_owned_by_a_third(reactor: Any, nodes: Cluster) -> None:
    """Lobby events reach a watcher on every node and GET /api/rooms on each lists the room; chat keeps its order
    across nodes; ann's newer tab on node b takes her seat over from node a; the game plays out and counts once."""
    watchers = {}
    for name in ("a", "b", "c"):
        watchers[name], _ = await signed_in(reactor, nodes.running[name], f"watch{name}")
        await watchers[name].ok("lobby.watch")
    clients, tokens, room_id = await three_players(reactor, nodes)
    for name, watcher in watchers.items():
        while (await watcher.event("lobby.room"))["room"]["id"] != room_id:
            pass
        status, _headers, body = await http(reactor, "GET", nodes.running[name].url + "/api/rooms")
        assert status == 200 and room_id in [r["id"] for r in body["rooms"]]
    for name in ("ann", "bob", "carol", "ann", "bob"):
        await clients[name].ok("room.chat", text=f"from {name}")
    for client in clients.values():
        lines = [(await client.event("room.chat"))["text"] for _ in range(5)]
        assert lines == ["from ann", "from bob", "from carol", "from ann", "from bob"]
    tab = await resumed(reactor, nodes.running["b"], tokens["ann"])
    await tab.ok("room.join", room=room_id)
    detached = await clients["ann"].event("room.detached")
    assert detached == {"event": "room.detached", "room": room_id, "reason": "taken_over"}
    clients["ann"] = tab
    for name in ("carol", "ann", "bob"):
        await clients[name].ok("room.ready", ready=True)
    over = await play_out(clients, clients["bob"])
    assert (await clients["ann"].event("game.over"))["game"] == over["game"]
    for name in ("carol", "ann", "bob"):
        for _ in range(50):
            if (await stats(reactor, nodes.running["a"], tokens[name]))[1] == 1:
                break
        assert (await stats(reactor, nodes.running["a"], tokens[name]))[1] == 1


@pytest_twisted.ensureDeferred
async def test_sigkill_of_the_owner_mid_game_another_node_takes_the_room_over(reactor: Any, nodes: Cluster) -> None:
    """The owner is SIGKILLed mid-game: after its lease another node owns the room, the players on surviving nodes
    are re-attached without doing anything, the player of the dead node resumes on another node and joins again,
    and the game finishes with its result counted once."""
    clients, tokens, room_id = await three_players(reactor, nodes)
    for name in ("carol", "ann", "bob"):
        await clients[name].ok("room.ready", ready=True)
    turn = await next_event(clients["ann"], "game.turn")
    await clients[turn["player"]].ok("game.roll")
    nodes.nodes["c"].process.send_signal(signal.SIGKILL)
    nodes.nodes["c"].process.wait(timeout=10)
    state = await until_state(clients["ann"], lambda s: s["status"] == "playing" and not next(
        p["connected"] for p in s["players"] if p["username"] == "carol"))
    assert state["game"] is not None
    carol = await resumed(reactor, nodes.running["a"], tokens["carol"])
    rejoined = await carol.ok("room.join", room=room_id)
    assert rejoined["room"]["status"] == "playing"
    clients["carol"] = carol
    clients["ann"].events.clear()
    over = await play_out(clients, carol)
    assert over["room"] == room_id
    for name in ("carol", "ann", "bob"):
        for _ in range(50):
            if (await stats(reactor, nodes.running["b"], tokens[name]))[1] == 1:
                break
        assert (await stats(reactor, nodes.running["b"], tokens[name]))[1] == 1


@pytest_twisted.ensureDeferred
async def test_redis_restarted_mid_game_play_resumes(reactor: Any, nodes: Cluster, redis_server: Any) -> None:
    """Redis restarts mid-game: cross-node ops answer unavailable meanwhile, and once it is back the nodes
    re-attach their members and the game plays on to its end."""
    clients, tokens, room_id = await three_players(reactor, nodes)
    for name in ("carol", "ann", "bob"):
        await clients[name].ok("room.ready", ready=True)
    redis_server.stop()
    reply = await clients["ann"].request("room.chat", text="anyone?")
    assert not reply["ok"] and reply["error"] == "unavailable"
    redis_server.start()
    for _ in range(100):
        reply = await clients["ann"].request("room.chat", text="back")
        if reply["ok"]:
            break
        await _sleep(reactor, 0.2)
    assert reply["ok"]
    over = await play_out(clients, clients["carol"])
    assert over["room"] == room_id


def _sleep(reactor: Any, seconds: float) -> Any:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds)
