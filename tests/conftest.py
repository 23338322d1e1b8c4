"""Shared fixtures: an isolated cache for the tiny model, and small offline runs."""

from __future__ import annotations

import os

import pytest

# Nothing in the test suite may reach a model hub or download Julia.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYTHON_JULIAPKG_OFFLINE", "yes")


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
