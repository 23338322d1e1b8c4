"""ailusion's default plugins. Each is an ordinary plugin, registered through the same
``ailusion`` entry-point group as a third-party one (see pyproject.toml)."""
