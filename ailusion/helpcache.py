"""A cache for ``ailusion --help``, so that asking for help does not compose every config group.

Hydra renders ``--help`` by composing the config and listing every option of every group, which
takes several times longer than importing Hydra. The text only changes when the configs, the
installed plugins or the arguments change, so it is cached under the user cache dir, keyed by
exactly those, and printed from there without importing Hydra.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

HELP_FLAGS = ("--help", "-h")


def wants_help(argv: list[str]) -> bool:
    """True for ``ailusion [OVERRIDES…] --help`` (Hydra's own ``--hydra-help`` is not cached)."""
    return any(arg in HELP_FLAGS for arg in argv)


def _conf_dir() -> Path | None:
    spec = importlib.util.find_spec("ailusion.conf")
    return Path(next(iter(spec.submodule_search_locations))) if spec else None


def cache_key(argv: list[str]) -> str:
    """Hash of what the help text depends on: arguments, config files and installed plugins."""
    from . import __version__

    digest = hashlib.sha256(f"{__version__}\0{sys.executable}\0{argv!r}".encode())
    conf = _conf_dir()
    for path in sorted(conf.rglob("*.yaml")) if conf else ():
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_mtime_ns}\0{stat.st_size}".encode())
    for ep in sorted(metadata.entry_points(group="ailusion"), key=lambda e: (e.name, e.value)):
        dist = ep.dist
        digest.update(f"{ep.name}={ep.value}@{dist.name if dist else ''}{dist.version if dist else ''}".encode())
    digest.update(os.environ.get("AILUSION_NO_HELP_CACHE", "").encode())
    return digest.hexdigest()[:32]


def _cache_file(argv: list[str]) -> Path:
    from .paths import cache_dir

    return cache_dir() / "help" / f"{cache_key(argv)}.txt"


def show(argv: list[str], render: Callable[[], None]) -> int:
    """Print the help for ``argv`` from the cache, or render it with Hydra and cache it."""
    if not os.environ.get("AILUSION_NO_HELP_CACHE"):
        path = _cache_file(argv)
        if path.exists():
            sys.stdout.write(path.read_text(encoding="utf-8"))
            return 0
    buffer = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buffer):
        try:
            render()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.write(buffer.getvalue())
    if code == 0 and not os.environ.get("AILUSION_NO_HELP_CACHE"):
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
            os.replace(tmp, path)
    return code
