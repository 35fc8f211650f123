"""Transport security and caller authentication, shared by the services.

- TLS / mutual TLS from each service's `tls` settings; file errors name the field.
- Bearer tokens for the router's callers: the `authorization: Bearer <token>`
  metadata is hashed (SHA-256) and compared with every configured hash in
  constant time; the caller it identifies is available to the servicer through
  `current_caller()`. Tokens themselves never appear in config, logs or errors.
- Peer identity for the agents' mutating RPCs: only clients whose certificate
  common name is a configured router identity may load or unload models.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from warmpath_common.config import CallerToken, ConfigError, TlsSettings
from warmpath_common.errors import PermissionDenied, Unauthenticated
from warmpath_common.servicer_context import ServicerContext

__all__ = [
    "ALL_MODELS",
    "BearerTokenGuard",
    "Caller",
    "PeerIdentityGuard",
    "caller_of",
    "channel_credentials",
    "current_caller",
    "hash_token",
    "peer_address",
    "server_credentials",
]

ALL_MODELS = "*"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a token's owner, or (without security) the caller's address."""

    name: str
    models: frozenset[str] = frozenset({ALL_MODELS})

    def may_use(self, model: str) -> bool:
        return ALL_MODELS in self.models or model in self.models


_current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "warmpath_caller", default=None
)


def current_caller() -> Caller | None:
    """The caller the token guard authenticated for this call, if any."""
    return _current_caller.get()


def caller_of(context: ServicerContext) -> Caller:
    """The token's owner when the router requires tokens, else the caller's address."""
    return current_caller() or Caller(peer_address(context.peer()))


def peer_address(peer: str) -> str:
    """The caller's address without its port: "ipv4:10.0.0.7:51234" -> "10.0.0.7"."""
    kind, _, address = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return address.rsplit(":", 1)[0].strip("[]")
    return peer or "anonymous"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _read(path: Any, field: str) -> bytes:
    try:
        return bytes(path.read_bytes())
    except OSError as error:
        raise ConfigError(f"{field}: cannot read {path}: {error.strerror}") from error


def server_credentials(tls: TlsSettings, section: str) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(_read(tls.key, f"{section}.tls.key"), _read(tls.cert, f"{section}.tls.cert"))],
        root_certificates=_read(tls.ca, f"{section}.tls.ca"),
        require_client_auth=tls.require_client_cert,
    )


def server_ssl_context(tls: TlsSettings, section: str) -> ssl.SSLContext:
    """The same certificates as `server_credentials`, for an HTTP server."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            f"{section}.tls.cert / {section}.tls.key: cannot load {tls.cert} with {tls.key}: "
            f"{error}"
        ) from error
    context.load_verify_locations(cadata=_read(tls.ca, f"{section}.tls.ca").decode())
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE
    return context


def channel_credentials(tls: TlsSettings, section: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca, f"{section}.tls.ca"),
        private_key=_read(tls.key, f"{section}.tls.key"),
        certificate_chain=_read(tls.cert, f"{section}.tls.cert"),
    )


class BearerTokenGuard:
    """Requires a known bearer token on every call to the methods under `prefix`."""

    def __init__(self, tokens: Iterable[CallerToken], prefix: str) -> None:
        self._tokens = [
            (bytes.fromhex(t.sha256), Caller(t.name, frozenset(t.models))) for t in tokens
        ]
        self._prefix = prefix

    def applies_to(self, method: str) -> bool:
        return method.startswith(self._prefix)

    async def check(self, method: str, context: ServicerContext) -> None:
        metadata = dict(context.invocation_metadata() or ())
        _current_caller.set(self.authenticate(str(metadata.get("authorization", ""))))

    def authenticate(self, header: str) -> Caller:
        """The caller an `authorization` value ("Bearer <token>") names, or Unauthenticated."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(
                "this router requires a bearer token: send 'authorization: Bearer <token>'"
            )
        digest = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for expected, caller in self._tokens:
            # Compare against every entry, in constant time, whatever matches.
            if hmac.compare_digest(digest, expected):
                found = caller
        if found is None:
            raise Unauthenticated("the bearer token is not valid for this router")
        return found


class PeerIdentityGuard:
    """Only clients whose certificate names an allowed identity may call `methods`."""

    def __init__(self, allowed: Iterable[str], methods: Iterable[str]) -> None:
        self._allowed = frozenset(allowed)
        self._methods = frozenset(methods)

    def applies_to(self, method: str) -> bool:
        return method in self._methods

    async def check(self, method: str, context: ServicerContext) -> None:
        auth: Mapping[str, Iterable[bytes]] = context.auth_context() or {}
        names = {
            value.decode(errors="replace")
            for key in ("x509_common_name", "x509_subject_alternative_name")
            for value in auth.get(key, ())
        }
        if not names & self._allowed:
            raise PermissionDenied(
                f"{method.rsplit('/', 1)[1]} is only for the router (certificate names "
                f"{', '.join(sorted(self._allowed))}); this client presented "
                f"{', '.join(sorted(names)) or 'no certificate'}"
            )
