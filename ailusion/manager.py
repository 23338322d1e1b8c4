"""The plugin manager: hook specs, entry-point plugins, and the registries of stages."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from importlib import metadata
from typing import Callable

import pluggy

from . import hookspecs
from .errors import ConfigError

ENTRY_POINT_GROUP = "ailusion"
STAGES = ("generator", "preprocessor", "model")


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which distribution each plugin came from."""

    def __init__(self) -> None:
        super().__init__("ailusion")
        self.distributions: dict[str, metadata.Distribution | None] = {}


def get_plugin_manager() -> PluginManager:
    """Return a new plugin manager with every plugin of the ``ailusion`` entry-point group.

    A plugin that fails to import gives one warning naming it; the others still load. Set
    ``AILUSION_TRACE_HOOKS=1`` to print every hook call.
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        dist = ep.dist.name if ep.dist else "?"
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            pm.check_pending()  # a misspelt hook name fails here, naming this plugin
        except Exception as exc:  # a broken third-party plugin must not break the others
            if pm.get_plugin(ep.name) is not None:
                pm.unregister(name=ep.name)
            # Issued from this line (no stacklevel): Python shows it once per process, however
            # many plugin managers are built (Hydra's search path and the pipeline both build one).
            warnings.warn(
                f"ailusion: plugin {ep.name!r} ({ep.value}, from {dist}) failed to load and is "
                f"skipped: {type(exc).__name__}: {exc}"
            )
            continue
        pm.distributions[ep.name] = ep.dist
    if os.environ.get("AILUSION_TRACE_HOOKS"):
        pm.trace.root.setwriter(print)
        pm.enable_tracing()
    return pm


@dataclass(frozen=True)
class PluginInfo:
    """One row of ``ailusion plugins``."""

    name: str
    hooks: tuple[str, ...]
    version: str | None
    distribution: str | None
    module: str


def get_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Describe every registered plugin: its hooks, version and where it comes from."""
    rows = []
    dists = getattr(pm, "distributions", {})
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        dist = dists.get(name)
        rows.append(
            PluginInfo(
                name=str(name),
                hooks=hooks,
                version=dist.version if dist else None,
                distribution=dist.metadata["Name"] if dist else None,
                module=getattr(plugin, "__name__", type(plugin).__name__),
            )
        )
    return rows


def registry(pm: pluggy.PluginManager, stage: str) -> dict[str, Callable]:
    """Return ``{name: factory}`` for ``stage`` ("generator", "preprocessor" or "model").

    Results come in pluggy's call order (later-registered and ``tryfirst`` plugins first, the
    default plugins, which are ``trylast``, at the end); the first plugin to claim a name wins.
    """
    hook = getattr(pm.hook, f"register_{stage}s")
    found: dict[str, Callable] = {}
    for result in hook():
        for name, factory in (result or {}).items():
            found.setdefault(name, factory)
    return found


def resolve(pm: pluggy.PluginManager, stage: str, name: str | None) -> Callable:
    """Return the factory registered as ``name`` for ``stage``, or fail naming the known ones."""
    factories = registry(pm, stage)
    if name not in factories:
        known = ", ".join(sorted(factories)) or "none"
        raise ConfigError(
            f"{stage}.plugin",
            f"no {stage} plugin named {name!r} is installed (installed: {known})",
        )
    return factories[name]
