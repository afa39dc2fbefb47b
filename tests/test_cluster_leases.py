"""Room ownership in a cluster, on simulated nodes (memory services sharing a Clock, a memory store and a MemoryHub):
leases taken, renewed, taken over after a node dies, fenced checkpoints, and rooms handed over at shutdown."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from gamesvc.bus import MemoryHub
from gamesvc.store.memory import MemoryStore
from tests.support import FakeMind, ScriptedDice, memory_services


def cluster(*names: str, **overrides: Any) -> tuple[Clock, MemoryStore, list[Any]]:
    """Nodes named `names` on one clock, store and hub, their buses started (their cluster rounds not yet)."""
    clock = Clock()
    clock.advance(1_800_000_000)
    store, hub = MemoryStore(), MemoryHub(clock)
    nodes = []
    for name in names:
        services = memory_services(clock=clock, store=store, bus=hub.bus(), node_id=name, **overrides)
        services.bus.start()
        nodes.append(services)
    return clock, store, nodes


def playing_room(node: Any) -> tuple[str, FakeMind, FakeMind]:
    """ann and bob on `node` start a game in a room it creates."""
    ann, bob = FakeMind("ann"), FakeMind("bob")
    room_id = node.rooms.create(ann, "t", 2, False)["room"]["id"]
    node.rooms.join(bob, room_id)
    node.rooms.ready(ann, True)
    node.rooms.ready(bob, True)
    return room_id, ann, bob


def test_a_new_room_gets_a_lease_and_fenced_checkpoints() -> None:
    """The node that creates a room owns it (epoch 1) and its checkpoints carry the epoch; the lease is renewed."""
    clock, store, (a,) = cluster("a", lease_seconds=10, lease_renew_seconds=3)
    a.cluster.start()
    room_id, ann, _bob = playing_room(a)
    clock.advance(0)
    doc = store.rooms[room_id]
    assert (doc["owner"], doc["epoch"], doc["lease_expires"]) == ("a", 1, clock.seconds() + 10)
    assert doc["status"] == "playing" and doc["version"] == a.rooms.rooms[room_id].version
    clock.advance(3)
    assert store.rooms[room_id]["lease_expires"] == clock.seconds() + 10


def test_the_room_of_a_dead_node_is_taken_over_after_its_lease_and_the_game_goes_on() -> None:
    """When the owner stops renewing (SIGKILL), another node takes the room over once the lease expired, from its
    checkpoint: the game where it was, players disconnected with their grace; they rejoin there and finish."""
    clock, store, (a, b) = cluster("a", "b", lease_seconds=10, lease_renew_seconds=3, dice=ScriptedDice(3, 4, 5))
    room_id, ann, bob = playing_room(a)  # a never runs its rounds: as good as dead once its lease runs out
    a.rooms.roll(ann)
    clock.advance(0)
    b.cluster.start()
    clock.advance(0)
    assert room_id not in b.rooms.rooms  # the lease still runs
    for _ in range(4):
        clock.advance(3)
    room = b.rooms.rooms[room_id]
    assert store.rooms[room_id]["owner"] == "b" and store.rooms[room_id]["epoch"] == 2
    assert room.game.positions == {"ann": 3, "bob": 0} and room.game.current == "bob"
    assert all(seat.mind is None for seat in room.players)
    ann2, bob2 = FakeMind("ann"), FakeMind("bob")
    b.rooms.join(ann2, room_id)
    b.rooms.join(bob2, room_id)
    b.rooms.roll(bob2)
    assert bob2.last("game.rolled")["n"] == 1
    assert b.cluster.taken_over == 1


def test_a_node_that_lost_its_lease_cannot_write_and_gives_the_room_up() -> None:
    """A node whose lease was taken over (it was cut off too long) has its checkpoints refused by the epoch, and its
    next round gives the room up: its members get room.detached "moved"."""
    clock, store, (a, b) = cluster("a", "b", lease_seconds=10, lease_renew_seconds=3, dice=ScriptedDice(3, 4))
    room_id, ann, bob = playing_room(a)
    clock.advance(0)
    b.cluster.start()
    clock.advance(12)  # b takes the room over: a never renewed
    assert store.rooms[room_id]["owner"] == "b"
    taken_version = store.rooms[room_id]["version"]
    a.rooms.roll(ann)  # a still thinks it owns the room
    clock.advance(0)
    assert store.rooms[room_id]["version"] == taken_version and store.rooms[room_id]["entries"] == []
    a.cluster.start()
    clock.advance(0)
    assert room_id not in a.rooms.rooms
    assert ann.last("room.detached") == {"event": "room.detached", "room": room_id, "reason": "moved"}
    assert a.rooms.seat_of("ann") is None


def test_shutdown_hands_the_rooms_over_at_once() -> None:
    """A node that stops (SIGTERM) releases its leases and says so on the bus: another node takes its rooms over
    at once, not at the lease's end."""
    clock, store, (a, b) = cluster("a", "b", lease_seconds=10, lease_renew_seconds=3)
    a.cluster.start()
    b.cluster.start()
    room_id, _ann, _bob = playing_room(a)
    clock.advance(0)
    a.rooms.stop()
    a.cluster.stop()
    clock.advance(0)
    assert room_id in b.rooms.rooms and store.rooms[room_id]["owner"] == "b"


def test_a_restarted_node_with_the_same_id_takes_its_rooms_back_at_once() -> None:
    """With a fixed --node-id, a node that restarts gets its own rooms back on its first round, lease or not."""
    clock, store, (a,) = cluster("a", lease_seconds=10, lease_renew_seconds=3)
    room_id, _ann, _bob = playing_room(a)
    clock.advance(0)
    again = memory_services(clock=clock, store=store, bus=MemoryHub(clock).bus(), node_id="a")
    again.bus.start()
    again.cluster.start()
    clock.advance(0)
    assert room_id in again.rooms.rooms and store.rooms[room_id]["epoch"] == 2


def test_a_closed_room_leaves_the_store_and_a_lease_only_room_is_cleaned_up() -> None:
    """A room that closes is deleted (fenced by its epoch); a room whose owner died before its first checkpoint
    (only its lease was written) is removed by the node that takes it."""
    clock, store, (a, b) = cluster("a", "b", lease_seconds=10, lease_renew_seconds=3)
    room_id, ann, bob = playing_room(a)
    clock.advance(0)
    a.rooms.leave(ann)
    a.rooms.leave(bob)
    clock.advance(0)
    assert room_id not in store.rooms
    store.rooms["LONELY"] = {"id": "LONELY", "owner": "x", "epoch": 1, "lease_expires": clock.seconds() - 1}
    b.cluster.start()
    clock.advance(0)
    assert "LONELY" not in store.rooms and "LONELY" not in b.rooms.rooms


def test_the_store_down_makes_the_owner_stop_writing_before_the_lease_ends() -> None:
    """An owner that cannot renew keeps its rooms while its lease runs, then gives them up a third of a lease
    before its end, so that it never writes once another node may own the room."""
    clock, store, (a,) = cluster("a", lease_seconds=9, lease_renew_seconds=2)
    a.cluster.start()
    room_id, _ann, _bob = playing_room(a)
    clock.advance(0)
    store.down = True
    clock.advance(2)
    assert room_id in a.rooms.rooms
    for _ in range(2):
        clock.advance(2)
    assert room_id not in a.rooms.rooms


# The lobby of the cluster


def test_lobby_events_reach_every_node_and_the_lists_show_every_room() -> None:
    """A public room created on one node is announced to the lobby watchers of the others, shows in their
    lobby.watch list and GET /api/rooms list, and its closing reaches them too; private rooms stay unlisted."""
    clock, store, (a, b, c) = cluster("a", "b", "c")
    for node in (a, b, c):
        node.cluster.start()
    watcher = FakeMind("watcher")
    assert c.rooms.watch_lobby(watcher) == []
    ann = FakeMind("ann")
    room_id = a.rooms.create(ann, "table", 2, False)["room"]["id"]
    a.rooms.create(FakeMind("pat"), "secret", 2, True)
    clock.advance(0)
    assert watcher.last("lobby.room")["room"]["id"] == room_id
    assert [r["id"] for r in b.rooms.public_rooms()] == [room_id]
    assert [r["id"] for r in c.rooms.watch_lobby(FakeMind("late"))] == [room_id]
    a.rooms.leave(ann)
    clock.advance(0)
    assert watcher.last("lobby.room_closed")["room"] == room_id
    assert b.rooms.public_rooms() == []


def test_a_node_loads_the_clusters_rooms_at_start_and_after_a_bus_outage() -> None:
    """A node that starts (or whose bus comes back, having missed announcements) lists the other nodes' public
    rooms from the store."""
    clock, store, (a, b) = cluster("a", "b")
    a.cluster.start()
    room_id, _ann, _bob = playing_room(a)
    clock.advance(0)
    b.cluster.start()
    clock.advance(0)
    assert [r["id"] for r in b.rooms.public_rooms()] == [room_id]
    b.bus._hub.outage(b.bus)
    other = a.rooms.create(FakeMind("cy"), "other", 2, False)["room"]["id"]
    clock.advance(0)
    assert [r["id"] for r in b.rooms.public_rooms()] == [room_id]
    b.bus._hub.recover(b.bus)
    clock.advance(0)
    assert sorted(r["id"] for r in b.rooms.public_rooms()) == sorted([room_id, other])


def test_a_room_taken_over_with_everyone_ready_starts_its_game() -> None:
    """When the owner died after the last ready but before the game's start was checkpointed, the node that takes
    the room over starts the game, as the last ready did, with the checkpoint's seeds."""
    clock, store, (a, b) = cluster("a", "b", lease_seconds=10, lease_renew_seconds=3)
    ann, bob = FakeMind("ann"), FakeMind("bob")
    room_id = a.rooms.create(ann, "t", 2, False)["room"]["id"]
    a.rooms.join(bob, room_id)
    a.rooms.ready(ann, True)
    clock.advance(0)
    store.rooms[room_id]["players"][1]["ready"] = True  # bob's ready was written, the start was not
    b.cluster.start()
    clock.advance(12)
    room = b.rooms.rooms[room_id]
    assert room.status == "playing" and room.game is not None and room.game.current == "ann"
