"""The README's promises stay true to the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from warmpath_common.config import WarmpathConfig

ROOT = Path(__file__).resolve().parents[2]


def test_readme_config_reference_matches_the_code() -> None:
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts/config_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text()
    stale = [row for row in module.rows(WarmpathConfig, "") if row not in readme]
    assert not stale, (
        "regenerate the README reference with scripts/config_reference.py:\n" + "\n".join(stale)
    )


def test_readme_shows_the_two_commands_and_ci_runs_them() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()
