"""Placement simulator: the agent's eviction policy against the usual alternatives.

Replays synthetic request traces (bench/simulator/) through the agent's policy, LRU,
keep_alive, largest first and a Belady-style offline one, and prints the tables of
bench/results/placement.md; then the incident reports' hosts (placement_hosts.py), alone
with --hosts-only. The traces, the policies and what the simulated system does:
docs/benchmarks.md, "How the placement simulator works".

    .venv/bin/python bench/placement.py [--seeds 5] [--hosts-only] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from placement_hosts import HOSTS_HEADING, hosts_table, run_hosts

from simulator.replay import run
from simulator.report import held_out, residency_tradeoff, table, verdict


def incident_hosts(seeds: int, hours: float | None = None) -> str:
    """Issue 18's hosts, with models bigger than one GPU (bench/placement_hosts.py)."""
    started = time.monotonic()
    results = run_hosts(seeds, hours)
    command = " ".join([".venv/bin/python bench/placement.py", *sys.argv[1:]])
    return hosts_table(results, seeds, hours, command, time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="traces per workload (>= 1)")
    parser.add_argument("--hours", type=float, default=None, help="shorten every trace (> 0)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--hosts-only", action="store_true", help="only the incident hosts (placement_hosts.py)"
    )
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, not {args.seeds}")
    if args.hours is not None and not args.hours > 0:
        parser.error(f"--hours must be more than 0, not {args.hours:g}")
    started = time.monotonic()
    text = ""
    if not args.hosts_only:
        results = run(args.seeds, args.hours)
        text = table(results, args.seeds, time.monotonic() - started) + verdict(results)
        text += held_out(args.seeds, args.hours)
        text += residency_tradeoff(args.seeds, args.hours)
    text += incident_hosts(args.seeds, args.hours)
    print(text)
    if args.out is not None:
        if args.hosts_only and args.out.exists():
            # Keep the other sections: only the incident hosts' is rewritten.
            kept = args.out.read_text().split(HOSTS_HEADING)[0].rstrip("\n")
            text = f"{kept}\n{text}"
        args.out.write_text(text)


if __name__ == "__main__":
    main()
