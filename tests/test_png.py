"""PNG encoders: Pillow and fpng write the same text chunks and decode to the same pixels."""

from __future__ import annotations

import io
import json
import logging
import struct
import sys

import numpy as np
import pytest
from PIL import Image

from ailusion import png

TEXT = {"prompt": "a café at night, 夜のカフェ", "seed": 7, "guidance_scale": 7.5,
        "negative_prompt": None, "model": "tiny", "num_inference_steps": 2}


def chunk_types(data: bytes) -> list[bytes]:
    kinds, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kinds.append(data[at + 4:at + 8])
        at += 12 + length
    return kinds


def photo(mode: str = "RGB", size=(96, 64)) -> Image.Image:
    """A gradient with noise: neither flat nor pure noise."""
    rng = np.random.default_rng(1)
    h, w = size[1], size[0]
    ramp = np.linspace(0, 180, w)[None, :, None] + np.linspace(0, 60, h)[:, None, None]
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = (ramp + rng.integers(0, 16, (h, w, channels))).astype(np.uint8)
    return Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_encoders_decode_to_identical_pixels_with_the_same_text(mode):
    image = photo(mode)
    decoded = {}
    for encoder in png.ENCODERS:
        with Image.open(io.BytesIO(png.encode(image, TEXT, encoder))) as opened:
            opened.load()
            decoded[encoder] = opened
    for opened in decoded.values():
        assert opened.mode == mode and opened.size == image.size
        assert np.array_equal(np.asarray(opened), np.asarray(image))
        assert opened.text == {"prompt": TEXT["prompt"], "seed": "7", "guidance_scale": "7.5",
                               "model": "tiny", "num_inference_steps": "2"}
    assert json.loads(decoded["fpng"].text["seed"]) == 7


def test_fpng_writes_rgb_itself_and_its_text_before_the_image_data():
    data = png.encode(photo(), TEXT, "fpng")
    kinds = chunk_types(data)
    assert b"fdEC" in kinds  # fpng's own marker: fpng wrote the pixels
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    first_data = kinds.index(b"IDAT")
    assert {b"tEXt", b"iTXt"} <= set(kinds[1:first_data])  # non-Latin-1 prompt: iTXt
    assert b"fdEC" not in chunk_types(png.encode(photo(), TEXT, "pillow"))


def test_grayscale_with_fpng_is_encoded_by_pillow():
    assert b"fdEC" not in chunk_types(png.encode(photo("L"), None, "fpng"))


def test_pillow_follows_the_compression_settings():
    image = photo(size=(128, 128))
    stored = png.encode(image, None, "pillow", compress_level=0)
    packed = png.encode(image, None, "pillow", compress_level=9, strategy="default")
    assert len(stored) > 128 * 128 * 3 > len(packed)


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="png_encoder must be one of pillow, fpng"):
        png.encode(photo(), None, "qoi")


@pytest.fixture
def no_fpng(monkeypatch):
    monkeypatch.setattr(png, "_fpng", {})
    monkeypatch.setitem(sys.modules, "fpng", None)  # import fpng raises ImportError


def test_without_fpng_one_line_names_the_fallback(no_fpng, caplog):
    with caplog.at_level(logging.WARNING, logger="ailusion.png"):
        assert png.resolve("fpng") == "pillow"
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    assert message.startswith("png_encoder=fpng: fpng cannot load here (ModuleNotFoundError")
    assert "encoding PNGs with Pillow instead" in message
    # and an encode asked for fpng still writes a valid PNG, by Pillow
    data = png.encode(photo(), TEXT, "fpng")
    assert b"fdEC" not in chunk_types(data)
    with Image.open(io.BytesIO(data)) as opened:
        assert np.array_equal(np.asarray(opened), np.asarray(photo()))


def test_resolve_keeps_an_encoder_that_loads(caplog):
    with caplog.at_level(logging.WARNING, logger="ailusion.png"):
        assert png.resolve("fpng") == "fpng"
        assert png.resolve("pillow") == "pillow"
    assert not caplog.records


# --- runs ---------------------------------------------------------------------------------------


def run_fast(run_dir, *overrides):
    import ailusion
    from fake_plugins import FAST, plugin_manager

    return ailusion.run([*FAST, "prompts=[a,b,c]", *overrides], run_dir=run_dir,
                        pm=plugin_manager())


def pngs(run_dir):
    return sorted(p.name for p in run_dir.glob("*_image_*.png"))


def test_a_run_with_fpng_writes_the_same_images_and_text_as_with_pillow(tmp_path):
    run_fast(tmp_path / "pillow")
    run_fast(tmp_path / "fpng", "png_encoder=fpng")
    assert pngs(tmp_path / "fpng") == pngs(tmp_path / "pillow") != []
    for name in pngs(tmp_path / "pillow"):
        data = (tmp_path / "fpng" / name).read_bytes()
        assert b"fdEC" in chunk_types(data), name
        with Image.open(tmp_path / "pillow" / name) as a, Image.open(io.BytesIO(data)) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))
            assert a.text == b.text
    with Image.open(tmp_path / "fpng" / "generated_image_2.png") as image:
        assert image.text["prompt"] == "b" and json.loads(image.text["seed"]) == 1


def test_runs_resume_and_merge_across_encoders(tmp_path):
    from ailusion.rundir import manifest, merge

    run_fast(tmp_path / "run")
    resumed = run_fast(tmp_path / "run", "png_encoder=fpng")
    assert resumed.summary["skipped"] == 3  # Pillow's files are complete for an fpng run
    for shard, encoder in ((0, "fpng"), (1, "pillow")):
        run_fast(tmp_path / f"shard{shard}", f"shard={shard}", "num_shards=2",
                 f"png_encoder={encoder}")
    merge.merge(tmp_path / "merged", [tmp_path / "shard0", tmp_path / "shard1"])
    rows = manifest.read_manifest(tmp_path / "merged")
    assert sorted(rows) == [1, 2, 3]
    assert all(manifest.is_complete(tmp_path / "merged", row) for row in rows.values())
    fpng_made = b"fdEC" in chunk_types((tmp_path / "merged" / "generated_image_1.png").read_bytes())
    assert fpng_made  # image 1 is shard 0's, made by fpng
    again = run_fast(tmp_path / "merged")
    assert again.summary["skipped"] == 3


def test_a_run_without_fpng_says_so_and_writes_pillow_pngs(tmp_path, no_fpng, caplog):
    with caplog.at_level(logging.WARNING, logger="ailusion.png"):
        run_fast(tmp_path / "run", "png_encoder=fpng")
    assert [r.getMessage().rsplit("; ", 1)[1] for r in caplog.records] == [
        "encoding PNGs with Pillow instead (pip install 'ailusion[fpng]')"]
    assert pngs(tmp_path / "run")
    for name in pngs(tmp_path / "run"):
        assert b"fdEC" not in chunk_types((tmp_path / "run" / name).read_bytes())
