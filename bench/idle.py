"""Scenario 1, idle: N authenticated connections that stay open and quiet; server memory per connection.

Accounts are signed up first (at most --accounts of them); then N connections each `resume` one of
their sessions, so every connection is authenticated. VmRSS is read before and after.

    python -m bench.idle --connections 10000
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from typing import Any, Sequence

from bench import common
from bench.players import Player, Stats


def parser() -> argparse.ArgumentParser:
    """The scenario's command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=10000, help="idle authenticated connections (default 10000)")
    p.add_argument("--accounts", type=int, default=200, help="accounts whose sessions they resume (default 200)")
    p.add_argument("--hold", type=float, default=10.0, help="seconds to hold them open (default 10)")
    p.add_argument("--concurrency", type=int, default=200, help="connections opened at once (default 200)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and generator to separate cores")
    p.add_argument("--no-save", action="store_true", help="do not write a result file")
    return p


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario against a fresh server and return its figures."""
    server = common.Server(common.ServerOptions(max_connections=args.connections + 100), "idle", pin=not args.no_pin)
    server.start()
    stats = Stats()
    players: list[Player] = []
    try:
        prefix = "i" + secrets.token_hex(3)
        accounts = [Player(f"{prefix}{i}", stats) for i in range(min(args.accounts, args.connections))]
        await asyncio.gather(*(a.connect(server.url) for a in accounts))
        await asyncio.gather(*(a.sign_in() for a in accounts))
        tokens = [a.token for a in accounts]
        for a in accounts:
            a.close()
        await asyncio.sleep(2)
        rss_before = server.rss_kib()
        cpu_before, own_before = server.cpu_seconds(), common.own_cpu_seconds()
        gate = asyncio.Semaphore(args.concurrency)
        started = time.monotonic()

        async def open_one(index: int) -> Player:
            async with gate:
                player = Player(f"{prefix}{index % len(tokens)}", stats)
                await player.connect(server.url)
                await player.resume(tokens[index % len(tokens)])  # type: ignore[arg-type]
                return player

        results = await asyncio.gather(*(open_one(i) for i in range(args.connections)), return_exceptions=True)
        players = [r for r in results if isinstance(r, Player)]
        failures = [repr(r) for r in results if not isinstance(r, Player)]
        opened = time.monotonic() - started
        await asyncio.sleep(args.hold)
        rss_after = server.rss_kib()
        wall = time.monotonic() - started
        held = sum(1 for p in players if not p.closed)
        own = common.own_cpu_seconds() - own_before
        return {
            "connections_requested": args.connections,
            "connections_opened": len(players),
            "connections_held": held,
            "open_failures": len(failures),
            "first_failures": failures[:3],
            "seconds_to_open": round(opened, 2),
            "hold_seconds": args.hold,
            "server_rss_before_kib": rss_before,
            "server_rss_after_kib": rss_after,
            "server_rss_per_connection_kib": round((rss_after - rss_before) / max(1, len(players)), 2),
            "server_cpu_seconds": round(server.cpu_seconds() - cpu_before, 3),
            "unexpected_disconnects": stats.disconnects,
            "generator": common.generator_verdict(own, wall),
        }
    finally:
        await common.close_players(players, server, settle=1)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run from the command line; prints a short report and writes bench/results/idle-*.json."""
    args = parser().parse_args(argv)

    def report(figures: dict[str, Any]) -> None:
        print(
            f"held {figures['connections_held']}/{args.connections} connections; server RSS "
            f"{figures['server_rss_before_kib']} -> {figures['server_rss_after_kib']} KiB = "
            f"{figures['server_rss_per_connection_kib']} KiB each; generator {figures['generator']['core_share']:.0%} of a core"
        )

    return common.command_line("idle", argv, args, args.connections + 1024, scenario, report)

if __name__ == "__main__":
    main()
