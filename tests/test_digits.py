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
