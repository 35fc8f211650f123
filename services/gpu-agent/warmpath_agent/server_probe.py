"""Asks a model server over HTTP whether it answers, never by generating (httpx)."""

from __future__ import annotations

import httpx

from warmpath_agent.drivers import RunningModel

__all__ = ["HttpServerProbe"]


class HttpServerProbe:
    """The ServerProbe of server_watch.py: a GET of the server's probe URL."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def probe(self, running: RunningModel, timeout: float) -> str | None:
        url = running.probe_url
        try:
            # Any status will do: an answer is all a probe asks for.
            await self._client.get(url, timeout=timeout)
        except httpx.TimeoutException:
            return f"no answer to GET {url} within {timeout:g} s"
        except httpx.HTTPError as error:
            return f"GET {url} failed ({type(error).__name__}: {error or 'no detail'})"
        return None
