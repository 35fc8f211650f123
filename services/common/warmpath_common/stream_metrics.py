"""The one metrics wrapper around a streamed answer, used by the router and the adapter:
requests in flight, time to the first text, and each stream's outcome status.

What each service counts (which labels, which events) is its `StreamMeter`; the
wrapper only times the stream and tells the meter what passed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Protocol, TypeVar

from prometheus_client import Gauge

from warmpath_common.errors import status_of
from warmpath_common.generation import TextDelta

__all__ = ["StreamMeter", "measured_stream"]

_E = TypeVar("_E")
_E_contra = TypeVar("_E_contra", contravariant=True)


class StreamMeter(Protocol[_E_contra]):
    """Turns what one stream did into a service's own metrics."""

    def first_text(self, seconds: float) -> None:
        """The first TextDelta passed, `seconds` after the stream began."""
        ...

    def passed(self, event: _E_contra) -> None:
        """Any event, as it passes (the first TextDelta too)."""
        ...

    def ended(self, outcome: str, seconds: float) -> None:
        """The stream ended: `outcome` is the gRPC status name ("OK" when it finished)."""
        ...


async def measured_stream(
    events: AsyncGenerator[_E, None],
    meter: StreamMeter[_E],
    in_flight: Gauge,
    clock: Callable[[], float],
) -> AsyncGenerator[_E, None]:
    """Passes `events` on, counted in `in_flight` while it runs and told to `meter`.
    Closing this closes `events`. Anything unexpected counts as INTERNAL, never OK."""
    started = clock()
    first_text_seen = False
    outcome = "OK"
    in_flight.inc()
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                if not first_text_seen and isinstance(event, TextDelta):
                    first_text_seen = True
                    meter.first_text(clock() - started)
                meter.passed(event)
                yield event
    except BaseException as error:
        outcome = status_of(error).name
        raise
    finally:
        in_flight.dec()
        meter.ended(outcome, clock() - started)
