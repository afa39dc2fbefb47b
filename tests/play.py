"""Helpers for integration tests of rooms and games: signed-in clients, waiting on events, playing a game out."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

from tests.support import Running, WsClient, within

PASSWORD = "password1"


async def signed_in(reactor: Any, running: Running, username: str) -> tuple[WsClient, str]:
    """A new connection signed up as `username`; returns it and its session token."""
    client = await WsClient.connect(reactor, running.ws_url)
    reply = await client.ok("signup", username=username, password=PASSWORD)
    return client, reply["token"]


async def resumed(reactor: Any, running: Running, token: str) -> WsClient:
    """A new connection signed in with an existing session token."""
    client = await WsClient.connect(reactor, running.ws_url)
    await client.ok("resume", token=token)
    return client


async def seat_and_start(
    reactor: Any, running: Running, names: list[str], room_name: str = "race"
) -> tuple[dict[str, WsClient], dict[str, str], str]:
    """Sign the players up, seat them in `names` order in a new room, ready them all; the game starts.

    Returns the clients and session tokens by name, and the room id."""
    signed = {name: await signed_in(reactor, running, name) for name in names}
    clients = {name: client for name, (client, _) in signed.items()}
    tokens = {name: token for name, (_, token) in signed.items()}
    room_id = (await clients[names[0]].ok("room.create", name=room_name, seats=4))["room"]["id"]
    for name in names[1:]:
        await clients[name].ok("room.join", room=room_id)
    for name in names:
        await clients[name].ok("room.ready", ready=True)
    return clients, tokens, room_id


async def next_event(client: WsClient, *names: str) -> dict[str, Any]:
    """The next event whose name is one of `names` (earlier ones already received first)."""
    for message in client.events:
        if message.get("event") in names:
            client.events.remove(message)
            return message
    d: Deferred = Deferred()
    waiters = [(name, d) for name in names]
    client._event_waiters.extend(waiters)
    try:
        return await within(client._reactor, d)
    finally:
        for waiter in waiters:
            if waiter in client._event_waiters:
                client._event_waiters.remove(waiter)


async def until_state(client: WsClient, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Read room.state events until one satisfies `predicate`; returns that RoomState."""
    while True:
        state = (await client.event("room.state"))["room"]
        if predicate(state):
            return state


def seated(state: dict[str, Any]) -> list[str]:
    """The usernames seated in a RoomState, in seat order."""
    return [p["username"] for p in state["players"]]


def connected(state: dict[str, Any], username: str) -> bool:
    """Whether a player of a RoomState is connected."""
    return next(p["connected"] for p in state["players"] if p["username"] == username)


async def play_out(players: dict[str, WsClient], observer: WsClient, limit: int = 5000) -> dict[str, Any]:
    """Roll for whoever game.turn names until game.over; returns game.over as the observer saw it."""
    for _ in range(limit):
        event = await next_event(observer, "game.turn", "game.over")
        if event["event"] == "game.over":
            return event
        await players[event["player"]].ok("game.roll")
    raise AssertionError("the game did not end")
