"""The one place HTTP-level failures become Warmpath errors."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx

from warmpath_common.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ResourceExhausted,
    Unavailable,
    WarmpathError,
)


def error_for_response(status: int, target_url: str) -> WarmpathError:
    """The error for a non-2xx answer. The body is not quoted: it may echo the prompt."""
    if status == 429:
        return ResourceExhausted(f"backend {target_url} is overloaded (HTTP 429); retry later")
    if status in (400, 413, 422):
        return InvalidRequest(
            f"backend {target_url} rejected the request parameters (HTTP {status})"
        )
    if status == 404:
        return Unavailable(f"backend {target_url} does not serve this model or API (HTTP 404)")
    return Unavailable(f"backend {target_url} failed (HTTP {status})")


@contextlib.contextmanager
def translate_transport_errors(target_url: str, idle_timeout_seconds: float) -> Iterator[None]:
    try:
        yield
    except httpx.ConnectError as error:
        raise Unavailable(f"cannot connect to backend {target_url}: {error}") from error
    except httpx.ConnectTimeout as error:
        raise Unavailable(f"timed out connecting to backend {target_url}") from error
    except httpx.ReadTimeout as error:
        raise DeadlineExceeded(
            f"backend {target_url} sent nothing for {idle_timeout_seconds:g} s (stalled)"
        ) from error
    except (httpx.RemoteProtocolError, httpx.ReadError) as error:
        raise Unavailable(f"backend {target_url} cut the stream off: {error}") from error
    except httpx.HTTPError as error:
        raise Unavailable(f"backend {target_url} failed: {type(error).__name__}") from error


def stream_object(data: str, url: str) -> dict[str, Any]:
    """One event of a streamed answer (an SSE data field or an NDJSON line) as an object."""
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError as error:
        raise Unavailable(f"backend {url} sent a malformed stream chunk") from error
    if not isinstance(chunk, dict):
        raise Unavailable(f"backend {url} sent a stream chunk that is not an object")
    if "error" in chunk:
        raise Unavailable(f"backend {url} reported an error mid-stream")
    return chunk
