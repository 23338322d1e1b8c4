"""The plugin manager: hook specs, entry-point plugins, and the registries of stages."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable

import pluggy

from . import hookspecs
from .errors import AilusionWarning, ConfigError

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
    for ep in entry_points():
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
                f"skipped: {type(exc).__name__}: {exc}", AilusionWarning,
            )
            continue
        pm.distributions[ep.name] = ep.dist
    if os.environ.get("AILUSION_TRACE_HOOKS"):
        pm.trace.root.setwriter(print)
        pm.enable_tracing()
    return pm


def entry_points() -> list[metadata.EntryPoint]:
    """The ``ailusion`` entry points of every installed distribution, and, when ailusion runs
    from its source tree (:data:`ailusion.SOURCE_TREE`), those pyproject.toml declares that no
    installed distribution does: the default plugins work from a clone that is not installed."""
    found = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    from . import SOURCE_TREE

    if SOURCE_TREE is not None:
        names = {ep.name for ep in found}
        found += [ep for ep in _declared(SOURCE_TREE) if ep.name not in names]
    return found


def _declared(root: str) -> list[metadata.EntryPoint]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the installed entry points only
        return []
    try:
        with open(os.path.join(root, "pyproject.toml"), "rb") as f:
            table = tomllib.load(f)["project"]["entry-points"][ENTRY_POINT_GROUP]
    except (OSError, KeyError, ValueError):
        return []
    return [metadata.EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in table.items()]


@dataclass(frozen=True)
class PluginInfo:
    """One row of ``ailusion plugins``."""

    name: str
    hooks: tuple[str, ...]
    version: str | None
    distribution: str | None
    module: str
    #: what its ``register_*`` hooks register: ``{"generator": ["stable_diffusion"], …}``
    provides: dict[str, list[str]] = field(default_factory=dict)


def get_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Describe every registered plugin: its hooks, what it registers, version and origin."""
    rows = []
    dists = getattr(pm, "distributions", {})
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        callers = pm.get_hookcallers(plugin) or ()
        dist = dists.get(name)
        rows.append(
            PluginInfo(
                name=str(name),
                hooks=tuple(sorted(h.name for h in callers)),
                version=dist.version if dist else None,
                distribution=dist.metadata["Name"] if dist else None,
                module=getattr(plugin, "__name__", type(plugin).__name__),
                provides=_provides(plugin, callers),
            )
        )
    return rows


def _provides(plugin, callers) -> dict[str, list[str]]:
    """The names ``plugin`` registers, per kind (``register_generators`` → ``generator``)."""
    found = {}
    for caller in sorted(callers, key=lambda c: c.name):
        if not caller.name.startswith("register_") or caller.name == "register_config_schemas":
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                try:
                    names = sorted(impl.function() or {})
                except Exception as exc:  # listed, not raised: the listing must show the rest
                    names = [f"<{type(exc).__name__}>"]
                found[caller.name.removeprefix("register_").removesuffix("s")] = names
    return found


def registry(pm: pluggy.PluginManager, stage: str) -> dict[str, Callable]:
    """Return ``{name: factory}`` for ``stage`` ("generator", "preprocessor", "model" or
    "writer").

    Results come in pluggy's call order (later-registered and ``tryfirst`` plugins first, the
    default plugins, which are ``trylast``, at the end); the first plugin to claim a name wins.
    """
    hook = getattr(pm.hook, f"register_{stage}s")
    found: dict[str, Callable] = {}
    for result in hook():
        for name, factory in (result or {}).items():
            found.setdefault(name, factory)
    return found


def resolve(pm: pluggy.PluginManager, stage: str, name: str | None, key: str | None = None,
            what: str | None = None) -> Callable:
    """Return the factory registered as ``name`` for ``stage`` ("generator", …, or "writer"), or
    fail naming the config ``key`` (``STAGE.plugin``) and the known names."""
    factories = registry(pm, stage)
    if name not in factories:
        known = ", ".join(sorted(factories)) or "none"
        what = what or f"{stage} plugin"
        raise ConfigError(
            key or f"{stage}.plugin", f"no {what} named {name!r} is installed (installed: {known})"
        )
    return factories[name]
