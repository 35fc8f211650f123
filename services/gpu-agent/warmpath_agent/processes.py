"""Processes by pid, as /proc shows them: when one started, what it runs, whether it is
stopped; and signals sent only to the very process meant, never to a reused pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

__all__ = [
    "gone_within",
    "is_stopped",
    "process_command",
    "process_start_time",
    "signal_process",
]


def process_start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot, /proc/<pid>/stat field 22), or None
    when no such process runs (a zombie counts as gone) or /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or
    # parentheses itself: the fields that follow start after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X", "x"):
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def is_stopped(pid: int) -> bool:
    """True while `pid` is stopped by a signal (SIGSTOP, or a tracer): /proc state T or t."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] in ("T", "t")


def process_command(pid: int) -> tuple[str, ...] | None:
    """The command line `pid` runs, or None if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1])


def signal_process(pid: int, start_time: int, signum: signal.Signals) -> bool:
    """Sends `signum` to `pid` only while it is still the process that started at
    `start_time`. Returns False when that process is gone."""
    descriptor = None
    # A pidfd pins the process: once the start time checks out, the signal
    # cannot reach a process that reused the pid in between.
    with contextlib.suppress(AttributeError, OSError):
        descriptor = os.pidfd_open(pid)
    try:
        if process_start_time(pid) != start_time:
            return False
        if descriptor is not None:
            signal.pidfd_send_signal(descriptor, signum)
        else:
            os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        if descriptor is not None:
            os.close(descriptor)


async def gone_within(pid: int, start_time: int, seconds: float) -> bool:
    """True once the process that started at `start_time` is gone; False if it still
    runs after `seconds`."""
    deadline = time.monotonic() + seconds
    while process_start_time(pid) == start_time:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)
    return True
