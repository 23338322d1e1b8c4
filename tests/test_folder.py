"""The folder generator: pre-generated images in sorted order, upright, RGB, bad files named."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

import ailusion
from ailusion.errors import AilusionError, ConfigError


@pytest.fixture
def images(tmp_path):
    """b.jpg (EXIF: rotate 90°), a.png (grayscale), c.webp (RGBA), a text file to ignore."""
    folder = tmp_path / "images"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned, show rotated 90° clockwise
    Image.new("RGB", (40, 20), (200, 10, 10)).save(folder / "b.jpg", exif=exif)
    Image.new("L", (16, 16), 128).save(folder / "a.png")
    Image.new("RGBA", (24, 8), (0, 0, 255, 128)).save(folder / "c.webp")
    (folder / "notes.txt").write_text("not an image")
    return folder


def run(folder, run_dir, *overrides):
    return ailusion.run(
        ["generator=folder", f"generator.path={folder}", "progress=false", *overrides],
        run_dir=run_dir,
    )


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metadata.jsonl").read_text().splitlines()]


def test_reads_sorted_upright_rgb_and_needs_no_prompts(images, tmp_path):
    result = run(images, tmp_path / "run", "prompts=[]")
    sizes = []
    for path in result.image_paths:
        with Image.open(path) as image:
            assert image.mode == "RGB"
            sizes.append(image.size)
    assert sizes == [(16, 16), (20, 40), (24, 8)]
    assert [row["source"] for row in rows(result.run_dir)] == [
        str(images / name) for name in ("a.png", "b.jpg", "c.webp")
    ]
    assert np.asarray(Image.open(result.image_paths[0]))[0, 0].tolist() == [128, 128, 128]


def test_corrupt_file_is_skipped_with_a_warning_naming_it(images, tmp_path, caplog):
    (images / "b2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with caplog.at_level(logging.WARNING):
        result = run(images, tmp_path / "run", "generator.on_error=skip")
    assert [p.name for p in result.image_paths] == [f"generated_image_{i}.png" for i in (1, 2, 3)]
    assert [row["source"].rsplit("/", 1)[1] for row in rows(result.run_dir)] == [
        "a.png", "b.jpg", "c.webp"
    ]
    assert any("b2.png" in record.getMessage() for record in caplog.records)


def test_corrupt_file_fails_the_run_naming_it_before_writing(images, tmp_path):
    (images / "b2.png").write_bytes(b"not a png at all")
    with pytest.raises(AilusionError, match="cannot read .*b2.png") as error:
        run(images, tmp_path / "run", "generator.on_error=fail")
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "run").glob("*.png"))


@pytest.mark.parametrize("setup, words", [
    ("missing", "no such folder"), ("empty", "no .png/.jpg/.jpeg/.webp files"),
    ("unset", "give the folder of images"),
])
def test_unusable_path_names_generator_path(tmp_path, setup, words):
    folder = tmp_path / "images"
    if setup == "empty":
        folder.mkdir()
        (folder / "readme.md").write_text("nothing here")
    path = "null" if setup == "unset" else str(folder)
    with pytest.raises(ConfigError, match=words) as error:
        run(path, tmp_path / "run")
    assert error.value.key == "generator.path"


def test_unknown_on_error_policy_is_named(images, tmp_path):
    with pytest.raises(ConfigError, match="skip or fail") as error:
        run(images, tmp_path / "run", "generator.on_error=ignore")
    assert error.value.key == "generator.on_error"
