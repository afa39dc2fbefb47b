"""Load-generating players: real WebSocket clients (picows on uvloop) that speak the wire contract.

A `Player` signs up (or logs in), watches the lobby, takes a seat in a room of four, readies up,
chats at a set rate with its send time in the text, rolls on its turns, and readies up again for
a rematch when a game ends. Everything it measures goes into a shared `Stats`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any, Callable

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

PASSWORD = "bench-password-1"


class Stats:
    """Counters and latency samples of one generator process; samples are kept only while `recording`."""

    def __init__(self) -> None:
        self.recording = False
        self.received = 0
        self.sent = 0
        self.chat: list[float] = []
        self.roll: list[float] = []
        self.ping: list[float] = []
        self.errors: Counter[str] = Counter()
        self.games_over = 0
        self.disconnects = 0

    def reset(self) -> None:
        """Forget every sample and count (the start of a measured phase)."""
        self.received = self.sent = self.games_over = self.disconnects = 0
        self.chat, self.roll, self.ping = [], [], []
        self.errors = Counter()


class RequestFailed(Exception):
    """A request was answered with ok: false."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(f"{reply.get('error')}: {reply.get('message')}")
        self.code = reply.get("error")


class Player(WSListener):
    """One connection and the player behind it."""

    def __init__(self, name: str, stats: Stats, *, roll_delay: float = 0.5, rematch_delay: float = 1.0) -> None:
        super().__init__()
        self.name = name
        self.stats = stats
        self.roll_delay = roll_delay
        self.rematch_delay = rematch_delay
        self.loop = asyncio.get_running_loop()
        self.transport: WSTransport | None = None
        self.token: str | None = None
        self.room: str | None = None
        self.closed = False
        self.leaving = False
        self.chat_interval = 0.0
        self._chat_timer: asyncio.TimerHandle | None = None
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._roll_sent: float | None = None
        self._wanted_room: tuple[str, asyncio.Future[str]] | None = None

    # Connection

    async def connect(self, url: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
        """Open the WebSocket (the handshake carries no Origin, like any non-browser client; `headers` are added)."""
        await asyncio.wait_for(
            ws_connect(lambda: self, url, websocket_handshake_timeout=timeout, extra_headers=headers), timeout
        )

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self.stop_chatting()
        if not self.leaving:
            self.stats.disconnects += 1
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("connection closed"))
        self._waiting.clear()

    def close(self) -> None:
        """Close the connection on purpose."""
        self.leaving = True
        self.stop_chatting()
        if self.transport is not None and not self.closed:
            self.transport.send_close()
            self.transport.disconnect()

    # Frames

    def send(self, message: dict[str, Any]) -> None:
        """Send one request without waiting for its reply (an error reply is still counted)."""
        if self.closed or self.transport is None:
            return
        self.transport.send(WSMsgType.TEXT, orjson.dumps(message))
        if self.stats.recording:
            self.stats.sent += 1

    def request(self, op: str, **fields: Any) -> asyncio.Future[dict[str, Any]]:
        """Send a request; the future gets its reply, or RequestFailed when it says ok: false."""
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._waiting[self._next_id] = future
        self.send({"op": op, "id": self._next_id, **fields})
        return future

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            self._on_message(orjson.loads(frame.get_payload_as_bytes()))
        elif kind == WSMsgType.CLOSE:
            transport.disconnect()

    def _on_message(self, message: dict[str, Any]) -> None:
        stats = self.stats
        if stats.recording:
            stats.received += 1
        if "re" in message:
            future = self._waiting.pop(message["re"], None) if message["re"] is not None else None
            if not message.get("ok"):
                stats.errors[message.get("error", "?")] += 1
                if future is not None and not future.done():
                    future.set_exception(RequestFailed(message))
            elif future is not None and not future.done():
                future.set_result(message)
            return
        handler = self.EVENTS.get(message.get("event"))
        if handler is not None:
            handler(self, message)

    # Events

    def _on_chat(self, message: dict[str, Any]) -> None:
        if message["from"] != self.name and self.stats.recording:
            sent_at = float(message["text"].split(" ", 1)[0])
            self.stats.chat.append(time.time() - sent_at)

    def _on_turn(self, message: dict[str, Any]) -> None:
        if message["player"] == self.name:
            self.loop.call_later(self.roll_delay, self._roll)

    def _roll(self) -> None:
        self._roll_sent = time.perf_counter()
        self.send({"op": "game.roll", "id": "roll"})

    def _on_rolled(self, message: dict[str, Any]) -> None:
        if message["player"] == self.name and self._roll_sent is not None:
            if self.stats.recording and not message.get("auto"):
                self.stats.roll.append(time.perf_counter() - self._roll_sent)
            self._roll_sent = None

    def _on_over(self, message: dict[str, Any]) -> None:
        if message["winner"] == self.name and self.stats.recording:
            self.stats.games_over += 1
        self.loop.call_later(self.rematch_delay, lambda: self.send({"op": "room.ready", "id": "ready", "ready": True}))

    def _on_lobby_room(self, message: dict[str, Any]) -> None:
        room = message["room"]
        if self._wanted_room is not None and room["name"] == self._wanted_room[0] and room["status"] == "waiting":
            if not self._wanted_room[1].done():
                self._wanted_room[1].set_result(room["id"])

    EVENTS: dict[str, Callable[["Player", dict[str, Any]], None]] = {
        "room.chat": _on_chat,
        "game.turn": _on_turn,
        "game.rolled": _on_rolled,
        "game.over": _on_over,
        "lobby.room": _on_lobby_room,
    }

    # What a player does

    async def sign_in(self, password: str = PASSWORD) -> None:
        """Sign up, or log in when the name is taken (a second run on the same data)."""
        try:
            reply = await self.request("signup", username=self.name, password=password)
        except RequestFailed as e:
            if e.code != "username_taken":
                raise
            reply = await self.request("login", username=self.name, password=password)
        self.token = reply["token"]

    async def resume(self, token: str) -> None:
        """Authenticate with an existing session token."""
        await self.request("resume", token=token)
        self.token = token

    async def host(self, room_name: str) -> str:
        """Watch the lobby, open a room of four, and stop watching."""
        await self.request("lobby.watch")
        reply = await self.request("room.create", name=room_name, seats=4)
        await self.request("lobby.unwatch")
        self.room = reply["room"]["id"]
        return self.room  # type: ignore[return-value]

    async def join(self, room_name: str, timeout: float = 30.0) -> str:
        """Watch the lobby until the room named `room_name` is listed, take a seat, and stop watching."""
        found: asyncio.Future[str] = self.loop.create_future()
        self._wanted_room = (room_name, found)
        reply = await self.request("lobby.watch")
        for room in reply["rooms"]:
            if room["name"] == room_name and room["status"] == "waiting" and not found.done():
                found.set_result(room["id"])
        room_id = await asyncio.wait_for(found, timeout)
        self._wanted_room = None
        await self.request("room.join", room=room_id)
        await self.request("lobby.unwatch")
        self.room = room_id
        return room_id

    async def ready(self) -> None:
        """Ready up; the game starts when all four are ready."""
        await self.request("room.ready", ready=True)

    def start_chatting(self, rate: float) -> None:
        """Chat `rate` times a second, starting at a random point of the first interval."""
        self.stop_chatting()
        if rate <= 0:
            return
        self.chat_interval = 1.0 / rate
        self._chat_timer = self.loop.call_later(random.uniform(0, self.chat_interval), self._chat)

    def stop_chatting(self) -> None:
        """Stop the chat timer."""
        if self._chat_timer is not None:
            self._chat_timer.cancel()
            self._chat_timer = None

    def _chat(self) -> None:
        if self.closed:
            return
        self._chat_timer = self.loop.call_later(self.chat_interval, self._chat)
        self.send({"op": "room.chat", "id": "chat", "text": f"{time.time():.6f} gl hf from {self.name}"})

    async def ping(self) -> float:
        """One ping's round trip in seconds."""
        started = time.perf_counter()
        await self.request("ping")
        return time.perf_counter() - started


async def fill_room(
    url: str, names: list[str], stats: Stats, *, roll_delay: float, rematch_delay: float = 1.0
) -> list[Player]:
    """Connect four players, sign them in, seat them in one room found through the lobby, and ready them up."""
    players = [Player(name, stats, roll_delay=roll_delay, rematch_delay=rematch_delay) for name in names]
    await asyncio.gather(*(p.connect(url) for p in players))
    await asyncio.gather(*(p.sign_in() for p in players))
    room_name = f"bench {names[0]}"
    followers = [asyncio.ensure_future(p.join(room_name)) for p in players[1:]]
    await players[0].host(room_name)
    await asyncio.gather(*followers)
    await asyncio.gather(*(p.ready() for p in players))
    return players


async def fill_rooms(
    url: str, rooms: int, stats: Stats, *, prefix: str, roll_delay: float, concurrency: int = 25
) -> list[Player]:
    """Fill `rooms` rooms of four, `concurrency` rooms at a time (so the lobby has few watchers at once)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> list[Player]:
        async with gate:
            names = [f"{prefix}{index}x{seat}" for seat in range(4)]
            return await fill_room(url, names, stats, roll_delay=roll_delay)

    groups = await asyncio.gather(*(one(i) for i in range(rooms)))
    return [p for group in groups for p in group]


async def fill_chat_rooms(url: str, rooms: int, stats: Stats, *, prefix: str, concurrency: int = 25) -> list[Player]:
    """Rooms of four for the chat-only load: only signup, room.create, room.join and room.chat, the ops that the
    Node reference (../shared/bench-reference/) speaks too; the host passes the room id to the others directly."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> list[Player]:
        async with gate:
            players = [Player(f"{prefix}{index}x{seat}", stats) for seat in range(4)]
            await asyncio.gather(*(p.connect(url) for p in players))
            await asyncio.gather(*(p.sign_in() for p in players))
            reply = await players[0].request("room.create", name=f"chat {index}", seats=4)
            room = reply["room"]["id"]
            await asyncio.gather(*(p.request("room.join", room=room) for p in players[1:]))
            for p in players:
                p.room = room
            return players

    groups = await asyncio.gather(*(one(i) for i in range(rooms)))
    return [p for group in groups for p in group]


def run(main: Callable[[], Any]) -> Any:
    """Run a coroutine function on uvloop."""
    import uvloop

    return uvloop.run(main())
