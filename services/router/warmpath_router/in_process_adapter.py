"""The backend-adapter run inside the router, for hosts configured `adapter: in-process`.

Where the router and the model servers share a machine (or a pod), the extra
process buys nothing and its gRPC hop costs the most of any step on the way to
the first token (bench/RESULTS.md). The adapter's own dispatcher runs here
instead: same backends, admission limits, error mapping and model-call spans;
the not-sent mark reaches the relay directly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable

from warmpath_adapter.backends import BackendDispatcher
from warmpath_common.errors import DeadlineExceeded
from warmpath_common.generation import AdapterEvent, Endpoint, GenerationRequest
from warmpath_router.ports import AdapterPort

__all__ = ["AdaptersByHost", "InProcessAdapter"]


class InProcessAdapter:
    def __init__(
        self, dispatcher: BackendDispatcher, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._dispatcher = dispatcher
        self._clock = clock

    async def generate(
        self, host: str, endpoint: Endpoint, request: GenerationRequest, timeout_seconds: float
    ) -> AsyncGenerator[AdapterEvent, None]:
        # Over gRPC the call's deadline cancels the stream. Here it is checked at
        # every event; a server that goes quiet is caught by the adapter's idle timeout.
        deadline = self._clock() + timeout_seconds
        async with contextlib.aclosing(self._dispatcher.stream(request, endpoint)) as events:
            async for event in events:
                if self._clock() > deadline:
                    raise DeadlineExceeded(
                        f"{endpoint.served_model_id} on {host} did not finish within "
                        f"{timeout_seconds:.1f} s"
                    )
                yield event


class AdaptersByHost:
    """Sends each host's requests to its adapter: in this process, or over gRPC."""

    def __init__(
        self, remote: AdapterPort, local: AdapterPort | None, local_hosts: frozenset[str]
    ) -> None:
        if local_hosts and local is None:
            raise ValueError("hosts with an in-process adapter need one")
        self._remote = remote
        self._local = local
        self._local_hosts = local_hosts

    def generate(
        self, host: str, endpoint: Endpoint, request: GenerationRequest, timeout_seconds: float
    ) -> AsyncGenerator[AdapterEvent, None]:
        adapter = self._local if host in self._local_hosts and self._local else self._remote
        return adapter.generate(host, endpoint, request, timeout_seconds)
