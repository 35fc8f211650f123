"""The README and docs/ stay true to the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from warmpath_common.config import WarmpathConfig

ROOT = Path(__file__).resolve().parents[2]


def test_config_reference_matches_the_code() -> None:
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts/config_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = (ROOT / "docs/configuration.md").read_text()
    stale = [row for row in module.rows(WarmpathConfig, "") if row not in page]
    assert not stale, (
        "regenerate docs/configuration.md with scripts/config_reference.py --write:\n"
        + "\n".join(stale)
    )


def test_readme_shows_the_two_commands_and_ci_runs_them() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_readme_is_a_front_page_that_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 120, "README.md is the front page: move detail into docs/"
    assert not [n for n, line in enumerate(lines, 1) if len(line) > 120]
    unlinked = [p.name for p in (ROOT / "docs").glob("*.md") if f"(docs/{p.name})" not in readme]
    assert not unlinked, f"link these pages from the README's 'Read next': {unlinked}"
