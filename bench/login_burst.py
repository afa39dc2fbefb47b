"""Scenario 4, login burst: L simultaneous logins at bcrypt cost 12 while P players ping; the pings' delay.

Accounts are signed up first (at the same cost). P connections resume those sessions and ping
steadily; pings are measured for a quiet baseline and then while L fresh connections log in at once.

    python -m bench.login_burst --logins 100 --pingers 100 --bcrypt-cost 12
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
    p = argparse.ArgumentParser(prog="python -m bench.login_burst", description=__doc__.split("\n\n")[0])
    p.add_argument("--logins", type=int, default=100, help="simultaneous logins (default 100)")
    p.add_argument("--pingers", type=int, default=100, help="players pinging meanwhile (default 100)")
    p.add_argument("--ping-interval", type=float, default=0.1, help="seconds between one player's pings (default 0.1)")
    p.add_argument("--bcrypt-cost", type=int, default=12, help="server bcrypt cost (default 12)")
    p.add_argument("--hash-threads", type=int, default=None, help="server bcrypt threads (default: the server's)")
    p.add_argument(
        "--nice-hash-threads", type=int, default=0, metavar="N",
        help="experiment: renice the server's worker threads (the bcrypt pool) by N after set-up, so the reactor thread preempts them",
    )
    p.add_argument("--baseline", type=float, default=3.0, help="seconds of pings before the burst (default 3)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and generator to separate cores")
    p.add_argument("--no-save", action="store_true", help="do not write a result file")
    return p


async def ping_loop(player: Player, interval: float, samples: list[float], stop: asyncio.Event) -> None:
    """Ping, wait, repeat until `stop` is set; round trips go into `samples`."""
    await asyncio.sleep(interval * (hash(player.name) % 100) / 100)
    while not stop.is_set() and not player.closed:
        samples.append(await player.ping())
        await asyncio.sleep(interval)


async def pings_during(pingers: list[Player], interval: float, phase: Any) -> tuple[list[float], Any]:
    """Run every pinger while `phase()` is awaited; returns the round trips and the phase's result."""
    samples: list[float] = []
    stop = asyncio.Event()
    loops = [asyncio.ensure_future(ping_loop(p, interval, samples, stop)) for p in pingers]
    try:
        result = await phase()
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
    return samples, result


def renice_workers(pid: int, niceness: int) -> list[int]:
    """Lower the priority of every thread of the server but its main (reactor) thread; returns their ids."""
    import os

    workers = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    for tid in workers:
        os.setpriority(os.PRIO_PROCESS, tid, niceness)
    return workers


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario against a fresh server and return its figures."""
    extra = {"hash-threads": args.hash_threads} if args.hash_threads else {}
    server = common.Server(common.ServerOptions(bcrypt_cost=args.bcrypt_cost, extra=extra), "login-burst", pin=not args.no_pin)
    server.start()
    stats = Stats()
    everyone: list[Player] = []
    try:
        prefix = "l" + secrets.token_hex(3)
        setup_started = time.monotonic()
        accounts = [Player(f"{prefix}{i}", stats) for i in range(args.logins)]
        everyone += accounts
        await asyncio.gather(*(a.connect(server.url) for a in accounts))
        await asyncio.gather(*(a.sign_in() for a in accounts))
        setup = time.monotonic() - setup_started
        reniced = renice_workers(server.pid, args.nice_hash_threads) if args.nice_hash_threads else []
        pingers = [Player(f"{prefix}{i % args.logins}", stats) for i in range(args.pingers)]
        everyone += pingers
        await asyncio.gather(*(p.connect(server.url) for p in pingers))
        await asyncio.gather(*(p.resume(accounts[i % args.logins].token) for i, p in enumerate(pingers)))  # type: ignore[arg-type]
        burst = [Player(a.name, stats) for a in accounts]
        everyone += burst
        await asyncio.gather(*(b.connect(server.url) for b in burst))

        baseline, _ = await pings_during(pingers, args.ping_interval, lambda: asyncio.sleep(args.baseline))

        cpu_before, own_before = server.cpu_seconds(), common.own_cpu_seconds()
        busy_before, store_before = common.system_busy()[0], server.store_cpu_seconds()
        started = time.monotonic()

        async def logins() -> list[float]:
            async def one(player: Player) -> float:
                t0 = time.perf_counter()
                await player.request("login", username=player.name, password="bench-password-1")
                return time.perf_counter() - t0

            return await asyncio.gather(*(one(b) for b in burst))

        during, login_times = await pings_during(pingers, args.ping_interval, logins)
        wall = time.monotonic() - started
        own = common.own_cpu_seconds() - own_before
        cpu = server.cpu_seconds() - cpu_before
        busy = (common.system_busy()[0] - busy_before) / common.CLK_TCK
        return {
            "setup_seconds": round(setup, 2),
            "reniced_server_threads": len(reniced),
            "baseline_ping": common.percentiles(baseline),
            "burst_ping": common.percentiles(during),
            "burst_seconds": round(wall, 2),
            "login_time": common.percentiles(login_times),
            "logins_per_second": round(len(login_times) / wall, 2),
            "server_cpu_seconds": round(cpu, 3),
            # CPU that neither the server (with its hash threads), its store nor the generator used: other work.
            "other_processes_core_share": round(max(0.0, busy - cpu - own - (server.store_cpu_seconds() - store_before)) / wall, 3),
            "error_replies": dict(stats.errors),
            "unexpected_disconnects": stats.disconnects,
            "generator": common.generator_verdict(own, wall),
        }
    finally:
        await common.close_players(everyone, server)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run from the command line; prints a short report and writes bench/results/login_burst-*.json."""
    args = parser().parse_args(argv)

    def report(figures: dict[str, Any]) -> None:
        base, burst = figures["baseline_ping"], figures["burst_ping"]
        print(
            f"{args.logins} logins at cost {args.bcrypt_cost} took {figures['burst_seconds']} s; pings p50/p99/max "
            f"baseline {base['p50_ms']}/{base['p99_ms']}/{base['max_ms']} ms, during the burst "
            f"{burst['p50_ms']}/{burst['p99_ms']}/{burst['max_ms']} ms; generator {figures['generator']['core_share']:.0%} of a core"
        )

    return common.command_line("login_burst", argv, args, args.logins * 2 + args.pingers + 1024, scenario, report)

if __name__ == "__main__":
    main()
