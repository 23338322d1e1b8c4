"""The small edges of the command and the API: --version, a closed pipe, shell completion, the
plugin listing, broken plugins' warnings, and Hydra's errors raised by ailusion.run."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import pytest

import ailusion
from ailusion.cli import error_line
from ailusion.errors import AilusionError


def ailusion_cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "ailusion", *args], capture_output=True,
                          text=True, env=env, **kwargs)


def test_version_names_ailusion_and_hydra():
    out = ailusion_cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (f"ailusion {ailusion.__version__} (Hydra "
                                  f"{metadata.version('hydra-core')}, Python {sys.version.split()[0]})")


@pytest.mark.parametrize("args", [["plugins"], ["plugins", "--json"], ["--help"],
                                  ["generator=tiny", "--cfg", "job"]])
def test_a_reader_that_leaves_early_gives_no_traceback(args):
    """``ailusion plugins | head -1``: the pipe is closed before ailusion writes."""
    proc = subprocess.Popen([sys.executable, "-m", "ailusion", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert proc.returncode in (0, 1)


def test_shell_completion_without_a_shell_says_how():
    out = ailusion_cli("-sc")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        'ailusion: error: -sc needs install=SHELL (bash, zsh or fish): '
        'eval "$(ailusion -sc install=bash)" turns on completion in this shell']
    script = ailusion_cli("-sc", "install=bash")
    assert script.returncode == 0 and "complete" in script.stdout


def test_shell_completion_completes_config_options():
    out = ailusion_cli("-sc", "query=bash", env={**os.environ, "COMP_LINE": "ailusion generator=ti"})
    assert out.stdout.split() == ["generator=tiny"]


def test_plugins_lists_the_names_each_plugin_registers():
    out = ailusion_cli("plugins")
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert out.stdout.split()[:5] == ["name", "version", "from", "provides", "hooks"]
    assert "generator: stable_diffusion" in rows["stable_diffusion"]
    assert "model: flux_cnn" in rows["flux_cnn"]
    import json

    listed = {p["name"]: p for p in json.loads(ailusion_cli("plugins", "--json").stdout)}
    assert listed["image"]["provides"] == {"preprocessor": ["image"]}


@pytest.mark.parametrize("how", ["plugins", "help", "api"])
def test_a_broken_plugin_is_one_ailusion_warning_line_everywhere(broken_site, how):
    if how == "api":
        code = "from ailusion.manager import get_plugin_manager; get_plugin_manager()"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=broken_site)
    else:
        out = ailusion_cli("plugins" if how == "plugins" else "--help", env=broken_site)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("ailusion: warning: plugin 'broken' (ailusion_broken, from "
                               "ailusion-broken) failed to load and is skipped: ")
    assert "UserWarning" not in out.stderr


@pytest.mark.parametrize("overrides", [
    ["generator=nope"],                 # an unknown option
    ["generator.nope=1"],               # a key that is not there
    ["generator.seed=["],               # override syntax
    ["shard=abc"],                      # a wrong type at the top level
    ["experiment=nope"],
])
def test_ailusion_run_raises_hydras_errors_as_the_clis_one_line_ailusion_error(tmp_path, overrides):
    with pytest.raises(AilusionError) as caught:
        ailusion.run(["generator=tiny", *overrides], run_dir=tmp_path / "run")
    cli = ailusion_cli("generator=tiny", *overrides, f"hydra.run.dir={tmp_path / 'cli'}")
    assert cli.stderr.strip().splitlines()[-1] == f"ailusion: error: {caught.value}"
    assert error_line(caught.value) == str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_a_failed_run_leaves_no_empty_outputs_date_folder(tmp_path):
    cli = subprocess.run([sys.executable, "-m", "ailusion", "generator=tiny", "prompts=[]"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert cli.returncode == 1 and "prompts: no prompts" in cli.stderr
    assert list(tmp_path.iterdir()) == []
    api = "import ailusion\ntry: ailusion.run(['generator=tiny', 'prompts=[]'])\nexcept Exception: pass"
    subprocess.run([sys.executable, "-c", api], cwd=tmp_path, check=True)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "outputs" / "earlier").mkdir(parents=True)  # what was there stays
    subprocess.run([sys.executable, "-m", "ailusion", "generator=tiny", "prompts=[]"], cwd=tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")] == \
        ["outputs", "outputs/earlier"]


def tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_a_failed_run_removes_only_the_dirs_made_for_it(tmp_path):
    for name in ("runs", "own", "mine"):
        (tmp_path / name).mkdir()  # a user's empty dirs
    bad = ["generator=tiny", "prompts=[]"]
    for run_dir in ("runs/a", "own", str(tmp_path / "mine" / "sub" / "a"), "runs/new/deeper/a"):
        cli = ailusion_cli(*bad, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert cli.returncode == 1 and "prompts: no prompts" in cli.stderr, cli.stderr
    train = ailusion_cli("train", f"data={tmp_path / 'nothing'}", "hydra.run.dir=runs/t",
                         cwd=tmp_path)
    assert train.returncode == 1 and "Traceback" not in train.stderr, train.stderr
    sweep = ailusion_cli("-m", *bad, "generator.seed=1,2", "hydra.sweep.dir=runs/sweep",
                         cwd=tmp_path)
    assert sweep.returncode == 1, sweep.stderr
    assert tree(tmp_path) == ["mine", "own", "runs", "runs/sweep", "runs/sweep/multirun.yaml"]
    # The Python API: what it made goes, a user's empty run dir stays.
    with pytest.raises(AilusionError):
        ailusion.run(bad, run_dir=tmp_path / "api" / "made" / "run")
    with pytest.raises(AilusionError):
        ailusion.run(bad, run_dir=tmp_path / "own")
    assert tree(tmp_path) == ["mine", "own", "runs", "runs/sweep", "runs/sweep/multirun.yaml"]
