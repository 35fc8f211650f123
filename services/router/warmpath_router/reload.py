"""Hot reload of the router's config: on SIGHUP or when the file changes.

A new config is applied only if it is valid as a whole; otherwise the router
keeps serving the last good one and says why the new one was rejected.
Settings that cannot change under a running server (its listen addresses,
the host list its state streams follow) are refused with the names of the
fields, so the operator knows to restart instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from warmpath_common.config import ConfigError, WarmpathConfig, load_config

__all__ = ["ConfigReloader", "ReloadOutcome"]

logger = logging.getLogger(__name__)

_RESTART_ONLY = ("listen", "metrics_listen", "hosts")


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    applied: bool
    message: str


class ConfigReloader:
    def __init__(
        self,
        path: Path,
        current: WarmpathConfig,
        apply: Callable[[WarmpathConfig], None],
        metrics: CollectorRegistry,
    ) -> None:
        self._path = path
        self._current = current
        self._apply = apply
        self._seen = self._stamp()
        self._reloads = Counter(
            "warmpath_router_config_reloads",
            "Config reloads by outcome (applied, rejected).",
            ["outcome"],
            registry=metrics,
        )

    def changed(self) -> bool:
        """True once each time the file's modification time or size changes."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        return True

    def reload(self) -> ReloadOutcome:
        try:
            candidate = load_config(self._path)
        except ConfigError as error:
            return self._reject(str(error))
        frozen = [
            f"router.{name}"
            for name in _RESTART_ONLY
            if getattr(candidate.router, name) != getattr(self._current.router, name)
        ]
        if frozen:
            return self._reject(f"{', '.join(frozen)} changed: restart the router to apply")
        self._apply(candidate)
        self._current = candidate
        self._reloads.labels("applied").inc()
        message = f"config reloaded from {self._path} ({len(candidate.models)} models)"
        logger.info("%s", message)
        return ReloadOutcome(True, message)

    def _reject(self, why: str) -> ReloadOutcome:
        self._reloads.labels("rejected").inc()
        message = f"config reload rejected; still serving the last good config: {why}"
        logger.error("%s", message)
        return ReloadOutcome(False, message)

    def _stamp(self) -> tuple[float, int]:
        try:
            stat = self._path.stat()
        except OSError:
            return (0.0, -1)
        return (stat.st_mtime, stat.st_size)
