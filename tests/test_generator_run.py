"""Whole tiny runs: provenance in the PNGs, regenerating one image alone, a quiet console."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def manifest(run_dir):
    lines = (run_dir / "metadata.jsonl").read_text().splitlines()
    return {row["index"]: row for row in map(json.loads, lines)}


def test_png_text_chunks_carry_the_provenance(run_tiny):
    result = run_tiny(
        "generator.seed=5", "generator.negative_prompt=blurry", "generator.scheduler=euler",
        "generator.guidance_scale=3.0", "generator.height=32", "generator.width=48",
        "generator.num_inference_steps=1",
    )
    with Image.open(result.image_paths[1]) as image:
        text = dict(image.text)
        assert image.size == (48, 32)
    assert text == {
        "prompt": "a serene sunset over a futuristic city", "negative_prompt": "blurry",
        "seed": "6", "model": "tiny", "scheduler": "euler", "num_inference_steps": "1",
        "guidance_scale": "3.0", "height": "32", "width": "48",
    }
    row = manifest(result.run_dir)[2]
    assert row["seed"] == 6 and row["scheduler"] == "euler" and row["flagged"] is None


def test_image_5_regenerated_alone_is_identical(run_tiny, tmp_path):
    overrides = ("generator.height=32", "generator.width=32", "generator.num_inference_steps=1")
    full = run_tiny(*overrides, "generator.num_images_per_prompt=2", run_dir=tmp_path / "full")
    row = manifest(full.run_dir)[5]
    assert row["seed"] == 4 and row["prompt"] == "a cozy cabin in snowy mountains at dawn"
    alone = run_tiny(*overrides, f"prompts=[{row['prompt']!r}]", f"generator.seed={row['seed']}",
                     run_dir=tmp_path / "alone")
    np.testing.assert_array_equal(
        np.asarray(Image.open(alone.image_paths[0])), np.asarray(Image.open(full.image_paths[4]))
    )


def test_batched_run_saves_the_same_pngs_within_one_level(run_tiny, tmp_path):
    overrides = ("generator.height=32", "generator.width=32", "generator.num_inference_steps=1")
    single = run_tiny(*overrides, run_dir=tmp_path / "single")
    batched = run_tiny(*overrides, "generator.batch_size=3", run_dir=tmp_path / "batched")
    for a, b in zip(single.image_paths, batched.image_paths):
        difference = np.abs(np.asarray(Image.open(a), int) - np.asarray(Image.open(b), int))
        assert difference.max() <= 1  # 1e-6 apart in float can round to neighbouring levels


@pytest.mark.slow
def test_a_run_prints_only_its_progress_bar(tmp_path):
    env = dict(os.environ, AILUSION_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-m", "ailusion", "generator=tiny", "generator.height=32",
         "generator.width=32", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "images: 100%" in result.stderr
    for noise in ("steps_offset", "accelerate", "Loading pipeline components", "Loading weights",
                  "torchvision", "Writing model shards", "Warning", "it/s]"):
        assert noise not in result.stderr, noise
    # Besides the bar, only ailusion's own one-line messages, on stderr; stdout has the results.
    others = [line for line in result.stderr.replace("\r", "\n").splitlines()
              if line.strip() and not line.startswith("images:")]
    assert all(line.startswith("ailusion: warning: ") for line in others), others
    assert "WARNING" not in result.stdout
