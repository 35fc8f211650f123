"""The typed view of a gRPC call's context that every servicer and call guard receives.

grpc ships no type information, so `grpc.aio.ServicerContext` is `Any` to mypy. This
Protocol names the part of it Warmpath uses, so that mypy checks every use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn, Protocol

__all__ = ["Metadata", "ServicerContext"]

Metadata = Sequence[tuple[str, str | bytes]]
"""gRPC metadata: (key, value) pairs; keys ending in "-bin" carry bytes."""


class ServicerContext(Protocol):
    """What a handler may ask of its call (the methods of `grpc.aio.ServicerContext` in use)."""

    def time_remaining(self) -> float | None:
        """Seconds left before the caller's deadline; None when the caller set none."""
        ...

    def peer(self) -> str:
        """The caller's address, e.g. "ipv4:10.0.0.7:51234"."""
        ...

    def invocation_metadata(self) -> Metadata | None:
        """The metadata the caller sent."""
        ...

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        """The peer's authenticated identity (certificate names) under TLS."""
        ...

    def code(self) -> Any:
        """The `grpc.StatusCode` the call was aborted with, if any."""
        ...

    async def abort(
        self, code: Any, details: str = "", trailing_metadata: Metadata = ()
    ) -> NoReturn:
        """Ends the call with `code` (a `grpc.StatusCode`) and `details`."""
        ...
