"""The clone works as a package from its root, installed (a wheel, not editable) or not at all:
its own ``ailusion/`` shadows an installed copy there, and must find conf/, plugins/ and julia/.

Each case runs ``python -S`` (no site-packages, so no editable install) with only the
dependencies' directory, and the wheel's when installed, on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPS = Path(hydra.__file__).resolve().parents[1]  # the site-packages holding the dependencies

PROBE = """
import json, ailusion
from ailusion.api import compose_config
from ailusion.manager import get_plugin_manager, get_plugins
config = compose_config(["generator=tiny"])
print(json.dumps({
    "ailusion": ailusion.__file__, "conf": __import__("ailusion.conf").conf.__file__,
    "julia": __import__("ailusion.julia", fromlist=["x"]).__path__[0],
    "model": config.generator.model,
    "plugins": sorted(p.name for p in get_plugins(get_plugin_manager())),
}))
"""


def python(cwd, path, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    return subprocess.run([sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    """ailusion installed from a wheel built from this tree, into a directory of its own."""
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", out, ROOT],
                   check=True, capture_output=True)
    site = out / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, *out.glob("*.whl")],
                   check=True, capture_output=True)
    return site


def probe(cwd, path) -> dict:
    out = python(cwd, path, "-c", PROBE)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_not_installed_from_the_clone_root():
    found = probe(ROOT, [DEPS])
    assert found["ailusion"] == str(ROOT / "ailusion" / "__init__.py")
    assert found["conf"] == str(ROOT / "conf" / "__init__.py")
    assert found["julia"] == str(ROOT / "julia") and found["model"] == "tiny"
    assert {"stable_diffusion", "image", "flux_cnn", "folder"} <= set(found["plugins"])


def test_not_installed_from_another_dir(tmp_path):
    found = probe(tmp_path, [ROOT, DEPS])
    assert found["conf"] == str(ROOT / "conf" / "__init__.py")
    assert {"stable_diffusion", "image", "flux_cnn"} <= set(found["plugins"])


@pytest.mark.slow
def test_installed_from_a_wheel_from_the_clone_root(wheel_site):
    found = probe(ROOT, [wheel_site, DEPS])
    # The clone's own package shadows the installed one here, and works as one.
    assert found["ailusion"] == str(ROOT / "ailusion" / "__init__.py")
    assert found["model"] == "tiny"
    assert {"stable_diffusion", "image", "flux_cnn", "folder"} <= set(found["plugins"])


@pytest.mark.slow
def test_installed_from_a_wheel_from_another_dir(wheel_site, tmp_path):
    found = probe(tmp_path, [wheel_site, DEPS])
    assert found["conf"].startswith(str(wheel_site)) and found["model"] == "tiny"


@pytest.mark.slow
def test_a_run_and_the_command_from_the_clone_root_with_a_wheel_installed(wheel_site, tmp_path):
    run = ["generator=tiny", "generator.height=32", "generator.width=32", "prompts=[a red cube]",
           "progress=false"]
    api = python(ROOT, [wheel_site, DEPS], "-c",
                 f"import ailusion; ailusion.run({run!r}, run_dir={str(tmp_path / 'api')!r})")
    assert api.returncode == 0, api.stderr
    cli = python(ROOT, [wheel_site, DEPS], "-m", "ailusion", *run,
                 f"hydra.run.dir={tmp_path / 'cli'}")
    assert cli.returncode == 0, cli.stderr
    for out in ("api", "cli"):
        assert (tmp_path / out / "generated_image_1.png").is_file()
    assert (tmp_path / "api" / "generated_image_1.png").read_bytes() == \
        (tmp_path / "cli" / "generated_image_1.png").read_bytes()


# Where each top-level dir of the tree lands in the installed package.
INSTALLED_AS = {"ailusion": "ailusion", "plugins": "ailusion/plugins", "conf": "ailusion/conf",
                "julia": "ailusion/julia", "hydra_plugins": "hydra_plugins"}


@pytest.mark.slow
def test_the_wheel_carries_every_source_file_of_the_tree(wheel_site):
    """Every module, config and Julia file is installed, subpackages included (a subpackage
    left out of pyproject's list would import from the clone and fail from anywhere else)."""
    missing = []
    for top, installed in INSTALLED_AS.items():
        for source in (ROOT / top).rglob("*"):
            if source.suffix not in {".py", ".yaml", ".jl", ".toml", ".json"} or \
                    "__pycache__" in source.parts:
                continue
            if not (wheel_site / installed / source.relative_to(ROOT / top)).is_file():
                missing.append(str(source.relative_to(ROOT)))
    assert missing == []


@pytest.mark.slow
def test_training_imports_from_the_wheel_in_another_dir(wheel_site, tmp_path):
    out = python(tmp_path, [wheel_site, DEPS], "-c",
                 "import ailusion.training.apps as a; print(a.__file__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(wheel_site))
