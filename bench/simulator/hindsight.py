"""The hindsight partition: the best hot set per 10-minute window, chosen knowing that
window's requests. Counted from the trace, not simulated: the offline reference the
agent's hot set is the online form of."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from simulator.traces import Request, Workload
from warmpath_agent.eviction import packs

HINDSIGHT_WINDOW_SECONDS = 600.0
HINDSIGHT = "hindsight partition (offline, 10-min windows, ignores time)"


@functools.cache
def _partitions(sizes_gb: tuple[float, ...], gpu_gb: tuple[float, ...]) -> np.ndarray:
    """Every hot set (as a row of booleans per model) that packs onto the GPUs together
    with room for the largest model left out (first fit decreasing)."""
    rows = []
    for mask in range(1 << len(sizes_gb)):
        kept = [size for model, size in enumerate(sizes_gb) if mask >> model & 1]
        rest = [size for model, size in enumerate(sizes_gb) if not mask >> model & 1]
        if packs([*kept, max(rest, default=0.0)], gpu_gb):
            rows.append([bool(mask >> model & 1) for model in range(len(sizes_gb))])
    return np.array(rows, dtype=bool)


def hindsight_partition(workload: Workload, trace: Sequence[Request]) -> tuple[int, float]:
    """Cold loads and load-seconds of the best hot set per 10-min window, chosen knowing
    that window's requests: the hot set is loaded once, every other request is served in
    the room left for the rest (a cold load unless the previous such request was for the
    same model). It ignores time (loads are instant, requests never overlap), so it is
    an optimistic reference for what partitioning can win, not a bound."""
    partitions = _partitions(workload.sizes_gb, workload.gpu_gb)
    load = np.array(workload.load_seconds)
    models = np.array([r.model for r in trace])
    times = np.array([r.at for r in trace])
    kept_before = np.zeros(len(workload.sizes_gb), dtype=bool)
    cold, seconds = 0, 0.0
    for start in np.arange(0.0, times[-1] + 1, HINDSIGHT_WINDOW_SECONDS):
        window = models[(times >= start) & (times < start + HINDSIGHT_WINDOW_SECONDS)]
        if len(window) == 0:
            continue
        outside = ~partitions[:, window]  # hot set x request: served in the shared room
        positions = np.where(outside, np.arange(len(window)), -1)
        last_outside = np.maximum.accumulate(positions, axis=1)
        previous = np.concatenate([np.full((len(partitions), 1), -1), last_outside[:, :-1]], axis=1)
        previous_model = np.where(previous >= 0, window[np.maximum(previous, 0)], -1)
        misses = outside & (previous_model != window)
        newly_kept = partitions & ~kept_before
        counts = misses.sum(axis=1) + newly_kept.sum(axis=1)
        costs = (misses * load[window]).sum(axis=1) + (newly_kept * load).sum(axis=1)
        best = int(np.lexsort((costs, counts))[0])
        cold += int(counts[best])
        seconds += float(costs[best])
        kept_before = partitions[best]
    return cold, seconds
