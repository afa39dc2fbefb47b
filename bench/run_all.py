"""Run every scenario once with its default parameters (what `make bench` does) and print a summary.

    python -m bench.run_all            # about fifteen minutes on a 2-core machine
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Sequence

from bench import cluster, compare, idle, login_burst, login_flood, memory_flood, rooms, saturation

SCENARIOS: list[tuple[str, Callable[[Sequence[str]], dict[str, Any]], list[str]]] = [
    ("idle", idle.main, ["--connections", "10000", "--hold", "5"]),
    ("rooms", rooms.main, ["--rooms", "250", "--seconds", "20"]),
    ("saturation", saturation.main, ["--rooms", "250", "--rates", "1,1.5,2,2.5,3,4"]),
    ("login_burst", login_burst.main, ["--logins", "100", "--pingers", "100"]),
    ("compare", compare.main, ["--rooms", "250", "--rounds", "2"]),
    ("memory_flood", memory_flood.main, ["--flooders", "200", "--seconds", "30", "--rooms", "50"]),
    ("login_flood", login_flood.main, ["--seconds", "60", "--attackers", "200", "--logins", "100", "--pingers", "100"]),
    # Last: it stops `make bench` with a clear message while the nodes do not act as a cluster.
    ("cluster", cluster.main, ["--rooms", "100", "--seconds", "20"]),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios named on the command line (default: all) one after another."""
    names = [name for name, _, _ in SCENARIOS]
    wanted = list(argv if argv is not None else sys.argv[1:]) or names
    unknown = [name for name in wanted if name not in names]
    if unknown:
        print(f"usage: python -m bench.run_all [{' '.join(names)}]; unknown: {' '.join(unknown)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    ratios: list[str] = []
    for name, run, args in SCENARIOS:
        if name in wanted:
            print(f"== {name}: python -m bench.{name} {' '.join(args)}", flush=True)
            t0 = time.monotonic()
            figures = run(args)
            print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
            if name == "compare":
                ratios = [str(r["cpu_per_1000_ratio"]) for r in figures["rounds"] if "cpu_per_1000_ratio" in r]
                if not ratios:
                    print(f"   no ratio: {figures['reference_skipped']}")
    if ratios:
        print(f"gamesvc / Node reference, server CPU per 1,000 delivered (chat-only load): {', '.join(ratios)}× "
              "(target ≤ 1.4×)")
    print(f"all done in {time.monotonic() - started:.0f} s; results in bench/results/, table in bench/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
