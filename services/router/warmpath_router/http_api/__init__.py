"""The router's OpenAI- and Anthropic-compatible HTTP front door (docs/http-api.md)."""

from warmpath_router.http_api.server import HttpFrontDoor

__all__ = ["HttpFrontDoor"]
