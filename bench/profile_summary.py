"""Summarise a py-spy raw (collapsed stacks) profile: the hottest functions by own and by inclusive samples.

    python -m bench.profile_summary bench/work/profile.txt > bench/results/profile-rooms.txt
"""

from __future__ import annotations

import sys
from collections import Counter


def summarise(path: str, top: int = 25) -> str:
    """A short text report of a collapsed-stack file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive time (below the reactor loop):"]
    skip = ("twistd", "run (", "runApp", "ApplicationRunner", "postApplication", "runReactorWithLogging", "ReactorBase", "<module>")
    shown = [(f, n) for f, n in inclusive.most_common() if not f.startswith(skip)]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in shown[:top]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(summarise(sys.argv[1]))
