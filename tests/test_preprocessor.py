"""The ``image`` preprocessor: the seeds' method bit for bit, every option, every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image, ImageOps

from ailusion.errors import ConfigError
from ailusion.plugins.image import ImagePreprocessor

IMAGENET = (np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225]))
CLIP = (
    np.float32([0.48145466, 0.4578275, 0.40821073]),
    np.float32([0.26862954, 0.26130258, 0.27577711]),
)


def make(**options) -> ImagePreprocessor:
    return ImagePreprocessor(OmegaConf.create({"plugin": "image", **options}), None)


def photo(width: int = 300, height: int = 200, seed: int = 0) -> Image.Image:
    """Noise over a gradient: every filter and every channel gives different values."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    noise = rng.integers(0, 56, (height, width, 3))
    return Image.fromarray((ramp + noise).astype(np.uint8), "RGB")


def seeds_way(image: Image.Image, size=(224, 224), resample=Image.BICUBIC) -> np.ndarray:
    """The seeds' preprocessing of one image, as (C, H, W)."""
    array = np.asarray(image.resize(size, resample), dtype=np.float32) / 255
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def chw(image: Image.Image) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32) / 255
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


# -- exactness ----------------------------------------------------------------------------------


def test_defaults_equal_the_seeds_resize_bit_for_bit():
    images = [photo(512, 512), photo(64, 64, 1), photo(300, 200, 2), photo(224, 224, 3)]
    out = make().preprocess(images)
    assert out.shape == (4, 3, 224, 224) and out.dtype == np.float32
    for row, image in zip(out, images):
        seeds = np.asarray(image.resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255
        np.testing.assert_array_equal(row, seeds.transpose(2, 0, 1))


def test_grayscale_equals_pillows_luma_bit_for_bit():
    images = [photo(512, 512), photo(100, 300, 1)]
    out = make(grayscale=True).preprocess(images)
    assert out.shape == (2, 1, 224, 224)
    for row, image in zip(out, images):
        np.testing.assert_array_equal(row, seeds_way(image.convert("L")))


def test_grayscale_channels_3_repeats_the_luma():
    image = photo()
    out = make(grayscale=True, grayscale_channels=3).preprocess([image])
    assert out.shape == (1, 3, 224, 224)
    for channel in out[0]:
        np.testing.assert_array_equal(channel, seeds_way(image.convert("L"))[0])


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "CMYK"])
def test_any_input_mode_is_converted_to_rgb_first(mode):
    image = photo().convert(mode)
    np.testing.assert_array_equal(make().preprocess([image])[0], seeds_way(image.convert("RGB")))


def test_image_files_give_what_images_in_memory_give(tmp_path):
    images = [photo(seed=i) for i in range(3)]
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for image, path in zip(images, paths):
        image.save(path)
    preprocessor = make()
    np.testing.assert_array_equal(preprocessor.preprocess(paths), preprocessor.preprocess(images))


def test_threads_give_what_one_thread_gives():
    images = [photo(seed=i) for i in range(9)]
    np.testing.assert_array_equal(
        make(num_workers=4).preprocess(images), make(num_workers=1).preprocess(images)
    )


def test_an_empty_batch_has_zero_rows():
    assert make(size=[10, 20]).preprocess([]).shape == (0, 3, 10, 20)


# -- resize -------------------------------------------------------------------------------------


def test_size_is_height_then_width():
    image = photo()
    out = make(size=[96, 128]).preprocess([image])
    assert out.shape == (1, 3, 96, 128)
    np.testing.assert_array_equal(out[0], seeds_way(image, (128, 96)))


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (256, 256)])
def test_center_crop_equals_imageops_fit(size):
    image = photo(*size)
    out = make(size=[96, 128], mode="center_crop").preprocess([image])
    np.testing.assert_array_equal(out[0], chw(ImageOps.fit(image, (128, 96), Image.BICUBIC)))


def test_center_crop_keeps_the_centre_and_cuts_the_sides():
    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, :100, 0] = pixels[:, 200:, 0] = 255  # red sides, black square in the middle
    preprocessor = make(size=50, mode="center_crop", interpolation="nearest")
    out = preprocessor.preprocess([Image.fromarray(pixels)])
    assert out.max() == 0.0


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (128, 96)])
def test_letterbox_equals_imageops_pad(size):
    image = photo(*size)
    out = make(size=[96, 128], mode="letterbox", pad_color=[10, 200, 30]).preprocess([image])
    padded = ImageOps.pad(image, (128, 96), Image.BICUBIC, color=(10, 200, 30))
    np.testing.assert_array_equal(out[0], chw(padded))


def test_letterbox_pads_with_pad_color():
    preprocessor = make(size=[100, 100], mode="letterbox", pad_color=[10, 200, 30])
    out = preprocessor.preprocess([photo(200, 100)])
    expected = (np.float32([10, 200, 30]) / 255)[:, None]
    np.testing.assert_array_equal(out[0, :, :25, 50], np.repeat(expected, 25, 1))  # band above
    np.testing.assert_array_equal(out[0, :, 75:, 50], np.repeat(expected, 25, 1))  # band below
    assert (out[0, :, 25:75] != expected[:, :, None]).any()  # the image between them


def test_letterbox_grayscale_pads_with_the_luma_of_pad_color():
    image = photo(100, 200)
    preprocessor = make(size=64, mode="letterbox", pad_color=[10, 200, 30], grayscale=True)
    out = preprocessor.preprocess([image])
    luma = Image.new("RGB", (1, 1), (10, 200, 30)).convert("L").getpixel((0, 0))
    padded = ImageOps.pad(image.convert("L"), (64, 64), color=luma)
    np.testing.assert_array_equal(out[0], chw(padded))
    assert out[0, 0, 32, 0] == np.float32(luma) / 255


@pytest.mark.parametrize("name", ["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"])
def test_interpolation_is_pillows_filter(name):
    image = photo()
    out = make(size=[80, 90], interpolation=name).preprocess([image])
    expected = seeds_way(image, (90, 80), Image.Resampling[name.upper()])
    np.testing.assert_array_equal(out[0], expected)


def test_downscaling_is_antialiased():
    squares = np.indices((512, 512)).sum(0) % 2 * 255  # one-pixel checkerboard
    board = Image.fromarray(squares.astype(np.uint8)).convert("RGB")
    smooth = make(interpolation="bilinear").preprocess([board])
    aliased = make(interpolation="nearest").preprocess([board])
    assert abs(smooth.mean() - 0.5) < 0.01 and smooth.std() < 0.05
    assert set(np.unique(aliased)) == {0.0, 1.0}


def test_reducing_gap_is_pillows_two_step_resize():
    image = photo(1024, 1024)
    out = make(reducing_gap=2.0).preprocess([image])
    reduced = image.resize((224, 224), Image.BICUBIC, reducing_gap=2.0)
    np.testing.assert_array_equal(out[0], chw(reduced))
    assert not np.array_equal(out[0], seeds_way(image))


# -- normalize and dtype ------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "stats"), [("imagenet", IMAGENET), ("clip", CLIP)])
def test_presets_normalize_with_their_mean_and_std(preset, stats):
    image = photo()
    preprocessor = make(normalize=preset)
    mean, std = (s[:, None, None] for s in stats)
    expected = (seeds_way(image) - mean) / std
    np.testing.assert_array_equal(preprocessor.preprocess([image])[0], expected)
    settings = preprocessor.settings()
    assert settings["normalize"] == preset
    np.testing.assert_array_equal(np.float32(settings["mean"]), stats[0])
    np.testing.assert_array_equal(np.float32(settings["std"]), stats[1])


def test_mean_and_std_apply_per_channel_after_scaling():
    out = make(mean=[0.5, 0, 1], std=[0.5, 2, 1]).preprocess([photo()])
    mean, std = np.float32([0.5, 0, 1])[:, None, None], np.float32([0.5, 2, 1])[:, None, None]
    expected = (seeds_way(photo()) - mean) / std
    np.testing.assert_array_equal(out[0], expected)


def test_grayscale_channels_3_takes_a_preset():
    out = make(grayscale=True, grayscale_channels=3, normalize="imagenet").preprocess([photo()])
    gray = seeds_way(photo().convert("L"))
    mean, std = (stats[:, None, None] for stats in IMAGENET)
    np.testing.assert_array_equal(out[0], (gray - mean) / std)


def test_float16_is_the_float32_result_rounded_once():
    images = [photo(), photo(seed=1)]
    half = make(dtype="float16", normalize="clip").preprocess(images)
    assert half.dtype == np.float16
    full = make(normalize="clip").preprocess(images)
    np.testing.assert_array_equal(half, full.astype(np.float16))


# -- what the model sees, and what the manifest records -----------------------------------------


@pytest.mark.parametrize("options", [{}, {"normalize": "imagenet"}, {"dtype": "float16"}])
def test_to_image_gives_back_the_resized_pixels(options):
    image = photo()
    preprocessor = make(**options)
    view = preprocessor.to_image(preprocessor.preprocess([image])[0])
    assert view.mode == "RGB" and view.size == (224, 224)
    expected = np.asarray(image.resize((224, 224), Image.BICUBIC))
    np.testing.assert_array_equal(np.asarray(view), expected)


def test_to_image_of_grayscale_is_an_l_image():
    image = photo()
    preprocessor = make(grayscale=True, size=[32, 48])
    view = preprocessor.to_image(preprocessor.preprocess([image])[0])
    assert view.mode == "L" and view.size == (48, 32)
    expected = np.asarray(image.convert("L").resize((48, 32), Image.BICUBIC))
    np.testing.assert_array_equal(np.asarray(view), expected)


def test_output_shape_and_settings_come_from_the_config_alone():
    preprocessor = make(size=[96, 128], mode="letterbox", grayscale=True, grayscale_channels=3)
    assert preprocessor.output_shape == (3, 96, 128)
    assert preprocessor.settings() == {
        "size": [96, 128], "mode": "letterbox", "interpolation": "bicubic", "pad_color": 0,
        "reducing_gap": None, "normalize": None, "mean": None, "std": None, "dtype": "float32",
        "grayscale": True, "grayscale_channels": 3,
    }


def test_building_and_running_it_never_imports_torch():
    script = (
        "import sys; from ailusion.plugins.image import ImagePreprocessor; from PIL import Image\n"
        "p = ImagePreprocessor({'size': 8})\n"
        "p.to_image(p.preprocess([Image.new('RGB', (9, 9))])[0])\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'juliacall') if m in sys.modules))"
    )
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_pipeline_writes_what_a_non_default_preprocessor_makes(run_tiny):
    result = run_tiny(
        "preprocessor.size=[96,128]", "preprocessor.mode=letterbox", "preprocessor.grayscale=true",
        "preprocessor.pad_color=128",
    )
    arrays = np.load(result.run_dir / "preprocessed.npy")
    assert arrays.shape == (3, 1, 96, 128) and arrays.dtype == np.float32
    # The tiny generator's 64×64 images are square: letterboxed into 96×128 with 16-pixel bands.
    assert (arrays[:, :, :, :16] == np.float32(128) / 255).all()
    settings = json.loads((result.run_dir / "info.json").read_text())["preprocessing"]
    assert settings["size"] == [96, 128] and settings["mode"] == "letterbox"
    assert settings["grayscale"] is True
    index = json.loads((result.run_dir / "preprocessed_index.json").read_text())
    assert index == [f"generated_image_{i}.png" for i in (1, 2, 3)]
    with Image.open(result.preprocessed_paths[0]) as view:
        assert view.mode == "L"
        expected = np.rint(arrays[0, 0] * 255).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(view), expected)


def test_pipeline_center_crops_the_folder_generators_files(tmp_path):
    import ailusion

    folder = tmp_path / "photos"
    folder.mkdir()
    sizes = {"a.png": (300, 200), "b.png": (120, 360), "c.png": (64, 64)}  # wide, tall, square
    images = {name: photo(*size, seed=i) for i, (name, size) in enumerate(sizes.items())}
    for name, image in images.items():
        image.save(folder / name)
    result = ailusion.run(
        ["generator=folder", f"generator.path={folder}", "progress=false",
         "preprocessor.mode=center_crop", "preprocessor.size=[40,50]"],
        run_dir=tmp_path / "run",
    )
    arrays = np.load(result.run_dir / "preprocessed.npy")
    assert arrays.shape == (3, 3, 40, 50)
    for row, image in zip(arrays, images.values()):
        np.testing.assert_array_equal(row, chw(ImageOps.fit(image, (50, 40), Image.BICUBIC)))


def test_pipeline_keeps_float16_arrays_and_shows_unnormalized_pixels(run_tiny):
    result = run_tiny("preprocessor.dtype=float16", "preprocessor.normalize=clip")
    arrays = np.load(result.run_dir / "preprocessed.npy")
    assert arrays.shape == (3, 3, 224, 224) and arrays.dtype == np.float16
    assert arrays.min() < 0  # normalized, not in [0, 1]
    assert np.isfinite(result.predictions).all()
    with Image.open(result.image_paths[0]) as generated:
        expected = np.asarray(generated.resize((224, 224), Image.BICUBIC))
    with Image.open(result.preprocessed_paths[0]) as view:
        np.testing.assert_array_equal(np.asarray(view), expected)


# -- bad input ----------------------------------------------------------------------------------


SIZE = "must be a positive int or [height, width] of positive ints, got"
FILTERS = "nearest, box, bilinear, hamming, bicubic, lanczos"
PAD = "must be a gray level 0-255 or [r, g, b] of 0-255, got"
STATS = {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}
BAD_OPTIONS = [
    ({"size": 0}, f"size: {SIZE} 0"),
    ({"size": -5}, f"size: {SIZE} -5"),
    ({"size": [96]}, f"size: {SIZE} [96]"),
    ({"size": [96, 128, 3]}, f"size: {SIZE} [96, 128, 3]"),
    ({"size": [96, 0]}, f"size: {SIZE} [96, 0]"),
    ({"size": 22.5}, f"size: {SIZE} 22.5"),
    ({"mode": "zoom"}, "mode: must be one of stretch, center_crop, letterbox, resize_crop, got 'zoom'"),
    ({"interpolation": "cubic"}, f"interpolation: must be one of {FILTERS}, got 'cubic'"),
    ({"normalize": "coco"}, "normalize: must be one of imagenet, clip or null, got 'coco'"),
    ({"normalize": "imagenet", "grayscale": True},
     "normalize: preset 'imagenet' is for 3 channels, the output has 1 "
     "(grayscale_channels=3 gives three)"),
    ({"normalize": "clip", **STATS}, "normalize: give a preset or mean and std, not both"),
    ({"mean": [0.5, 0.5], "std": [0.2, 0.2]},
     "mean: must have one value per output channel (3), got 2"),
    ({**STATS, "std": [0.2] * 4}, "std: must have one value per output channel (3), got 4"),
    ({**STATS, "grayscale": True}, "mean: must have one value per output channel (1), got 3"),
    ({**STATS, "std": [0.2, 0.0, 0.2]},
     "std: every value must be positive (it divides), got [0.2, 0.0, 0.2]"),
    ({"mean": [0.5, 0.5, 0.5]}, "std: mean and std must be given together"),
    ({"std": [0.5, 0.5, 0.5]}, "mean: mean and std must be given together"),
    ({**STATS, "mean": "half"}, "mean: must be a list of numbers or null, got 'half'"),
    ({"dtype": "int8"}, "dtype: must be one of float32, float16, got 'int8'"),
    ({"grayscale": "maybe"}, "grayscale: must be true or false, got 'maybe'"),
    ({"grayscale_channels": 2}, "grayscale_channels: must be 1 or 3, got 2"),
    ({"grayscale_channels": 1.0}, "grayscale_channels: must be an integer, got 1.0"),
    ({"pad_color": 300}, f"pad_color: {PAD} 300"),
    ({"pad_color": [1, 2]}, f"pad_color: {PAD} [1, 2]"),
    ({"reducing_gap": 0.5}, "reducing_gap: must be null or a number >= 1, got 0.5"),
    ({"num_workers": 0}, "num_workers: must be null (every core) or a positive int, got 0"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_option_is_one_line_naming_the_key(options, message):
    with pytest.raises(ConfigError) as error:
        make(**options)
    assert str(error.value) == f"preprocessor.{message}"
    assert "\n" not in str(error.value)


def test_unknown_option_is_named():
    with pytest.raises(ConfigError) as error:
        make(szie=96)
    assert error.value.key == "preprocessor.szie"
    assert str(error.value).startswith(
        "preprocessor.szie: unknown key (did you mean 'size'?); the image preprocessor takes "
        "plugin, size, mode,"
    )


def test_bad_option_on_the_command_line_fails_before_any_work(run_tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"^preprocessor\.std: every value must be positive"):
        run_tiny("preprocessor.mean=[0,0,0]", "preprocessor.std=[1,0,1]", run_dir=tmp_path / "bad")
    written = [p for p in (tmp_path / "bad").rglob("*") if ".hydra" not in p.parts]
    assert written == []
