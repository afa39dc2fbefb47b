"""Scenario 5, cluster: the rooms scenario on one node and then on two nodes sharing Redis and a store, and failover.

Phase `one`: a single node (with its bus on Redis, as a cluster member) and every player on it. Phase `two`: two
nodes; room i is opened on node 1 + i % 2 and its four players connect alternately to node 1 and node 2, so most of a
room's traffic crosses nodes. Both report delivered messages/s, chat fan-out latency, and CPU seconds per 1,000
delivered messages summed over the nodes and redis-server (the store beside it). Phase `failover`: rooms opened on
node 1 whose players all sit on node 2; node 1 gets SIGKILL and each player sends game.roll every --roll-poll
seconds: the time from the kill to each room's first game.rolled.

    python -m bench.cluster --rooms 100 --seconds 20 --lease-seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from bench import common
from bench.players import Player, RequestFailed, Stats
from gamesvc.devcluster import Cluster as Processes

PHASES = ("one", "two", "failover")


class ClusterUnavailable(Exception):
    """The nodes do not act as one cluster (the cluster logic is missing or broken): the scenario cannot run."""


def parser() -> argparse.ArgumentParser:
    """The scenario's command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=100, help="rooms of four players in phases one and two (default 100)")
    p.add_argument("--chat-rate", type=float, default=1.0, help="chat messages per second per player (default 1)")
    p.add_argument("--roll-delay", type=float, default=1.0, help="seconds a player waits before rolling (default 1)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring (default 5)")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds measured per phase (default 20)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"phases to run, of {','.join(PHASES)} (default all)")
    p.add_argument("--lease-seconds", type=float, default=2.0, help="the nodes' --lease-seconds (default 2)")
    p.add_argument("--lease-renew-seconds", type=float, help="the nodes' --lease-renew-seconds (default: lease / 4)")
    p.add_argument("--failover-rooms", type=int, default=5, help="rooms of node 1 to take over (default 5)")
    p.add_argument("--failover-settle", type=float, default=1.0,
                   help="seconds between the last game's start and the kill, for its checkpoint (default 1)")
    p.add_argument("--roll-poll", type=float, default=0.05, help="seconds between rolls after the kill (default 0.05)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the nodes (core 0) and the generator (core 1)")
    p.add_argument("--server-option", action="append", default=[], metavar="NAME=VALUE", help="extra node option")
    p.add_argument("--no-save", action="store_true", help="do not write a result file")
    return p


# Redis and the store: separate processes shared by the nodes, free to run on any core


class Backends:
    """One redis-server and one embedded store (nx-27017) for every phase; each phase uses a database of its own."""

    def __init__(self) -> None:
        common.WORK.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="cluster-", dir=common.WORK))
        self.processes = Processes()
        self.redis_port = common.free_port()
        self.redis: subprocess.Popen[bytes] | None = None
        self.store: subprocess.Popen[bytes] | None = None
        self.store_port = 0

    def start(self) -> None:
        """Start Redis (persistence off) and the store, and wait until both answer."""
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(executable):
            raise ClusterUnavailable("redis-server is not installed (on Debian: apt-get install redis-server)")
        self.redis = self.processes.spawn(
            "redis-server",
            [executable, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.dir), "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )
        self.store = self.processes.spawn(
            "embedded store",
            [sys.executable, "-m", "gamesvc._nxlaunch", "--data-dir", str(self.dir / "store"), "--port", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self.store.stdout is not None
        word, _, value = self.store.stdout.readline().decode().partition(" ")
        if word != "PORT":
            raise RuntimeError("the embedded store did not start")
        self.store_port = int(value)
        self._wait_for_redis()
        for process in (self.redis, self.store):
            try:
                # Spawned by the generator, they inherited its core; like a real Redis and MongoDB they get any core.
                os.sched_setaffinity(process.pid, common.STORE_CPUS)
            except OSError:
                pass

    def _wait_for_redis(self, timeout: float = 10.0) -> None:
        assert self.redis is not None
        deadline = time.monotonic() + timeout
        while self.redis.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)  # polling a starting process
        raise RuntimeError(f"redis-server did not answer on port {self.redis_port}")

    @property
    def redis_uri(self) -> str:
        """The nodes' --redis-uri."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def mongo_uri(self, database: str) -> str:
        """The nodes' --mongo-uri for one phase's database."""
        return f"mongodb://127.0.0.1:{self.store_port}/{database}"

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by redis-server and by the store."""
        assert self.redis is not None and self.store is not None
        return {"redis": common.proc_cpu_seconds(self.redis.pid), "store": common.proc_cpu_seconds(self.store.pid)}

    def stop(self) -> None:
        """Stop the store, then Redis, and remove their folder."""
        self.processes.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Nodes:
    """The `twistd gamesvc` nodes of one phase (common.Server each), on one database, named node-1..N."""

    def __init__(self, args: argparse.Namespace, backends: Backends, count: int, database: str, *extra: str) -> None:
        options = dict(item.split("=", 1) for item in args.server_option)
        options.update({"redis-uri": backends.redis_uri, "mongo-uri": backends.mongo_uri(database)})
        for item in extra:
            name, _, value = item.partition("=")
            options[name] = value
        pin = not args.no_pin
        self.servers = [
            common.Server(common.ServerOptions(extra={**options, "node-id": f"node-{i}"}), f"node-{i}", pin=pin)
            for i in range(1, count + 1)
        ]

    def start(self) -> None:
        """Start every node and wait until each is healthy."""
        for server in self.servers:
            server.start()

    def url(self, node: int) -> str:
        """The WebSocket endpoint of node `node` (1-based)."""
        return self.servers[node - 1].url

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by all the nodes still running."""
        return sum(s.cpu_seconds() for s in self.servers if s.process is not None and s.process.poll() is None)

    def messages_out(self) -> float:
        """The nodes' own count of messages sent to clients, summed."""
        return sum(s.messages_out() for s in self.servers if s.process is not None and s.process.poll() is None)

    def kill(self, node: int) -> None:
        """SIGKILL node `node`, as a crash would."""
        server = self.servers[node - 1]
        assert server.process is not None
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait()

    def stop(self) -> None:
        """Stop every node (SIGTERM); remove their folders, unless an exception is on its way (their logs tell why)."""
        error = sys.exc_info()[0]
        failing = error is not None and not issubclass(error, ClusterUnavailable)
        for server in self.servers:
            server.stop(keep=failing)
        if failing:
            print(f"node logs kept: {', '.join(str(s.log_path) for s in self.servers)}", file=sys.stderr)


# Players spread over the nodes


class ClusterStats(Stats):
    """Stats plus how many received events were delivered on a node other than their room's (crossed nodes)."""

    def __init__(self) -> None:
        super().__init__()
        self.events_crossed = 0
        self.events_local = 0
        self.chat_crossed = 0
        self.chat_local = 0

    def reset(self) -> None:
        super().reset()
        self.events_crossed = self.events_local = self.chat_crossed = self.chat_local = 0


class ClusterPlayer(Player):
    """A bench player that knows its node, its room's node, and the node of every player (to count crossings)."""

    def __init__(
        self, name: str, stats: ClusterStats, node: int, home: int, nodes_of: dict[str, int], **kwargs: Any
    ) -> None:
        super().__init__(name, stats, **kwargs)
        self.cluster_stats = stats
        self.node = node
        self.home = home
        self.nodes_of = nodes_of
        self.first_rolled: asyncio.Future[tuple[float, dict[str, Any]]] | None = None
        self.turn_seen: asyncio.Future[None] = self.loop.create_future()

    def _on_message(self, message: dict[str, Any]) -> None:
        stats = self.cluster_stats
        if stats.recording and "event" in message:
            # The room lives on the node that opened it; an event reaching a player elsewhere crossed nodes.
            if self.node == self.home:
                stats.events_local += 1
            else:
                stats.events_crossed += 1
            if message["event"] == "room.chat" and message.get("from") != self.name:
                if self.nodes_of.get(message.get("from", "")) == self.node:
                    stats.chat_local += 1
                else:
                    stats.chat_crossed += 1
        if message.get("event") == "game.turn" and not self.turn_seen.done():
            self.turn_seen.set_result(None)
        if message.get("event") == "game.rolled" and self.first_rolled is not None and not self.first_rolled.done():
            self.first_rolled.set_result((time.perf_counter(), message))
        super()._on_message(message)


def _not_a_cluster(player: ClusterPlayer, host: ClusterPlayer, room: str, error: BaseException) -> ClusterUnavailable:
    where = "another node" if player.node != host.node else "the same node"
    return ClusterUnavailable(
        f"a player on node {player.node} cannot join room {room!r} of node {host.node} ({where}): "
        f"{type(error).__name__} {error}. Cross-node rooms need the cluster logic (issue 13: room ownership, "
        "the cluster lobby and forwarding); without it each node acts alone."
    )


async def seat(players: list[ClusterPlayer], room_name: str, urls: dict[int, str], join_timeout: float = 30.0) -> str:
    """Connect and sign in the players (each to its own node); the first opens the room, the others find it in
    their own node's lobby and join it (as `bench.players.fill_room` does on one node)."""
    await asyncio.gather(*(p.connect(urls[p.node]) for p in players))
    await asyncio.gather(*(p.sign_in() for p in players))
    host, *others = players
    followers = [asyncio.ensure_future(p.join(room_name, timeout=join_timeout)) for p in others]
    room_id = await host.host(room_name)
    for player, follower in zip(others, followers):
        try:
            await follower
        except (RequestFailed, asyncio.TimeoutError) as e:
            for other in followers:
                other.cancel()
            raise _not_a_cluster(player, host, room_name, e) from e
    return room_id


async def spread_rooms(
    urls: dict[int, str], rooms: int, stats: ClusterStats, *, prefix: str, roll_delay: float, concurrency: int = 25
) -> list[ClusterPlayer]:
    """Fill `rooms` rooms of four: room i opened on node 1 + i % N, its seats alternately on each node; ready them."""
    gate = asyncio.Semaphore(concurrency)
    count = len(urls)
    nodes_of: dict[str, int] = {}

    async def one(index: int) -> list[ClusterPlayer]:
        async with gate:
            home = 1 + index % count
            players = []
            for seat_number in range(4):
                name = f"{prefix}{index}x{seat_number}"
                nodes_of[name] = 1 + (index + seat_number) % count
                players.append(ClusterPlayer(name, stats, nodes_of[name], home, nodes_of, roll_delay=roll_delay))
            await seat(players, f"bench {prefix}{index}", urls)
            await asyncio.gather(*(p.ready() for p in players))
            return players

    groups = await asyncio.gather(*(one(i) for i in range(rooms)))
    return [p for group in groups for p in group]


async def probe(urls: dict[int, str], stats: ClusterStats, timeout: float = 5.0) -> dict[str, Any]:
    """Fail fast and clearly unless a room of node 1 takes a player of node 2 and relays chat both ways; also say
    whether a code can be joined on the other node at once after `room.create` (before the lobby has it)."""
    prefix = "q" + secrets.token_hex(3)
    nodes_of = {f"{prefix}a": 1, f"{prefix}b": 2}
    a, b = (ClusterPlayer(name, stats, node, 1, nodes_of) for name, node in nodes_of.items())
    found: dict[str, Any] = {}
    try:
        await asyncio.gather(a.connect(urls[1]), b.connect(urls[2]))
        await asyncio.gather(a.sign_in(), b.sign_in())
        room_id = await a.host(f"probe {prefix}")
        started = time.perf_counter()
        try:
            await b.request("room.join", room=room_id)
            found["join_by_code_at_once"] = "ok"
        except RequestFailed as e:
            found["join_by_code_at_once"] = e.code
            try:
                await b.join(f"probe {prefix}", timeout=timeout)
            except (RequestFailed, asyncio.TimeoutError) as again:
                raise _not_a_cluster(b, a, f"probe {prefix}", again) from again
        found["join_seconds"] = round(time.perf_counter() - started, 3)
        for sender, receiver in ((a, b), (b, a)):
            heard = asyncio.get_running_loop().create_future()
            receiver.EVENTS = {**Player.EVENTS, "room.chat": lambda p, m: heard.done() or heard.set_result(m)}
            await sender.request("room.chat", text="0 probe")
            try:
                await asyncio.wait_for(heard, timeout)
            except asyncio.TimeoutError:
                raise ClusterUnavailable(
                    f"node {receiver.node} does not relay the chat of a player on node {sender.node} in a room of "
                    f"node 1 within {timeout:g} s: the cluster logic (issue 13) is missing or broken"
                ) from None
        return found
    finally:
        a.close()
        b.close()


async def measure(nodes: Nodes, backends: Backends, stats: ClusterStats, seconds: float) -> dict[str, Any]:
    """Record for `seconds`: rates, latencies, and the CPU of the nodes, Redis, the store and the generator."""
    stats.reset()
    out_before = nodes.messages_out()
    nodes_before, back_before, own_before = nodes.cpu_seconds(), backends.cpu_seconds(), common.own_cpu_seconds()
    busy_before, _ = common.system_busy()
    started = time.monotonic()
    stats.recording = True
    await asyncio.sleep(seconds)
    stats.recording = False
    wall = time.monotonic() - started
    node_cpu = nodes.cpu_seconds() - nodes_before
    back = {k: v - back_before[k] for k, v in backends.cpu_seconds().items()}
    own = common.own_cpu_seconds() - own_before
    out = nodes.messages_out() - out_before
    busy = (common.system_busy()[0] - busy_before) / common.CLK_TCK
    delivered = stats.received
    events = stats.events_crossed + stats.events_local
    chats = stats.chat_crossed + stats.chat_local

    def per_1000(cpu: float) -> float | None:
        return round(1000 * cpu / delivered, 4) if delivered else None

    return {
        "nodes": len(nodes.servers),
        "delivered_messages": delivered,
        "delivered_per_second": round(delivered / wall, 1),
        "server_messages_out_per_second": round(out / wall, 1),
        "requests_per_second": round(stats.sent / wall, 1),
        "events_crossing_nodes_share": round(stats.events_crossed / events, 3) if events else None,
        "chat_deliveries_crossing_nodes_share": round(stats.chat_crossed / chats, 3) if chats else None,
        "chat_latency": common.percentiles(stats.chat),
        "roll_latency": common.percentiles(stats.roll),
        "nodes_cpu_seconds": round(node_cpu, 3),
        "redis_cpu_seconds": round(back["redis"], 3),
        "store_cpu_seconds": round(back["store"], 3),
        "nodes_core_share": round(node_cpu / wall, 3),
        "redis_core_share": round(back["redis"] / wall, 3),
        "cpu_seconds_per_1000_delivered": per_1000(node_cpu + back["redis"]),
        "nodes_cpu_seconds_per_1000_delivered": per_1000(node_cpu),
        "redis_cpu_seconds_per_1000_delivered": per_1000(back["redis"]),
        "with_store_cpu_seconds_per_1000_delivered": per_1000(node_cpu + back["redis"] + back["store"]),
        # CPU that neither the nodes, Redis, the store nor the generator used: other work on the machine.
        "other_processes_core_share": round(max(0.0, busy - node_cpu - sum(back.values()) - own) / wall, 3),
        "games_finished": stats.games_over,
        "error_replies": dict(stats.errors),
        "unexpected_disconnects": stats.disconnects,
        "generator": common.generator_verdict(own, wall),
    }


async def load_phase(args: argparse.Namespace, backends: Backends, count: int) -> dict[str, Any]:
    """The rooms load over `count` nodes (a fresh database): fill the rooms, warm up, measure, stop the nodes."""
    nodes = Nodes(args, backends, count, f"bench_{count}_{secrets.token_hex(3)}")
    stats = ClusterStats()
    players: list[ClusterPlayer] = []
    try:
        nodes.start()
        urls = {i: nodes.url(i) for i in range(1, count + 1)}
        setup_started = time.monotonic()
        prefix = "c" + secrets.token_hex(3)
        players = await spread_rooms(urls, args.rooms, stats, prefix=prefix, roll_delay=args.roll_delay)
        for player in players:
            player.start_chatting(args.chat_rate)
        setup = time.monotonic() - setup_started
        await asyncio.sleep(args.warmup)
        figures = await measure(nodes, backends, stats, args.seconds)
        figures["players"] = len(players)
        figures["setup_seconds"] = round(setup, 2)
        figures["nodes_rss_kib"] = [s.rss_kib() for s in nodes.servers]
        return figures
    finally:
        for player in players:
            player.close()
        await asyncio.sleep(0.5)  # the close frames
        nodes.stop()


async def failover_phase(args: argparse.Namespace, backends: Backends) -> dict[str, Any]:
    """Rooms of node 1 played from node 2; SIGKILL node 1: seconds until each room's first game.rolled."""
    renew = args.lease_renew_seconds if args.lease_renew_seconds is not None else args.lease_seconds / 4
    nodes = Nodes(
        args, backends, 2, f"bench_failover_{secrets.token_hex(3)}",
        f"lease-seconds={args.lease_seconds:g}", f"lease-renew-seconds={renew:g}",
    )
    stats = ClusterStats()
    players: list[ClusterPlayer] = []
    try:
        nodes.start()
        urls = {1: nodes.url(1), 2: nodes.url(2)}
        prefix = "f" + secrets.token_hex(3)
        rooms: dict[str, list[ClusterPlayer]] = {}
        nodes_of: dict[str, int] = {}
        for index in range(args.failover_rooms):
            # The opener (node 1) leaves once the two players of node 2 are seated: the room stays on node 1.
            names = [f"{prefix}{index}x{n}" for n in range(3)]
            nodes_of.update({names[0]: 1, names[1]: 2, names[2]: 2})
            # A roll delay of an hour: nobody rolls on their own, so only the tries after the kill count.
            group = [ClusterPlayer(n, stats, nodes_of[n], 1, nodes_of, roll_delay=3600.0) for n in names]
            room_id = await seat(group, f"failover {prefix}{index}", urls)
            await group[0].request("room.leave")
            group[0].close()
            players += group
            rooms[room_id] = group[1:]
        loop = asyncio.get_running_loop()
        firsts: dict[str, asyncio.Future[tuple[float, dict[str, Any]]]] = {}
        for room_id, group in rooms.items():
            await asyncio.gather(*(p.ready() for p in group))
            # Only a game that has started (and so is in the room's checkpoint) can go on after the takeover.
            await asyncio.wait_for(asyncio.gather(*(p.turn_seen for p in group)), 30)
            firsts[room_id] = loop.create_future()
            for p in group:
                p.first_rolled = firsts[room_id]  # whichever of the room's players hears it first
        # A game started a moment before the kill may not be in its room's checkpoint yet (written at once, but
        # asynchronously): the room would come back waiting, and no game.rolled would ever come.
        await asyncio.sleep(args.failover_settle)
        killed_at = time.perf_counter()
        nodes.kill(1)

        def poll(player: ClusterPlayer) -> None:
            # Both players try: only the one whose turn it is can roll, the other's tries answer not_your_turn.
            if player.first_rolled is not None and not player.first_rolled.done() and not player.closed:
                player.send({"op": "game.roll", "id": "roll"})
                loop.call_later(args.roll_poll, poll, player)

        for group in rooms.values():
            for p in group:
                poll(p)
        limit = args.lease_seconds + 15.0
        await asyncio.wait(list(firsts.values()), timeout=limit)
        times: dict[str, float | None] = {}
        automatic: dict[str, bool] = {}
        for room_id, first in firsts.items():
            if first.done():
                at, message = first.result()
                times[room_id] = round(at - killed_at, 3)
                automatic[room_id] = bool(message.get("auto"))
            else:
                times[room_id] = None
        measured = [t for t in times.values() if t is not None]
        # A lease lapses between about half and all of --lease-seconds after its last renewal: a room that rolled
        # sooner did not wait for one, so it was probably not node 1's (the figure would flatter the failover).
        too_soon = [room for room, t in times.items() if t is not None and t < 0.5 * args.lease_seconds]
        return {
            "lease_seconds": args.lease_seconds,
            "lease_renew_seconds": renew,
            "rooms": len(rooms),
            "roll_poll_seconds": args.roll_poll,
            "settle_seconds": args.failover_settle,
            "seconds_to_first_rolled": times,
            "server_rolled_at_deadline": automatic,
            "taken_over": len(measured),
            "max_seconds": max(measured) if measured else None,
            "p50_seconds": sorted(measured)[len(measured) // 2] if measured else None,
            "target_seconds": args.lease_seconds + 1.0,
            "meets_target": len(measured) == len(rooms) > 0 and max(measured) <= args.lease_seconds + 1.0,
            "gave_up_after_seconds": limit,
            "rolled_too_soon_for_a_takeover": too_soon,
            "error_replies_after_kill": dict(stats.errors),
        }
    finally:
        for player in players:
            player.close()
        await asyncio.sleep(0.5)
        nodes.stop()


def compare(one: dict[str, Any], two: dict[str, Any]) -> dict[str, Any]:
    """What phase two costs against phase one, and what the figures predict for a 16-core machine."""
    local = one["cpu_seconds_per_1000_delivered"]
    mixed = two["cpu_seconds_per_1000_delivered"]
    crossed = two["events_crossing_nodes_share"]
    if not local or not mixed or not crossed:
        return {}
    # Phase two mixes local and crossing deliveries: mixed = crossed * c_cross + (1 - crossed) * local.
    cross = (mixed - (1 - crossed) * local) / crossed
    redis_per_crossing = two["redis_cpu_seconds_per_1000_delivered"] / crossed
    node_local = one["nodes_cpu_seconds_per_1000_delivered"]
    node_cross = (two["nodes_cpu_seconds_per_1000_delivered"] - (1 - crossed) * node_local) / crossed
    # 16 cores: one for Redis (single-threaded), one for the store, 14 nodes; players spread at random over 14
    # nodes put 13/14 of the deliveries across nodes; a node kept at 70 % of its core for the latency target.
    share16 = 13 / 14
    node16 = share16 * node_cross + (1 - share16) * node_local
    redis16 = share16 * redis_per_crossing
    by_nodes = 14 * 0.7 * 1000 / node16 if node16 > 0 else None
    by_redis = 0.7 * 1000 / redis16 if redis16 > 0 else None
    limits = [x for x in (by_nodes, by_redis) if x]
    per_player = two["delivered_per_second"] / two["players"]
    return {
        "cpu_per_1000_two_over_one": round(mixed / local, 3),
        "cross_node_delivery_cpu_per_1000": round(cross, 4),
        "cross_over_local_delivery_cpu": round(cross / local, 3),
        "target_cross_over_local": 1.5,
        "chat_p99_ms_one_two": [one["chat_latency"]["p99_ms"], two["chat_latency"]["p99_ms"]],
        "prediction_16_cores": {
            "assumes": "14 nodes at 70% of a core each, Redis on one core at 70%, the store on one; 13/14 of "
                       "deliveries cross nodes; CPU per delivery as measured here (local from phase one, crossing "
                       "derived from phase two); Redis cost proportional to crossing deliveries",
            "node_cpu_seconds_per_1000": round(node16, 4),
            "redis_cpu_seconds_per_1000": round(redis16, 4),
            "delivered_per_second_limited_by_nodes": round(by_nodes) if by_nodes else None,
            "delivered_per_second_limited_by_redis": round(by_redis) if by_redis else None,
            "delivered_per_second": round(min(limits)) if limits else None,
            "players_at_rooms_rate": round(min(limits) / per_player) if limits else None,
        },
    }


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """Check that two nodes act as a cluster, then run the phases asked for; returns every phase's figures."""
    phases = [p for p in args.phases.split(",") if p]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise SystemExit(f"unknown phases {unknown}; choose from {','.join(PHASES)}")
    backends = Backends()
    figures: dict[str, Any] = {}
    try:
        backends.start()
        if "two" in phases or "failover" in phases:
            nodes = Nodes(args, backends, 2, f"bench_probe_{secrets.token_hex(3)}")
            try:
                nodes.start()
                figures["check"] = await probe({1: nodes.url(1), 2: nodes.url(2)}, ClusterStats())
            finally:
                nodes.stop()
        for phase in phases:
            if phase == "failover":
                figures["failover"] = await failover_phase(args, backends)
            else:
                figures[phase] = await load_phase(args, backends, 1 if phase == "one" else 2)
        if "one" in figures and "two" in figures:
            figures["comparison"] = compare(figures["one"], figures["two"])
        return figures
    finally:
        backends.stop()


def report(figures: dict[str, Any]) -> None:
    """Print the headline figures."""
    for phase in ("one", "two"):
        if phase in figures:
            f = figures[phase]
            chat = f["chat_latency"]
            print(
                f"{phase} node(s): delivered {f['delivered_per_second']}/s; chat p50 {chat['p50_ms']} "
                f"p99 {chat['p99_ms']} max {chat['max_ms']} ms; nodes {f['nodes_core_share']:.0%} "
                f"+ redis {f['redis_core_share']:.0%} of a core; "
                f"{f['cpu_seconds_per_1000_delivered']} CPU s/1000 delivered (nodes+redis); crossing share "
                f"{f['events_crossing_nodes_share']}; errors {f['error_replies']}"
            )
    if figures.get("comparison"):
        c = figures["comparison"]
        print(f"cross-node delivery costs {c['cross_over_local_delivery_cpu']}x a local one (target <= 1.5); "
              f"16 cores: ~{c['prediction_16_cores']['delivered_per_second']} delivered/s")
    if "failover" in figures:
        f = figures["failover"]
        print(f"failover: {f['taken_over']}/{f['rooms']} rooms rolled again; max {f['max_seconds']} s "
              f"(target <= {f['target_seconds']} s)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run from the command line; prints a short report and writes bench/results/cluster-*.json."""
    args = parser().parse_args(argv)
    try:
        return common.command_line("cluster", argv, args, args.rooms * 4 + 1024, scenario, report)
    except ClusterUnavailable as e:
        print(f"bench.cluster cannot run: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
