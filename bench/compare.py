"""Scenario compare: gamesvc against the Node.js + ws reference under the same chat-only load, in one run.

Both servers get the same load one after the other, alternating (reference, gamesvc, reference, gamesvc
with --rounds 2): R rooms of four players that only chat (signup, room.create, room.join, room.chat: the
ops the reference speaks), pinned to the same core. For each: server CPU per 1,000 delivered messages and
chat fan-out p99 at the base rate, then the chat rate raised step by step until the server no longer
delivers what is asked, its core is full or p99 passes --limit-ms (250 ms: the shared machine's noise
alone reaches 100 ms): the highest delivered messages/s before that (saturation). The ratio
gamesvc / reference of CPU per 1,000 delivered is what `make bench` prints.

    python -m bench.compare --rooms 250 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from bench import common
from bench.players import Player, Stats, fill_chat_rooms


def _find_reference() -> Path:
    """`../shared/bench-reference/node_ws_relay.js` beside the repository (or beside a folder above a worktree)."""
    for folder in common.ROOT.parents:
        candidate = folder / "shared" / "bench-reference" / "node_ws_relay.js"
        if candidate.exists():
            return candidate
    return common.ROOT.parent / "shared" / "bench-reference" / "node_ws_relay.js"


REFERENCE = Path(os.environ.get("GAMESVC_BENCH_REFERENCE", "")) if os.environ.get("GAMESVC_BENCH_REFERENCE") else _find_reference()
NODE_MODULES = common.WORK / "node"  # `npm install --no-save ws@8` there (bench/work is git-ignored)
FULL_CORE = 0.95  # a server using this share of its core is saturated whatever its latency says
KEPT_UP = 0.95  # share of the asked-for deliveries a step must deliver to count as kept up


def parser() -> argparse.ArgumentParser:
    """The scenario's command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=250, help="rooms of four chatting players (default 250)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of reference then gamesvc (default 2)")
    p.add_argument("--chat-rate", type=float, default=1.0, help="base chat messages/s per player (default 1)")
    p.add_argument("--rates", default="2,4,6,8,10,12", help="chat rates of the saturation climb, per player")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring the base rate (default 3)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds measured at the base rate (default 10)")
    p.add_argument("--step-seconds", type=float, default=5.0, help="seconds measured per climb step (default 5)")
    p.add_argument("--limit-ms", type=float, default=250.0, help="chat p99 that ends the climb (default 250)")
    p.add_argument("--only", choices=["reference", "gamesvc"], help="run one server only")
    p.add_argument(
        "--also-commit", action="append", default=[], metavar="COMMIT",
        help="also run gamesvc as of COMMIT (exported under bench/work/) in each round, to compare steps A/B",
    )
    p.add_argument("--profile", metavar="PREFIX", help="py-spy gamesvc at the base rate into PREFIX-<round>.txt")
    p.add_argument("--server-option", action="append", default=[], metavar="NAME=VALUE", help="extra twistd gamesvc option")
    p.add_argument("--no-pin", action="store_true", help="do not pin the servers and generator to separate cores")
    p.add_argument("--no-save", action="store_true", help="do not write a result file")
    return p


def reference_missing() -> str | None:
    """Why the reference cannot run here, or None when node, ws and the script are all present."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not REFERENCE.exists():
        return f"{REFERENCE} is missing"
    if not (NODE_MODULES / "node_modules" / "ws").is_dir():
        return f"ws is not installed: (mkdir -p {NODE_MODULES} && cd {NODE_MODULES} && npm install --no-save ws@8)"
    return None


class ReferenceServer:
    """node_ws_relay.js on a free port, pinned like gamesvc."""

    def __init__(self, pin: bool) -> None:
        self.port = common.free_port()
        self.pin = pin and (os.cpu_count() or 1) >= 2
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        """The WebSocket endpoint."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def _prepare_child(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if self.pin:
            os.sched_setaffinity(0, common.SERVER_CPUS)

    def start(self, timeout: float = 20.0) -> None:
        """Start it and wait for /healthz."""
        env = dict(os.environ, NODE_PATH=str(NODE_MODULES / "node_modules"))
        self.process = subprocess.Popen(
            ["node", str(REFERENCE), "--port", str(self.port)], env=env, preexec_fn=self._prepare_child,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the reference server did not start")

    def cpu_seconds(self) -> float:
        """CPU seconds of the server process."""
        return common.proc_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        """Resident memory in KiB."""
        return common.proc_rss_kib(self.pid)

    def stop(self, keep: bool = False) -> None:
        """Stop it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


async def measure(server: Any, stats: Stats, seconds: float) -> dict[str, Any]:
    """Delivered messages/s, chat fan-out latency and server CPU over `seconds`."""
    stats.reset()
    cpu_before, own_before = server.cpu_seconds(), common.own_cpu_seconds()
    busy_before, _ = common.system_busy()
    started = time.monotonic()
    stats.recording = True
    await asyncio.sleep(seconds)
    stats.recording = False
    wall = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu_before
    own = common.own_cpu_seconds() - own_before
    busy = (common.system_busy()[0] - busy_before) / common.CLK_TCK
    delivered = stats.received
    return {
        "delivered_per_second": round(delivered / wall, 1),
        "chat_latency": common.percentiles(stats.chat),
        "server_core_share": round(cpu / wall, 3),
        "server_cpu_seconds_per_1000_delivered": round(1000 * cpu / delivered, 4) if delivered else None,
        "other_processes_core_share": round(max(0.0, busy - cpu - own) / wall, 3),
        "error_replies": dict(stats.errors),
        "unexpected_disconnects": stats.disconnects,
        "generator": common.generator_verdict(own, wall),
    }


def export(commit: str) -> Path:
    """The source tree of `commit` under bench/work/src-COMMIT (for running an older gamesvc beside this one)."""
    folder = common.WORK / f"src-{commit}"
    if not folder.exists():
        folder.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit], cwd=common.ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


async def one_server(kind: str, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """The base-rate figures and the saturation climb of one fresh server."""
    if kind == "reference":
        server: Any = ReferenceServer(pin=not args.no_pin)
    else:
        extra = dict(item.split("=", 1) for item in args.server_option)
        env = {}
        if kind.startswith("gamesvc@"):
            # Older source first on the path: its gamesvc package and its twistd plugin are the ones imported.
            env["PYTHONPATH"] = str(export(kind.split("@", 1)[1]))
        server = common.Server(common.ServerOptions(extra=extra), "compare", pin=not args.no_pin, env=env)
    server.start()
    stats = Stats()
    players: list[Player] = []
    try:
        players = await fill_chat_rooms(server.url, args.rooms, stats, prefix="c" + secrets.token_hex(3))
        for player in players:
            player.start_chatting(args.chat_rate)
        await asyncio.sleep(args.warmup)
        profiler = None
        if args.profile and kind != "reference":
            from bench.rooms import start_profiler

            profiler = start_profiler(server, f"{args.profile}-{kind.replace('@', '-')}-{label}.txt", args.seconds)
        base = await measure(server, stats, args.seconds)
        if profiler is not None:
            profiler.wait(30)
        steps: list[dict[str, Any]] = []
        for rate in [float(r) for r in args.rates.split(",") if r]:
            for player in players:
                player.start_chatting(rate)
            await asyncio.sleep(1.5)
            step = await measure(server, stats, args.step_seconds) | {"chat_rate_per_player": rate}
            steps.append(step)
            p99 = step["chat_latency"]["p99_ms"]
            print(f"   {kind} {rate:g}/s/player: {step['delivered_per_second']}/s, p99 {p99} ms, "
                  f"server {step['server_core_share']:.0%}, generator {step['generator']['core_share']:.0%}", flush=True)
            # Keeping up: delivered what the players asked for (the base rate's deliveries scaled to this rate).
            step["kept_up"] = step["delivered_per_second"] >= KEPT_UP * base["delivered_per_second"] * rate / args.chat_rate
            if not step["kept_up"] or step["server_core_share"] >= FULL_CORE or (p99 or 0) > args.limit_ms:
                break
        base["kept_up"] = True
        # Saturation as the issue measures it: the highest rate the server kept up with before its core was full
        # (and its p99 within --limit-ms: a server that keeps up only by queueing does not count).
        sustained = [s for s in [base, *steps] if s["kept_up"] and s["server_core_share"] < FULL_CORE
                     and s["chat_latency"]["p99_ms"] is not None and s["chat_latency"]["p99_ms"] <= args.limit_ms
                     and s["generator"]["not_bottleneck"]]
        best = max(sustained, key=lambda s: s["delivered_per_second"], default=None)
        return {
            "server": kind,
            "players": len(players),
            "base": base,
            "saturation_delivered_per_second": best["delivered_per_second"] if best else None,
            "saturation_core_share": best["server_core_share"] if best else None,
            "steps": steps,
        }
    finally:
        for player in players:
            player.close()
        await asyncio.sleep(0.5)
        server.stop()


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate the two servers for --rounds rounds; return every run and the ratios of each round."""
    missing = reference_missing()
    kinds = ["reference", *(f"gamesvc@{c}" for c in args.also_commit), "gamesvc"] if args.only is None else [args.only]
    if missing and "reference" in kinds:
        print(f"NOTE: skipping the Node reference: {missing}")
        kinds.remove("reference")
    rounds: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        runs = {}
        for kind in kinds:
            runs[kind] = await one_server(kind, args, f"round{number}")
            base = runs[kind]["base"]
            print(f"round {number} {kind}: {base['server_cpu_seconds_per_1000_delivered']} CPU s/1000 delivered at "
                  f"{base['delivered_per_second']}/s, p99 {base['chat_latency']['p99_ms']} ms; saturation "
                  f"{runs[kind]['saturation_delivered_per_second']}/s", flush=True)
        entry: dict[str, Any] = {"round": number, "runs": runs}
        if "reference" in runs and "gamesvc" in runs:
            ref, ours = runs["reference"], runs["gamesvc"]
            entry["cpu_per_1000_ratios"] = {
                kind: round(run["base"]["server_cpu_seconds_per_1000_delivered"]
                            / ref["base"]["server_cpu_seconds_per_1000_delivered"], 3)
                for kind, run in runs.items() if kind != "reference"
            }
            entry["cpu_per_1000_ratio"] = round(
                ours["base"]["server_cpu_seconds_per_1000_delivered"] / ref["base"]["server_cpu_seconds_per_1000_delivered"], 3
            )
            if ours["saturation_delivered_per_second"] and ref["saturation_delivered_per_second"]:
                entry["saturation_ratio"] = round(
                    ref["saturation_delivered_per_second"] / ours["saturation_delivered_per_second"], 3
                )
        rounds.append(entry)
    return {"reference_skipped": missing, "rounds": rounds}


def report(figures: dict[str, Any]) -> None:
    """Print the ratio of each round."""
    if figures["reference_skipped"]:
        print(f"reference skipped ({figures['reference_skipped']}): no ratio")
    for entry in figures["rounds"]:
        if "cpu_per_1000_ratio" in entry:
            print(f"round {entry['round']}: gamesvc / reference CPU per 1,000 delivered = {entry['cpu_per_1000_ratio']}×"
                  f" (target ≤ 1.4×); saturation {entry['runs']['gamesvc']['saturation_delivered_per_second']}/s vs "
                  f"{entry['runs']['reference']['saturation_delivered_per_second']}/s")
            for kind, ratio in entry.get("cpu_per_1000_ratios", {}).items():
                if kind != "gamesvc":
                    sat = entry["runs"][kind]["saturation_delivered_per_second"]
                    print(f"   {kind}: {ratio}× the reference's CPU per 1,000 delivered; saturation {sat}/s")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run from the command line; prints the ratios and writes bench/results/compare-*.json."""
    args = parser().parse_args(argv)
    return common.command_line("compare", argv, args, args.rooms * 4 + 1024, scenario, report)


if __name__ == "__main__":
    main()
