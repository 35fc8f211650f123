"""Processes by pid, as /proc shows them: when one started, what it runs, whether it is
stopped; signals sent only to the very process meant, never to a reused pid; and
stopping one with grace."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
    "stop_by_pid",
    "stop_child",
]

logger = logging.getLogger(__name__)


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


async def stop_child(name: str, process: asyncio.subprocess.Process, grace_seconds: float) -> None:
    """Stops a child of ours: SIGTERM (SIGKILL at once if it is stopped, as it would
    handle SIGTERM only once continued), then SIGKILL after `grace_seconds`. `name` is
    what logs call it."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGKILL if is_stopped(process.pid) else signal.SIGTERM)
    try:
        async with asyncio.timeout(grace_seconds):
            await process.wait()
    except TimeoutError:
        logger.warning("%s did not stop within %.0f s; killing", name, grace_seconds)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def stop_by_pid(
    name: str, pid: int, start_time: int, grace_seconds: float, kill_wait_seconds: float
) -> None:
    """Stops a process that is not our child (one adopted from an earlier agent) the same
    way, by pid, never signalling a process that reused it."""
    if is_stopped(pid):
        signal_process(pid, start_time, signal.SIGKILL)
    elif not signal_process(pid, start_time, signal.SIGTERM):
        return
    if await gone_within(pid, start_time, grace_seconds):
        return
    logger.warning("%s did not stop within %.0f s; killing", name, grace_seconds)
    signal_process(pid, start_time, signal.SIGKILL)
    if not await gone_within(pid, start_time, kill_wait_seconds):
        logger.error("%s's server (pid %d) survived SIGKILL", name, pid)
