"""The ``ailusion`` command: a Hydra app over ``conf/``, plus ``ailusion plugins``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import helpcache
from .errors import AilusionError


def main() -> None:
    """Entry point of the ``ailusion`` console script and ``python -m ailusion``."""
    if sys.argv[1:2] == ["plugins"]:
        sys.exit(plugins_command(sys.argv[2:]))
    if helpcache.wants_help(sys.argv[1:]):
        sys.exit(helpcache.show(sys.argv[1:], _hydra_app))
    _hydra_app()


def _hydra_app() -> None:
    """Run the Hydra app (imported here: cached ``--help`` and ``plugins`` need no Hydra)."""
    import hydra

    hydra.main(version_base="1.3", config_path="pkg://ailusion.conf", config_name="config")(_task)()


def _task(config) -> None:
    from hydra.core.hydra_config import HydraConfig

    from .pipeline import run_pipeline
    from .report import print_predictions, print_summary

    runtime = HydraConfig.get()
    try:
        result = run_pipeline(
            config, Path(runtime.runtime.output_dir), job_num=int(runtime.job.get("num") or 0)
        )
    except AilusionError as exc:
        print(f"ailusion: error: {exc}", file=sys.stderr)
        sys.exit(1)
    print_predictions(result)
    print_summary(result)


def plugins_command(argv: list[str]) -> int:
    """``ailusion plugins [--json]``: the installed plugins, their hooks, versions and origins."""
    from .manager import get_plugin_manager, get_plugins

    parser = argparse.ArgumentParser(
        prog="ailusion plugins", description="List the installed ailusion plugins."
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    plugins = get_plugins(get_plugin_manager())
    if args.json:
        print(json.dumps([p.__dict__ | {"hooks": list(p.hooks)} for p in plugins], indent=2))
        return 0
    header = ("name", "version", "from", "hooks")
    table = [header] + [
        (p.name, p.version or "-", p.distribution or p.module, ", ".join(p.hooks))
        for p in plugins
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0
