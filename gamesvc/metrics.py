"""Prometheus metrics for operators, kept in a registry of the service's own."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from gamesvc.errors import StoreUnavailable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Callbacks:
    """A collector whose gauges (and the hottest counter) are read from the services when scraped."""

    def __init__(self) -> None:
        self.messages_out: Callable[[], int] = lambda: 0
        self.rooms_by_status: Callable[[], dict[str, int]] = dict
        self.authenticated: Callable[[], int] = lambda: 0
        self.hash_queue: Callable[[], int] = lambda: 0
        self.pending_results: Callable[[], int] = lambda: 0
        # None when the node runs alone: the gauge is then left out rather than shown as an outage.
        self.bus_connected: Callable[[], int] | None = None
        # A node of a cluster: (leases held, ops forwarded to owners, ops served for other nodes, rooms taken over).
        self.cluster: Callable[[], tuple[int, int, int, int]] | None = None

    def collect(self) -> Any:
        yield CounterMetricFamily("gamesvc_messages_out", "Messages sent to clients", value=self.messages_out())
        rooms = GaugeMetricFamily("gamesvc_rooms", "Open rooms by status", labels=["status"])
        counts = self.rooms_by_status()
        for status in ("waiting", "playing", "finished"):
            rooms.add_metric([status], counts.get(status, 0))
        yield rooms
        yield GaugeMetricFamily("gamesvc_authenticated_connections", "Signed-in connections", value=self.authenticated())
        yield GaugeMetricFamily("gamesvc_bcrypt_queue", "Password hashes queued or running", value=self.hash_queue())
        yield GaugeMetricFamily(
            "gamesvc_pending_results", "Finished games waiting for the store", value=self.pending_results()
        )
        if self.bus_connected is not None:
            yield GaugeMetricFamily(
                "gamesvc_bus_connected", "1 while the message bus between nodes (Redis) is connected, else 0",
                value=self.bus_connected(),
            )
        if self.cluster is not None:
            owned, forwarded, served, taken = self.cluster()
            yield GaugeMetricFamily("gamesvc_cluster_rooms_owned", "Rooms whose lease this node holds", value=owned)
            yield CounterMetricFamily(
                "gamesvc_cluster_ops_forwarded", "Room ops forwarded to the room's owner node", value=forwarded
            )
            yield CounterMetricFamily("gamesvc_cluster_ops_served", "Room ops served for other nodes", value=served)
            yield CounterMetricFamily(
                "gamesvc_cluster_takeovers", "Rooms taken over from a node whose lease ran out or was released",
                value=taken,
            )


LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _PerRequest:
    """Requests served, error replies and request latency as plain numbers, turned into samples when scraped.

    Counted once or twice per request: prometheus_client's labelled counters and histogram cost a label
    look-up and a lock each time, a dict increment and a bisect do not.
    """

    def __init__(self) -> None:
        self.served: dict[tuple[str, str], int] = {}
        self.errors: dict[str, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf
        self.seconds = 0.0

    def collect(self) -> Iterator[Any]:
        served = CounterMetricFamily("gamesvc_messages_in", "Requests served, by op and result", labels=["op", "result"])
        for (op, result), count in sorted(self.served.items()):
            served.add_metric([op, result], count)
        yield served
        errors = CounterMetricFamily("gamesvc_errors", "Error replies, by code", labels=["code"])
        for code, count in sorted(self.errors.items()):
            errors.add_metric([code], count)
        yield errors
        cumulative, total = [], 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.buckets):
            total += count
            cumulative.append((floatToGoString(bound), total))
        yield HistogramMetricFamily(
            "gamesvc_request_seconds", "Time to serve a request", buckets=cumulative, sum_value=self.seconds
        )


class Metrics:
    """Counters, gauges and histograms of one service instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("gamesvc_connections", "Open WebSocket connections", registry=r)
        self.refusals = Counter("gamesvc_connections_refused", "Refused WebSocket handshakes", ["reason"], registry=r)
        self.per_request = _PerRequest()
        r.register(self.per_request)  # type: ignore[arg-type]
        self.games = Counter("gamesvc_games", "Games, by event", ["event"], registry=r)
        self.store_seconds = Histogram(
            "gamesvc_store_seconds", "Store call latency", ["call"], registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.store_failures = Counter("gamesvc_store_failures", "Store calls that failed", ["call"], registry=r)
        # Messages sent: a plain int rather than a Counter (whose lock costs 2 % of the CPU at one inc per frame).
        self.messages_out = 0
        self.callbacks = _Callbacks()
        self.callbacks.messages_out = lambda: self.messages_out
        r.register(self.callbacks)  # type: ignore[arg-type]

    def connection_opened(self) -> None:
        """Count an opened connection."""
        self.connections.inc()

    def connection_closed(self) -> None:
        """Count a closed connection."""
        self.connections.dec()

    def refused(self, reason: str) -> None:
        """Count a refused handshake."""
        self.refusals.labels(reason).inc()

    def request(self, op: str, result: str, seconds: float) -> None:
        """Count a served request."""
        counts = self.per_request
        key = (op, result)
        counts.served[key] = counts.served.get(key, 0) + 1
        counts.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        counts.seconds += seconds

    def message_out(self) -> None:
        """Count a message sent to a client."""
        self.messages_out += 1

    def error(self, code: str) -> None:
        """Count an error reply."""
        errors = self.per_request.errors
        errors[code] = errors.get(code, 0) + 1

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


class MeteredStore:
    """Wraps a store so that every call's latency and failures are measured."""

    def __init__(self, store: Any, metrics: Metrics, clock: IReactorTime) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if not callable(target) or name.startswith("_"):
            return target
        metrics, clock = self._metrics, self._clock

        def timed(*args: Any, **kwargs: Any) -> Deferred:
            started = clock.seconds()
            d: Deferred = target(*args, **kwargs)

            def done(result: Any) -> Any:
                metrics.store_seconds.labels(name).observe(clock.seconds() - started)
                if hasattr(result, "check") and result.check(StoreUnavailable):
                    metrics.store_failures.labels(name).inc()
                return result

            return d.addBoth(done)

        return timed
