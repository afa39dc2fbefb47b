"""A long fuzz run of the WebSocket protocol: the scenarios of tests/test_fuzz.py with many more examples.

    .venv/bin/python -m bench.fuzz --examples 5000

Runs the three fuzz tests' strategies (random frames, random ops with random fields, random op sequences),
each with its share of `--examples`, from a random seed (printed and saved, so a run can be repeated with
`--seed`), and writes bench/results/fuzz-<UTC time>.json: examples run, failures found (with hypothesis's
minimal failing example), duration.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import time
import traceback
from importlib.metadata import version
from pathlib import Path
from typing import Any, Sequence

from hypothesis import HealthCheck, given, reporting, seed, settings

from tests.test_fuzz import run_scenario, scenarios

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KINDS = {"frames": 20, "ops": 40, "all": 60}  # fuzz test -> steps per scenario


def fuzz_one(kind: str, max_steps: int, examples: int, run_seed: int) -> dict[str, Any]:
    """Run one fuzz test for `examples` examples; the failure (shrunk by hypothesis) if any."""
    ran = 0
    report: list[str] = []

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(scenarios(kinds=kind, max_steps=max_steps))
    def fuzz(scenario: Any) -> None:
        nonlocal ran
        ran += 1
        run_scenario(scenario)

    started = time.monotonic()
    failure = None
    with reporting.with_reporter(report.append):
        try:
            fuzz()
        except BaseException as e:  # hypothesis re-raises the minimal example's error (or a group of them)
            if isinstance(e, KeyboardInterrupt):
                raise
            errors = list(getattr(e, "exceptions", [e]))
            failure = {
                "error": f"{type(e).__name__}: {e}"[:4000],
                # The minimal failing example: hypothesis attaches it as exception notes.
                "examples": ["\n".join(getattr(x, "__notes__", []))[-8000:] for x in errors],
                "tracebacks": ["".join(traceback.format_exception(x))[-4000:] for x in errors],
                "report": "\n".join(report)[-8000:],
            }
    return {
        "test": kind,
        "max_steps": max_steps,
        "examples_requested": examples,
        "examples_run": ran,
        "seconds": round(time.monotonic() - started, 1),
        "failure": failure,
    }


def git_commit() -> dict[str, Any]:
    """The commit the run was taken at, and whether tracked files differed from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return {"git_commit": "unknown", "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(dirty)}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run every fuzz test, save the result file; exit 1 when a failure was found."""
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="examples in all, shared by the three tests")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: a random one)")
    parser.add_argument("--out", type=Path, default=None, help="result file (default bench/results/fuzz-TIME.json)")
    options = parser.parse_args(argv)
    run_seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
    total = sum(KINDS.values())
    started = time.monotonic()
    runs = []
    for kind, steps in KINDS.items():
        share = max(1, options.examples * steps // total)
        print(f"fuzz {kind}: {share} examples, up to {steps} steps each, seed {run_seed}", flush=True)
        run = fuzz_one(kind, steps, share, run_seed)
        print(f"  {run['examples_run']} run in {run['seconds']} s: {'FAILED' if run['failure'] else 'ok'}", flush=True)
        if run["failure"]:
            print(run["failure"]["error"], file=sys.stderr)
        runs.append(run)
    failures = [dict(run["failure"], test=run["test"]) for run in runs if run["failure"]]
    document = {
        "scenario": "fuzz",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([".venv/bin/python", "-m", "bench.fuzz", *(argv if argv is not None else sys.argv[1:])]),
        "seed": run_seed,
        "machine": {"python": platform.python_version(), "hypothesis": version("hypothesis"), **git_commit()},
        "examples_requested": options.examples,
        "examples_run": sum(run["examples_run"] for run in runs),
        "failures_found": len(failures),
        "failures": failures,
        "duration_seconds": round(time.monotonic() - started, 1),
        "tests": runs,
    }
    path = options.out or RESULTS / f"fuzz-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"{document['examples_run']} examples, {len(failures)} failures, {document['duration_seconds']} s: {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
