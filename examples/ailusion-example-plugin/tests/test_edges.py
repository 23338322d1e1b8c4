"""Tests of the example plugin: the stage on its own, its hooks, and a whole ailusion run."""

from __future__ import annotations

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

import ailusion_example_plugin
from ailusion.manager import get_plugin_manager, registry


def make(size=16):
    return ailusion_example_plugin.EdgesPreprocessor(OmegaConf.create({"size": size}), None)


def test_edges_of_a_flat_image_are_zero_and_of_a_square_are_not():
    flat = Image.new("RGB", (32, 32), (0, 0, 0))
    square = flat.copy()
    square.paste((255, 255, 255), (8, 8, 24, 24))
    batch = make().preprocess([flat, square])
    assert batch.shape == (2, 1, 16, 16) and batch.dtype == np.float32
    inside = (slice(None), 0, slice(1, -1), slice(1, -1))  # the filter leaves the border alone
    assert batch[inside][0].max() == 0.0
    assert batch[inside][1].max() > 0.5 and batch[inside][1, 7, 7] == 0.0  # the square's middle


def test_the_plugin_registers_edges_and_its_config_dir():
    pm = get_plugin_manager()
    if pm.get_plugin("edges") is None:  # not installed: register it by hand, as ailusion would
        pm.register(ailusion_example_plugin, name="edges")
    assert registry(pm, "preprocessor")["edges"] is ailusion_example_plugin.EdgesPreprocessor
    assert "pkg://ailusion_example_plugin.conf" in pm.hook.config_searchpath()


def test_a_run_with_preprocessor_edges(tmp_path):
    import ailusion

    result = ailusion.run(
        ["generator=tiny", "generator.height=32", "generator.width=32", "prompts=[a red cube]",
         "preprocessor=edges", "preprocessor.size=64", "progress=false"],
        run_dir=tmp_path,
    )
    batch = np.load(tmp_path / "preprocessed.npy")
    assert batch.shape == (1, 1, 64, 64) and 0 <= batch.min() and batch.max() <= 1
    assert result.predictions.shape == (1, 10)
