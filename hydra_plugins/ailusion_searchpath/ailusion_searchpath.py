"""Adds the config dirs of installed ailusion plugins to Hydra's search path.

Hydra imports every module under ``hydra_plugins``; this one acts only for the ailusion app, and
asks each ailusion plugin's ``config_searchpath`` hook where its YAML options live. Hydra's scan
cannot see into editable installs, so ailusion also registers it by hand (:func:`register`).
"""

import contextlib

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

AILUSION_CONF = "pkg://ailusion.conf"
_plugin_manager = None  # the one ``ailusion.run(pm=…)`` composes with, while it does


@contextlib.contextmanager
def plugins_of(pm):
    """Ask ``pm``'s plugins (not only the installed ones) for their config dirs while composing."""
    global _plugin_manager
    previous, _plugin_manager = _plugin_manager, pm
    try:
        yield
    finally:
        _plugin_manager = previous


class AilusionSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(element.path == AILUSION_CONF for element in search_path.get_path()):
            return
        from ailusion.manager import get_plugin_manager

        pm = _plugin_manager or get_plugin_manager()
        for result in pm.hook.config_searchpath():
            for entry in [result] if isinstance(result, str) else result or []:
                search_path.append(provider="ailusion-plugin", path=entry)


def register() -> None:
    """Make sure Hydra uses this plugin (a no-op when Hydra's own scan already found it)."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(AilusionSearchPathPlugin)
