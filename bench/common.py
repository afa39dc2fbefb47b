"""What every scenario shares: starting the server, reading /proc, latency statistics and result files."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The server gets core 0 and the generator core 1 (when the machine has two or more cores).
SERVER_CPUS = {0}
GENERATOR_CPUS = {1}
# The embedded store is a separate process (as a real MongoDB would be): after start-up it may run on any core,
# so the checkpoint and result writes it serves do not take the server's core.
STORE_CPUS = set(range(os.cpu_count() or 1))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit towards `wanted` (capped by the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin_generator(pin: bool) -> list[int]:
    """Keep the generator on its own core so that it never steals the server's; returns the cores used."""
    if pin and os.cpu_count() and os.cpu_count() >= 2:  # type: ignore[operator]
        os.sched_setaffinity(0, GENERATOR_CPUS)
    return sorted(os.sched_getaffinity(0))


def proc_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used, from /proc/PID/stat (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (VmRSS of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (the embedded database runs as one), found by their parent id."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores from /proc/stat, to see how much else ran during a phase."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def wait_for_quiet(max_cores: float = 0.3, max_wait: float = 30.0) -> float:
    """Wait (at most `max_wait` s) until other work uses under `max_cores` cores over 2 s; returns the last reading.

    The machine may be shared: a benchmark started while something else keeps a core busy measures that instead.
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy0, _ = system_busy()
        time.sleep(2.0)
        cores = (system_busy()[0] - busy0) / CLK_TCK / 2.0
        if cores < max_cores or time.monotonic() > deadline:
            return round(cores, 3)


def own_cpu_seconds() -> float:
    """CPU seconds (user plus system) this generator process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(samples: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p90, p99 and max of latencies given in seconds, reported in milliseconds."""
    if not samples:
        return {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] * 1000, 3)

    return {"count": n, "p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 3)}


@dataclass
class ServerOptions:
    """The twistd gamesvc options a scenario runs with; anything missing keeps the service's default."""

    bcrypt_cost: int = 4
    max_connections: int = 20000
    extra: dict[str, Any] = field(default_factory=dict)

    def argv(self, port: int, data_dir: Path) -> list[str]:
        """The command-line options for `twistd gamesvc`."""
        values: dict[str, Any] = {
            "port": port,
            "data-dir": data_dir,
            "bcrypt-cost": self.bcrypt_cost,
            "max-connections": self.max_connections,
            # Every player comes from 127.0.0.1, so the per-address limits must not bite.
            "signup-address-limit": 1_000_000,
            "login-address-limit": 1_000_000,
            "max-connections-per-address": 1_000_000,
            "room-miss-address-limit": 1_000_000,
            # ... nor the password-hashing caps (at the highest values the options accept): players sign up
            # together, all from one address.
            "hash-address-limit": 1000,
            "hash-queue-limit": 100_000,
            "login-address-attempts": 1_000_000,
            "message-rate": 1000,
            "message-burst": 2000,
            "chat-rate": 1000,
            "chat-burst": 2000,
            "turn-seconds": 20,
        }
        values.update(self.extra)
        args: list[str] = []
        for name, value in values.items():
            args += [f"--{name}", str(value)]
        return args


class Server:
    """A `twistd gamesvc` subprocess on a free loopback port, with its own core and a raised file limit."""

    def __init__(self, options: ServerOptions, name: str, pin: bool = True, env: dict[str, str] | None = None) -> None:
        self.options = options
        self.port = free_port()
        WORK.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK))
        self.log_path = self.dir / "twistd.log"
        self.pin = pin and (os.cpu_count() or 1) >= 2
        # The server records its GC pauses into its folder (read back by `gc_pauses` after `stop`).
        self.env = dict(os.environ, GAMESVC_GC_STATS=str(self.dir / "gc.json"), **(env or {}))
        self.argv_prefix: list[str] = [str(Path(sys.executable).parent / "twistd")]
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

    def command(self) -> list[str]:
        """The full command line."""
        return [*self.argv_prefix, "--pidfile=", "-n", "gamesvc", *self.options.argv(self.port, self.dir / "data")]

    def _prepare_child(self) -> None:
        # Runs in the child between fork and exec.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if self.pin:
            os.sched_setaffinity(0, SERVER_CPUS)

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until /healthz says the store answers."""
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._prepare_child, cwd=self.dir, env=self.env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited early; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        self._place_store()
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not become healthy within {timeout:g} s; see {self.log_path}")

    def _place_store(self) -> None:
        """Let the embedded store (inheriting the server's pinning) run on any core."""
        if not self.pin:
            return
        for child in children(self.pid):
            try:
                os.sched_setaffinity(child, STORE_CPUS)
            except OSError:
                pass

    def cpu_seconds(self) -> float:
        """CPU seconds of the server process."""
        return proc_cpu_seconds(self.pid)

    def store_cpu_seconds(self) -> float:
        """CPU seconds of the embedded database (the server's child processes)."""
        total = 0.0
        for child in children(self.pid):
            try:
                total += proc_cpu_seconds(child)
            except OSError:
                pass
        return total

    def rss_kib(self) -> int:
        """Resident memory of the server process in KiB."""
        return proc_rss_kib(self.pid)

    def messages_out(self) -> float:
        """The server's own count of messages sent to clients (gamesvc_messages_out_total)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith("gamesvc_messages_out_total "):
                    return float(line.split()[1])
        return 0.0

    def gc_pauses(self) -> dict[str, Any] | None:
        """Summary of the server's garbage-collection pauses (written at shutdown when GAMESVC_GC_STATS was set)."""
        path = self.env.get("GAMESVC_GC_STATS")
        if not path or not os.path.exists(path):
            return None
        with open(path) as f:
            data = json.load(f)
        summary: dict[str, Any] = {"threshold": data["threshold"]}
        for generation in (0, 1, 2):
            pauses = [p for g, p in data["pauses"] if g == generation]
            summary[f"gen{generation}"] = percentiles(pauses) | {"total_seconds": round(sum(pauses), 3)}
        return summary

    def stop(self, keep: bool = False) -> None:
        """SIGTERM the server, wait for it (SIGKILL after 15 s), and remove its folder unless `keep`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if not keep:
            self.remove()

    def remove(self) -> None:
        """Delete the server's folder (data, log, GC file)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine() -> dict[str, Any]:
    """Where the figures were taken: cores, CPU model, memory, versions and the git commit."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", False
    from autobahn.websocket import USES_NVX

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "loadavg_at_save": open("/proc/loadavg").read().split()[:3],
        "python": platform.python_version(),
        "twisted": _version("twisted"),
        "autobahn": _version("autobahn"),
        "autobahn_nvx": USES_NVX,
        "picows": _version("picows"),
        "uvloop": _version("uvloop"),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def save(
    scenario: str, argv: Sequence[str], parameters: dict[str, Any], figures: dict[str, Any], extra: dict[str, Any] | None = None
) -> Path:
    """Write one run's result file under bench/results/ and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS / f"{scenario}-{stamp}.json"
    document = {
        "scenario": scenario,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([".venv/bin/python", "-m", f"bench.{scenario}", *argv]),
        "machine": machine(),
        "parameters": parameters,
        "figures": figures,
        **(extra or {}),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def generator_verdict(cpu_seconds: float, wall_seconds: float) -> dict[str, Any]:
    """The generator's own CPU use over a phase, and whether it stayed clear of being the bottleneck (< 70 % of its core)."""
    share = cpu_seconds / wall_seconds if wall_seconds > 0 else 0.0
    return {"cpu_seconds": round(cpu_seconds, 3), "wall_seconds": round(wall_seconds, 3), "core_share": round(share, 3), "not_bottleneck": share < 0.7}


async def close_players(players: Sequence[Any], server: "Server", settle: float = 0.5, keep: bool = False) -> None:
    """End a scenario: close every player, give the close frames `settle` seconds, and stop the server."""
    import asyncio

    for player in players:
        player.close()
    await asyncio.sleep(settle)
    server.stop(keep=keep)


def command_line(
    name: str,
    argv: Sequence[str] | None,
    args: Any,
    nofile: int,
    scenario: Any,
    report: Any,
    **parameters: Any,
) -> dict[str, Any]:
    """What every scenario's command does: pin the generator, wait for a quiet machine, raise the file limit,
    run `scenario(args)` on uvloop, print `report(figures)`, and save the result file unless --no-save."""
    from bench.players import run

    cores = pin_generator(not args.no_pin)
    busy_before_start = wait_for_quiet()
    limit = raise_nofile(nofile)
    figures = run(lambda: scenario(args))
    report(figures)
    if not args.no_save:
        parameters = vars(args) | {
            "machine_busy_cores_before_start": busy_before_start,
            "generator_cores": cores,
            "generator_nofile": limit,
        } | parameters
        print("saved", save(name, argv if argv is not None else sys.argv[1:], parameters, figures))
    return figures
