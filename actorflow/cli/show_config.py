"""``actorflow config``: the effective settings and where each came from.

The text form is a TOML file (each value followed by its origin as a comment; settings nobody set
are commented out with what happens then), so it can be saved and edited into a configuration file.
Secrets are shown as ``***``.

>>> from actorflow.cli.config import resolve
>>> print(render_toml(resolve({"parallelism": "2"}, {})).splitlines()[1])
parallelism = 2  # flag --parallelism
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from actorflow.cli.config import OPTIONS, Config

__all__ = ["render_json", "render_toml"]

HIDDEN = "***"


def _shown(config: Config, key: str) -> Any:
    value = getattr(config, key)
    if value is None:
        return None
    option = next(option for option in OPTIONS if option.key == key)
    if option.secret:
        return HIDDEN
    return str(value) if isinstance(value, Path) else value


def render_toml(config: Config) -> str:
    """The settings as TOML with their origins as comments."""
    source = "none"
    if config.config_file is not None:
        source = f"{config.config_file} ({config.origins['config_file']})"
    lines = [f"# actorflow settings; configuration file: {source}; precedence: flag > env > file > default"]
    for option in OPTIONS:
        value = _shown(config, option.key)
        if value is None:
            lines.append(f"# {option.key} is not set: {option.unset}")
        else:
            lines.append(f"{option.key} = {json.dumps(value)}  # {config.origins[option.key]}")
    return "\n".join(lines)


def render_json(config: Config) -> str:
    """The settings as a JSON object: ``{"config_file": ..., "settings": {key: {value, origin}}}``."""
    settings = {
        option.key: {"value": _shown(config, option.key), "origin": config.origins[option.key]}
        for option in OPTIONS
    }
    config_file = str(config.config_file) if config.config_file is not None else None
    return json.dumps({"config_file": config_file, "settings": settings}, indent=2)
