"""Errors a user can fix. The CLI prints them as one line, without a traceback."""

from __future__ import annotations


class AilusionError(Exception):
    """An error in the user's input, config or environment, with a one-line, actionable message."""


class ConfigError(AilusionError):
    """A config value that is not allowed; the message names the key."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")
