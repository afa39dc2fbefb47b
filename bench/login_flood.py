"""Scenario 5, login flood: attackers hammer ten accounts' logins from many addresses while real players log in.

A connections (each with an address of its own) send logins for ten accounts, right and wrong passwords
alternately, at a fixed rate each, for S seconds; meanwhile L other players each log in once, at moments spread
over the flood, on fresh connections of their own, and P players ping. Every simulated client has its own address
through `X-Forwarded-For`, which the server believes from 127.0.0.1 (`--trusted-proxy 127.0.0.1/32`), so the
service's own per-address limits apply as in production. Target: all L logins succeed, each within 2 s, at bcrypt
cost 12; ping p99 <= 10 ms.

    python -m bench.login_flood --seconds 60 --attackers 200 --logins 100 --pingers 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import time
from collections import Counter
from typing import Any, Sequence

from bench import common
from bench.login_burst import pings_during
from bench.players import PASSWORD, Player, RequestFailed, Stats
from gamesvc.config import Settings


def parser() -> argparse.ArgumentParser:
    """The scenario's command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.login_flood", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="length of the flood (default 60)")
    p.add_argument("--attackers", type=int, default=200, help="attacking connections, one address each (default 200)")
    p.add_argument("--accounts", type=int, default=10, help="accounts the attackers hammer (default 10)")
    p.add_argument("--attack-rate", type=float, default=10.0, help="logins per second per attacking connection (default 10)")
    p.add_argument("--logins", type=int, default=100, help="real players logging in once each during the flood (default 100)")
    p.add_argument("--pingers", type=int, default=100, help="players pinging meanwhile (default 100)")
    p.add_argument("--ping-interval", type=float, default=0.1, help="seconds between one player's pings (default 0.1)")
    p.add_argument("--bcrypt-cost", type=int, default=12, help="server bcrypt cost (default 12)")
    p.add_argument(
        "--pin-hash-threads", action="store_true",
        help="keep the server's bcrypt threads on the server's core (default: let them onto any core, like the store)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and generator to separate cores")
    p.add_argument("--no-save", action="store_true", help="do not write a result file")
    return p


def address(group: int, index: int) -> dict[str, str]:
    """The handshake header giving simulated client `index` of `group` an address of its own."""
    return {"X-Forwarded-For": f"10.{group}.{index // 250}.{index % 250 + 1}"}


async def sign_up(players: list[Player], url: str, group: int, batch: int = 8) -> None:
    """Connect and sign up (or log in) every player, a few at a time: the server refuses hashing beyond its queue."""
    for start in range(0, len(players), batch):
        chunk = players[start:start + batch]
        await asyncio.gather(*(p.connect(url, headers=address(group, start + i)) for i, p in enumerate(chunk)))
        await asyncio.gather(*(p.sign_in() for p in chunk))


def spread_workers(pid: int) -> list[int]:
    """Let every thread of the server but its main (reactor) thread run on any core; returns their ids.

    The harness pins the server to one core to measure the reactor; its bcrypt pool is CPU-bound work that a
    deployment would spread over every core, as the embedded store is.
    """
    workers = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    for tid in workers:
        os.sched_setaffinity(tid, common.STORE_CPUS)
    return workers


async def attack(player: Player, accounts: list[str], rate: float, until: float, outcomes: Counter[str]) -> None:
    """Send logins for the accounts, right and wrong passwords alternately, at `rate` per second until `until`."""
    n = 0
    interval = 1.0 / rate
    await asyncio.sleep(random.random() * interval)
    while time.monotonic() < until and not player.closed:
        password = PASSWORD if n % 2 else "wrong-password-1"
        try:
            await player.request("login", username=accounts[n % len(accounts)], password=password)
            outcomes["ok"] += 1
        except RequestFailed as e:
            outcomes[str(e.code)] += 1
        except ConnectionError:
            outcomes["disconnected"] += 1
            return
        n += 1
        await asyncio.sleep(interval)


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario against a fresh server and return its figures."""
    # Every client has an address of its own here: the service's own per-address, hashing and message limits apply
    # (its defaults, in place of the raised ones of the other scenarios).
    service = Settings()
    extra = {"trusted-proxy": "127.0.0.1/32"} | {
        name.replace("_", "-"): getattr(service, name)
        for name in (
            "signup_address_limit", "login_address_limit", "login_address_attempts", "hash_address_limit",
            "hash_queue_limit", "message_rate", "message_burst",
        )
    }
    server = common.Server(common.ServerOptions(bcrypt_cost=args.bcrypt_cost, extra=extra), "login-flood", pin=not args.no_pin)
    server.start()
    stats = Stats()
    everyone: list[Player] = []
    try:
        prefix = "f" + secrets.token_hex(3)
        setup_started = time.monotonic()
        targets = [Player(f"{prefix}t{i}", stats) for i in range(args.accounts)]
        players = [Player(f"{prefix}p{i}", stats) for i in range(args.logins)]
        everyone += targets + players
        await sign_up(targets, server.url, 1)
        await sign_up(players, server.url, 2)
        # The bcrypt pool's threads exist once the signups have run.
        spread = spread_workers(server.pid) if server.pin and not args.pin_hash_threads else []
        pingers = [Player(p.name, stats) for p in players[: args.pingers]]
        pingers += [Player(players[i % len(players)].name, stats) for i in range(len(pingers), args.pingers)]
        everyone += pingers
        await asyncio.gather(*(p.connect(server.url, headers=address(3, i)) for i, p in enumerate(pingers)))
        await asyncio.gather(*(p.resume(players[i % len(players)].token) for i, p in enumerate(pingers)))  # type: ignore[arg-type]
        attackers = [Player(f"{prefix}a{i}", stats) for i in range(args.attackers)]
        everyone += attackers
        await asyncio.gather(*(a.connect(server.url, headers=address(4, i)) for i, a in enumerate(attackers)))
        setup = time.monotonic() - setup_started

        outcomes: Counter[str] = Counter()
        logins: list[tuple[float, str]] = []
        names = [t.name for t in targets]
        cpu_before, own_before = server.cpu_seconds(), common.own_cpu_seconds()
        busy_before, store_before = common.system_busy()[0], server.store_cpu_seconds()
        started = time.monotonic()
        until = started + args.seconds

        async def one_login(index: int, player: Player) -> None:
            # Spread over the flood, leaving the last 5 % for the last logins to finish within it.
            await asyncio.sleep(args.seconds * 0.95 * index / max(1, len(players)))
            fresh = Player(player.name, stats)
            everyone.append(fresh)
            await fresh.connect(server.url, headers=address(5, index))
            t0 = time.perf_counter()
            try:
                await fresh.request("login", username=player.name, password=PASSWORD)
                result = "ok"
            except RequestFailed as e:
                result = str(e)  # code and message: the message tells a full hash queue from a slow store
            logins.append((time.perf_counter() - t0, result))

        reconnects = 0

        async def attacker(index: int, player: Player) -> None:
            # A connection that never signs in is closed at --signin-timeout (4408, 30 s by default): the
            # attacker connects again from its address, as a real one would, so the flood lasts all --seconds.
            nonlocal reconnects
            while True:
                await attack(player, names, args.attack_rate, until, outcomes)
                if time.monotonic() >= until:
                    return
                player = Player(player.name, stats)
                everyone.append(player)
                try:
                    await player.connect(server.url, headers=address(4, index))
                    reconnects += 1
                except Exception:  # refused (say, its address's connections are still counted): try again soon
                    outcomes["reconnect_refused"] += 1
                    await asyncio.sleep(0.1)

        async def flood() -> None:
            await asyncio.gather(
                *(attacker(i, a) for i, a in enumerate(attackers)),
                *(one_login(i, p) for i, p in enumerate(players)),
            )

        during, _ = await pings_during(pingers, args.ping_interval, flood)
        wall = time.monotonic() - started
        own = common.own_cpu_seconds() - own_before
        cpu = server.cpu_seconds() - cpu_before
        busy = (common.system_busy()[0] - busy_before) / common.CLK_TCK
        store = server.store_cpu_seconds() - store_before
        times = [t for t, _ in logins]
        results = Counter(r for _, r in logins)
        return {
            "setup_seconds": round(setup, 2),
            "server_threads_spread_over_all_cores": len(spread),
            "flood_seconds": round(wall, 2),
            "attack_replies": dict(outcomes),
            "attack_requests_per_second": round(sum(outcomes.values()) / wall, 1),
            "logins": dict(results),
            "logins_ok": results["ok"],
            "login_time": common.percentiles(times),
            "logins_within_2s": sum(1 for t, r in logins if r == "ok" and t <= 2.0),
            "ping": common.percentiles(during),
            "server_cpu_seconds": round(cpu, 3),
            # CPU that neither the server (with its hash threads), its store nor the generator used: other work.
            "other_processes_core_share": round(max(0.0, busy - cpu - own - store) / wall, 3),
            "unexpected_disconnects": stats.disconnects,
            "attacker_reconnects": reconnects,
            "generator": common.generator_verdict(own, wall),
        }
    finally:
        await common.close_players(everyone, server)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run from the command line; prints a short report and writes bench/results/login_flood-*.json."""
    args = parser().parse_args(argv)

    def report(figures: dict[str, Any]) -> None:
        login, ping = figures["login_time"], figures["ping"]
        print(
            f"{args.attackers} attackers on {args.accounts} accounts for {figures['flood_seconds']} s "
            f"({figures['attack_requests_per_second']} logins/s: {figures['attack_replies']}); "
            f"{figures['logins_ok']}/{args.logins} logins ok, {figures['logins_within_2s']} within 2 s, "
            f"p50/p99/max {login['p50_ms']}/{login['p99_ms']}/{login['max_ms']} ms; pings p50/p99/max "
            f"{ping['p50_ms']}/{ping['p99_ms']}/{ping['max_ms']} ms; generator {figures['generator']['core_share']:.0%} of a core"
        )

    nofile = args.attackers + args.logins * 2 + args.pingers + args.accounts + 1024
    return common.command_line("login_flood", argv, args, nofile, scenario, report)


if __name__ == "__main__":
    main()
