"""`make cluster`'s launcher: nodes sharing one port with one Redis and one store, and a clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gamesvc.devcluster import parse_args
from tests.processes import free_port, http_json
from tests.redis_server import redis_executable

pytestmark = pytest.mark.integration


def test_devcluster_runs_nodes_on_one_port_and_stops_everything(tmp_path: Path) -> None:
    """Two nodes listen on the same port with their bus connected to the cluster's Redis and share the store;
    SIGTERM stops every child (nodes, store, Redis) and the launcher exits 0."""
    redis_executable()
    port = free_port()
    log_path = tmp_path / "cluster.log"
    with log_path.open("w") as log_file:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "gamesvc.devcluster", "--nodes", "2", "--port", str(port),
             "--data-dir", str(tmp_path / "data"), "--", "--bcrypt-cost", "4"],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            text = log_path.read_text()
            if text.count("gamesvc listening") == 2 and text.count("bus connected") == 2:
                break
            assert launcher.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.1)  # polling starting processes
        status, body, _ = http_json(f"http://127.0.0.1:{port}/healthz")
        assert (status, body) == (200, {"status": "ok", "bus": "up"})
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", text)]
        assert len(pids) == 4  # redis-server, the store, two nodes
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_devcluster_arguments() -> None:
    """The node count and port are checked; arguments after -- go to every node."""
    args = parse_args(["--nodes", "3", "--port", "6000", "--", "--bcrypt-cost", "4"])
    assert (args.nodes, args.port, args.node_args) == (3, 6000, ["--bcrypt-cost", "4"])
    for bad in (["--nodes", "0"], ["--port", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
