"""Tests, benchmarks and scripts use what users use: a module's `__all__`, never a private
module or name."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "warmpath_common",
    "warmpath_router",
    "warmpath_agent",
    "warmpath_adapter",
    "warmpath_cli",
)


def _imports() -> list[tuple[str, str, str]]:
    """(file, module, name) for every `from warmpath_x... import name` outside services/."""
    found = []
    for folder in ("tests", "bench", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                continue  # bench/.venvs/: the peers' own virtualenvs (bench/peers.py --install)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGES):
                    relative = str(path.relative_to(ROOT))
                    found += [(relative, node.module or "", a.name) for a in node.names]
    return found


def _private(name: str) -> bool:
    # `__main__` is a composition root, not a private module.
    return name.startswith("_") and not name.endswith("__")


def test_outside_code_imports_only_exported_names() -> None:
    hidden = []
    for path, module_name, name in _imports():
        if any(_private(part) for part in module_name.split(".")) or _private(name):
            hidden.append(f"{path}: {module_name}.{name} is private")
            continue
        module = importlib.import_module(module_name)
        exported = getattr(module, "__all__", None)
        if exported is not None and name not in exported:
            hidden.append(f"{path}: {name} is not in {module_name}.__all__")
    assert not hidden, "\n".join(hidden)
