"""Every image mode Pillow opens is read by scaling, not clipping; unreadable files are named."""

from __future__ import annotations

import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import ailusion
from ailusion.errors import AilusionError
from ailusion.images import ImageError, open_image, to_rgb


def rgb(image) -> np.ndarray:
    return np.asarray(to_rgb(image), dtype=np.int64)


def ramp16() -> np.ndarray:
    return np.linspace(0, 65535, 64 * 4).astype(np.uint16).reshape(4, 64)


def test_sixteen_bit_grayscale_png_is_scaled_not_saturated(tmp_path):
    values = ramp16()
    Image.fromarray(values).save(tmp_path / "deep.png")  # a 16-bit grayscale PNG
    with Image.open(tmp_path / "deep.png") as opened:
        assert opened.mode in ("I;16", "I")  # how Pillow opens it, by version
    out = np.asarray(open_image(tmp_path / "deep.png"), dtype=np.int64)
    expected = np.rint(values / 257.0)
    assert out.shape == (4, 64, 3) and (out == expected[..., None]).all()
    assert (out == 255).mean() < 0.02  # convert("RGB") saturates 98% of it


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L"])
def test_every_sixteen_bit_mode(mode):
    values = ramp16()
    image = Image.frombytes(mode, (64, 4), values.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    assert (rgb(image)[..., 0] == np.rint(values / 257.0)).all()


def test_mode_i_with_sixteen_bit_values_and_with_a_wider_range():
    values = ramp16().astype(np.int32)
    assert (rgb(Image.fromarray(values, "I"))[..., 1] == np.rint(values / 257.0)).all()
    wide = np.array([[-1000, 0, 1000, 1_000_000]], np.int32)
    # beyond 16 bits: the image's own range, -1000 … 1000000, scaled to 0 … 255
    assert rgb(Image.fromarray(wide, "I"))[0, :, 0].tolist() == [0, 0, 1, 255]


def test_float_images_in_zero_to_one_and_beyond():
    unit = np.array([[0.0, 0.25, 1.0]], np.float32)
    assert rgb(Image.fromarray(unit, "F"))[0, :, 2].tolist() == [0, 64, 255]
    wide = np.array([[-2.0, 0.0, 2.0, np.nan]], np.float32)
    assert rgb(Image.fromarray(wide, "F"))[0, :, 0].tolist() == [0, 128, 255, 0]


def test_gray_with_alpha_is_composited_over_white():
    image = Image.merge("LA", [Image.new("L", (2, 1), 100), Image.frombytes("L", (2, 1), b"\xff\x00")])
    assert rgb(image)[0].tolist() == [[100, 100, 100], [255, 255, 255]]


def test_palette_with_a_transparent_index_is_composited_over_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.save(tmp_path / "p.png", transparency=0)
    out = np.asarray(open_image(tmp_path / "p.png")).tolist()
    assert out == [[[255, 255, 255], [10, 200, 30]]]


def test_rgba_premultiplied_and_cmyk():
    rgba = Image.new("RGBA", (1, 1), (200, 0, 0, 0))
    assert rgb(rgba)[0, 0].tolist() == [255, 255, 255]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))
    assert rgb(cmyk)[0, 0].tolist() == [255, 0, 0]
    assert rgb(Image.new("1", (1, 1), 1))[0, 0].tolist() == [255, 255, 255]


def test_preprocessor_reads_a_sixteen_bit_file_without_clipping(tmp_path):
    from ailusion.api import compose_config
    from ailusion.plugins.image.preprocessor import ImagePreprocessor

    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(tmp_path / "mid.png")  # 128 * 257
    config = compose_config(["preprocessor.size=8"]).preprocessor
    out = ImagePreprocessor(config).preprocess([str(tmp_path / "mid.png")])
    np.testing.assert_allclose(out, 128 / 255, rtol=1e-6)


def bomb_png() -> bytes:
    """A 100000×100000 grayscale PNG header with a token of data: tiny on disk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) \
        + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_naming_the_file(tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    with pytest.raises(ImageError, match=r"bomb.png: refused as a possible decompression bomb"):
        open_image(tmp_path / "bomb.png")


@pytest.fixture
def folder_with_bad_files(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / "a.png")
    (folder / "b_bomb.png").write_bytes(bomb_png())
    Image.fromarray(ramp16()).save(folder / "c_deep.png")
    (folder / "d_empty.png").write_bytes(b"")
    (folder / "e_text.jpg").write_text("not a jpeg")
    return folder


def test_folder_skips_every_unreadable_or_refused_file_with_a_warning(folder_with_bad_files,
                                                                       tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        result = ailusion.run(["generator=folder", f"generator.path={folder_with_bad_files}",
                               "generator.on_error=skip", "progress=false", "preprocessor.size=8",
                               "model.backend=torch"], run_dir=tmp_path / "run")
    assert len(result.image_paths) == 2
    said = caplog.text
    for name in ("b_bomb.png", "d_empty.png", "e_text.jpg"):
        assert f"{folder_with_bad_files / name}" in said
    assert "decompression bomb" in said


def test_folder_fails_on_a_bomb_in_one_line_under_on_error_fail(folder_with_bad_files, tmp_path):
    with pytest.raises(AilusionError, match=r"generator.path: cannot read .*b_bomb.png: refused "):
        ailusion.run(["generator=folder", f"generator.path={folder_with_bad_files}",
                      "generator.on_error=fail", "progress=false"], run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
