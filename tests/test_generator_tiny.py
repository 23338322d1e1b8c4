"""The tiny offline model: the same weights from every build, one safe build per cache dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ailusion.plugins.tiny_sd import TINY_VERSION, build_tiny_pipeline, ensure_tiny_pipeline


def weights(pipe) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value
        for name in ("unet", "vae", "text_encoder")
        for key, value in getattr(pipe, name).state_dict().items()
    }


def test_cached_pipeline_equals_a_fresh_build_with_a_current_scheduler(tiny_cache):
    from diffusers import StableDiffusionPipeline

    folder = ensure_tiny_pipeline()
    assert folder == Path(tiny_cache) / TINY_VERSION
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert config["_class_name"] == "DDIMScheduler" and config["steps_offset"] == 1
    loaded, built = weights(StableDiffusionPipeline.from_pretrained(folder)), weights(
        build_tiny_pipeline())
    assert loaded.keys() == built.keys() and len(built) > 100
    for key in built:  # every weight is drawn from the fixed seed: any build gives the same
        assert torch.equal(loaded[key], built[key]), key


@pytest.mark.slow
def test_concurrent_builds_leave_one_complete_pipeline(tmp_path):
    code = "from ailusion.plugins.tiny_sd import ensure_tiny_pipeline as e; print(e())"
    env = dict(os.environ, AILUSION_CACHE=str(tmp_path))
    builders = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [builder.communicate(timeout=600)[0].strip() for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0]
    assert outputs == [str(tmp_path / TINY_VERSION)] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [TINY_VERSION, f"{TINY_VERSION}.lock"]
    assert (tmp_path / TINY_VERSION / "unet" / "diffusion_pytorch_model.safetensors").is_file()
