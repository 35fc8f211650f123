"""The first-token timeout of one try, learnt from each model's own measured times.

A try that stays silent longer than this is taken for a hung replica: the relay
cancels it and tries elsewhere. How the figure is derived is in docs/failures.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from warmpath_common.config import ModelSpec
from warmpath_common.generation import AdapterEvent, Completion, Queued, TextDelta
from warmpath_common.liveness import FirstTokenTimeout

__all__ = ["FirstTokenTimes", "SilentTry", "first_token_within"]

_WINDOW = 200
# A prompt is "longer than usual" only past this many characters: below it, time to
# first token is mostly fixed cost, not prompt processing.
_SHORT_PROMPT_CHARS = 256


class FirstTokenTimes:
    """The last few hundred times to first token of each model, and the timeout they give."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def observe(self, model: str, seconds: float, prompt_chars: int) -> None:
        """One try's time from reaching the model server to its first token."""
        samples = self._samples.setdefault(model, deque(maxlen=_WINDOW))
        samples.append((seconds, prompt_chars))

    def timeout_for(
        self,
        spec: ModelSpec,
        default: FirstTokenTimeout,
        prompt_chars: int,
        *,
        last_resort: bool = False,
    ) -> float:
        """Seconds a try of `spec` with a prompt of `prompt_chars` may go without a token.

        `last_resort`: no other replica and no fallback is left to try. Cutting the try
        would only turn a slow answer into an error, so it gets `ceiling_seconds`.
        """
        settings = spec.first_token_timeout or default
        samples = self._samples.get(spec.name, ())
        if last_resort or len(samples) < settings.min_samples:
            return settings.ceiling_seconds
        times = sorted(seconds for seconds, _ in samples)
        rank = min(len(times) - 1, max(0, math.ceil(settings.percentile * len(times)) - 1))
        usual_chars = statistics.median(chars for _, chars in samples)
        # Prompt processing grows with the prompt: a longer prompt than usual gets
        # proportionally longer, so a slow model's long prompt is not cut off.
        scale = max(1.0, prompt_chars / max(usual_chars, _SHORT_PROMPT_CHARS))
        measured = settings.multiplier * times[rank] * scale
        return min(settings.ceiling_seconds, max(settings.floor_seconds, measured))


class SilentTry(Exception):
    """A try sent no first chunk within its first-token timeout; it was cancelled."""

    def __init__(self, waited_seconds: float) -> None:
        super().__init__(f"no first token after {waited_seconds:.1f} s")
        self.waited_seconds = waited_seconds
        """How long the model server had the request: work another try may now repeat."""


async def first_token_within(
    events: AsyncGenerator[AdapterEvent, None],
    limit_seconds: float,
    clock: Callable[[], float],
    on_first: Callable[[float], None],
) -> AsyncIterator[TextDelta | Completion]:
    """Passes a try's answer on, or raises SilentTry (closing `events`, which cancels the
    call down to the model server) when no first chunk came within `limit_seconds`.

    The clock runs from the start, or from the last Queued(0): while the adapter says
    the request waits its turn (Queued with others ahead), it stops. `on_first` gets
    the seconds from the server receiving the request to its first chunk.
    """
    started = clock()
    waiting = False
    async with contextlib.aclosing(events):
        while True:
            timeout = None if waiting else max(0.0, limit_seconds - (clock() - started))
            try:
                async with asyncio.timeout(timeout):
                    event = await anext(events)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise SilentTry(clock() - started) from None
            if isinstance(event, Queued):
                waiting = event.ahead > 0
                started = clock()
                continue
            on_first(clock() - started)
            yield event
            break
        async for event in events:
            if not isinstance(event, Queued):
                yield event
