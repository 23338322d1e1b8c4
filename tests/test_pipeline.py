"""A whole offline run, as ``ailusion generator=tiny`` makes it."""

from __future__ import annotations

import json
import os
import sys
import threading

import numpy as np
import pytest
from PIL import Image


def test_tiny_run_writes_every_output(run_tiny):
    result = run_tiny()
    run_dir = result.run_dir
    assert [p.name for p in result.image_paths] == [f"generated_image_{i}.png" for i in (1, 2, 3)]
    for i in (1, 2, 3):
        with Image.open(run_dir / f"generated_image_{i}.png") as image:
            assert image.size == (64, 64) and image.mode == "RGB"
        with Image.open(run_dir / f"preprocessed_image_{i}.png") as image:
            assert image.size == (224, 224)
    batch = np.load(run_dir / "preprocessed.npy")
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0 and batch.std() > 0
    logits = np.load(run_dir / "predictions.npy")
    assert logits.shape == (3, 10)
    np.testing.assert_array_equal(logits, result.predictions)
    saved = json.loads((run_dir / "predictions.json").read_text())
    assert [row["file_name"] for row in saved["images"]] == [p.name for p in result.image_paths]
    np.testing.assert_allclose([row["logits"] for row in saved["images"]], logits, rtol=1e-6)


def test_two_identical_runs_give_identical_pixels(run_tiny, tmp_path):
    first = run_tiny(run_dir=tmp_path / "a")
    second = run_tiny(run_dir=tmp_path / "b")
    for a, b in zip(first.image_paths, second.image_paths):
        np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    np.testing.assert_array_equal(first.predictions, second.predictions)


def test_grayscale_gives_one_channel(run_tiny):
    result = run_tiny("preprocessor.grayscale=true")
    assert np.load(result.run_dir / "preprocessed.npy").shape == (3, 1, 224, 224)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are Linux's")
def test_worker_threads_yield_to_the_generating_thread():
    from ailusion.threads import WORKER_NICENESS, yield_to_generation

    seen = {}

    def worker():
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        yield_to_generation()
        seen["change"] = os.getpriority(os.PRIO_PROCESS, tid) - before

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["change"] == min(WORKER_NICENESS, 19 - os.getpriority(os.PRIO_PROCESS, 0))
