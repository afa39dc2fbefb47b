"""The root service: the embedded database when used, the store, the services, and the web port."""

from __future__ import annotations

import gc
import json
import os
import secrets
import socket
import time
from typing import Any

import attrs
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from gamesvc._defer import deferred
from gamesvc.auth import AccountService
from gamesvc.bus import IBus
from gamesvc.checkpoints import Checkpoints
from gamesvc.cluster.leases import RoomLeases
from gamesvc.cluster.lobby import ClusterLobby, LobbyCache
from gamesvc.cluster.node import ClusterNode
from gamesvc.cluster.relay import Relay
from gamesvc.config import Settings
from gamesvc.embedded import EmbeddedMongo
from gamesvc.errors import BusUnavailable, StoreUnavailable
from gamesvc.metrics import Metrics, MeteredStore
from gamesvc.passwords import BcryptHasher, IHasher
from gamesvc.protocol import CLOSE_SERVICE_RESTART, OPS, GameFactory
from gamesvc.redisbus import RedisBus, parse_redis_uri
from gamesvc.results import Journal, NoJournal, ResultJournal, ResultWriter
from gamesvc.rooms import RoomService
from gamesvc.sessions import LiveSessions
from gamesvc.snapshots import snapshot
from gamesvc.store.mongo import MongoStore
from gamesvc.web import build_metrics_site, build_site

log = Logger()


@attrs.define
class Services:
    """What the protocol and the web resources use; passed to them in their constructors."""

    settings: Settings
    clock: IReactorTime
    store: Any
    accounts: AccountService
    rooms: RoomService
    results: ResultWriter
    metrics: Metrics
    checkpoints: Checkpoints
    sessions: LiveSessions
    # The unmetered store, for tests that inspect it (tests.support.memory_services sets it); slots forbid ad-hoc attributes.
    raw_store: Any = None
    # The message bus between nodes (--redis-uri), None when the node runs alone; and this node's id.
    bus: IBus | None = None
    node_id: str = ""
    # This node's part of the cluster (leases, takeovers) and its relay of room ops, None when the node runs alone.
    cluster: ClusterNode | None = None
    relay: Relay | None = None

    def disconnected(self, mind: Any) -> None:
        """A connection closed or signed out: its room (here, or on its owner node) keeps its seat for the grace."""
        self.rooms.disconnected(mind)
        if self.relay is not None:
            self.relay.disconnected(mind)


def default_node_id() -> str:
    """A node id unique enough among the processes of a cluster: host name, process id and 4 random hex digits."""
    host = "".join(c if c.isascii() and (c.isalnum() or c in ".-_") else "-" for c in socket.gethostname())[:40]
    return f"{host or 'node'}-{os.getpid()}-{secrets.token_hex(2)}"


def build_services(
    settings: Settings, clock: IReactorTime, store: Any, hasher: IHasher, journal: Journal = NoJournal(),
    bus: IBus | None = None, **room_options: Any,
) -> Services:
    """Wire the services around a store (the real one, or the memory one in tests) and the bus when there is one."""
    metrics = Metrics()
    store = MeteredStore(store, metrics, clock)
    results = ResultWriter(store, clock, settings.result_retry, journal)
    sessions = LiveSessions(clock)
    accounts = AccountService(store, clock, hasher, settings, sessions=sessions)
    node_id = settings.node_id or default_node_id()
    # In a cluster, checkpoints are fenced by the epoch of this node's lease on each room (gamesvc.cluster.leases).
    epochs: dict[str, int] | None = {} if bus is not None else None
    checkpoints = Checkpoints(
        store, clock, lambda room, final: snapshot(room, clock.seconds(), results.pending, chat=final),
        settings.result_retry, settings.checkpoint_interval, epochs=epochs,
    )
    leases = RoomLeases(store, clock, node_id, settings.lease_seconds, epochs, checkpoints) if epochs is not None else None
    lobby_cache = LobbyCache()
    rooms = RoomService(clock, settings, results, leases or checkpoints, lobby_cache.summaries, **room_options)
    services = Services(
        settings, clock, store, accounts, rooms, results, metrics, checkpoints, sessions, bus=bus, node_id=node_id,
    )
    if bus is not None and leases is not None:
        lobby = ClusterLobby(node_id, lobby_cache, bus, rooms, store)
        relay = Relay(
            node_id, bus, clock, services, lobby_cache, store, OPS, settings.store_timeout, settings.lease_seconds,
            leases.when_leased,
        )
        cluster = ClusterNode(
            rooms, leases, checkpoints, bus, clock, settings.lease_renew_seconds or settings.lease_seconds / 4, lobby,
            relay,
        )
        services.relay, services.cluster = relay, cluster
        held = leases.epochs
        metrics.callbacks.cluster = lambda: (len(held), relay.forwarded, relay.served, cluster.taken_over)
    metrics.callbacks.rooms_by_status = lambda: _count_by_status(rooms)
    metrics.callbacks.hash_queue = hasher.pending
    metrics.callbacks.pending_results = lambda: len(results.pending)
    if bus is not None:
        metrics.callbacks.bus_connected = lambda: int(bus.connected)
    return services


def _count_by_status(rooms: RoomService) -> dict[str, int]:
    counts: dict[str, int] = {}
    for room in rooms.rooms.values():
        counts[room.status] = counts.get(room.status, 0) + 1
    return counts


def _listen_description(port: int, interface: str) -> str:
    """An endpoint string for a TCP port; colons of an IPv6 interface are escaped."""
    kind = "tcp6" if ":" in interface else "tcp"
    escaped = interface.replace(":", "\\:")
    return f"{kind}:{port}:interface={escaped}"


def listen_reuse_port(reactor: Any, port: int, interface: str, factory: Any) -> IListeningPort:
    """Listen on a TCP socket made with SO_REUSEPORT, so that several processes can share `port` (IPv4 or IPv6)."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface, port))
        sock.listen(50)  # Twisted's own default backlog, as without --reuse-port
        sock.setblocking(False)
        # adoptStreamPort takes a duplicate of the descriptor: ours is closed in any case.
        return reactor.adoptStreamPort(sock.fileno(), family, factory)  # type: ignore[no-any-return]
    finally:
        sock.close()


class GcPauses:
    """Records every garbage collection's generation and pause; opt-in with GAMESVC_GC_STATS=path (for the benchmark)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif len(self.pauses) < 1_000_000:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def write(self) -> None:
        """Stop recording and write the pauses as JSON: {"pauses": [[generation, seconds], ...]}."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        with open(self.path, "w") as f:
            json.dump({"threshold": gc.get_threshold(), "pauses": self.pauses}, f)


class GameService(MultiService):
    """Runs gamesvc: starts the store (and embedded database), listens, and shuts down in order."""

    def __init__(self, reactor: Any, settings: Settings) -> None:
        super().__init__()
        self._reactor = reactor
        self.settings = settings
        self.embedded: EmbeddedMongo | None = None
        if settings.mongo_uri is None:
            self.embedded = EmbeddedMongo(reactor, settings.data_dir)
            self.embedded.setServiceParent(self)
        self._mongo = MongoStore(reactor, settings.mongo_uri or "", timeout=settings.store_timeout)
        self._pool = ThreadPool(minthreads=0, maxthreads=settings.hash_threads, name="gamesvc-bcrypt")
        hasher = BcryptHasher(reactor, self._pool, settings.bcrypt_cost, settings.hash_nice)
        # One thread of its own: journal writes keep their order, and an fsync never waits behind bcrypt.
        self._journal_pool = ThreadPool(minthreads=0, maxthreads=1, name="gamesvc-journal")
        self.journal = ResultJournal(
            settings.result_journal or os.path.join(settings.data_dir, "results.journal"),
            lambda work: deferToThreadPool(reactor, self._journal_pool, work),
        )
        self.bus: RedisBus | None = None
        if settings.redis_uri is not None:
            self.bus = RedisBus(reactor, parse_redis_uri(settings.redis_uri), timeout=settings.store_timeout)
        self.app = build_services(settings, reactor, self._mongo, hasher, self.journal, bus=self.bus)
        self.factory = GameFactory(self.app)
        self.app.metrics.callbacks.authenticated = lambda: sum(
            1 for c in self.factory.connections if c.account is not None
        )
        self.site = build_site(self.app, self.factory, reactor)
        self.port: IListeningPort | None = None
        self.metrics_port: IListeningPort | None = None
        self.store_ready: Deferred[None] = Deferred()
        self.listening: Deferred[IListeningPort] = Deferred()
        self._listen_started = False
        gc_stats = os.environ.get("GAMESVC_GC_STATS")
        self._gc_pauses = GcPauses(gc_stats) if gc_stats else None

    def startService(self) -> None:
        """Connect the store and restore the rooms, then listen; a store that does not answer within
        --store-timeout does not hold the port back (it is retried in the background)."""
        super().startService()
        if self.settings.dice_seed is not None:
            log.critical(
                "--dice-seed {seed} is set: dice are predictable; this server is for testing only",
                seed=self.settings.dice_seed,
            )
        self._pool.start()
        self._journal_pool.start()
        # Before the store is reached: the journal is the only copy of these results.
        try:
            replayed = self.app.results.replay()
        except OSError as e:
            log.critical("cannot use the result journal {path} (see --result-journal): {why}", path=self.journal.path,
                         why=str(e))
            raise
        if replayed:
            log.info("replaying {n} game results from the journal {path}", n=replayed, path=self.journal.path)
        if self.bus is not None:
            # Like the store, the bus does not hold start-up back: it keeps reconnecting in the background.
            log.info("node {node} joining the cluster through {uri}", node=self.app.node_id, uri=str(self.bus.address))
            self.bus.start().addErrback(lambda f: f.trap(BusUnavailable))
        ready = self._connect_store()
        ready.addErrback(lambda f: log.failure("store start-up failed", f))
        give_up = self._reactor.callLater(self.settings.store_timeout, self._listen)

        def listen_now(_: object) -> None:
            if give_up.active():
                give_up.cancel()
            self._listen()

        ready.addBoth(listen_now)

    def _listen(self) -> None:
        if self._listen_started or not self.running:
            return
        self._listen_started = True
        where = _listen_description(self.settings.port, self.settings.interface)
        if self.settings.reuse_port:
            listening = maybeDeferred(
                listen_reuse_port, self._reactor, self.settings.port, self.settings.interface, self.site
            )
        else:
            listening = endpoints.serverFromString(self._reactor, where).listen(self.site)
        listening.addCallbacks(self._listening, self._cannot_listen, errbackArgs=(where,))
        if self.settings.metrics_port is not None:
            where = _listen_description(self.settings.metrics_port, self.settings.metrics_interface)
            endpoint = endpoints.serverFromString(self._reactor, where)
            endpoint.listen(build_metrics_site(self.app.metrics)).addCallbacks(
                self._metrics_listening, self._cannot_listen, errbackArgs=(where,)
            )

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        address: Any = port.getHost()
        log.info("gamesvc listening on http://{host}:{port}/", host=address.host, port=address.port)
        self.listening.callback(port)
        # Objects made during start-up live for the whole run: keep the collector from rescanning them.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*self.settings.gc_threshold)

    def _metrics_listening(self, port: IListeningPort) -> None:
        self.metrics_port = port
        address: Any = port.getHost()
        log.info("metrics on http://{host}:{port}/metrics", host=address.host, port=address.port)

    def _cannot_listen(self, failure: Any, where: str) -> None:
        log.failure("cannot listen on {where}", failure, where=where)
        if self._reactor.running:
            self._reactor.stop()

    @deferred
    async def _connect_store(self) -> None:
        if self.embedded is not None:
            self._mongo.uri = await self.embedded.whenReady()
        while self.running:
            try:
                await self._mongo.start()
                found = await self.app.results.recover()
                if found:
                    log.info("finishing {n} game results left by an earlier run", n=found)
                if self.app.cluster is None:
                    await self._restore_rooms()
                else:
                    # A node of a cluster restores no room by itself: it takes over those whose lease ran out.
                    self.app.cluster.start()
                log.info("store ready")
                self.store_ready.callback(None)
                return
            except StoreUnavailable as e:
                log.warn("store not reachable yet ({why}); retrying", why=str(e))
                await _sleep(self._reactor, 1.0)

    async def _restore_rooms(self) -> None:
        """Bring back the rooms a previous run checkpointed; a checkpoint that cannot be used is dropped."""
        rooms = self.app.rooms
        restored = 0
        for snapshot in await self.app.store.load_rooms():
            try:
                rooms.restore(snapshot)
                restored += 1
            except (KeyError, TypeError, ValueError) as e:
                log.warn("dropping the checkpoint of room {room}: {why}", room=snapshot.get("id"), why=str(e))
                await self.app.store.delete_room(str(snapshot.get("id")))
        if restored:
            log.info("restored {n} rooms; their players have {grace}s to come back", n=restored,
                     grace=self.settings.grace_seconds)

    @deferred
    async def stopService(self) -> None:
        """Tell clients, freeze and checkpoint every room, close connections (1012), stop listening, and stop
        the store, the database and the hash threads."""
        if self._gc_pauses is not None:
            self._gc_pauses.write()
        for port in (self.port, self.metrics_port):
            if port is not None:
                await maybeDeferred(port.stopListening)
        self.factory.announce_restart()
        rooms = self.app.rooms
        rooms.stop()
        for room in list(rooms.rooms.values()):
            self.app.checkpoints.room_changed(room)
        if not await self.app.checkpoints.flush(final=True):
            log.warn("{n} rooms could not be checkpointed: the store is unavailable", n=self.app.checkpoints.pending)
        self.app.checkpoints.stop()
        if self.app.cluster is not None:
            # After the last checkpoints: the other nodes take the rooms over at once instead of at the lease's end.
            await self.app.cluster.stop()
        self.factory.close_all(CLOSE_SERVICE_RESTART, "server restarting")
        left = await self.app.results.flush()
        if left:
            log.error("{n} finished games could not be stored: the store is unavailable", n=left)
        self.app.results.stop()
        if self.bus is not None:
            await self.bus.stop()
        await self.journal.close()
        await self._mongo.stop()
        await MultiService.stopService(self)
        self._pool.stop()
        self._journal_pool.stop()


def _sleep(clock: IReactorTime, seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(clock, seconds)
