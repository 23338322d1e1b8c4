"""Helpers for plugins that check their own config node: known keys, defaults, number types."""

from __future__ import annotations

from omegaconf import OmegaConf

from .errors import ConfigError


def with_defaults(config, defaults: dict, stage: str, owner: str) -> dict:
    """``config`` (a node or dict) as a plain dict over ``defaults``, without ``plugin``; a key
    not in ``defaults`` is a :class:`ConfigError` naming it (``stage.key``) and listing them."""
    if OmegaConf.is_config(config):
        config = OmegaConf.to_container(config, resolve=True)
    given = dict(config)
    given.pop("plugin", None)
    for key in given:
        if key not in defaults:
            raise ConfigError(
                f"{stage}.{key}", f"unknown option; the {owner} takes {', '.join(defaults)}"
            )
    return {**defaults, **given}


def is_int(value) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
