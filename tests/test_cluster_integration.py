"""The cluster with real processes: three `twistd gamesvc` nodes sharing one store (the session's embedded
database, a fresh database per test) and one redis-server; players on different nodes play in one room."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.cluster_harness import Cluster, cluster, make_cluster  # noqa: F401
from tests.play import next_event, play_out, resumed, signed_in, until_state
from tests.support import WsClient, http

pytestmark = pytest.mark.integration

CLUSTER_NODES = 3
CLUSTER_ARGS = ("--lease-seconds", "3", "--lease-renew-seconds", "0.5", "--store-timeout", "2", "--message-rate",
                "1000", "--message-burst", "1000", "--grace-seconds", "60", "--turn-seconds", "60")
# Where each player connects: carol's node (3) creates the room and owns it.
NODE_OF = {"ann": 1, "bob": 2, "carol": 3}


async def three_players(reactor: Any, cluster: Cluster) -> tuple[dict[str, WsClient], dict[str, str], str]:
    """carol (on node 3) creates a room; ann (on 1) and bob (on 2) join it; returns clients, tokens and the room."""
    signed = {name: await signed_in(reactor, cluster.node(NODE_OF[name]), name) for name in ("carol", "ann", "bob")}
    clients = {name: client for name, (client, _) in signed.items()}
    tokens = {name: token for name, (_, token) in signed.items()}
    room_id = (await clients["carol"].ok("room.create", name="cluster", seats=4))["room"]["id"]
    for name in ("ann", "bob"):
        await clients[name].ok("room.join", room=room_id)
    return clients, tokens, room_id


async def checkpointed(reactor: Any, cluster: Cluster, room_id: str, predicate: Any) -> None:
    """Wait until the room's checkpoint in the shared store satisfies `predicate` (a crash loses what is not)."""
    from gamesvc.store.mongo import MongoStore

    store = MongoStore(reactor, cluster.mongo_uri, timeout=5)
    await store.start()
    try:
        for _ in range(200):
            snapshot = await store.load_room(room_id)
            if snapshot is not None and predicate(snapshot):
                return
            await _sleep(reactor, 0.05)
        raise AssertionError(f"room {room_id} was not checkpointed as expected")
    finally:
        await store.stop()


async def stats(reactor: Any, running: Any, token: str) -> tuple[int, int]:
    """(wins, games) of the user of `token`, read through `me`."""
    client = await resumed(reactor, running, token)
    try:
        user = (await client.ok("me"))["user"]
        return user["wins"], user["games"]
    finally:
        await client.close()


async def counted_once(reactor: Any, running: Any, tokens: list[str]) -> None:
    """Each player's record (read through `running`) counts exactly one game, once the result has been written."""
    for token in tokens:
        for _ in range(50):
            if (await stats(reactor, running, token))[1] == 1:
                break
        assert (await stats(reactor, running, token))[1] == 1

@pytest_twisted.ensureDeferred
async def test_players_on_different_nodes_play_a_whole_game_in_a_room_owned_by_a_third(reactor: Any, cluster: Cluster) -> None:
    """Lobby events reach a watcher on every node and GET /api/rooms on each lists the room; chat keeps its order
    across nodes; ann's newer tab on node b takes her seat over from node a; the game plays out and counts once."""
    watchers = {}
    for name in (1, 2, 3):
        watchers[name], _ = await signed_in(reactor, cluster.node(name), f"watch{name}")
        await watchers[name].ok("lobby.watch")
    clients, tokens, room_id = await three_players(reactor, cluster)
    for name, watcher in watchers.items():
        while (await watcher.event("lobby.room"))["room"]["id"] != room_id:
            pass
        status, _headers, body = await http(reactor, "GET", cluster.node(name).url + "/api/rooms")
        assert status == 200 and room_id in [r["id"] for r in body["rooms"]]
    for name in ("ann", "bob", "carol", "ann", "bob"):
        await clients[name].ok("room.chat", text=f"from {name}")
    for client in clients.values():
        lines = [(await client.event("room.chat"))["text"] for _ in range(5)]
        assert lines == ["from ann", "from bob", "from carol", "from ann", "from bob"]
    tab = await resumed(reactor, cluster.node(2), tokens["ann"])
    await tab.ok("room.join", room=room_id)
    detached = await clients["ann"].event("room.detached")
    assert detached == {"event": "room.detached", "room": room_id, "reason": "taken_over"}
    clients["ann"] = tab
    for name in ("carol", "ann", "bob"):
        await clients[name].ok("room.ready", ready=True)
    over = await play_out(clients, clients["bob"])
    assert (await clients["ann"].event("game.over"))["game"] == over["game"]
    await counted_once(reactor, cluster.node(1), [tokens[name] for name in ("carol", "ann", "bob")])


@pytest_twisted.ensureDeferred
async def test_sigkill_of_the_owner_mid_game_another_node_takes_the_room_over(reactor: Any, cluster: Cluster) -> None:
    """The owner is SIGKILLed mid-game: after its lease another node owns the room, the players on surviving nodes
    are re-attached without doing anything, the player of the dead node resumes on another node and joins again,
    and the game finishes with its result counted once."""
    clients, tokens, room_id = await three_players(reactor, cluster)
    for name in ("carol", "ann", "bob"):
        await clients[name].ok("room.ready", ready=True)
    turn = await next_event(clients["ann"], "game.turn")
    await clients[turn["player"]].ok("game.roll")
    await checkpointed(reactor, cluster, room_id, lambda snap: snap["status"] == "playing" and snap["entries"])
    await cluster.kill(3)
    state = await until_state(clients["ann"], lambda s: s["status"] == "playing" and not next(
        p["connected"] for p in s["players"] if p["username"] == "carol"))
    assert state["game"] is not None
    carol = await resumed(reactor, cluster.node(1), tokens["carol"])
    rejoined = await carol.ok("room.join", room=room_id)
    assert rejoined["room"]["status"] == "playing"
    clients["carol"] = carol
    clients["ann"].events.clear()
    over = await play_out(clients, carol)
    assert over["room"] == room_id
    await counted_once(reactor, cluster.node(2), [tokens[name] for name in ("carol", "ann", "bob")])


@pytest_twisted.ensureDeferred
async def test_redis_restarted_mid_game_play_resumes(reactor: Any, cluster: Cluster) -> None:
    """Redis restarts mid-game: cross-node ops answer unavailable meanwhile, and once it is back the nodes
    re-attach their members and the game plays on to its end."""
    clients, tokens, room_id = await three_players(reactor, cluster)
    for name in ("carol", "ann", "bob"):
        await clients[name].ok("room.ready", ready=True)
    cluster.redis.stop()
    reply = await clients["ann"].request("room.chat", text="anyone?")
    assert not reply["ok"] and reply["error"] == "unavailable"
    cluster.redis.start()
    # Each node reconnects on its own backoff: wait until both players of other nodes are heard again.
    for name in ("ann", "bob"):
        for _ in range(100):
            reply = await clients[name].request("room.chat", text="back")
            if reply["ok"]:
                break
            await _sleep(reactor, 0.2)
        assert reply["ok"]
    over = await play_out(clients, clients["carol"])
    assert over["room"] == room_id


def _sleep(reactor: Any, seconds: float) -> Any:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds)


@pytest_twisted.ensureDeferred
async def test_sigterm_hands_the_rooms_over_at_once(reactor: Any, make_cluster: Any) -> None:
    """A node stopped with SIGTERM releases its rooms: with leases of a minute, another node owns the room within
    seconds, the members elsewhere are re-attached, and the stopped node's player finds the room from another node."""
    cluster = await make_cluster(nodes=3, args=("--lease-seconds", "60", *CLUSTER_ARGS[4:]))
    clients, tokens, room_id = await three_players(reactor, cluster)
    for name in ("carol", "ann", "bob"):
        await clients[name].ok("room.ready", ready=True)
    started = reactor.seconds()
    await cluster.stop(3)
    await until_state(clients["ann"], lambda s: not next(p["connected"] for p in s["players"] if p["username"] == "carol"))
    assert reactor.seconds() - started < 30
    carol = await resumed(reactor, cluster.node(1), tokens["carol"])
    rejoined = await carol.ok("room.join", room=room_id)
    assert rejoined["room"]["status"] == "playing"
    clients["carol"] = carol
    clients["ann"].events.clear()
    over = await play_out(clients, carol)
    assert over["room"] == room_id
