"""Scenario 2, rooms: R rooms of four players chatting at a set rate while they play Dice Race, over and over.

Reports delivered messages per second, chat fan-out latency (send time in the text to receipt at each
other player), game.roll -> game.rolled latency, and server CPU seconds per 1,000 delivered messages.

    python -m bench.rooms --rooms 250 --chat-rate 1 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from typing import Any, Sequence

from bench import common
from bench.players import Player, Stats, fill_rooms


def parser() -> argparse.ArgumentParser:
    """The scenario's command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.rooms", description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=250, help="rooms of four players (default 250)")
    p.add_argument("--chat-rate", type=float, default=1.0, help="chat messages per second per player (default 1)")
    p.add_argument("--roll-delay", type=float, default=1.0, help="seconds a player waits before rolling (default 1)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring (default 5)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds measured (default 30)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and generator to separate cores")
    p.add_argument("--profile", metavar="FILE", help="sample the server with py-spy during the measured phase (raw/flamegraph output)")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE", help="environment for the server")
    p.add_argument("--server-option", action="append", default=[], metavar="NAME=VALUE", help="extra twistd gamesvc option")
    p.add_argument("--no-save", action="store_true", help="do not write a result file")
    return p


def server_for(args: argparse.Namespace, name: str) -> common.Server:
    """The server of a rooms-like scenario, with the extra options and environment from the command line."""
    extra = dict(item.split("=", 1) for item in args.server_option)
    env = dict(item.split("=", 1) for item in args.server_env)
    return common.Server(common.ServerOptions(extra=extra), name, pin=not args.no_pin, env=env)


async def measure(server: common.Server, stats: Stats, seconds: float) -> dict[str, Any]:
    """Record for `seconds` and return rates, latencies and the CPU of server, store and generator."""
    stats.reset()
    out_before = server.messages_out()
    cpu_before, store_before, own_before = server.cpu_seconds(), server.store_cpu_seconds(), common.own_cpu_seconds()
    busy_before, _ = common.system_busy()
    started = time.monotonic()
    stats.recording = True
    await asyncio.sleep(seconds)
    stats.recording = False
    wall = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu_before
    store = server.store_cpu_seconds() - store_before
    own = common.own_cpu_seconds() - own_before
    out = server.messages_out() - out_before
    busy = (common.system_busy()[0] - busy_before) / common.CLK_TCK
    delivered = stats.received
    return {
        "delivered_messages": delivered,
        "delivered_per_second": round(delivered / wall, 1),
        "server_messages_out_per_second": round(out / wall, 1),
        "requests_per_second": round(stats.sent / wall, 1),
        "chat_latency": common.percentiles(stats.chat),
        "roll_latency": common.percentiles(stats.roll),
        "server_cpu_seconds": round(cpu, 3),
        "server_core_share": round(cpu / wall, 3),
        "server_cpu_seconds_per_1000_delivered": round(1000 * cpu / delivered, 4) if delivered else None,
        "store_cpu_seconds": round(store, 3),
        # CPU that neither the server, its store nor the generator used: other work on the machine.
        "other_processes_core_share": round(max(0.0, busy - cpu - store - own) / wall, 3),
        "games_finished": stats.games_over,
        "error_replies": dict(stats.errors),
        "unexpected_disconnects": stats.disconnects,
        "generator": common.generator_verdict(own, wall),
    }


async def play(args: argparse.Namespace, server: common.Server, stats: Stats) -> list[Player]:
    """Fill the rooms and start every player chatting."""
    prefix = "p" + secrets.token_hex(3)
    players = await fill_rooms(server.url, args.rooms, stats, prefix=prefix, roll_delay=args.roll_delay)
    for player in players:
        player.start_chatting(args.chat_rate)
    return players


def start_profiler(server: common.Server, path: str, seconds: float) -> Any:
    """Sample the server with py-spy for `seconds` (raw collapsed stacks) in the background."""
    import subprocess
    import sys
    from pathlib import Path

    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(spy), "record", "--pid", str(server.pid), "--duration", str(int(seconds)), "--rate", "200",
         "--format", "raw", "--output", path, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario against a fresh server and return its figures."""
    server = server_for(args, "rooms")
    server.start()
    stats = Stats()
    players: list[Player] = []
    try:
        setup_started = time.monotonic()
        players = await play(args, server, stats)
        setup = time.monotonic() - setup_started
        await asyncio.sleep(args.warmup)
        profiler = start_profiler(server, args.profile, args.seconds) if args.profile else None
        figures = await measure(server, stats, args.seconds)
        if profiler is not None:
            profiler.wait(30)
        figures["players"] = len(players)
        figures["setup_seconds"] = round(setup, 2)
        figures["server_rss_kib"] = server.rss_kib()
        return figures
    finally:
        await common.close_players(players, server, keep=True)
        gc_pauses = server.gc_pauses()
        server.remove()
        if gc_pauses is not None and "figures" in locals():
            figures["server_gc_pauses_whole_run"] = gc_pauses


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run from the command line; prints a short report and writes bench/results/rooms-*.json."""
    args = parser().parse_args(argv)
    cores = sorted(common.SERVER_CPUS) if not args.no_pin else "any"
    return common.command_line("rooms", argv, args, args.rooms * 4 + 1024, scenario, report, server_cores=cores)


def report(figures: dict[str, Any]) -> None:
    """Print the headline figures."""
    chat, roll = figures["chat_latency"], figures["roll_latency"]
    print(
        f"delivered {figures['delivered_per_second']}/s; chat p50 {chat['p50_ms']} p99 {chat['p99_ms']} max {chat['max_ms']} ms; "
        f"roll p50 {roll['p50_ms']} p99 {roll['p99_ms']} max {roll['max_ms']} ms; "
        f"server {figures['server_core_share']:.0%} of a core, {figures['server_cpu_seconds_per_1000_delivered']} CPU s/1000 msgs; "
        f"generator {figures['generator']['core_share']:.0%} of a core; errors {figures['error_replies']}"
    )


if __name__ == "__main__":
    main()
