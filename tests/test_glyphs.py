"""The glyphs generator: each image from its seed alone, every augmentation key checked and felt."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from omegaconf import OmegaConf

import ailusion
from ailusion.cli import error_line
from ailusion.errors import ConfigError
from ailusion.plugins.glyphs import GlyphGenerator
from ailusion.plugins.glyphs.options import DEFAULTS, LIMITS
from ailusion.stages import Prompt

render = importlib.import_module("ailusion.plugins.glyphs.render")
fonts = importlib.import_module("ailusion.plugins.glyphs.fonts")

ALL = {
    "rotation": [-20, 20], "shear": [-15, 15], "scale": [0.8, 1.1], "aspect": [0.8, 1.2],
    "translation": [-0.1, 0.1], "thickness": [-0.02, 0.08], "elastic": [0, 0.1],
    "blur": [0, 0.8], "noise": [0, 0.05], "ink": [180, 255], "background": [0, 40],
}


def generator(**options):
    return GlyphGenerator(OmegaConf.create({"plugin": "glyphs", **options}), None)


def images(gen, prompts):
    requests = gen.plan([Prompt(p) for p in prompts])
    return requests, [np.asarray(g.image) for g in gen.generate(requests)]


def test_each_image_comes_from_its_seed_alone_whatever_the_batch():
    gen = generator(**ALL)
    requests, batch = images(gen, list("0123456789") * 3)
    assert len({r.seed for r in requests}) == 30
    alone = [np.asarray(next(iter(gen.generate([r]))).image) for r in reversed(requests)][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(batch, alone))
    assert not np.array_equal(batch[0], batch[10])  # same text, other seed: another image
    other = generator(**ALL)  # a new generator (fresh caches) draws the same images
    assert all(np.array_equal(a, b) for a, b in zip(batch, images(other, list("0123456789") * 3)[1]))


def test_same_bytes_in_a_shard_as_in_the_whole_run(tmp_path):
    common = ["generator=glyphs", "prompts=[0,1,2,3]", "generator.num_images_per_prompt=2",
              "preprocessor.size=16", "progress=false", *(f"generator.{k}={v}" for k, v in ALL.items())]
    whole = ailusion.run(common, run_dir=tmp_path / "whole")
    shard = ailusion.run([*common, "shard=1", "num_shards=3"], run_dir=tmp_path / "shard")
    assert [p.name for p in shard.image_paths] == [
        f"generated_image_{i}.png" for i in (4, 5, 6)
    ]
    for path in shard.image_paths:
        assert path.read_bytes() == (whole.run_dir / path.name).read_bytes()


def test_the_manifest_records_font_and_draws(tmp_path):
    import json

    result = ailusion.run(
        ["generator=glyphs", "prompts=[7]", "generator.rotation=[-30,30]", "progress=false",
         "preprocessor.size=16"], run_dir=tmp_path / "run",
    )
    row = json.loads((result.run_dir / "metadata.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == "7" and row["height"] == 28
    assert -30 <= row["glyph"]["rotation"] <= 30 and row["glyph"]["rotation"] != 0
    assert row["glyph"]["font"]


# --- every key validated, one line naming it ------------------------------------------------

BAD = [(key, value) for key, (lo, hi) in LIMITS.items()
       for value in (lo - 1, hi + 1, [hi, lo] if hi > lo else None, "abc", [1, 2, 3])
       if value is not None]
BAD += [("seed", -1), ("height", 0), ("width", 2.5), ("num_images_per_prompt", 0),
        ("supersample", 0), ("supersample", 17), ("elastic_grid", 1), ("fit", "squash"),
        ("margin", 0.5), ("fonts", []), ("exclude_fonts", [1]), ("nope", 1)]


@pytest.mark.parametrize("key,value", BAD)
def test_bad_value_is_one_line_naming_the_key(key, value):
    with pytest.raises(ConfigError) as caught:
        generator(**{key: value})
    line = error_line(caught.value)
    assert line.startswith(f"generator.{key}: ") and "\n" not in line, line


def test_one_number_is_symmetric_for_signed_keys_and_fixed_for_the_others():
    gen = generator(rotation=15, shear=0, translation=0.1, blur=0.5, scale=0.9)
    assert gen.options["rotation"] == (-15.0, 15.0) and gen.options["shear"] == (0.0, 0.0)
    assert gen.options["translation"] == (-0.1, 0.1)
    assert gen.options["blur"] == (0.5, 0.5) and gen.options["scale"] == (0.9, 0.9)
    with pytest.raises(ConfigError, match=r"^generator.rotation: a single number x means"):
        generator(rotation=-5)


def test_every_documented_key_is_known_and_defaulted():
    conf = OmegaConf.load(ailusion.__file__.replace("__init__.py", "") + "../conf/generator/glyphs.yaml")
    assert set(conf) - {"plugin"} == set(DEFAULTS)
    gen = generator(**OmegaConf.to_container(conf))
    assert gen.options["rotation"] == (0.0, 0.0) and gen.options["ink"] == (255.0, 255.0)


def test_fonts_unknown_family_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^generator.fonts: no font matches 'No Such Font'"):
        generator(fonts=["No Such Font"]).plan([Prompt("1")])
    with pytest.raises(ConfigError, match=r"^generator.fonts: no such font file"):
        generator(fonts=[str(tmp_path / "x.ttf")]).plan([Prompt("1")])


# --- each augmentation does what it says ----------------------------------------------------


def one(text="8", seed=3, **options):
    options = {"fonts": ["default"], **options}
    gen = generator(**options)
    return images(gen, [text])[1][0][..., 0].astype(float)


def ink_box(image, level=64):
    ys, xs = np.nonzero(image > level)
    return xs.min(), ys.min(), xs.max(), ys.max()


def test_box_fit_fills_the_frame_inside_the_margin():
    for text in ("1", "8", "W"):
        x0, y0, x1, y1 = ink_box(one(text, height=40, width=40, margin=0.1))
        # the larger side spans the 32-pixel inner box, centred
        assert max(x1 - x0, y1 - y0) + 1 in range(29, 34)
        assert abs((x0 + x1) / 2 - 19.5) <= 1.5 and abs((y0 + y1) / 2 - 19.5) <= 1.5


def test_stretch_fit_fills_width_and_height_then_applies_the_aspect():
    for text in ("1", "0"):
        x0, y0, x1, y1 = ink_box(one(text, height=40, width=40, margin=0.1, fit="stretch"))
        assert x1 - x0 + 1 in range(29, 34) and y1 - y0 + 1 in range(29, 34)
    x0, _, x1, _ = ink_box(one("1", height=40, width=40, margin=0.1, fit="stretch", aspect=0.5))
    assert x1 - x0 + 1 in range(14, 18)


def test_mass_fit_centres_the_centre_of_mass():
    image = one("7", height=40, width=40, fit="mass")
    ys, xs = np.indices(image.shape)
    total = image.sum()
    assert abs((image * xs).sum() / total + 0.5 - 20) < 1.0
    assert abs((image * ys).sum() / total + 0.5 - 20) < 1.0


def test_scale_translation_and_rotation_move_the_ink():
    base = ink_box(one("1", height=40, width=40))
    small = ink_box(one("1", height=40, width=40, scale=0.5))
    assert (small[3] - small[1]) < 0.6 * (base[3] - base[1])
    moved = ink_box(one("1", height=40, width=40, translation=[0.2, 0.2]))
    assert moved[0] - base[0] == pytest.approx(8, abs=1) and moved[1] - base[1] == pytest.approx(8, abs=1)
    turned = ink_box(one("1", height=40, width=40, rotation=[90, 90], aspect=1.0))
    assert (turned[2] - turned[0]) > (turned[3] - turned[1])  # a lying "1" is wide


def test_thickness_blur_noise_levels_and_elastic():
    base = one(height=32, width=32)
    assert one(height=32, width=32, thickness=0.08).sum() > 1.2 * base.sum()
    assert one(height=32, width=32, thickness=-0.02).sum() < 0.9 * base.sum()
    blurred = one(height=32, width=32, blur=1.5)
    assert np.abs(np.diff(blurred)).max() < 0.7 * np.abs(np.diff(base)).max()
    noisy = one(height=32, width=32, noise=0.1, background=100, ink=100)
    assert noisy.std() == pytest.approx(25.5, rel=0.15) and noisy.mean() == pytest.approx(100, abs=3)
    dark = one(height=32, width=32, ink=0, background=255)
    assert dark.max() == 255 and dark.min() == 0 and (dark == 255).mean() > 0.5
    warped = one(height=32, width=32, elastic=0.2)
    assert not np.array_equal(warped, base)
    assert warped.sum() == pytest.approx(base.sum(), rel=0.2)


def test_the_class_name_is_drawn_when_the_request_has_a_label():
    from ailusion.plugins.glyphs import text_of
    from ailusion.stages import ImageRequest

    request = ImageRequest(1, "a photo of a 3", None, 0)
    assert text_of(request) == "a photo of a 3"
    if "label" in ImageRequest.__dataclass_fields__:
        assert text_of(ImageRequest(1, "a photo of a 3", None, 0, label="3")) == "3"


def test_fonts_skip_faces_without_the_characters():
    found = fonts.resolve_fonts(["default", "system"], list(DEFAULTS["exclude_fonts"]), ["0"])
    assert found[0].name == "default"
    names = [f.family for f in found]
    assert not any("D050000L" in n or "Symbol" in n for n in names)
    with pytest.raises(ConfigError, match="draws every character"):
        fonts.resolve_fonts(["default"], [], ["\U0001d11e"])
