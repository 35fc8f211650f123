"""The one place HTTP-level failures become Warmpath errors.

Some of them are marked not-sent (see warmpath_common.errors), so the router may
retry them on another replica:

- no connection could be made (httpx ConnectError, raised by httpcore only while
  opening the TCP connection or its TLS handshake, e.g. for a refused connection;
  ConnectTimeout; PoolTimeout, no pooled connection came free): the request was
  never written. A ConnectError also marks the backend down (nothing listens
  there), so the router asks the model's agent before giving up;
- the model server answered 429 or 503. Strictly it did receive the request, but
  it refused it without taking it on: 503 says it "is currently unable to handle
  the request" (RFC 9110 section 15.6.4) and 429 is a rate limit (RFC 6585 section
  4), and for a streamed answer that status comes before any generated output.
  This trusts the server's word; it holds because the adapter talks to the model
  servers on its host directly. A proxy in between may answer 503 for an upstream
  that reset after the request was forwarded, which would not be a refusal.

Anything after the request was written (a read error, a stall, a cut stream,
another status) may have started generation there, and is not marked.
"""

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

__all__ = ["error_for_response", "stream_object", "translate_transport_errors"]


def error_for_response(status: int, target_url: str) -> WarmpathError:
    """The error for a non-2xx answer. The body is not quoted: it may echo the prompt."""
    if status == 429:
        return ResourceExhausted(
            f"backend {target_url} is overloaded (HTTP 429); retry later", not_sent=True
        )
    if status == 503:
        return Unavailable(
            f"backend {target_url} refused the request for now (HTTP 503)", not_sent=True
        )
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
        # No connection at all: the model's server is not there (see errors.backend_down).
        raise Unavailable(
            f"cannot connect to backend {target_url}: {error}", backend_down=True
        ) from error
    except httpx.ConnectTimeout as error:
        raise Unavailable(f"timed out connecting to backend {target_url}", not_sent=True) from error
    except httpx.PoolTimeout as error:
        raise Unavailable(
            f"no connection to backend {target_url} came free in time", not_sent=True
        ) from error
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
