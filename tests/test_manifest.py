"""metadata.jsonl: one row per image, loadable by ``datasets``' imagefolder; bad output flagged;
the contact sheet and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_plugins import FAST, plugin_manager
from PIL import Image

import ailusion
from ailusion import png, report
from ailusion.rundir import files, manifest, sheets


def run_fast(run_dir, *overrides):
    return ailusion.run([*FAST, *overrides], run_dir=run_dir, pm=plugin_manager())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_cache):
    """One small run of the tiny Stable Diffusion, shared by the tests that read it."""
    return ailusion.run(
        ["generator=tiny", "progress=false", "generator.height=32", "generator.width=32",
         "generator.num_inference_steps=1", "generator.negative_prompt=blurry",
         "preprocessor.size=16"],
        run_dir=tmp_path_factory.mktemp("tiny") / "run",
    )


def test_manifest_row_records_how_each_image_was_made(tiny_run):
    rows = manifest.read_manifest(tiny_run.run_dir)
    assert sorted(rows) == [1, 2, 3]
    row = rows[2]
    assert row["file_name"] == "generated_image_2.png"
    assert row["preprocessed_file_name"] == "preprocessed_image_2.png"
    assert row["prompt"] == "a serene sunset over a futuristic city"
    assert row["negative_prompt"] == "blurry"
    assert row["seed"] == 1
    assert row["model"] == "tiny"
    assert isinstance(row["scheduler"], str) and row["scheduler"]
    assert (row["num_inference_steps"], row["guidance_scale"]) == (1, 7.5)
    assert (row["height"], row["width"]) == (32, 32)
    assert "preprocessing" not in row  # the same for every image: once, in info.json
    info = json.loads((tiny_run.run_dir / "info.json").read_text())
    assert info["preprocessing"]["size"] in (16, [16, 16])
    probabilities = np.exp(row["logits"]) / np.exp(row["logits"]).sum()
    assert row["prediction"] == tiny_run.labels[int(np.argmax(row["logits"]))]
    assert "label" not in row and "label_id" not in row  # unlabelled: nothing about labels
    assert not (tiny_run.run_dir / "classes.json").exists()
    assert row["probability"] == pytest.approx(probabilities.max(), abs=1e-6)
    np.testing.assert_allclose(row["logits"], tiny_run.predictions[1], rtol=1e-6)
    assert row["flagged"] is None


def test_png_text_chunks_carry_the_prompt_and_seed(tiny_run):
    with Image.open(tiny_run.run_dir / "generated_image_3.png") as image:
        assert image.text["prompt"] == "a cozy cabin in snowy mountains at dawn"
        assert json.loads(image.text["seed"]) == 2


def test_datasets_imagefolder_loads_the_run(tiny_run, tmp_path):
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(tiny_run.run_dir), split="train", cache_dir=str(tmp_path)
    )
    assert loaded.num_rows == 3  # the contact sheet is not a row
    assert loaded["prompt"] == [
        "a magical forest with glowing trees",
        "a serene sunset over a futuristic city",
        "a cozy cabin in snowy mountains at dawn",
    ]
    assert loaded["seed"] == [0, 1, 2]
    first = loaded[0]
    assert first["image"].size == (32, 32) and first["preprocessed"].size == (16, 16)
    with Image.open(tiny_run.image_paths[0]) as image:
        np.testing.assert_array_equal(np.asarray(first["image"]), np.asarray(image))


def test_black_image_is_flagged_and_counted(tmp_path):
    result = run_fast(tmp_path / "run", "prompts=[a,black,c]")
    rows = manifest.read_manifest(tmp_path / "run")
    assert [rows[i]["flagged"] for i in (1, 2, 3)] == [None, "black", None]
    assert result.summary["flagged"] == 1


def test_nan_logits_are_flagged_and_the_manifest_stays_valid_json(tmp_path):
    result = run_fast(tmp_path / "run", "prompts=[a,b]", "model.plugin=nan_logits")
    assert result.summary["flagged"] == 2
    assert np.isnan(np.load(tmp_path / "run" / "predictions.npy")).all()

    def no_nan(token):
        raise AssertionError(f"{token} is not JSON")

    for line in (tmp_path / "run" / manifest.MANIFEST).read_text().splitlines():
        row = json.loads(line, parse_constant=no_nan)
        assert (row["flagged"], row["prediction"], row["probability"], row["logits"]) == (
            "nan", None, None, None)
    json.loads((tmp_path / "run" / "predictions.json").read_text(), parse_constant=no_nan)


def test_flagged_images_load_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    run_fast(tmp_path / "run", "prompts=[a,black]", "model.plugin=nan_logits")
    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path / "run"), split="train", cache_dir=str(tmp_path / "c")
    )
    assert loaded["flagged"] == ["nan", "black"]


def test_manifest_is_sorted_one_row_per_image(tmp_path):
    run_fast(tmp_path / "run", "prompts=[a,b,c,d,e,f,g]", "model.batch_size=3")
    lines = (tmp_path / "run" / manifest.MANIFEST).read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [1, 2, 3, 4, 5, 6, 7]


def test_save_png_failure_leaves_neither_file_nor_temporary(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "open", disk_full_after(10), raising=False)
    (tmp_path / "kept.png").write_bytes(b"previous")
    with pytest.raises(ailusion.errors.AilusionError, match="kept.png: cannot write: No space"):
        files.save_png(Image.new("RGB", (8, 8)), tmp_path / "kept.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.png"]
    assert (tmp_path / "kept.png").read_bytes() == b"previous"


def disk_full_after(size: int, name: str = ""):
    """An ``open`` for :mod:`ailusion.rundir.files` whose new files starting with ``.NAME`` take
    ``size`` bytes, then fail as a full disk does."""
    import errno
    import os

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data[:size]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        return Full(f) if mode == "xb" and Path(path).name.startswith(f".{name}") else f
    return fake_open


# --- the contact sheet and the summary --------------------------------------------------------


def test_contact_sheet_shows_each_image_with_its_preprocessed_twin(tmp_path):
    run_fast(tmp_path / "run", "prompts=[a,black,c]")
    with Image.open(tmp_path / "run" / sheets.CONTACT_SHEET) as sheet:
        sheet = sheet.convert("RGB")
    cell_w = 2 * sheets.THUMB + 3 * sheets._PAD
    header = sheets._LINE + 2 * sheets._PAD
    assert sheet.size == (3 * cell_w, header + sheets.THUMB + 2 * sheets._PAD + 2 * sheets._LINE)
    middle = sheets.THUMB // 2 + sheets._PAD
    # Cell 2 is the black image: both its thumbnails are black; cell 1's noise is not.
    assert sheet.getpixel((cell_w + middle, header + middle)) == (0, 0, 0)
    assert sheet.getpixel((cell_w + sheets.THUMB + sheets._PAD + middle, header + middle)) == (0, 0, 0)
    assert sheet.getpixel((middle, header + middle)) != (0, 0, 0)
    # The flagged caption is red.
    caption = sheet.crop((cell_w, header + sheets.THUMB + 2 * sheets._PAD, 2 * cell_w, sheet.height))
    assert any(r > 150 and g < 100 and b < 100 for _, (r, g, b) in caption.getcolors(1 << 16))


def test_contact_sheets_are_paginated_and_capped(tmp_path):
    rows = []
    for i in range(1, 8):
        for name in (manifest.generated_name(i), manifest.preprocessed_name(i)):
            Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(tmp_path / name)
        rows.append({"index": i, "file_name": manifest.generated_name(i),
                     "preprocessed_file_name": manifest.preprocessed_name(i),
                     "prediction": "0", "probability": 0.5, "prompt": f"p{i}"})
    paths = sheets.write_contact_sheet(tmp_path, rows, per_sheet=3, max_sheets=2)
    assert [p.name for p in paths] == ["contact_sheet.png", "contact_sheet_2.png"]
    with Image.open(paths[0]) as first, Image.open(paths[1]) as last:
        assert first.width == last.width == 3 * (2 * sheets.THUMB + 3 * sheets._PAD)
        # The last sheet has a footer line saying one image is left out.
        assert last.height == first.height + sheets._LINE + 2 * sheets._PAD
    assert not (tmp_path / "contact_sheet_3.png").exists()


def test_contact_sheet_size_is_bounded_whatever_the_run(tmp_path):
    names = sheets.contact_sheet_names(100_000)
    assert len(names) == sheets.MAX_SHEETS
    assert sheets.contact_sheet_names(0) == ["contact_sheet.png"]


def test_summary_line(tmp_path, capsys):
    result = run_fast(tmp_path / "run", "prompts=[a,black,c]")
    report.print_summary(result)
    out = capsys.readouterr().out
    assert out.startswith("ailusion: 3 images written, 0 skipped, 1 flagged in ")
    assert out.rstrip().endswith(f"s → {tmp_path / 'run'}")


def test_predictions_table_shows_no_label_for_nan_logits(tmp_path, capsys):
    result = run_fast(tmp_path / "run", "prompts=[a]", "model.plugin=nan_logits")
    report.print_predictions(result)
    assert capsys.readouterr().out.splitlines()[1].split() == ["generated_image_1.png", "-", "nan"]


def test_png_stream_decodes_to_the_rows_it_was_given(tmp_path):
    rng = np.random.default_rng(0)
    picture = np.full((37, 23, 3), 255, np.uint8)
    picture[5:20, 3:15] = rng.integers(0, 256, (15, 12, 3), dtype=np.uint8)  # noise on white
    picture[30:] = [10, 200, 30]
    stream = png.PngStream(23, 37, compress_level=1)
    for top, bottom in ((0, 1), (1, 12), (12, 36), (36, 37)):  # uneven bands, one of one row
        stream.add(picture[top:bottom])
    (tmp_path / "p.png").write_bytes(stream.finish())
    with Image.open(tmp_path / "p.png") as decoded:
        assert decoded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(decoded), picture)


def test_png_stream_refuses_a_wrong_number_of_rows():
    stream = png.PngStream(4, 3)
    stream.add(np.zeros((2, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="3 rows given 2"):
        stream.finish()
    with pytest.raises(ValueError, match="3 rows given 4"):
        stream.add(np.zeros((2, 4, 3), np.uint8))


def test_png_strategies_are_lossless_and_reach_zlib(tmp_path):
    import io
    import zlib

    image = Image.effect_mandelbrot((64, 48), (-2.0, -1.25, 0.75, 1.25), 50).convert("RGB")
    for strategy in png.PNG_STRATEGIES:
        path = tmp_path / f"{strategy}.png"
        files.save_png(image, path, 6, strategy=strategy)
        with Image.open(path) as decoded:
            assert np.array_equal(np.asarray(decoded), np.asarray(image))
    expected = io.BytesIO()
    image.save(expected, "PNG", compress_level=6, compress_type=zlib.Z_RLE)
    assert (tmp_path / "rle.png").read_bytes() == expected.getvalue()
    assert (tmp_path / "rle.png").read_bytes() != (tmp_path / "default.png").read_bytes()


@pytest.mark.parametrize("strategy", ["default", "huffman_only"])
def test_a_run_writes_its_pngs_with_the_configured_strategy(tmp_path, strategy):
    import io
    import zlib

    run_fast(tmp_path / "run", "prompts=[a]", f"png_strategy={strategy}", "png_compress_level=3")
    path = tmp_path / "run" / manifest.preprocessed_name(1)
    with Image.open(path) as saved:
        expected = io.BytesIO()
        saved.convert("RGB").save(expected, "PNG", compress_level=3,
                                  compress_type=png.PNG_STRATEGIES[strategy])
    assert path.read_bytes() == expected.getvalue()
    assert png.PNG_STRATEGIES["huffman_only"] == zlib.Z_HUFFMAN_ONLY


class CountingFont:
    """A font whose characters are 6 pixels wide (the ellipsis too), counting its measurements."""

    calls = 0

    def getlength(self, text):
        self.calls += 1
        return 6 * len(text)


def test_long_prompts_are_cut_to_the_longest_prefix_that_fits_in_few_measurements():
    font = CountingFont()
    assert sheets._fit(font, "short", 60) == "short"
    font.calls = 0
    fitted = sheets._fit(font, "x" * 500, 60)
    assert fitted == "x" * 9 + "…"  # 10 characters of 6 pixels: exactly 60
    assert font.calls <= 12  # bisection, not one measurement per character cut
    assert sheets._fit(font, "ab", 6) == "…"
