"""The one-line check every config section's ``__post_init__`` uses."""

from __future__ import annotations

from vqkit.errors import ConfigError


def check(condition: bool, message: str) -> None:
    """Raise a :class:`ConfigError` with ``message`` (which says how to fix the value) unless ``condition``."""
    if not condition:
        raise ConfigError(message)
