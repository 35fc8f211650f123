"""Reading the config file: parsing, validation into WarmpathConfig, overrides from
flags and the environment, and the embedded default."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from warmpath_common.config.base import ConfigError
from warmpath_common.config.document import WarmpathConfig

__all__ = ["DEFAULT_CONFIG_RESOURCE", "load_config", "parse_config", "with_overrides"]

DEFAULT_CONFIG_RESOURCE = "defaults/warmpath.yaml"

_S = TypeVar("_S", bound=BaseModel)


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source} is invalid ({error.error_count()} problem(s)):"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def parse_config(text: str, source: str) -> WarmpathConfig:
    """Parses and validates a config document; `source` names it in errors."""
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a mapping with a 'models' list at the top")
    try:
        return WarmpathConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(source, error)) from error


def with_overrides(settings: _S, **changes: object) -> _S:
    """A copy of `settings` with `changes` applied (None values ignored), validated again."""
    given = {key: value for key, value in changes.items() if value is not None}
    if not given:
        return settings
    try:
        return type(settings).model_validate({**settings.model_dump(), **given})
    except ValidationError as error:
        raise ConfigError(_format_validation_error("command-line or environment", error)) from error


def load_config(path: Path | None) -> WarmpathConfig:
    """Loads `path`, or the embedded default config when `path` is None."""
    if path is None:
        text = resources.files("warmpath_common").joinpath(DEFAULT_CONFIG_RESOURCE).read_text()
        return parse_config(text, "embedded default config")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    return parse_config(text, str(path))
