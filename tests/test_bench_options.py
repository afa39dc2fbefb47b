"""The benchmark's servers start: every scenario's twistd options are ones the service accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import common
from gamesvc.tap import Options


@pytest.mark.parametrize("extra", [
    {},
    {"trusted-proxy": "127.0.0.1/32", "message-rate": 20, "message-burst": 40, "chat-rate": 1, "chat-burst": 5},
])
def test_bench_server_options_are_valid(extra: dict, tmp_path: Path) -> None:
    """The raised limits that every scenario passes (and a flood scenario's own) parse as twistd gamesvc options:
    a value out of an option's range would stop every benchmark server at start."""
    argv = common.ServerOptions(extra=extra).argv(0, tmp_path)
    options = Options(environ={})
    options.parseOptions(argv)
    assert options.settings.hash_queue_limit == 100_000 and options.settings.max_connections == 20000
