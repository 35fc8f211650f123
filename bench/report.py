"""Assembles bench/RESULTS.md from the sections in bench/results/, with the machine it ran on."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    sections = sorted((BENCH / "results").glob("*.md"))
    header = [
        "# Warmpath benchmark results",
        "",
        "Produced by `make bench`. Every figure is a ratio against a baseline measured in the same",
        "run (absolute times on shared machines drift); no test asserts a time.",
        "",
        f"- machine: {os.cpu_count()} CPU(s), {cpu_model()}, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; run on {datetime.date.today().isoformat()}",
        "",
        "",
    ]
    body = [section.read_text().rstrip() + "\n" for section in sections]
    (BENCH / "RESULTS.md").write_text("\n".join(header) + "\n".join(body))
    print(f"wrote {BENCH / 'RESULTS.md'} from {len(sections)} section(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
