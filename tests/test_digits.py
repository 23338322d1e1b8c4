"""``ailusion digits DIR``: scikit-learn's real digits as a class-subfolder folder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

datasets = pytest.importorskip("sklearn.datasets")


def test_writes_every_digit_in_its_class_folder(tmp_path):
    out = tmp_path / "digits"
    proc = subprocess.run([sys.executable, "-m", "ailusion", "digits", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote 1797 digits in 10 class folders to {out}"
    digits = datasets.load_digits()
    assert sorted(p.name for p in out.iterdir()) == [str(d) for d in range(10)]
    counts = [len(list((out / str(d)).glob("*.png"))) for d in range(10)]
    assert counts == np.bincount(digits.target).tolist()
    for index in (0, 17, 1796):
        path = out / str(digits.target[index]) / f"{index:04d}.png"
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (8, 8)
            pixels = np.asarray(image).astype(int)
        assert np.array_equal(pixels, np.rint(digits.images[index] * 255 / 16).astype(int))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_dark_on_light_and_an_empty_dir(tmp_path):
    from ailusion.digits import write_digits

    (tmp_path / "d").mkdir()
    assert write_digits(tmp_path / "d", dark_on_light=True) == 1797
    with Image.open(tmp_path / "d" / "0" / "0000.png") as image:
        pixels = np.asarray(image).astype(int)
    expected = 255 - np.rint(datasets.load_digits().images[0] * 255 / 16).astype(int)
    assert np.array_equal(pixels, expected)


def test_a_full_dir_is_refused_and_left_alone(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep")
    proc = subprocess.run([sys.executable, "-m", "ailusion", "digits", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"ailusion: error: {tmp_path / 'd'}: exists and is not an empty folder; give a new one"
    ]
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_experiment_digits_evaluates_on_the_cached_digits_by_default(tmp_path, monkeypatch):
    from ailusion.api import compose_config

    monkeypatch.setenv("AILUSION_CACHE", str(tmp_path / "cache"))
    config = compose_config(["experiment=digits"])
    assert config.eval_dir == str(tmp_path / "cache" / "digits")
    counts = [len(list((tmp_path / "cache" / "digits" / str(d)).glob("*.png")))
              for d in range(10)]
    assert sum(counts) == 1797
    again = compose_config(["experiment=digits"])
    assert again.eval_dir == config.eval_dir  # written once, then read from the cache
    given = compose_config(["experiment=digits", f"eval_dir={tmp_path / 'mine'}"])
    assert given.eval_dir == str(tmp_path / "mine")


def test_default_eval_dir_without_scikit_learn_names_the_extra(tmp_path, monkeypatch):
    from ailusion.digits import cached_digits
    from ailusion.errors import AilusionError

    monkeypatch.setenv("AILUSION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails
    with pytest.raises(AilusionError, match=r"^eval_dir: the real digits need scikit-learn: "
                                            r"pip install 'ailusion\[digits\]' \(or give eval_dir=DIR\)$"):
        cached_digits()
    assert not (tmp_path / "cache" / "digits").exists()


def test_experiment_digits_without_scikit_learn_fails_in_one_line(tmp_path):
    code = ("import sys; sys.modules['sklearn'] = None; from ailusion.cli import main; "
            "sys.argv = ['ailusion', 'experiment=digits', 'hydra.run.dir=" + str(tmp_path / "run")
            + "']; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ,
                                            "AILUSION_CACHE": str(tmp_path / "cache")})
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines == ["ailusion: error: eval_dir: the real digits need scikit-learn: "
                     "pip install 'ailusion[digits]' (or give eval_dir=DIR)"], proc.stderr


def test_experiment_digits_draws_the_pen_strokes_the_same_on_every_machine(tmp_path):
    from ailusion.api import compose_config
    from ailusion.plugins.glyphs.fonts import resolve_fonts

    config = compose_config(["experiment=digits", f"eval_dir={tmp_path}"])
    names = [font.name for font in resolve_fonts(list(config.generator.fonts),
                                                 list(config.generator.exclude_fonts),
                                                 [str(d) for d in range(10)])]
    assert names == ["Strokes 1", "Strokes 2", "Strokes 3", "Strokes 4"]  # no system font
    fonts = compose_config(["experiment=digits", f"eval_dir={tmp_path}",
                            "generator.fonts=[default,system]"]).generator
    assert resolve_fonts(list(fonts.fonts), list(fonts.exclude_fonts), ["0"])[0].name == "default"