"""Prints the config file reference (Markdown) from the pydantic models' docstrings.

.venv/bin/python scripts/config_reference.py            # print the table
.venv/bin/python scripts/config_reference.py --write    # replace it in docs/configuration.md
"""

from __future__ import annotations

import sys
import types
import typing
from enum import Enum
from pathlib import Path

from pydantic import BaseModel

from warmpath_common.config import WarmpathConfig


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " (optional)"
    if origin is tuple:
        inner = _type_name(args[0]) if args else "item"
        return f"list of {inner}"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(str(m.value) for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _nested(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_nested(arg))
    return found


def rows(model: type[BaseModel], prefix: str) -> list[str]:
    lines = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        if field.is_required():
            default = "required"
        else:
            default = repr(field.get_default(call_default_factory=True))
        if len(default) > 40:
            default = "see below" if _nested(field.annotation) else default[:37] + "..."
        description = (field.description or "").replace("\n", " ")
        lines.append(f"| `{path}` | {_type_name(field.annotation)} | {default} | {description} |")
        for sub in _nested(field.annotation):
            marker = "[]." if typing.get_origin(field.annotation) is tuple else "."
            lines.extend(rows(sub, f"{path}{marker}"))
    return lines


def table() -> str:
    return "\n".join(
        ["| field | type | default | meaning |", "|---|---|---|---|", *rows(WarmpathConfig, "")]
    )


def write_into(page: Path) -> None:
    """Replaces the table that follows the page's '## Reference' heading."""
    text = page.read_text()
    start = text.index("| field | type | default | meaning |", text.index("## Reference"))
    end = text.find("\n\n", start)
    end = len(text.rstrip("\n")) if end == -1 else end
    page.write_text(text[:start] + table() + text[end:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_into(Path(__file__).resolve().parents[1] / "docs/configuration.md")
    else:
        print(table())
