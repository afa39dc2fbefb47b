"""Scenario 3, saturation: the rooms scenario with the chat rate raised step by step until chat p99 passes 100 ms.

The highest sustained rate is the best delivered messages/s of a step whose chat p99 stayed within the
limit and whose generator stayed clear of being the bottleneck.

    python -m bench.saturation --rooms 250 --rates 1,2,3,4,6,8
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, Sequence

from bench import common
from bench.players import Player, Stats
from bench.rooms import measure, play, server_for


def parser() -> argparse.ArgumentParser:
    """The scenario's command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.saturation", description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=250, help="rooms of four players (default 250)")
    p.add_argument("--rates", default="1,2,3,4,6,8", help="chat messages per second per player, one step each")
    p.add_argument("--roll-delay", type=float, default=1.0, help="seconds a player waits before rolling (default 1)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after each rate change before measuring (default 3)")
    p.add_argument("--seconds", type=float, default=8.0, help="seconds measured per step (default 8)")
    p.add_argument("--limit-ms", type=float, default=100.0, help="chat p99 that ends the climb (default 100)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and generator to separate cores")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE", help="environment for the server")
    p.add_argument("--server-option", action="append", default=[], metavar="NAME=VALUE", help="extra twistd gamesvc option")
    p.add_argument("--no-save", action="store_true", help="do not write a result file")
    return p


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """Climb the rates against one fresh server and return every step's figures."""
    rates = [float(r) for r in args.rates.split(",")]
    args.chat_rate = rates[0]
    server = server_for(args, "saturation")
    server.start()
    stats = Stats()
    players: list[Player] = []
    steps: list[dict[str, Any]] = []
    try:
        players = await play(args, server, stats)
        for rate in rates:
            for player in players:
                player.start_chatting(rate)
            await asyncio.sleep(args.settle)
            step = await measure(server, stats, args.seconds)
            step["chat_rate_per_player"] = rate
            step["offered_chats_per_second"] = rate * len(players)
            steps.append(step)
            p99 = step["chat_latency"]["p99_ms"]
            print(
                f"rate {rate:g}/s/player: delivered {step['delivered_per_second']}/s, chat p99 {p99} ms, "
                f"server {step['server_core_share']:.0%}, generator {step['generator']['core_share']:.0%}"
            )
            if p99 is None or p99 > args.limit_ms:
                break
        sustained = [
            s for s in steps
            if s["chat_latency"]["p99_ms"] is not None and s["chat_latency"]["p99_ms"] <= args.limit_ms
            and s["generator"]["not_bottleneck"]
        ]
        best = max(sustained, key=lambda s: s["delivered_per_second"], default=None)
        return {
            "players": len(players),
            "highest_sustained_delivered_per_second": best["delivered_per_second"] if best else None,
            "at_chat_rate_per_player": best["chat_rate_per_player"] if best else None,
            "limit_passed": bool(steps) and steps[-1] is not best and (steps[-1]["chat_latency"]["p99_ms"] or 0) > args.limit_ms,
            "steps": steps,
        }
    finally:
        await common.close_players(players, server)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run from the command line; prints a short report and writes bench/results/saturation-*.json."""
    args = parser().parse_args(argv)

    async def timed(args: argparse.Namespace) -> dict[str, Any]:
        started = time.monotonic()
        figures = await scenario(args)
        figures["wall_seconds"] = round(time.monotonic() - started, 1)
        return figures

    def report(figures: dict[str, Any]) -> None:
        print(
            f"highest sustained: {figures['highest_sustained_delivered_per_second']} delivered/s "
            f"at {figures['at_chat_rate_per_player']} chats/s/player"
        )

    return common.command_line("saturation", argv, args, args.rooms * 4 + 1024, timed, report)

if __name__ == "__main__":
    main()
