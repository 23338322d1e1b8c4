"""ailusion's Hydra config tree (``pkg://ailusion.conf``)."""

from ailusion.schemas import register_configs

register_configs()
