"""Start-up stays light: help, the plugin listing and config errors never load torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "juliacall")

# Runs the CLI in-process, then reports which heavy modules it imported, whatever the exit.
PROBE = """
import atexit, json, sys
heavy = {heavy!r}
atexit.register(lambda: print("LOADED=" + json.dumps(sorted(m for m in heavy if m in sys.modules))))
sys.argv = ["ailusion", *{argv!r}]
from ailusion.cli import main
main()
"""


def run_cli(argv, tmp_path, **env):
    code = PROBE.format(heavy=HEAVY, argv=list(argv))
    environ = {**os.environ, "AILUSION_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=environ
    )


def loaded(proc) -> list[str]:
    line = [l for l in proc.stdout.splitlines() if l.startswith("LOADED=")][-1]
    return json.loads(line.removeprefix("LOADED="))


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["generator=tiny", "--help"],
        ["plugins"],
        ["plugins", "--json"],
        ["--cfg", "job"],
        ["generator=tiny", "generator.width=100"],
    ],
    ids=["help", "help-with-override", "plugins", "plugins-json", "cfg-job", "config-error"],
)
def test_command_does_not_import_heavy_modules(argv, tmp_path):
    proc = run_cli(argv, tmp_path)
    assert loaded(proc) == [], proc.stderr


def test_help_lists_groups_and_config(tmp_path):
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "generator: " in proc.stdout and "tiny" in proc.stdout
    assert "plugin: stable_diffusion" in proc.stdout


def test_cached_help_is_identical_to_hydra_rendering(tmp_path):
    first = run_cli(["generator=tiny", "--help"], tmp_path)
    cached = run_cli(["generator=tiny", "--help"], tmp_path)
    fresh = run_cli(["generator=tiny", "--help"], tmp_path, AILUSION_NO_HELP_CACHE="1")
    assert list((tmp_path / "cache" / "help").glob("*.txt"))
    assert first.stdout == cached.stdout == fresh.stdout
    assert "model: tiny" in cached.stdout


def test_help_depends_on_overrides(tmp_path):
    default = run_cli(["--help"], tmp_path)
    tiny = run_cli(["generator=tiny", "--help"], tmp_path)
    assert "model: tiny" in tiny.stdout and "model: tiny" not in default.stdout
