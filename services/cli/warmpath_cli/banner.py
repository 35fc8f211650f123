"""What `warmpath up` prints about the router's HTTP front door: a `curl` line that works
as pasted."""

from __future__ import annotations

import json
import shlex

from warmpath_common.config import WarmpathConfig

__all__ = ["http_banner"]


def http_banner(config: WarmpathConfig) -> tuple[str, str] | None:
    """The front door's base URL in a sentence, and a `curl` line (after "$ ") that asks
    it for an answer; None when router.http.listen is unset."""
    listen = config.router.http.listen
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", "[::]", ""):  # nosec B104: a comparison; loopback reaches every interface
        host = "127.0.0.1"
    tls = config.router.tls
    base = f"{'https' if tls else 'http'}://{host}:{port}/v1"
    options = ["-sN"]
    if tls is not None:
        options.append(f"--cacert {shlex.quote(str(tls.ca))}")
        if tls.require_client_cert:
            options.append("--cert your-cert.pem --key your-key.pem")
    if config.security.enabled:
        options.append('-H "authorization: Bearer $WARMPATH_TOKEN"')
    body = json.dumps(
        {"model": "auto", "max_tokens": 32, "messages": [{"role": "user", "content": "Hi"}]}
    )
    curl = (
        f"$ curl {' '.join(options)} {base}/chat/completions "
        f"-H 'content-type: application/json' -d '{body}'"
    )
    return f"OpenAI and Anthropic clients: base URL {base}, e.g.", curl
