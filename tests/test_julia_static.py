"""What can be checked of the Julia side without Julia: lint, syntax, the package metadata, and
that juliapkg finds the package both in this repository and in an installed wheel."""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from ailusion.plugins.flux_cnn.julia_backend import JuliaBackend
from ailusion.plugins.flux_cnn.weights import Architecture

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "julia" / "AilusionFlux"
JULIAPKG_JSON = ROOT / "plugins" / "flux_cnn" / "juliapkg.json"
JULIA_FILES = sorted((ROOT / "julia").rglob("*.jl"))
FLUX_UUID = "587475ba-b771-5e3f-ad9e-33799f191a9c"  # General registry: Flux
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STDLIBS = {"Test", "LinearAlgebra", "Random", "Statistics"}
BUILD_LITTER = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "outputs")


def test_the_julia_package_has_its_source_and_tests():
    assert [p.relative_to(PACKAGE).as_posix() for p in JULIA_FILES] == [
        "src/AilusionFlux.jl",
        "src/training.jl",
        "test/runtests.jl",
    ]


@pytest.mark.parametrize("path", JULIA_FILES, ids=lambda p: p.name)
def test_julia_file_passes_fatou_lint(path):
    # The venv's own fatou, also when the venv is not activated.
    fatou = shutil.which("fatou", path=os.path.dirname(sys.executable)) or shutil.which("fatou")
    assert fatou, "fatou is a test dependency (pip install -e '.[test]')"
    out = subprocess.run(
        [fatou, "lint", "--color", "never", "--output", "concise", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", JULIA_FILES, ids=lambda p: p.name)
def test_julia_file_parses_without_error_nodes(path):
    import tree_sitter_julia
    from tree_sitter import Language, Parser

    tree = Parser(Language(tree_sitter_julia.language())).parse(path.read_bytes())
    bad, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            bad.append(f"{node.type} at {node.start_point.row + 1}:{node.start_point.column + 1}")
        stack.extend(node.children)
    assert not bad and not tree.root_node.has_error


def test_project_toml_has_a_uuid_and_compat_for_every_dependency():
    project = tomllib.loads((PACKAGE / "Project.toml").read_text())
    assert project["name"] == "AilusionFlux" and UUID.match(project["uuid"])
    assert project["deps"]["Flux"] == FLUX_UUID
    needed = (set(project["deps"]) | set(project["extras"])) - STDLIBS
    assert needed | {"julia"} <= set(project["compat"])
    assert (
        set(project["targets"]["test"]) == set(project["extras"]) == {"NPZ", "SafeTensors", "Test"}
    )
    assert (
        "CUDA" not in project["deps"] and "cuDNN" not in project["deps"]
    )  # CPU users never get them


def test_juliapkg_json_lists_flux_and_points_at_the_julia_package():
    spec = json.loads(JULIAPKG_JSON.read_text())
    packages = spec["packages"]
    assert packages["Flux"]["uuid"] == FLUX_UUID and packages["Flux"]["version"] == "0.16.10"
    ours = packages["AilusionFlux"]
    assert (JULIAPKG_JSON.parent / ours["path"]).resolve() == PACKAGE
    assert ours["uuid"] == tomllib.loads((PACKAGE / "Project.toml").read_text())["uuid"]
    assert ours["dev"] is True
    assert set(packages) == {"Flux", "AilusionFlux"}


def test_the_relative_path_also_holds_in_an_installed_wheel():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir, package_data = pyproject["package-dir"], pyproject["package-data"]
    # Where each file lands, as a path inside site-packages.
    installed_json = Path("ailusion", "plugins", "flux_cnn", "juliapkg.json")
    assert package_dir["ailusion.plugins"] == "plugins" and package_dir["ailusion.julia"] == "julia"
    assert "juliapkg.json" in package_data["ailusion.plugins.flux_cnn"]
    assert "*.toml" in package_data["ailusion.julia.AilusionFlux"]
    assert "*.jl" in package_data["ailusion.julia.AilusionFlux.src"]
    target = Path("ailusion", "julia", "AilusionFlux")
    relative = json.loads(JULIAPKG_JSON.read_text())["packages"]["AilusionFlux"]["path"]
    site = Path("/site-packages")
    assert (site / installed_json.parent / relative).resolve() == (site / target).resolve()


def test_runtests_reads_the_fixtures_the_python_tests_use():
    source = (PACKAGE / "test" / "runtests.jl").read_text()
    assert '"..", "..", "..", "tests", "fixtures"' in source
    fixtures = (PACKAGE / "test" / ".." / ".." / ".." / "tests" / "fixtures").resolve()
    for name in ("flux_cnn_input.npy", "flux_cnn_weights.safetensors", "flux_cnn_logits.npy",
                 "flux_cnn_train_step.safetensors"):
        assert name in source and (fixtures / name).is_file()


def test_python_passes_the_keywords_build_model_takes():
    source = (PACKAGE / "src" / "AilusionFlux.jl").read_text()
    signature = re.search(r"function build_model\((.*?)\n    \)", source, re.S).group(1)
    julia_keywords = set(re.findall(r"(\w+)::", signature.split(";", 1)[1]))

    class Flux:
        def build_model(self, *args, **kwargs):
            return len(args), set(kwargs)

    backend = JuliaBackend.__new__(JuliaBackend)
    backend.flux = Flux()
    arch = Architecture(3, 2, "relu", 1, 0, None, 2, 4)
    tensors = dict.fromkeys(("conv.weight", "conv.bias", "dense.weight", "dense.bias"))
    assert backend._build(tensors, arch, gpu=False) == (4, julia_keywords)


@pytest.mark.slow
def test_a_built_wheel_ships_the_julia_package_where_juliapkg_json_points(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("ailusion", "plugins", "conf", "julia", "hydra_plugins"):
        shutil.copytree(ROOT / name, source / name, ignore=BUILD_LITTER)
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("ailusion-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        json_name = "ailusion/plugins/flux_cnn/juliapkg.json"
        relative = json.loads(archive.read(json_name))["packages"]["AilusionFlux"]["path"]
    package = posixpath.normpath(posixpath.join(posixpath.dirname(json_name), relative))
    assert package == "ailusion/julia/AilusionFlux"
    for name in ("Project.toml", "src/AilusionFlux.jl", "test/runtests.jl"):
        assert f"{package}/{name}" in names
