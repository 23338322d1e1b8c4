"""The ``ailusion`` command: a Hydra app over ``conf/``, plus ``ailusion plugins``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from . import helpcache, hydra_files, signals
from .errors import error_line


def main() -> None:
    """Entry point of the ``ailusion`` console script and ``python -m ailusion``."""
    signals.IGNORE_AFTER_STOP = True  # the process exits once stopped
    try:
        _main()
    except BrokenPipeError:  # `ailusion plugins | head -1`: the reader has gone; so do we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _main() -> None:
    if "--version" in sys.argv[1:]:
        sys.exit(print_version())
    if sys.argv[1:] in (["-sc"], ["--shell-completion"]):
        sys.exit(f"ailusion: error: {sys.argv[1]} needs install=SHELL (bash, zsh or fish): "
                 f'eval "$(ailusion -sc install=bash)" turns on completion in this shell')
    if sys.argv[1:2] == ["plugins"]:
        sys.exit(plugins_command(sys.argv[2:]))
    if sys.argv[1:2] == ["merge"]:
        from .rundir.merge import merge_command

        sys.exit(merge_command(sys.argv[2:]))
    if sys.argv[1:2] == ["plan"]:
        from .dryrun import plan_command

        sys.exit(plan_command(sys.argv[2:], error_line))
    if sys.argv[1:2] == ["digits"]:
        from .digits import digits_command

        sys.exit(digits_command(sys.argv[2:]))
    if sys.argv[1:2] in (["train"], ["evaluate"]):
        sys.exit(_run_training_app(sys.argv.pop(1)))
    if helpcache.wants_help(sys.argv[1:]):
        sys.exit(_flushed(helpcache.show(sys.argv[1:], _hydra_app)))
    sys.exit(_flushed(_run_app()))


def _flushed(code: int) -> int:
    sys.stdout.flush()  # a closed pipe fails here, inside main(), not at interpreter exit
    return code


def print_version() -> int:
    """``ailusion --version``: ailusion's version, and the Hydra and Python it runs on."""
    from importlib import metadata

    from . import __version__

    try:
        hydra = metadata.version("hydra-core")
    except metadata.PackageNotFoundError:
        hydra = "not installed"
    print(f"ailusion {__version__} (Hydra {hydra}, Python {sys.version.split()[0]})")
    return _flushed(0)


_one_line_errors = False  # set by _run_app: _task then prints its error itself


def _run_app(app=None) -> int:
    """Run the Hydra app (the main one, or ``app``); print any error as one line (with
    ``HYDRA_FULL_ERROR=1``, raise it)."""
    global _one_line_errors
    app = app or _hydra_app
    hydra_files.defer(sys.argv)
    full_errors = os.environ.get("HYDRA_FULL_ERROR") == "1"
    if not full_errors:
        # Hydra then raises its composition errors instead of printing them over several lines.
        os.environ["HYDRA_FULL_ERROR"] = "1"
        _one_line_errors = True
        warnings.showwarning = _show_warning
    try:
        with signals.stop_cleanly():  # SIGTERM stops a run as Ctrl-C does
            app()
    except KeyboardInterrupt as exc:
        print(signals.stopped_message(exc), file=sys.stderr)
        return signals.exit_status(exc)
    except BrokenPipeError:
        raise  # main() ends quietly
    except Exception as exc:
        if full_errors:
            raise
        print(f"ailusion: error: {error_line(exc)}", file=sys.stderr)
        return 1
    return 0


def _run_training_app(name: str) -> int:
    """``ailusion train`` or ``ailusion evaluate`` (:mod:`ailusion.training.apps`)."""
    from .training.apps import hydra_app

    sys.argv[0] = f"{sys.argv[0]} {name}"
    return _run_app(lambda: hydra_app(name, _job_error if _one_line_errors else None))


def _job_error(exc: BaseException):
    """Print a job's error as one line and exit (sparing the line Hydra writes before
    re-raising it)."""
    print(f"ailusion: error: {error_line(exc)}", file=sys.stderr)
    sys.exit(1)


_warned: set[str] = set()


def _show_warning(message, *args, **kwargs) -> None:
    """Print each warning once, as one line (not Python's two, with a source line)."""
    text = " ".join(str(message).split()).removeprefix("ailusion: ")
    if text not in _warned:
        _warned.add(text)
        print(f"ailusion: warning: {text}", file=sys.stderr)


class ConsoleFormatter(logging.Formatter):
    """Log records on the console as ``ailusion: warning: message`` (Hydra's log file keeps its
    own format, with times and logger names)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"ailusion: {record.levelname.lower()}: {record.getMessage()}"


def _hydra_app() -> None:
    """Run the Hydra app (imported here: cached ``--help`` and ``plugins`` need no Hydra)."""
    import hydra
    from hydra_plugins.ailusion_searchpath.ailusion_searchpath import register

    register()  # plugins' config options (config_searchpath hook)
    hydra.main(version_base="1.3", config_path="pkg://ailusion.conf", config_name="config")(_task)()


def _task(config) -> float | None:
    """The main job; with ``train`` configured, it returns the training's objective."""
    from hydra.core.hydra_config import HydraConfig

    from .manager import get_plugin_manager
    from .pipeline import run_pipeline
    from .report import print_predictions, print_summary

    runtime = HydraConfig.get()
    pm = get_plugin_manager()
    hydra_files.register(pm, config)
    try:
        if config.get("train") is not None:
            from .training import onejob

            onejob.check(config, Path(runtime.runtime.output_dir))
        result = run_pipeline(
            config, Path(runtime.runtime.output_dir), pm=pm,
            job_num=int(runtime.job.get("num") or 0),
        )
        print_predictions(result)
        print_summary(result)
        if config.get("train") is not None:
            return onejob.train_on_run(config, result.run_dir, pm)
    except Exception as exc:
        if not _one_line_errors:
            raise
        _job_error(exc)
    return None


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
        return _flushed(0)
    header = ("name", "version", "from", "provides", "hooks")
    table = [header] + [
        (p.name, p.version or "-", p.distribution or p.module,
         "; ".join(f"{kind}: {', '.join(names)}" for kind, names in p.provides.items()) or "-",
         ", ".join(p.hooks))
        for p in plugins
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    return _flushed(0)
