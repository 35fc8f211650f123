"""The `security` section and each service's `tls`: certificates, and the tokens
callers present."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from warmpath_common.config.base import Strict

__all__ = ["CallerToken", "SecuritySettings", "TlsSettings"]


class TlsSettings(Strict):
    """TLS for one service: its own certificate, and the CA its peers' certificates chain to."""

    cert: Path
    """PEM certificate chain this service presents (as a server, and as a client of others)."""
    key: Path
    """PEM private key for `cert`."""
    ca: Path
    """PEM CA bundle that peers' certificates must chain to."""
    require_client_cert: bool = True
    """Mutual TLS: refuse clients without a certificate from `ca`."""


class CallerToken(Strict):
    """A bearer token the router accepts. Only its SHA-256 is stored, never the token."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """Who the token belongs to (shown in errors and used for per-caller limits)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hex SHA-256 of the token (`warmpath hash-token` prints it)."""
    models: tuple[str, ...] = ("*",)
    """Registry models this caller may use; "*" for all."""


class SecuritySettings(Strict):
    """Authentication and transport security for the whole mesh."""

    enabled: bool = False
    """Require TLS on every service and a bearer token from every router caller."""
    tokens: tuple[CallerToken, ...] = ()
    """Tokens the router accepts."""
    router_identities: tuple[str, ...] = ("warmpath-router",)
    """Certificate common names allowed to call the agents' EnsureLoaded and Unload."""
