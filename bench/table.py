"""Print the markdown table of bench/README.md from the newest result file of each scenario.

    python -m bench.table
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import RESULTS


def newest(scenario: str, experiment: bool = False) -> dict[str, Any] | None:
    """The newest result document of a scenario, if any; `experiment` picks runs with the hash threads reniced."""
    for path in sorted(RESULTS.glob(f"{scenario}-*.json"), reverse=True):
        document = json.loads(path.read_text())
        if bool(document["parameters"].get("nice_hash_threads")) == experiment:
            return document | {"file": path.name}
    return None


def ms(latency: dict[str, Any]) -> str:
    """p50 / p99 / max in milliseconds."""
    return f"{latency['p50_ms']} / {latency['p99_ms']} / {latency['max_ms']} ms"


def rows() -> list[str]:
    """One table row per scenario that has results."""
    out: list[str] = []
    if (d := newest("idle")) is not None:
        f = d["figures"]
        out.append(
            f"| idle | {f['connections_held']:,} of {f['connections_requested']:,} authenticated connections held; "
            f"server RSS {f['server_rss_before_kib']:,} → {f['server_rss_after_kib']:,} KiB = "
            f"**{f['server_rss_per_connection_kib']} KiB per connection** | ≤ 30 KiB each, 10,000 held | "
            f"{f['generator']['core_share']:.0%} | `{d['command']}` | {d['file']} |"
        )
    if (d := newest("rooms")) is not None:
        f = d["figures"]
        out.append(
            f"| rooms | {f['players']} players; **{f['delivered_per_second']:,} delivered msgs/s**; chat fan-out p50/p99/max "
            f"**{ms(f['chat_latency'])}**; roll→rolled {ms(f['roll_latency'])}; server {f['server_core_share']:.0%} of a core, "
            f"**{f['server_cpu_seconds_per_1000_delivered']} CPU s per 1,000 delivered**; other processes used "
            f"{f.get('other_processes_core_share', '?')} cores meanwhile | chat p99 ≤ 20 ms | "
            f"{f['generator']['core_share']:.0%} | `{d['command']}` | {d['file']} |"
        )
    if (d := newest("saturation")) is not None:
        f = d["figures"]
        steps = "; ".join(
            f"{s['chat_rate_per_player']:g}/s → {s['delivered_per_second']:,}/s p99 {s['chat_latency']['p99_ms']} ms"
            for s in f["steps"]
        )
        gen = max((s["generator"]["core_share"] for s in f["steps"]), default=0)
        out.append(
            f"| saturation | **highest sustained (p99 ≤ 100 ms): {f['highest_sustained_delivered_per_second']} delivered msgs/s**; "
            f"steps (chats/s/player → delivered, chat p99): {steps} | (find it) | ≤ {gen:.0%} | `{d['command']}` | {d['file']} |"
        )
    for d, label in ((newest("login_burst"), "login burst"), (newest("login_burst", True), "login burst, hash threads reniced (experiment)")):
        if d is None:
            continue
        f = d["figures"]
        out.append(
            f"| {label} | {d['parameters']['logins']} logins at bcrypt cost {d['parameters']['bcrypt_cost']} took "
            f"{f['burst_seconds']} s; pings p50/p99/max: quiet {ms(f['baseline_ping'])}, **during the burst {ms(f['burst_ping'])}** | "
            f"ping p99 ≤ 10 ms | {f['generator']['core_share']:.0%} | `{d['command']}` | {d['file']} |"
        )
    return out


def table() -> str:
    """The whole markdown table."""
    head = [
        "| scenario | figures | target | generator CPU (share of its core) | reproduce | result file |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows()) + "\n"


if __name__ == "__main__":
    print(table(), end="")
