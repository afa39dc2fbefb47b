"""The cluster benchmark's arithmetic: the cost of a crossing delivery derived from the one- and two-node phases."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("picows", reason="the bench extra (picows) is not installed")

from bench.cluster import compare  # noqa: E402


def phase(per_1000: float, nodes: float, redis: float, crossed: float, p99: float) -> dict[str, Any]:
    """The figures of one load phase that `compare` reads."""
    return {
        "cpu_seconds_per_1000_delivered": per_1000, "nodes_cpu_seconds_per_1000_delivered": nodes,
        "redis_cpu_seconds_per_1000_delivered": redis, "events_crossing_nodes_share": crossed,
        "chat_latency": {"p99_ms": p99}, "delivered_per_second": 3000.0, "players": 400,
    }


def test_crossing_cost_is_derived_from_the_mix_of_local_and_crossing_deliveries() -> None:
    """With half the deliveries crossing, 0.10 CPU s per 1,000 against 0.08 when all are local means a crossing
    delivery costs 0.12, 1.5x a local one; the 16-core prediction is limited by the nodes or by Redis, whichever
    is lower."""
    one = phase(0.08, 0.08, 0.0, 0.0, 10.0)
    two = phase(0.10, 0.09, 0.01, 0.5, 15.0)
    result = compare(one, two)
    assert result["cpu_per_1000_two_over_one"] == 1.25
    assert result["cross_node_delivery_cpu_per_1000"] == 0.12
    assert result["cross_over_local_delivery_cpu"] == 1.5
    assert result["chat_p99_ms_one_two"] == [10.0, 15.0]
    predicted = result["prediction_16_cores"]
    # Nodes: 13/14 * 0.10 + 1/14 * 0.08 per 1,000 at 14 x 0.7 cores; Redis: 13/14 * 0.02 per 1,000 at 0.7 of a core.
    assert predicted["delivered_per_second_limited_by_nodes"] == round(9.8 * 1000 / (13 / 14 * 0.10 + 0.08 / 14))
    assert predicted["delivered_per_second_limited_by_redis"] == round(0.7 * 1000 / (13 / 14 * 0.02))
    assert predicted["delivered_per_second"] == predicted["delivered_per_second_limited_by_redis"]
    assert predicted["players_at_rooms_rate"] == round(predicted["delivered_per_second"] / 7.5)


def test_nothing_to_compare_without_crossings() -> None:
    """When phase two saw no crossing deliveries (or a phase delivered nothing) there is no comparison to make."""
    assert compare(phase(0.08, 0.08, 0.0, 0.0, 1.0), phase(0.08, 0.08, 0.0, 0.0, 1.0)) == {}
