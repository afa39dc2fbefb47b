"""Per-request metrics kept as plain numbers expose the same samples as prometheus_client's own types."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gamesvc.metrics import LATENCY_BUCKETS, Metrics


def samples(text: bytes, prefix: str) -> dict[tuple[str, tuple], float]:
    """Samples whose name starts with `prefix`, without prometheus_client's `_created` timestamps."""
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name.startswith(prefix) and not sample.name.endswith("_created"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_requests_and_errors_scrape_like_prometheus_client_counters_and_histogram() -> None:
    """The counts kept per request turn, at scrape time, into exactly the samples of a labelled Counter and a
    Histogram fed the same observations (bucket edges included: a value equal to a bound falls in it)."""
    metrics = Metrics()
    reference = CollectorRegistry()
    served = Counter("gamesvc_messages_in", "Requests served, by op and result", ["op", "result"], registry=reference)
    errors = Counter("gamesvc_errors", "Error replies, by code", ["code"], registry=reference)
    latency = Histogram("gamesvc_request_seconds", "Time to serve a request", registry=reference, buckets=LATENCY_BUCKETS)
    observations = [("ping", "ok", 0.0), ("ping", "ok", 0.0005), ("login", "bad_credentials", 0.3),
                    ("unknown", "unknown_op", 0.00051), ("me", "ok", 11.0), ("ping", "ok", 10)]
    for op, result, seconds in observations:
        metrics.request(op, result, seconds)
        served.labels(op, result).inc()
        latency.observe(seconds)
        if result != "ok":
            metrics.error(result)
            errors.labels(result).inc()
    mine = generate_latest(metrics.registry)
    theirs = generate_latest(reference)
    for prefix in ("gamesvc_messages_in", "gamesvc_errors", "gamesvc_request_seconds"):
        assert samples(mine, prefix) == samples(theirs, prefix), prefix
        assert samples(mine, prefix)
