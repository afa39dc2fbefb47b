"""Scenario memory_flood: clients that queue large nested requests behind a slow one, while the rooms scenario runs.

F connections (default 200), each from its own X-Forwarded-For address, send a login with a wrong password
(a slow request: bcrypt at cost 12) and then the largest allowed message of nested JSON arrays (64 KiB, the
most parsed objects per byte) as fast as the server lets them: within the message rate and only while their
socket takes it (TCP backpressure), for --seconds. Meanwhile R rooms of four play and chat. Reports server
RSS before, at its peak and after the flooders closed, and the chat fan-out latency during the flood. The
flooders run in a process of their own, niced, so that their writes do not delay the players' clock.
Targets: RSS grows by at most 64 MiB, is back within 16 MiB once they close, chat p99 ≤ 50 ms.

    python -m bench.memory_flood --flooders 200 --seconds 30 --rooms 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import time
from typing import Any, Sequence

from picows import WSMsgType

from bench import common
from bench.players import Player, Stats, fill_rooms

# The server's options for this scenario, in one place. The service's own message limits (not the raised ones
# of the other scenarios) apply, since the flooders must be held to them; every client comes from 127.0.0.1, and
# the server believes the X-Forwarded-For each flooder sends, so per-address limits count each flooder apart.
SERVER_OPTIONS: dict[str, Any] = {
    "message-rate": 20,
    "message-burst": 40,
    "chat-rate": 1,
    "chat-burst": 5,
    "trusted-proxy": "127.0.0.1/32",
}
WRITE_BUFFER_LIMIT = 256 * 1024  # a flooder sends only while its socket's buffer is below this


def parser() -> argparse.ArgumentParser:
    """The scenario's command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.memory_flood", description=__doc__.split("\n\n")[0])
    p.add_argument("--flooders", type=int, default=200, help="flooding connections (default 200)")
    p.add_argument("--rooms", type=int, default=50, help="rooms of four playing meanwhile (default 50)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of flooding (default 30)")
    p.add_argument("--settle", type=float, default=10.0, help="seconds after the flooders close before RSS is read again")
    p.add_argument("--message-bytes", type=int, default=65536, help="size of each nested message (the server's limit)")
    p.add_argument("--bcrypt-cost", type=int, default=12, help="bcrypt cost, which makes the login slow (default 12)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and generator to separate cores")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE", help="environment for the server")
    p.add_argument("--server-option", action="append", default=[], metavar="NAME=VALUE", help="extra twistd gamesvc option")
    p.add_argument("--no-save", action="store_true", help="do not write a result file")
    p.add_argument("--flood-child", metavar="URL", help=argparse.SUPPRESS)  # the flooders' own process
    p.add_argument("--rate", type=float, default=20.0, help=argparse.SUPPRESS)
    p.add_argument("--burst", type=int, default=40, help=argparse.SUPPRESS)
    return p


def nested_message(size: int, depth: int = 400) -> bytes:
    """A `ping` of at most `size` bytes whose extra field is arrays nested `depth` deep, repeated."""
    unit = "[" * depth + "]" * depth
    head = '{"op":"ping","id":"flood","x":['
    count = max(1, (size - len(head) - 2) // (len(unit) + 1))
    text = head + ",".join([unit] * count) + "]}"
    assert len(text) <= size
    json.loads(text)  # within the parser's nesting limit
    return text.encode()


class Flooder(Player):
    """A connection that sends one slow request, then large nested messages within the rate and backpressure."""

    def __init__(self, name: str, stats: Stats, payload: bytes, rate: float, burst: int) -> None:
        super().__init__(name, stats)
        self.payload = payload
        self.rate = rate
        self.tokens = float(burst)
        self.burst = burst
        self.sent_messages = 0
        self.replies = 0
        self.close_code: int | None = None

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.replies += 1
        elif frame.msg_type == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code()
            transport.disconnect()

    async def flood(self, until: float) -> None:
        """Log in with a wrong password, then send the payload as fast as allowed until `until`."""
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, json.dumps(
            {"op": "login", "id": 1, "username": self.name, "password": "wrong-password-1"}).encode())
        last = time.monotonic()
        while not self.closed and time.monotonic() < until:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - last) * self.rate)
            last = now
            buffered = self.transport.underlying_transport.get_write_buffer_size()
            while self.tokens >= 1 and buffered < WRITE_BUFFER_LIMIT and not self.closed:
                self.transport.send(WSMsgType.TEXT, self.payload)
                self.sent_messages += 1
                self.tokens -= 1
                buffered += len(self.payload)
            await asyncio.sleep(0.05)


async def flood(url: str, count: int, seconds: float, payload: bytes, rate: float, burst: int) -> dict[str, Any]:
    """Connect `count` flooders, say "ready", flood for `seconds`, close them; what they sent and how they ended."""
    logging.getLogger("picows").setLevel(logging.ERROR)  # not one "writing paused" line per flooder
    stats = Stats()
    prefix = "f" + secrets.token_hex(3)
    flooders = [Flooder(f"{prefix}{i}", stats, payload, rate, burst) for i in range(count)]
    await asyncio.gather(*(
        f.connect(url, headers={"X-Forwarded-For": f"10.{i // 250}.{i % 250}.1"}) for i, f in enumerate(flooders)
    ))
    print("ready", flush=True)
    cpu_before = common.own_cpu_seconds()
    started = time.monotonic()
    await asyncio.gather(*(f.flood(started + seconds) for f in flooders))
    cpu = common.own_cpu_seconds() - cpu_before
    closes: dict[str, int] = {}
    for f in flooders:
        key = str(f.close_code) if f.close_code is not None else ("disconnected" if f.closed else "open")
        closes[key] = closes.get(key, 0) + 1
        f.close()
    await asyncio.sleep(0.2)
    return {
        "messages_sent": sum(f.sent_messages for f in flooders),
        "replies_to_flooders": sum(f.replies for f in flooders),
        "flooder_closes_before_the_end": closes,
        "flood_process": common.generator_verdict(cpu, time.monotonic() - started),
    }


def _flood_child_setup() -> None:
    # The flooders write hundreds of MB at the start: niced, in their own process, so that the rooms players'
    # event loop (whose receive times are the latency samples) is not held up by those writes.
    os.nice(10)


async def start_flood(args: argparse.Namespace, url: str, extra: dict[str, Any]) -> asyncio.subprocess.Process:
    """The flooders' own process, started and connected."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.memory_flood", "--flood-child", url, "--flooders", str(args.flooders),
        "--seconds", str(args.seconds), "--message-bytes", str(args.message_bytes),
        "--rate", str(extra["message-rate"]), "--burst", str(extra["message-burst"]),
        stdout=asyncio.subprocess.PIPE, preexec_fn=_flood_child_setup, cwd=common.ROOT,
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 120)
    if line.strip() != b"ready":
        raise RuntimeError(f"the flood process did not start: {line!r}")
    return child


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """Run the rooms, measure RSS, flood, close the flooders, measure RSS again."""
    extra = dict(SERVER_OPTIONS) | dict(item.split("=", 1) for item in args.server_option)
    options = common.ServerOptions(bcrypt_cost=args.bcrypt_cost, extra=extra)
    env = dict(item.split("=", 1) for item in args.server_env)
    server = common.Server(options, "memory_flood", pin=not args.no_pin, env=env)
    server.start()
    stats = Stats()
    players: list[Player] = []
    try:
        setup_started = time.monotonic()
        players = await fill_rooms(server.url, args.rooms, stats, prefix="m" + secrets.token_hex(3), roll_delay=1.0)
        for player in players:
            player.start_chatting(1.0)
        setup = time.monotonic() - setup_started
        await asyncio.sleep(2)
        # The same rooms without the flood first, as the yardstick for the chat latency under it.
        stats.reset()
        stats.recording = True
        quiet_busy = common.system_busy()[0]
        await asyncio.sleep(10)
        stats.recording = False
        chat_before = common.percentiles(stats.chat)
        other_before = round(max(0.0, (common.system_busy()[0] - quiet_busy) / common.CLK_TCK / 10 - 1.0), 3)
        rss_before = server.rss_kib()
        payload = nested_message(args.message_bytes)
        child = await start_flood(args, server.url, extra)
        stats.reset()
        stats.recording = True
        cpu_before, own_before = server.cpu_seconds(), common.own_cpu_seconds()
        store_before, busy_before = server.store_cpu_seconds(), common.system_busy()[0]
        started = time.monotonic()
        until = started + args.seconds
        peak = rss_before
        marks: list[int] = [0]  # where each 5-second window's chat samples end, to see when latency rose
        next_mark = started + 5
        while time.monotonic() < until:
            await asyncio.sleep(0.5)
            peak = max(peak, server.rss_kib())
            if time.monotonic() >= next_mark:
                marks.append(len(stats.chat))
                next_mark += 5
        assert child.stdout is not None
        flood_figures = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))
        await child.wait()
        stats.recording = False
        wall = time.monotonic() - started
        cpu = server.cpu_seconds() - cpu_before
        own = common.own_cpu_seconds() - own_before
        store = server.store_cpu_seconds() - store_before
        busy = (common.system_busy()[0] - busy_before) / common.CLK_TCK
        rss_at_end = server.rss_kib()
        chat = common.percentiles(stats.chat)
        marks.append(len(stats.chat))
        windows = [common.percentiles(stats.chat[a:b])["p99_ms"] for a, b in zip(marks, marks[1:])]
        await asyncio.sleep(args.settle)
        rss_after = server.rss_kib()
        figures = {
            "rooms_players": len(players),
            "setup_seconds": round(setup, 1),
            "flooders": args.flooders,
            "message_bytes": len(payload),
            **flood_figures,
            "server_rss_before_kib": rss_before,
            "server_rss_peak_kib": peak,
            "server_rss_at_end_kib": rss_at_end,
            "server_rss_after_close_kib": rss_after,
            "rss_growth_mib": round((peak - rss_before) / 1024, 1),
            "rss_left_after_close_mib": round((rss_after - rss_before) / 1024, 1),
            "chat_latency": chat,
            "chat_latency_before_flood": chat_before,
            "chat_p99_ms_by_5_seconds_of_flood": windows,
            "all_cores_busy_beyond_one_before_flood": other_before,
            "server_core_share": round(cpu / wall, 3),
            # CPU that neither the server, its store nor the generator used: other work on the machine.
            "other_processes_core_share": round(max(0.0, busy - cpu - store - own) / wall, 3),
            "error_replies_to_players": dict(stats.errors),
            "generator": common.generator_verdict(own, wall),
        }
        figures["targets_met"] = {
            "rss_growth_le_64_mib": figures["rss_growth_mib"] <= 64,
            "rss_back_within_16_mib": figures["rss_left_after_close_mib"] <= 16,
            "chat_p99_le_50_ms": chat["p99_ms"] is not None and chat["p99_ms"] <= 50,
        }
        return figures
    finally:
        await common.close_players(players, server)


def report(figures: dict[str, Any]) -> None:
    """Print the headline figures."""
    chat = figures["chat_latency"]
    print(
        f"RSS {figures['server_rss_before_kib'] // 1024} MiB → peak {figures['server_rss_peak_kib'] // 1024} MiB "
        f"(+{figures['rss_growth_mib']} MiB) → {figures['server_rss_after_close_kib'] // 1024} MiB after close "
        f"(+{figures['rss_left_after_close_mib']} MiB); chat p50 {chat['p50_ms']} p99 {chat['p99_ms']} ms "
        f"(before the flood: p99 {figures['chat_latency_before_flood']['p99_ms']} ms; by 5 s of flood: "
        f"{figures['chat_p99_ms_by_5_seconds_of_flood']}); "
        f"{figures['messages_sent']} nested messages sent, {figures['replies_to_flooders']} replies; "
        f"closes {figures['flooder_closes_before_the_end']}; server {figures['server_core_share']:.0%} of a core, "
        f"other processes {figures['other_processes_core_share']} cores; targets {figures['targets_met']}"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run from the command line; prints a short report and writes bench/results/memory_flood-*.json."""
    args = parser().parse_args(argv)
    if args.flood_child:
        from bench.players import run

        common.pin_generator(not args.no_pin)
        common.raise_nofile(args.flooders + 256)
        payload = nested_message(args.message_bytes)
        result = run(lambda: flood(args.flood_child, args.flooders, args.seconds, payload, args.rate, args.burst))
        print(json.dumps(result), flush=True)
        return result
    return common.command_line(
        "memory_flood", argv, args, args.rooms * 4 + args.flooders + 1024, scenario, report, server_options=SERVER_OPTIONS
    )


if __name__ == "__main__":
    main()
