"""The multi-node harness itself: three real nodes share the store and Redis, and a node can die and come back."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import pytest_twisted

from tests.cluster_harness import BUS_CONNECTED, Cluster, Exit, cluster, make_cluster  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

CLUSTER_NODES = 3


@pytest_twisted.ensureDeferred
async def test_three_nodes_share_store_and_bus_and_survive_a_kill(cluster: Cluster, reactor: Any) -> None:
    """Each node's /healthz shows its bus up; an account made on node 1 logs in on node 3; node 2 killed by SIGKILL
    is gone at once and, started again on the same port, is healthy with its bus up."""
    for i in (1, 2, 3):
        assert await cluster.healthz(i) == (200, {"status": "ok", "bus": "up"})
    assert len({n.port for n in cluster.nodes}) == 3

    ann = await cluster.signed_in(1, "ann")
    assert ann.close_code is None
    again = await cluster.signed_in(3, "ann", signup=False)
    reply = await again.ok("ping")
    assert reply["ok"]

    victim = cluster.node(2)
    pid = victim.pid
    assert pid is not None
    await cluster.kill(2)
    assert not victim.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert victim.process is not None and victim.process.exit == Exit(None, signal.SIGKILL)

    await cluster.start(2)
    assert victim.pid not in (None, pid)
    assert await cluster.healthz(2) == (200, {"status": "ok", "bus": "up"})
    bob = await cluster.signed_in(2, "bob")
    await bob.ok("ping")


@pytest_twisted.ensureDeferred
async def test_restart_redis_waits_for_every_bus(make_cluster: Any, reactor: Any) -> None:
    """After `restart_redis` every node has logged a second "bus connected" and its /healthz shows the bus up."""
    two = await make_cluster(nodes=2)
    await two.restart_redis()
    for i in (1, 2):
        assert two.log_count(i, BUS_CONNECTED) == 2
        assert await two.healthz(i) == (200, {"status": "ok", "bus": "up"})


@pytest_twisted.ensureDeferred
async def test_stop_waits_and_teardown_stops_every_node(make_cluster: Any, reactor: Any) -> None:
    """`stop` returns once the node has shut down after SIGTERM (twistd ends by re-raising the signal once its
    services have stopped); `close` (what teardown calls) stops the rest by PID."""
    two = await make_cluster(nodes=2, args=("--grace-seconds", "5"))
    pids = [n.pid for n in two.nodes]
    assert await two.stop(1) == Exit(None, signal.SIGTERM)
    assert "Server Shut Down." in two.node(1).log_text()
    assert two.node(2).running
    await two.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
