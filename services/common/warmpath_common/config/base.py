"""What every config section is built from: the strict base model, names, addresses,
and the error a bad config file raises."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ADDRESS_PATTERN",
    "ConfigError",
    "ModelName",
    "Strict",
    "check_address",
    "check_optional_address",
    "reject_duplicates",
]

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}$"
ADDRESS_PATTERN = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):\d{1,5}$")
"""host:port, with a DNS name, an IPv4 address or a bracketed IPv6 address."""


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid. The message lists every problem."""


class Strict(BaseModel):
    """The base of every section: frozen, and unknown keys are errors."""

    # Attribute docstrings become field descriptions: docs/configuration.md is
    # generated from them (scripts/config_reference.py).
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


ModelName = Annotated[str, Field(pattern=_NAME_PATTERN)]


def check_address(value: str) -> str:
    if not ADDRESS_PATTERN.match(value):
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:50051)")
    port = int(value.rsplit(":", 1)[1])
    if port > 65535:
        raise ValueError(f"port {port} is above 65535")
    return value


def check_optional_address(value: str | None) -> str | None:
    return None if value is None else check_address(value)


def reject_duplicates(field: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{field}: {name!r} appears more than once")
        seen.add(name)
