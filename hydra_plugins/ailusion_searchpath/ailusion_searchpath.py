"""Adds the config dirs of installed ailusion plugins to Hydra's search path.

Hydra imports every module under ``hydra_plugins``; this one acts only for the ailusion app, and
asks each ailusion plugin's ``config_searchpath`` hook where its YAML options live.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

AILUSION_CONF = "pkg://ailusion.conf"


class AilusionSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(element.path == AILUSION_CONF for element in search_path.get_path()):
            return
        from ailusion.manager import get_plugin_manager

        pm = get_plugin_manager()
        for result in pm.hook.config_searchpath():
            for entry in [result] if isinstance(result, str) else result or []:
                search_path.append(provider="ailusion-plugin", path=entry)
