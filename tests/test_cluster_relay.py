"""Players on any node, rooms on their owner: ops forwarded over the bus and events relayed back, on simulated
nodes (memory services sharing a Clock, a memory store and a MemoryHub), through the protocol's own op handlers."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.python.failure import Failure

from gamesvc.cluster.relay import RELAYED_OPS
from gamesvc.errors import GameError
from gamesvc.protocol import OPS
from tests.support import FakeMind, ScriptedDice, memory_services
from tests.test_cluster_leases import cluster


class FakeConn(FakeMind):
    """A signed-in connection of one node, as the op handlers and the relay see it."""

    def __init__(self, username: str, node: Any) -> None:
        super().__init__(username)
        self.factory = type("Factory", (), {"services": node})()


def run(clock: Any, node: Any, conn: FakeConn, op: str, **fields: Any) -> Any:
    """Run one op as the protocol does and deliver the bus's messages until it answers: its fields, or raise."""
    name = op
    handler = OPS[name][0]
    message = {"op": name, **fields}
    if name in RELAYED_OPS:
        d = node.relay.handle(conn, name, message, handler)
    else:
        d = ensureDeferred(handler(conn, message))
    results: list[Any] = []
    d.addBoth(results.append)
    for _ in range(10):
        if results:
            break
        clock.advance(0)
    assert results, f"{name} did not answer"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def three_nodes(**overrides: Any) -> tuple[Any, Any, list[Any]]:
    clock, store, nodes = cluster("a", "b", "c", **overrides)
    for node in nodes:
        node.cluster.start()
    clock.advance(0)
    return clock, store, nodes


def test_players_on_two_nodes_play_a_whole_game_in_a_room_owned_by_a_third() -> None:
    """carol creates a room on c; ann (on a) and bob (on b) join it through their nodes; everyone readies and plays
    to the end: all see the same state versions, rolls and game.over, and the result is counted once."""
    clock, store, (a, b, c) = three_nodes(dice=ScriptedDice(*[5] * 300), turn_seconds=30)
    for name in ("carol", "ann", "bob"):
        store.users[name] = {"key": name, "username": name, "password_hash": b"", "wins": 0, "games": 0,
                             "created": 0.0, "counted": set()}
    carol, ann, bob = FakeConn("carol", c), FakeConn("ann", a), FakeConn("bob", b)
    room_id = run(clock, c, carol, "room.create", name="t", seats=3)["room"]["id"]
    joined = run(clock, a, ann, "room.join", room=room_id)
    assert [p["username"] for p in joined["room"]["players"]] == ["carol", "ann"]
    run(clock, b, bob, "room.join", room=room_id.lower())
    for conn, node in ((carol, c), (ann, a), (bob, b)):
        run(clock, node, conn, "room.ready", ready=True)
    clock.advance(0)
    assert ann.last("game.turn")["player"] == "carol"
    guard = 0
    while not carol.events("game.over") and guard < 200:
        guard += 1
        turn = carol.last("game.turn")["player"]
        conn, node = {"carol": (carol, c), "ann": (ann, a), "bob": (bob, b)}[turn]
        run(clock, node, conn, "game.roll")
        clock.advance(0)
    over = carol.last("game.over")
    clock.advance(0)
    for mind in (ann, bob):
        assert mind.last("game.over") == over
        assert [e["n"] for e in mind.events("game.rolled")] == [e["n"] for e in carol.events("game.rolled")]
        versions = [m["room"]["version"] for m in mind.events("room.state")]
        assert versions == sorted(versions)
    for _ in range(5):
        clock.advance(1)
    assert sum(u["games"] for u in store.users.values()) == 3
    assert sum(u["wins"] for u in store.users.values()) == 1


def test_chat_order_holds_across_nodes_and_each_event_is_published_once() -> None:
    """Chat lines from players on three nodes reach everyone in the owner's order; each of the room's broadcasts
    is one message on the room's channel, whatever the number of remote members."""
    clock, store, (a, b, c) = three_nodes()
    carol, ann, bob, ben = FakeConn("carol", c), FakeConn("ann", a), FakeConn("bob", b), FakeConn("ben", b)
    room_id = run(clock, c, carol, "room.create", name="t", seats=4)["room"]["id"]
    for conn, node in ((ann, a), (bob, b), (ben, b)):
        run(clock, node, conn, "room.join", room=room_id)
    published: list[str] = []
    original = c.bus.publish

    def counting(channel: str, payload: bytes) -> Any:
        published.append(channel)
        return original(channel, payload)

    c.bus.publish = counting  # type: ignore[method-assign]
    lines = [(ann, a, "one"), (bob, b, "two"), (carol, c, "three"), (ben, b, "four"), (ann, a, "five")]
    for conn, node, text in lines:
        run(clock, node, conn, "room.chat", text=text)
    clock.advance(0)
    for mind in (carol, ann, bob, ben):
        assert [m["text"] for m in mind.events("room.chat")] == ["one", "two", "three", "four", "five"]
    assert published.count(f"gamesvc.room.{room_id}") == 5


def test_replies_and_errors_are_those_of_one_node() -> None:
    """Errors of a forwarded op come back as the owner gave them (code and message); an unknown room is
    room_not_found from the edge itself."""
    clock, store, (a, b, c) = three_nodes()
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    with pytest.raises(GameError) as e:
        run(clock, a, ann, "game.roll")
    assert e.value.code == "game_not_started"
    with pytest.raises(GameError) as e:
        run(clock, b, FakeConn("bob", b), "room.join", room=room_id)
    assert e.value.code == "room_full"
    with pytest.raises(GameError) as e:
        run(clock, b, FakeConn("dan", b), "room.join", room="ZZZZZZ")
    assert e.value.code == "room_not_found"
    with pytest.raises(GameError) as e:
        run(clock, a, ann, "room.create", name="other", seats=2)
    assert e.value.code == "already_in_room"


def test_a_tab_on_another_node_takes_the_seat_over() -> None:
    """ann's newer tab on node b joins the room she sits in through node a: her tab on a gets room.detached
    (taken_over) and b's tab plays from then on."""
    clock, store, (a, b, c) = three_nodes()
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    tab = FakeConn("ann", b)
    reply = run(clock, b, tab, "room.join", room=room_id)
    clock.advance(0)
    assert ann.last("room.detached") == {"event": "room.detached", "room": room_id, "reason": "taken_over"}
    assert [p["connected"] for p in reply["room"]["players"]] == [True, True]
    run(clock, b, tab, "room.chat", text="hi")
    clock.advance(0)
    assert tab.last("room.chat")["text"] == "hi" and not ann.events("room.chat")


def test_a_closed_player_connection_starts_the_grace_on_the_owner() -> None:
    """When a player's connection on another node closes, the owner shows them disconnected and keeps the seat."""
    clock, store, (a, b, c) = three_nodes()
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    a.disconnected(ann)
    clock.advance(0)
    assert [p["connected"] for p in carol.last("room.state")["room"]["players"]] == [True, False]
    again = FakeConn("ann", b)
    run(clock, b, again, "room.join", room=room_id)
    assert [p["connected"] for p in carol.last("room.state")["room"]["players"]] == [True, True]


def test_a_forwarded_op_without_an_answer_is_unavailable() -> None:
    """When the owner does not answer within --store-timeout (cut off from Redis), or this node's bus is down,
    a forwarded op answers `unavailable`; the node's own rooms keep working."""
    clock, store, (a, b, c) = three_nodes(store_timeout=2)
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    c.bus._hub.outage(c.bus)
    d = a.relay.handle(ann, "room.chat", {"op": "room.chat", "text": "x"}, OPS["room.chat"][0])
    failures: list[Any] = []
    d.addErrback(failures.append)
    clock.advance(2)
    assert failures and failures[0].value.code == "unavailable"
    a.bus._hub.outage(a.bus)
    with pytest.raises(GameError) as e:
        run(clock, a, ann, "room.chat", text="y")
    assert e.value.code == "unavailable"
    local = FakeConn("lee", a)
    run(clock, a, local, "room.create", name="mine", seats=2)
    run(clock, a, local, "room.chat", text="still here")
    assert local.last("room.chat")["text"] == "still here"


def test_members_follow_their_room_to_its_new_owner_after_a_node_dies() -> None:
    """The owner dies (cut off, no more renewals); another node takes the room over after the lease; the members on
    surviving nodes are re-attached by their nodes (a fresh room.state, seats connected) and play on, and the
    player whose node died comes back through a surviving node."""
    clock, store, (a, b, c) = three_nodes(lease_seconds=10, lease_renew_seconds=3, dice=ScriptedDice(3, 4, 5, 2))
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    run(clock, c, carol, "room.ready", ready=True)
    run(clock, a, ann, "room.ready", ready=True)
    run(clock, c, carol, "game.roll")
    clock.advance(0)
    c.cluster._running = False  # SIGKILL: no more rounds, and nothing from it reaches the bus
    c.bus._hub.outage(c.bus)
    for _ in range(5):
        clock.advance(3)
    owner = store.rooms[room_id]["owner"]
    assert owner in ("a", "b")
    new = {"a": a, "b": b}[owner]
    state = ann.last("room.state")["room"]
    assert state["status"] == "playing" and state["turn"] == "ann"
    assert [p["connected"] for p in state["players"]] == [False, True]
    run(clock, a, ann, "game.roll")
    comeback = FakeConn("carol", b)
    reply = run(clock, b, comeback, "room.join", room=room_id)
    assert [p["connected"] for p in reply["room"]["players"]] == [True, True]
    assert reply["room"]["players"][0]["position"] == 3 and new.rooms.rooms[room_id].game.current == "carol"


def test_after_a_redis_outage_members_are_re_attached_even_when_the_owner_comes_back_later() -> None:
    """During an outage the owner shows its remote members disconnected; when the bus is back the members' node
    re-attaches them (again and again while the owner is not back yet), and they play on."""
    clock, store, (a, b, c) = three_nodes(store_timeout=2)
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    hub = a.bus._hub
    hub.outage(a.bus, b.bus, c.bus)
    clock.advance(0)
    assert [p["connected"] for p in carol.last("room.state")["room"]["players"]] == [True, False]
    hub.recover(a.bus, b.bus)
    clock.advance(2)
    clock.advance(0)
    hub.recover(c.bus)
    clock.advance(2)
    clock.advance(0)
    assert [p["connected"] for p in carol.last("room.state")["room"]["players"]] == [True, True]
    assert [p["connected"] for p in ann.last("room.state")["room"]["players"]] == [True, True]
    assert not ann.events("room.detached")
    run(clock, a, ann, "room.chat", text="back")
    clock.advance(0)
    assert carol.last("room.chat")["text"] == "back"


def test_an_owner_that_dropped_a_nodes_members_asks_that_node_to_re_attach_them() -> None:
    """When the owner lost the bus while the members' node did not notice (or the node went silent for a while), the
    owner disconnects those members; once it hears from the node again it asks it to re-attach them."""
    clock, store, (a, b, c) = three_nodes(store_timeout=2)
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    hub = a.bus._hub
    hub.outage(c.bus)
    clock.advance(0)
    assert [p["connected"] for p in carol.last("room.state")["room"]["players"]] == [True, False]
    hub.recover(c.bus)
    for _ in range(3):
        clock.advance(0)
    assert [p["connected"] for p in carol.last("room.state")["room"]["players"]] == [True, True]
    run(clock, a, ann, "room.chat", text="still here")
    clock.advance(0)
    assert carol.last("room.chat")["text"] == "still here"


def test_a_request_waiting_on_a_dead_owner_answers_unavailable_as_soon_as_the_room_is_taken_over() -> None:
    """A roll forwarded to an owner that died waits for no timeout once another node took the room over: it answers
    `unavailable` then, and the next roll is served by the new owner."""
    clock, store, (a, b, c) = three_nodes(lease_seconds=4, store_timeout=30, dice=ScriptedDice(*[2] * 50))
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    run(clock, c, carol, "room.ready", ready=True)
    run(clock, a, ann, "room.ready", ready=True)
    run(clock, c, carol, "game.roll")
    c.cluster._running = False
    c.bus._hub.outage(c.bus)
    failures: list[Any] = []
    a.relay.handle(ann, "game.roll", {"op": "game.roll"}, OPS["game.roll"][0]).addErrback(failures.append)
    for _ in range(6):
        clock.advance(1)
    assert failures and failures[0].value.code == "unavailable"
    assert store.rooms[room_id]["owner"] in ("a", "b")
    run(clock, a, ann, "game.roll")
    clock.advance(0)
    assert ann.last("game.rolled")["player"] == "ann"


def test_me_names_a_seat_on_another_node() -> None:
    """`me` on a node names the room of another node where the user holds a seat (from the store's checkpoint for
    a connection that just arrived), so that a client reconnecting anywhere goes back to its game."""
    clock, store, (a, b, c) = three_nodes()
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    for name in ("ann", "nobody"):
        store.users[name] = {"key": name, "username": name, "password_hash": b"", "wins": 0, "games": 0,
                             "created": 0.0, "counted": set()}
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    clock.advance(0)
    assert run(clock, a, ann, "me")["room"] == room_id
    assert run(clock, b, FakeConn("ann", b), "me")["room"] == room_id
    assert run(clock, b, FakeConn("nobody", b), "me")["room"] is None


def test_cluster_metrics() -> None:
    """/metrics of a cluster node shows the rooms it owns, the ops it forwarded and served, and its takeovers; a node
    alone shows none of them."""
    clock, store, (a, b, c) = three_nodes()
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    run(clock, a, ann, "room.chat", text="hi")
    assert b"gamesvc_cluster_rooms_owned 1.0" in c.metrics.exposition()
    assert b"gamesvc_cluster_ops_served_total 2.0" in c.metrics.exposition()
    assert b"gamesvc_cluster_ops_forwarded_total 2.0" in a.metrics.exposition()
    assert b"gamesvc_cluster_takeovers_total 0.0" in a.metrics.exposition()
    assert b"gamesvc_cluster" not in memory_services().metrics.exposition()


def test_a_user_has_one_seat_in_the_whole_cluster() -> None:
    """A user seated in a room of node c (their connection gone, the seat waiting) cannot create a room on node a
    nor take a seat in another room: already_in_room names the seat; spectating elsewhere and taking the seat back
    still work."""
    clock, store, (a, b, c) = three_nodes()
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=2)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    a.disconnected(ann)
    clock.advance(0)
    other = run(clock, b, FakeConn("bob", b), "room.create", name="other", seats=2)["room"]["id"]
    again = FakeConn("ann", a)
    for op, fields in (("room.create", {"name": "x", "seats": 2}), ("room.join", {"room": other}),
                       ("room.quick_play", {})):
        with pytest.raises(GameError) as e:
            run(clock, a, again, op, **fields)
        assert e.value.code == "already_in_room" and room_id in e.value.message
    run(clock, a, again, "room.join", room=other, spectate=True)
    reply = run(clock, a, again, "room.join", room=room_id)
    assert [p["connected"] for p in reply["room"]["players"]] == [True, True]


def test_quick_play_picks_the_fullest_waiting_room_of_the_cluster() -> None:
    """Quick play on node a seats the player, ready, in the fullest public waiting room of the cluster, here one of
    node c's, through its owner; with none anywhere it opens a room on the player's own node."""
    clock, store, (a, b, c) = three_nodes()
    carol = FakeConn("carol", c)
    room_id = run(clock, c, carol, "room.create", name="t", seats=4)["room"]["id"]
    run(clock, b, FakeConn("bob", b), "room.join", room=room_id)
    run(clock, a, FakeConn("cy", a), "room.create", name="small", seats=4)  # one person: less full
    clock.advance(5)  # past the lobby's coalescing: every node knows both rooms as they are
    ann = FakeConn("ann", a)
    reply = run(clock, a, ann, "room.quick_play")
    assert reply["room"]["id"] == room_id
    assert [p["username"] for p in reply["room"]["players"]] == ["carol", "bob", "ann"]
    assert a.relay.remote_room_of(ann) == room_id
    run(clock, a, ann, "room.chat", text="hello")
    clock.advance(0)
    assert carol.last("room.chat")["text"] == "hello"
    lone = three_nodes()
    dan = FakeConn("dan", lone[2][0])
    opened = run(lone[0], lone[2][0], dan, "room.quick_play")["room"]["id"]
    assert opened in lone[2][0].rooms.rooms


def test_room_ops_of_a_room_this_node_owns_skip_the_relay_and_others_go_through_it() -> None:
    """While a connection is in a room of its own node (or in none), its room ops other than room.join need no
    relay; in another node's room every routed op, and room.join and the entry ops always, go through it."""
    clock, store, (a, b, c) = three_nodes()
    carol, ann, dan = FakeConn("carol", c), FakeConn("ann", a), FakeConn("dan", c)
    room_id = run(clock, c, carol, "room.create", name="t", seats=3)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    for name in ("room.chat", "game.roll", "room.ready", "room.leave", "room.add_bot", "room.configure"):
        assert not c.relay.routes(carol, name), name
        assert not c.relay.routes(dan, name), name
        assert a.relay.routes(ann, name), name
    for name in ("room.join", "room.create", "room.quick_play"):
        assert c.relay.routes(carol, name) and a.relay.routes(ann, name), name


def test_the_protocol_answers_a_room_op_at_once_when_the_relay_does_not_route_it() -> None:
    """In a cluster, a chat in a room of this node is answered during the frame's own call by the op's handler
    (the single node's path), without the relay's coroutine; a routed op still goes through the relay."""
    from gamesvc.auth import Account
    from tests.frames import Wire, request

    wire = Wire()
    routed: list[str] = []

    class Relay:
        """A relay that routes only room.leave, and records what it was asked to run."""

        def routes(self, conn: Any, name: str) -> bool:
            return name == "room.leave"

        def handler(self, name: str, handler: Any) -> Any:
            def run(conn: Any, message: dict) -> Any:
                routed.append(name)
                return ensureDeferred(_none())

            return run

    async def _none() -> None:
        return None

    wire.services.relay = Relay()
    wire.protocol.account = Account("ann", "ann")
    wire.services.rooms.create(wire.protocol, "t", 2, False)
    wire.take()
    wire.send(request("room.chat", 1, text="hi"), request("room.leave", 2))
    replies = wire.replies()
    assert [r.get("event") for r in replies if "event" in r] == ["room.chat"]
    assert [(r["re"], r["ok"]) for r in replies if "re" in r] == [(1, True), (2, True)]
    assert routed == ["room.leave"]


def test_a_crossing_chat_runs_no_coroutine_on_either_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chat (and a leave) of a player in another node's room is forwarded and served as plain Deferred calls:
    no coroutine of the relay is started on the edge or on the owner, and the chat still reaches everyone, the leave still
    ends the membership."""
    from twisted.internet.defer import Deferred

    clock, store, (a, b, c) = three_nodes()
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=3)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)
    started: list[Any] = []
    original = Deferred.fromCoroutine

    def counting(coro: Any) -> Any:
        if coro.cr_code.co_filename.endswith("relay.py"):
            started.append(coro.cr_code.co_name)
        return original(coro)

    monkeypatch.setattr(Deferred, "fromCoroutine", counting)
    results: list[Any] = []
    a.relay.handler("room.chat", OPS["room.chat"][0])(ann, {"op": "room.chat", "text": "hi"}).addBoth(results.append)
    clock.advance(0)
    clock.advance(0)
    assert results == [None] and started == []
    assert [m["text"] for m in carol.events("room.chat")] == [m["text"] for m in ann.events("room.chat")] == ["hi"]
    a.relay.handler("room.leave", OPS["room.leave"][0])(ann, {"op": "room.leave"}).addBoth(results.append)
    clock.advance(0)
    clock.advance(0)
    assert results == [None, None] and started == []
    assert not a.relay.is_remote(ann)


def test_an_owner_replies_internal_to_a_forwarded_op_that_fails_unexpectedly(monkeypatch: pytest.MonkeyPatch) -> None:
    """An op that raises something other than a GameError on the owner answers `internal` on the edge, as on
    one node, and the owner keeps serving."""
    clock, store, (a, b, c) = three_nodes()
    carol, ann = FakeConn("carol", c), FakeConn("ann", a)
    room_id = run(clock, c, carol, "room.create", name="t", seats=3)["room"]["id"]
    run(clock, a, ann, "room.join", room=room_id)

    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(c.rooms, "chat", broken)
    with pytest.raises(GameError) as e:
        run(clock, a, ann, "room.chat", text="hi")
    assert e.value.code == "internal"
    monkeypatch.undo()
    run(clock, a, ann, "room.chat", text="again")
    assert [m["text"] for m in carol.events("room.chat")] == ["again"]
