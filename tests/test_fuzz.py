"""Fuzzing the WebSocket protocol in memory: random frames, random ops with random fields, random op sequences.

`GameProtocol` runs over `memory_services()` (memory store, `task.Clock`, plain hasher): no network, no real
reactor. A test subclass records what the server delivers and closes instead of writing to a transport, and a
`Harness` drives 2-4 such connections through scenarios drawn by hypothesis, checking after every step:

- every frame gets exactly one reply while it is served (replies counted by `re`: a request's id when usable,
  null otherwise or when the message rate limit answered it), unless the frame closed the connection;
- no reply or event ever says `internal` or carries a traceback, and no reply appears unasked;
- the rooms stay consistent (seats, seat index, spectators, connections) and the games valid;
- the `room.state` versions each connection sees for a room strictly increase.

`bench/fuzz.py` runs the same scenarios with many more examples.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from typing import Any, Iterable

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gamesvc.protocol import OPS, GameFactory, GameProtocol
from gamesvc.rooms import FINISHED, PLAYING, WAITING
from tests.support import memory_services

USERS = ("alice", "Bob", "carol_3", "dave-4")
PASSWORD = "password-123"
ERROR_CODES = {
    "bad_request", "unknown_op", "unauthenticated", "bad_credentials", "username_taken", "invalid_username",
    "invalid_password", "rate_limited", "room_not_found", "room_full", "already_in_room", "not_in_room",
    "not_your_turn", "game_not_started", "game_in_progress", "unavailable", "internal", "not_found", "not_host",
}  # fmt: skip
TRACEBACK = "Traceback (most recent call last)"


class FuzzFailure(AssertionError):
    """An invariant the fuzzer checks did not hold."""


# Step descriptions: plain data, so that hypothesis can print and shrink them.
# Values inside `fields` may be references resolved when the step runs (a room id seen earlier, a token).


@attrs.frozen
class RoomRef:
    """The `index`-th room id seen so far (modulo their number), optionally in lower case."""

    index: int
    lower: bool = False


@attrs.frozen
class TokenRef:
    """The latest session token handed to USERS[index], or a dead one."""

    index: int


@attrs.frozen
class Auto:
    """A fresh unique request id: an integer, or a string when `text`."""

    text: bool = False


ABSENT = "<absent>"


@attrs.frozen
class Request:
    """Send `{"op": op, "id": id, **fields}` on connection `slot` (`id` may be Auto, ABSENT or any JSON)."""

    slot: int
    op: Any
    id: Any
    fields: dict


@attrs.frozen
class Raw:
    """Send a frame as given (text or binary) on connection `slot`."""

    slot: int
    payload: bytes
    binary: bool = False


@attrs.frozen
class Burst:
    """Send `count` pings at once on connection `slot` (the message rate limit and the flood close)."""

    slot: int
    count: int


@attrs.frozen
class Advance:
    """Advance the clock by `seconds`, `times` times: turn deadlines and grace periods fire."""

    seconds: float
    times: int = 1


@attrs.frozen
class Disconnect:
    """Close connection `slot` (as a dropped TCP connection would)."""

    slot: int


@attrs.frozen
class Reconnect:
    """Open a new connection in `slot` (closing the old one), with a cookie: None, a user's token, or junk."""

    slot: int
    cookie: Any = None


@attrs.frozen
class Scenario:
    """Connections, a prologue that reaches a deep state, the die, and the steps."""

    connections: int
    prologue: int  # 0 nothing, 1 all signed up, 2 + seated in one room, 3 + game started
    dice_seed: int
    steps: tuple


# The in-memory connection


class FakeRequest:
    """The parts of an Autobahn ConnectionRequest that `GameProtocol.onConnect` reads."""

    def __init__(self, headers: dict[str, str], peer: str) -> None:
        self.headers = headers
        self.peer = peer


class MemoryConnection(GameProtocol):
    """A GameProtocol that records delivered messages and closes instead of writing to a transport."""

    def __init__(self, factory: GameFactory, slot: int) -> None:
        super().__init__()
        self.factory = factory
        self.slot = slot
        self.received: list[dict[str, Any]] = []
        self.closes: list[tuple[Any, ...]] = []
        self.late = 0

    def deliver(self, outgoing: Any) -> None:
        """Record the message as the client would parse it."""
        if not self.open:
            self.late += 1
            return
        self.received.append(json.loads(outgoing.payload))

    def sendClose(self, code: int | None = None, reason: str | None = None) -> None:
        """Record the close; the harness then delivers onClose as Autobahn would."""
        if code is not None and not (code == 1000 or 3000 <= code <= 4999):
            raise ValueError(f"Autobahn's sendClose refuses close code {code}")  # as the real one does
        self.closes.append(("close", code, reason))

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None:
        """Record the close (the 1008 flood close sends its frame directly)."""
        self.closes.append(("close", code, reasonUtf8))

    def dropConnection(self, abort: bool = False) -> None:
        """Record the drop."""
        self.closes.append(("drop", abort))


# The harness


def expected_re(payload: bytes, binary: bool) -> Any:
    """An independent reading of the contract: the `re` a frame's reply must carry."""
    if binary:
        return None
    try:
        message = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    value = message.get("id")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate could not be sent back
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) <= 2**53:
        return value
    if isinstance(value, str) and len(value) <= 128:
        return value
    return None


def _frame(message: dict) -> bytes:
    """JSON text of a request; lone surrogates travel as \\u escapes, as a browser's JSON.stringify sends them."""
    return json.dumps(message, ensure_ascii=True, allow_nan=True).encode("utf-8")


class Harness:
    """Runs a Scenario against fresh in-memory services and checks the invariants after every step."""

    def __init__(self, connections: int, dice_seed: int = 0) -> None:
        rng = random.Random(dice_seed)
        ids = itertools.count(1)
        dice_rng = random.Random(dice_seed + 1)
        self.services = memory_services(
            choose=rng.choice, new_game_id=lambda: f"g{next(ids):05d}", dice=lambda: dice_rng.randint(1, 6)
        )
        self.factory = GameFactory(self.services)
        self.slots: list[MemoryConnection] = []
        self.all: list[MemoryConnection] = []
        self.tokens: dict[int, str] = {}
        self.room_ids: list[str] = []
        self._ids = itertools.count(1)
        self._seen: dict[int, int] = {}  # connection -> messages already checked
        self._versions: dict[tuple[int, str], int] = {}
        self._sent: dict[int, list[Any]] = {}  # connection -> echoed ids it was sent
        self._anonymous: dict[int, set[Any]] = {}  # connection -> ids answered with re null (rate limited)
        for slot in range(connections):
            self.slots.append(self._open(slot))
        self.check()

    # Driving

    def _open(self, slot: int, cookie: Any = None) -> MemoryConnection:
        conn = MemoryConnection(self.factory, slot)
        headers = {"host": "127.0.0.1:5000"}
        if cookie is not None:
            headers["cookie"] = cookie
        conn.onConnect(FakeRequest(headers, f"tcp:10.0.0.{slot + 1}:4{slot}000"))  # type: ignore[arg-type]
        conn.onOpen()
        self.all.append(conn)
        self._sent[id(conn)] = []
        self._anonymous[id(conn)] = set()
        return conn

    def _close(self, conn: MemoryConnection, code: int | None = 1006) -> None:
        if conn.open:
            conn.onClose(False, code, None)

    def run(self, scenario: Scenario) -> None:
        """The prologue, then every step, then the final reply count."""
        self.prologue(scenario.prologue)
        for step in scenario.steps:
            self.step(step)
        self.finish()

    def prologue(self, level: int) -> None:
        """Reach a deep state quickly: sign everyone up, seat them in one room, start the game."""
        if level >= 1:
            for slot in range(len(self.slots)):
                self.request(slot, "signup", username=USERS[slot], password=PASSWORD)
        if level >= 2:
            reply = self.request(0, "room.create", name="fuzz", seats=max(2, len(self.slots)))
            for slot in range(1, len(self.slots)):
                self.request(slot, "room.join", room=reply["room"]["id"])
        if level >= 3:
            for slot in range(len(self.slots)):
                self.request(slot, "room.ready", ready=True)
        self.check()

    def request(self, slot: int, op: str, **fields: Any) -> dict[str, Any]:
        """Send a well-formed request and return its reply."""
        rid = next(self._ids)
        replies = self.send(slot, _frame({"op": op, "id": rid, **fields}))
        return replies[0] if replies else {}

    def step(self, step: Any) -> None:
        """Run one step and check every invariant."""
        if isinstance(step, Request):
            self.send(step.slot, _frame(self.resolve(step)))
        elif isinstance(step, Raw):
            self.send(step.slot, step.payload, step.binary)
        elif isinstance(step, Burst):
            for _ in range(step.count):
                if not self.slots[step.slot].open:
                    break
                self.send(step.slot, _frame({"op": "ping", "id": next(self._ids)}))
        elif isinstance(step, Advance):
            counts = [len(c.received) for c in self.all]
            for _ in range(step.times):
                self.services.clock.advance(step.seconds)
                self.check()
            for conn, before in zip(self.all, counts):
                unasked = [m for m in conn.received[before:] if "re" in m]
                self.expect(not unasked, f"replies without a request: {unasked}")
        elif isinstance(step, Disconnect):
            self._close(self.slots[step.slot])
        elif isinstance(step, Reconnect):
            self._close(self.slots[step.slot])
            cookie = step.cookie
            if isinstance(cookie, TokenRef):
                cookie = f"gamesvc_session={self.tokens.get(cookie.index % len(USERS), 'dead-token')}"
            conn = self.slots[step.slot] = self._open(step.slot, cookie)
            self.check()
            self.expect(not [m for m in conn.received if "re" in m], f"replies on open: {conn.received}")
        else:  # pragma: no cover
            raise TypeError(step)
        self.check()

    def resolve(self, step: Request) -> dict[str, Any]:
        """The request's JSON object, with references and automatic ids filled in."""
        message: dict[str, Any] = {"op": step.op}
        if isinstance(step.id, Auto):
            n = next(self._ids)
            message["id"] = f"s{n}" if step.id.text else n
        elif step.id != ABSENT:
            message["id"] = step.id
        for name, value in step.fields.items():
            message[name] = self._resolve_value(value)
        return message

    def _resolve_value(self, value: Any) -> Any:
        if isinstance(value, RoomRef):
            room = self.room_ids[value.index % len(self.room_ids)] if self.room_ids else "ABCDEF"
            return room.lower() if value.lower else room
        if isinstance(value, TokenRef):
            return self.tokens.get(value.index % len(USERS), "dead-token")
        return value

    def send(self, slot: int, payload: bytes, binary: bool = False) -> list[dict[str, Any]]:
        """Send one frame; exactly one reply must come back at once (in memory nothing waits)."""
        conn = self.slots[slot]
        if not conn.open:
            conn = self.slots[slot] = self._open(slot)
        before, closes = len(conn.received), len(conn.closes)
        want = expected_re(payload, binary)
        conn.onMessage(payload, binary)
        replies = [m for m in conn.received[before:] if "re" in m]
        if len(conn.closes) > closes:
            # The flood close: Autobahn would finish the close handshake and call onClose.
            self.expect(conn.closes[-1][:2] == ("close", 1008), f"unexpected close {conn.closes[-1]}")
            self.expect(len(replies) <= 1, f"{len(replies)} replies to one frame before a close: {replies}")
            self._close(conn, 1008)
            return replies
        self.expect(len(replies) == 1, f"{len(replies)} replies to frame {payload[:200]!r}: {replies}")
        reply = replies[0]
        if reply["re"] is None and reply.get("error") == "rate_limited" and want is not None:
            self._anonymous[id(conn)].add(want)
        else:
            self.expect(reply["re"] == want, f"reply re={reply['re']!r}, wanted {want!r} for {payload[:200]!r}")
        if want is not None:
            self._sent[id(conn)].append(want)
        if reply.get("token") and reply.get("user"):
            self.tokens[USERS.index(reply["user"]["username"]) if reply["user"]["username"] in USERS else -1] = reply[
                "token"
            ]
        return replies

    def finish(self) -> None:
        """Count replies by `re`: every request sent with a unique id was answered exactly once."""
        for conn in self.all:
            sent = Counter(self._sent[id(conn)])
            got = Counter(m["re"] for m in conn.received if "re" in m and m["re"] is not None)
            anonymous = self._anonymous[id(conn)]
            for rid, times in sent.items():
                if times == 1:
                    want = 0 if rid in anonymous else 1
                    self.expect(got[rid] == want, f"request id {rid!r} answered {got[rid]} times")
            self.expect(not set(got) - set(sent), f"replies to ids never sent: {set(got) - set(sent)}")

    # Invariants

    def expect(self, condition: bool, what: str) -> None:
        """Fail the scenario with a description of the broken invariant."""
        if not condition:
            raise FuzzFailure(what)

    def check(self) -> None:
        """Every invariant over the messages delivered so far and the rooms as they are now."""
        for conn in self.all:
            start = self._seen.get(id(conn), 0)
            for message in conn.received[start:]:
                self.check_message(conn, message)
            self._seen[id(conn)] = len(conn.received)
        self.check_rooms()

    def check_message(self, conn: MemoryConnection, message: dict[str, Any]) -> None:
        """One message: no internal error, no traceback, well-formed errors, increasing room versions."""
        text = json.dumps(message)
        self.expect(TRACEBACK not in text, f"traceback in {text[:500]}")
        if "re" in message:
            self.expect(message.get("ok") in (True, False), f"reply without ok: {message}")
            if message["ok"] is False:
                self.expect(message.get("error") != "internal", f"internal error: {message}")
                self.expect(message.get("error") in ERROR_CODES, f"unknown error code: {message}")
                self.expect(isinstance(message.get("message"), str), f"error without message: {message}")
                self.expect("File \"" not in message["message"], f"traceback-like message: {message}")
        for found in _room_ids_in(message):
            if found not in self.room_ids:
                self.room_ids.append(found)
        event = message.get("event")
        if event == "room.state":
            room = message["room"]
            key = (id(conn), room["id"])
            last = self._versions.get(key)
            self.expect(last is None or room["version"] > last, f"{room['id']}: version {room['version']} after {last}")
            self._versions[key] = room["version"]
            self.check_room_state(room)
        elif event == "game.rolled":
            self.expect(message["dice"] in range(1, 7), f"bad die {message}")
            self.expect(0 <= message["from"] <= 100 and 0 <= message["to"] <= 100, f"off the board {message}")

    def check_room_state(self, room: dict[str, Any]) -> None:
        """A RoomState as a client sees it."""
        players = room["players"]
        self.expect(len(players) <= room["seats"], f"more players than seats: {room}")
        self.expect(len({p["username"].lower() for p in players}) == len(players), f"a user seated twice: {room}")
        self.expect(all(0 <= p["position"] <= 100 for p in players), f"position off the board: {room}")
        if room["status"] == PLAYING:
            self.expect(room["turn"] in [p["username"] for p in players], f"turn of a player not seated: {room}")
        else:
            self.expect(room["turn"] is None, f"a turn outside a game: {room}")

    def check_rooms(self) -> None:
        """The room service's state: seats, the seat index, spectators, connections, games."""
        rooms = self.services.rooms
        seated: dict[str, str] = {}
        minds: dict[int, str] = {}
        for room_id, room in rooms.rooms.items():
            self.expect(room.id == room_id, f"room filed under {room_id} is {room.id}")
            self.expect(len(room.players) <= room.seats, f"{room_id}: {len(room.players)} players, {room.seats} seats")
            self.expect(room.humans() > 0, f"room {room_id} open without a person")
            for seat in room.players:
                if seat.bot:
                    # Bots hold no account's seat, no connection and no grace timer.
                    self.expect(seat.mind is None and seat.grace is None and rooms.seat_of(seat.key) is None,
                                f"room {room_id}: bot {seat.username} holds a connection, timer or account seat")
                    continue
                self.expect(seat.key not in seated, f"{seat.key} seated in {seated.get(seat.key)} and {room_id}")
                seated[seat.key] = room_id
                found = rooms.seat_of(seat.key)
                self.expect(found == room_id, f"seat_of({seat.key}) is {found}, not {room_id}")
                if seat.mind is not None:
                    self.expect(seat.mind.open, f"room {room_id}: {seat.key}'s seat holds a closed connection")
                    self.expect(seat.mind.account is not None and seat.mind.account.key == seat.key,
                                f"room {room_id}: {seat.key}'s seat holds a connection of {seat.mind.account}")
                    self.expect(seat.grace is None, f"room {room_id}: {seat.key} connected with a grace timer")
                else:
                    self.expect(seat.grace is not None and seat.grace.active(),
                                f"room {room_id}: {seat.key} disconnected without a grace timer")
            player_minds = {id(s.mind) for s in room.players if s.mind is not None}
            for spectator in room.spectators:
                self.expect(id(spectator) not in player_minds, f"room {room_id}: a connection both plays and watches")
                self.expect(spectator.open, f"room {room_id}: a closed connection spectates")
            for mind in room.minds():
                self.expect(id(mind) not in minds, f"a connection is in rooms {minds.get(id(mind))} and {room_id}")
                minds[id(mind)] = room_id
                self.expect(rooms.room_of(mind) == room_id, f"room_of says {rooms.room_of(mind)}, not {room_id}")
            self.check_game(room)
        for key, room in rooms._seats.items():
            self.expect(seated.get(key) == room.id, f"seat index names {key} in {room.id}, which has no such seat")
        for conn in self.all:
            where = rooms.room_of(conn)
            if where is not None:
                self.expect(minds.get(id(conn)) == where, f"room_of(conn) is {where} but the room does not list it")
            if not conn.open:
                self.expect(where is None, f"a closed connection is still in room {where}")
                self.expect(conn not in rooms._watchers, "a closed connection still watches the lobby")

    def check_game(self, room: Any) -> None:
        """The game invariants: squares 0..100, the turn with an active seated player while playing."""
        game = room.game
        if room.status == WAITING:
            self.expect(game is None, f"room {room.id} waiting with a game")
            filling = room.fill_timer is not None and len(room.players) < room.seats
            self.expect(filling or not (len(room.players) >= 2 and all(s.ready for s in room.players)),
                        f"room {room.id} waiting although every player is ready")
            return
        self.expect(game is not None, f"room {room.id} {room.status} without a game")
        self.expect(all(0 <= p <= 100 for p in game.positions.values()), f"room {room.id}: {game.positions}")
        if room.status == PLAYING:
            self.expect(not game.finished, f"room {room.id} playing a finished game")
            self.expect(game.current in game.active, f"room {room.id}: the turn of {game.current}, not active")
            seated = {s.username for s in room.players}
            self.expect(set(game.active) <= seated, f"room {room.id}: active {game.active}, seated {seated}")
            self.expect(room.turn_timer is not None and room.turn_timer.active(), f"room {room.id}: no turn deadline")
        else:
            self.expect(room.status == FINISHED, f"room {room.id} has status {room.status!r}")
            self.expect(game.finished and game.winner in game.order, f"room {room.id} finished without a winner")
            self.expect(room.turn_timer is None, f"room {room.id} finished with a turn timer")


def _room_ids_in(message: dict[str, Any]) -> Iterable[str]:
    """Room ids a message reveals (replies, room and lobby events)."""
    room = message.get("room")
    if isinstance(room, dict) and isinstance(room.get("id"), str):
        yield room["id"]
    elif isinstance(room, str) and message.get("event"):
        yield room
    for summary in message.get("rooms") or ():
        if isinstance(summary, dict) and isinstance(summary.get("id"), str):
            yield summary["id"]


def run_scenario(scenario: Scenario) -> Harness:
    """Run one scenario with every check; raises FuzzFailure when an invariant breaks."""
    harness = Harness(scenario.connections, scenario.dice_seed)
    harness.run(scenario)
    return harness


# Strategies

TRICKY_TEXT = [
    "", " ", "a", "\x00", "\ud800", "a\udfffb", "\ud83d\ude00", "💥", "\u202e", "<script>alert(1)</script>",
    "' OR 1=1 --", "../../etc/passwd", "%s%s%n", "{}", "null", "__proto__", "constructor",
    "_cookie", "_limited", "ALICE", "alice", "bob", " alice",
]  # fmt: skip
OPERATOR_DICTS = [
    {"$ne": None}, {"$gt": ""}, {"$regex": ".*"}, {"$where": "sleep(1000)"}, {"$in": ["alice", "bob"]},
    {"$exists": True}, {"__proto__": {"admin": True}},
]  # fmt: skip
HUGE_INTS = [2**53, 2**53 + 1, -(2**53) - 1, 2**63, -(2**63), 10**100, -1, 0]

texts = st.one_of(
    st.sampled_from(TRICKY_TEXT),
    st.sampled_from([20, 21, 40, 41, 72, 73, 129, 500, 501]).map(lambda n: "ß" * n),  # around the length limits
    st.text(max_size=30),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    st.one_of(json_scalars, st.sampled_from(OPERATOR_DICTS)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
ARG_NAMES = ["username", "password", "token", "room", "name", "seats", "private", "spectate", "ready", "text", "limit"]
op_names = st.one_of(
    st.sampled_from(sorted(OPS)),
    st.sampled_from(["_cookie", "_limited", "_drain", "", "ROOM.JOIN", "room.", "room.join ", "__init__"]),
    texts,
)
request_ids = st.one_of(
    st.builds(Auto, st.booleans()),
    st.just(ABSENT),
    st.sampled_from([None, True, False, 1.5, 2**53, 2**53 + 1, -(2**53) - 1, "", "\ud800", "a\udfff", [], {}]),
    st.sampled_from([128, 129]).map(lambda n: "x" * n),
    texts,
)
slots = st.integers(0, 3)


def sensible_fields(op: str) -> st.SearchStrategy[dict]:
    """Arguments a real client would send for `op` (now and then a tricky one), so that sequences reach deep
    states and the tricky values meet the code that runs there."""
    return st.one_of(_plausible_fields(op), _plausible_fields(op), _plausible_fields(op), _tricky_fields(op))


def _tricky_fields(op: str) -> st.SearchStrategy[dict]:
    """Plausible arguments with one of them replaced by a random value."""
    return _plausible_fields(op).flatmap(
        lambda fields: st.builds(
            lambda name, value: {**fields, name: value},
            st.sampled_from(sorted(fields) or ARG_NAMES),
            st.one_of(texts, json_values),
        )
    )


def _plausible_fields(op: str) -> st.SearchStrategy[dict]:
    """Arguments a real client would send for `op`."""
    user = st.integers(0, len(USERS) - 1).map(lambda i: USERS[i])
    password = st.sampled_from([PASSWORD, PASSWORD, "wrong-password"])
    room = st.builds(RoomRef, st.integers(0, 5), st.booleans())
    if op in ("signup", "login"):
        return st.fixed_dictionaries({"username": user, "password": password})
    if op == "resume":
        return st.fixed_dictionaries({"token": st.builds(TokenRef, st.integers(0, 3))})
    if op == "room.create":
        return st.fixed_dictionaries(
            {"name": st.sampled_from(["game", "fun room", "🎲"])},
            optional={"seats": st.integers(1, 5), "private": st.booleans(), "bot_takeover": st.booleans()},
        )
    if op == "room.remove_bot":
        return st.fixed_dictionaries({"bot": st.sampled_from(["Bot Ada", "Bot Alan", "Bot Grace", "alice", ""])})
    if op == "room.configure":
        return st.fixed_dictionaries({"bot_takeover": st.booleans()})
    if op == "room.join":
        return st.fixed_dictionaries({"room": room}, optional={"spectate": st.booleans()})
    if op == "room.ready":
        return st.fixed_dictionaries({}, optional={"ready": st.sampled_from([True, True, False])})
    if op == "room.chat":
        return st.fixed_dictionaries({"text": st.sampled_from(["hi", "gl hf", "<b>x</b>", "", "x" * 50])})
    if op == "leaderboard":
        return st.fixed_dictionaries({}, optional={"limit": st.integers(0, 101)})
    return st.just({})


SENSIBLE_OPS = sorted(OPS) + ["game.roll"] * 4 + ["room.ready"] * 2


@st.composite
def sensible_requests(draw: st.DrawFn, slot: st.SearchStrategy[int] = slots) -> Request:
    """A well-formed request with plausible arguments."""
    op = draw(st.sampled_from(SENSIBLE_OPS))
    return Request(draw(slot), op, Auto(draw(st.booleans())), draw(sensible_fields(op)))


@st.composite
def random_requests(draw: st.DrawFn, slot: st.SearchStrategy[int] = slots) -> Request:
    """A request object with a random op, a random id and random values for known and unknown fields."""
    op = draw(st.one_of(op_names, json_values))
    names = st.one_of(st.sampled_from(ARG_NAMES), texts)
    values = st.one_of(json_values, st.builds(RoomRef, st.integers(0, 5)), st.builds(TokenRef, st.integers(0, 3)))
    fields = draw(st.dictionaries(names.filter(lambda n: n not in ("op", "id")), values, max_size=5))
    return Request(draw(slot), op, draw(request_ids), fields)


@st.composite
def raw_frames(draw: st.DrawFn, slot: st.SearchStrategy[int] = slots) -> Raw:
    """Frames that are not requests: binary, not JSON, JSON but not an object, objects without a usable op."""
    kind = draw(st.sampled_from(["binary", "bytes", "text", "json", "no-op", "utf16", "deep"]))
    if kind == "binary":
        return Raw(draw(slot), draw(st.binary(max_size=64)), True)
    if kind == "bytes":
        return Raw(draw(slot), draw(st.binary(max_size=64)))
    if kind == "text":
        return Raw(draw(slot), draw(st.text(max_size=64)).encode("utf-8"))
    if kind == "json":
        return Raw(draw(slot), json.dumps(draw(json_values)).encode("utf-8"))
    if kind == "utf16":
        # Valid UTF-8 whose NUL bytes look like UTF-16 to a sniffing decoder.
        text = draw(st.sampled_from(['{}', '[]', '{"op":"ping","id":5}']))
        return Raw(draw(slot), text.encode("utf-16-le"))
    if kind == "deep":
        # Deeply nested JSON within the 64 KiB message limit.
        depth = draw(st.sampled_from([10, 500, 5000, 30000]))
        opener = draw(st.sampled_from(["[", '{"a":']))
        return Raw(draw(slot), (opener * depth).encode())
    message = draw(st.dictionaries(st.sampled_from(ARG_NAMES + ["id"]), json_values, max_size=4))
    message["op"] = draw(st.one_of(st.none(), st.integers(), st.just(""), st.lists(st.text(), max_size=2)))
    return Raw(draw(slot), _frame(message))


advances = st.one_of(
    st.builds(Advance, st.sampled_from([0, 0.05, 1, 5, 19.999, 20, 20.001, 59.9, 60, 61, 300, 5000])),
    # Many turn deadlines in a row: the server plays whole games (auto rolls) to their end.
    st.builds(Advance, st.sampled_from([20, 20.5]), st.sampled_from([5, 50, 400])),
)


@st.composite
def scenarios(draw: st.DrawFn, max_steps: int = 40, kinds: str = "all") -> Scenario:
    """A scenario for `kinds`: "frames" (raw frames only), "ops" (random requests) or "all" (everything)."""
    connections = draw(st.integers(2, 4))
    slot = st.integers(0, connections - 1)
    if kinds == "frames":
        step = raw_frames(slot)
        prologue = draw(st.integers(0, 3))
    elif kinds == "ops":
        step = st.one_of(random_requests(slot), sensible_requests(slot))
        prologue = draw(st.integers(0, 3))
    else:
        step = st.one_of(
            sensible_requests(slot),
            sensible_requests(slot),
            sensible_requests(slot),
            random_requests(slot),
            raw_frames(slot),
            advances,
            advances,
            st.builds(Disconnect, slot),
            st.builds(Reconnect, slot, st.one_of(st.none(), st.builds(TokenRef, st.integers(0, 3)), texts)),
            st.builds(Burst, slot, st.integers(1, 100)),
        )
        prologue = draw(st.integers(0, 3))
    steps = draw(st.lists(step, max_size=max_steps))
    return Scenario(connections, prologue, draw(st.integers(0, 2**16)), tuple(steps))


FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# The fuzz tests


@FUZZ_SETTINGS
@given(scenarios(kinds="frames"))
def test_random_frames_each_get_one_reply(scenario: Scenario) -> None:
    """Binary frames, bytes that are not JSON, JSON that is not an object and objects without a usable op each
    get exactly one error reply with `re` null (or the object's usable id), never `internal`, and the rooms
    stay consistent."""
    run_scenario(scenario)


@FUZZ_SETTINGS
@given(scenarios(kinds="ops"))
def test_random_ops_with_random_fields(scenario: Scenario) -> None:
    """Requests with random op names, ids and argument values (wrong types, huge numbers, operator objects,
    lone surrogates) get exactly one reply each with the right `re`, never `internal` or a traceback, and leave
    the rooms and games consistent."""
    run_scenario(scenario)


@FUZZ_SETTINGS
@given(scenarios(kinds="all", max_steps=60))
def test_random_sequences_keep_every_invariant(scenario: Scenario) -> None:
    """Interleaved requests on 2-4 connections, clock advances (turn deadlines, grace periods), disconnects,
    reconnects (with and without a session cookie) and bursts keep every invariant after every step: one reply
    per request, no `internal`, consistent rooms, valid games and increasing room versions."""
    run_scenario(scenario)


def test_the_harness_reaches_deep_states() -> None:
    """The harness itself works: a scripted scenario plays a whole game to its end through the protocol."""
    harness = run_scenario(Scenario(2, 3, 7, (Advance(20, 1000),)))
    room = harness.services.rooms.rooms[harness.room_ids[0]]
    assert room.status == FINISHED
    assert any(m.get("event") == "game.over" for m in harness.slots[0].received)


# Reproductions of what the fuzzer found


def test_an_op_named_like_an_internal_queue_entry_is_unknown() -> None:
    """Found by the fuzzer: `{"op": "_cookie"}` and `{"op": "_limited"}` reached the protocol's own queue
    entries (an `internal` reply, or a cookie sign-in with no reply at all); they are unknown ops."""
    harness = Harness(2)
    harness.request(0, "signup", username=USERS[0], password=PASSWORD)
    token = harness.tokens[0]
    for fields in ({}, {"token": token}, {"retry_after": "soon"}):
        for name in ("_cookie", "_limited"):
            reply = harness.request(1, name, **fields)
            assert reply["error"] == "unknown_op", reply
    assert harness.slots[1].account is None


@pytest.mark.parametrize(
    "message",
    [
        {"op": "ping", "id": "\ud800"},
        {"op": "", "id": "a\udfff"},
        {"op": "room.join", "id": 3, "room": "\ud800"},
        {"op": "room.chat", "id": 3, "text": "\udc00"},
        {"op": "room.create", "id": 3, "name": "\ud83d"},
        {"op": "\ud800", "id": 3},
        {"op": "ping", "id": 3, "extra": [{"\udfff": 1}]},
    ],
)
def test_lone_surrogate_escapes_are_bad_requests(message: dict) -> None:
    """Found by the fuzzer: a JSON `\\ud800` escape decodes to a string that cannot be encoded as UTF-8, so
    echoing it (an id, a room code in an error, a chat line, a room name) failed: no reply at all, or `internal`
    with the room created or the chat line kept and every later join failing. Now such a request is
    `bad_request` (with its id when the id itself is clean), and nothing is kept."""
    harness = Harness(2, 0)
    harness.prologue(2)
    reply = harness.send(0, _frame(message))[0]
    assert reply["error"] == "bad_request"
    assert reply["re"] == (3 if message["id"] == 3 else None)
    assert len(harness.services.rooms.rooms) == 1
    assert harness.request(1, "room.join", room=harness.room_ids[0])["ok"]
    harness.check()


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deeply_nested_json_is_a_bad_request(opener: str) -> None:
    """Found by the fuzzer: JSON nested deeper than the parser's recursion limit (well within 64 KiB) raised
    RecursionError out of onMessage (the connection was dropped); it is answered `bad_request`."""
    harness = Harness(2)
    reply = harness.send(0, (opener * 30000).encode())[0]
    assert reply == {"re": None, "ok": False, "error": "bad_request", "message": "the frame is not valid JSON"}
    assert harness.request(0, "ping")["ok"]


def test_frames_are_read_as_utf8_only() -> None:
    """Found by the fuzzer: json.loads(bytes) guesses UTF-16/32 from NUL bytes, so the valid UTF-8 text
    `{\\0"\\0o\\0p\\0...` was served as a request; text frames are read as UTF-8 only."""
    harness = Harness(2)
    reply = harness.send(0, '{"op":"ping","id":5}'.encode("utf-16-le"))[0]
    assert reply["re"] is None and reply["error"] == "bad_request"


def test_a_malformed_request_is_answered_after_the_earlier_replies() -> None:
    """Found while fuzzing: `{"op": "", "id": 2}` was answered at once, overtaking the reply to an earlier
    request still waiting for bcrypt; replies now keep request order."""
    from twisted.internet.defer import Deferred

    harness = Harness(2)
    hashes: list[Deferred] = []

    class SlowHasher:
        """A hasher whose answers wait until the test releases them."""

        def hash(self, password: bytes) -> Deferred:
            d: Deferred = Deferred()
            hashes.append(d)
            return d

        def pending(self) -> int:
            return len(hashes)

    harness.services.accounts._hasher = SlowHasher()
    conn = harness.slots[0]
    conn.onMessage(_frame({"op": "signup", "id": 1, "username": USERS[0], "password": PASSWORD}), False)
    conn.onMessage(_frame({"op": "", "id": 2}), False)
    conn.onMessage(_frame({"op": "ping", "id": 3, "x": "\ud800"}), False)
    assert [m for m in conn.received if "re" in m] == []
    hashes[0].callback(b"plain$" + PASSWORD.encode())
    assert [(m["re"], m["ok"]) for m in conn.received if "re" in m] == [(1, True), (2, False), (3, False)]


def test_a_flood_is_answered_then_closed_with_1008() -> None:
    """The flood close path (reached by bench/fuzz.py, rarely by the short run): every ping over the burst gets one
    `rate_limited` reply with `re` null until the strikes run out, then the connection closes with 1008 and
    leaves its room."""
    harness = run_scenario(Scenario(2, 2, 0, (Burst(1, 95),)))
    conn = harness.all[1]
    assert conn.closes == [("close", 1008, b"message rate limit exceeded")]
    assert not conn.open and harness.services.rooms.room_of(conn) is None
