from __future__ import annotations

import os
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from tests.conftest import GEMMA
from warmpath_common.config import WarmpathConfig, load_config
from warmpath_router.reload import ConfigReloader


def write(path: Path, **router: object) -> None:
    document = {"models": [GEMMA], "router": router}
    path.write_text(yaml.safe_dump(document))


def reloader(path: Path) -> tuple[ConfigReloader, list[WarmpathConfig]]:
    applied: list[WarmpathConfig] = []
    return ConfigReloader(path, load_config(path), applied.append, CollectorRegistry()), applied


def bump(path: Path) -> None:
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))


def test_a_valid_change_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "warmpath.yaml"
    write(path)
    watcher, applied = reloader(path)
    assert not watcher.changed()
    write(path, max_messages=7)
    bump(path)
    assert watcher.changed()
    outcome = watcher.reload()
    assert outcome.applied
    assert applied[-1].router.max_messages == 7


def test_an_invalid_file_keeps_the_last_good_config_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "warmpath.yaml"
    write(path)
    watcher, applied = reloader(path)
    path.write_text(
        "models:\n  - {name: a, backend: llama_cpp, source: {path: /a.gguf}, fallbacks: [a]}\n"
    )
    outcome = watcher.reload()
    assert not outcome.applied and not applied
    assert "still serving the last good config" in outcome.message
    assert "falls back to itself" in outcome.message


def test_restart_only_settings_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "warmpath.yaml"
    write(path)
    watcher, applied = reloader(path)
    write(path, listen="127.0.0.1:6000", hosts=[{"name": "h", "agent": "h:1", "adapter": "h:2"}])
    outcome = watcher.reload()
    assert not outcome.applied and not applied
    assert "router.listen, router.hosts changed: restart the router to apply" in outcome.message
