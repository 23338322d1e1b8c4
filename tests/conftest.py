"""Shared fixtures: an isolated cache for the tiny model, small offline runs, and Julia started
before anything imports torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the test suite may reach a model hub or download Julia.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYTHON_JULIAPKG_OFFLINE", "yes")
# No TF32 in cuDNN or cuBLAS, for torch and CUDA.jl alike (read when they initialise): Flux and
# its twin are compared to 1e-4, which TF32 convolutions on Ampere or newer can exceed.
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")


def pytest_configure(config):
    start_julia_first(config.getoption("markexpr") or "", config.args)


def start_julia_first(markexpr: str, args: list[str]) -> None:
    """Start Julia (through the Flux backend's own start-up) before collection imports torch,
    where Julia is found and the julia tests may run: PythonCall's FAQ warns that importing torch
    first can corrupt the heap. A failure here is the julia tests' to report; they start again."""
    if markexpr and not _may_select_julia(markexpr):
        return
    if args and not any(_may_hold_julia_tests(arg) for arg in args):
        return
    from ailusion.errors import AilusionError
    from ailusion.plugins.flux_cnn import julia_import

    if julia_import.find_julia() is None:
        return
    try:
        julia_import.load()
    except AilusionError:
        pass


def _may_hold_julia_tests(arg: str) -> bool:
    path = Path(arg.split("::")[0])
    return path.suffix != ".py" or path.name.startswith("test_julia")  # a dir holds them all


def _may_select_julia(markexpr: str) -> bool:
    try:
        from _pytest.mark.expression import Expression

        return Expression.compile(markexpr).evaluate(lambda name, **kw: name == "julia")
    except Exception:  # pytest's private API moved: start Julia rather than risk the order
        return True


@pytest.fixture
def no_tf32():
    """torch's convolutions and matmuls in full float32, restored afterwards."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="session", autouse=True)
def tiny_cache(tmp_path_factory):
    """One tiny-model cache for the whole session, outside the user's own cache."""
    path = os.environ.get("AILUSION_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    os.environ["AILUSION_CACHE"] = path
    return path


@pytest.fixture
def run_tiny(tmp_path):
    """Run the offline tiny pipeline with extra overrides into a fresh dir; returns the result."""
    import ailusion

    def run(*overrides, run_dir=None):
        return ailusion.run(
            ["generator=tiny", "progress=false", *overrides], run_dir=run_dir or tmp_path / "run"
        )

    return run


@pytest.fixture
def broken_site(tmp_path):
    """The environment of a process that sees an installed plugin whose module fails to import."""
    site = tmp_path / "site"
    dist = site / "ailusion_broken-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ailusion-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ailusion]\nbroken = ailusion_broken\n")
    (site / "ailusion_broken.py").write_text("import no_such_module_anywhere\n")
    return {**os.environ, "PYTHONPATH": str(site), "AILUSION_NO_HELP_CACHE": "1"}
