"""Labelled data made in the tests: pictures that carry their class (a coloured shape per
class, at a random place, size and shade, on a noisy background), in class subfolders, and the
labelled run dirs the folder generator makes from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPES = {"circle": (200, 40, 40), "square": (40, 170, 40), "triangle": (40, 60, 210),
          "cross": (200, 180, 30)}


def draw(shape: str, rng, size: int = 32):
    from PIL import Image, ImageDraw

    noise = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    pen = ImageDraw.Draw(image)
    r = rng.uniform(0.22, 0.35) * size
    cx, cy = rng.uniform(r, size - r, 2)
    colour = tuple(int(np.clip(c + rng.integers(-35, 36), 0, 255)) for c in SHAPES[shape])
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    elif shape == "triangle":
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    else:
        w = r / 3
        pen.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
        pen.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
    return image


def class_folder(path: Path, classes, per_class: int, seed: int = 0, size: int = 32) -> Path:
    """``path/CLASS/NNN.png``: ``per_class`` pictures of each class."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (path / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(name, rng, size).save(path / name / f"{i:03d}.png")
    return path


def labelled_run(tmp_path: Path, classes=("circle", "square", "triangle"), per_class=40,
                 seed=0, size=16, name="data", extra=(), labelled=True) -> Path:
    """A run dir of shapes made by the folder generator from class subfolders (a labelled run;
    ``labelled=False``: from one flat folder), preprocessed to ``size``×``size``."""
    import ailusion

    source = class_folder(tmp_path / f"{name}-images", classes, per_class, seed)
    if not labelled:
        flat = tmp_path / f"{name}-flat"
        flat.mkdir()
        for image in sorted(source.rglob("*.png")):
            image.rename(flat / f"{image.parent.name}-{image.name}")
        source = flat
    run_dir = tmp_path / name
    ailusion.run(["generator=folder", f"generator.path={source}", f"preprocessor.size={size}",
                  "model.backend=torch", "progress=false", *extra], run_dir=run_dir)
    return run_dir


_shared: dict = {}


def shared_run(classes=("circle", "square", "triangle"), per_class=8, extra=(), labelled=True):
    """A labelled (or unlabelled) run dir made once per test session for these arguments."""
    import tempfile

    key = (tuple(classes), per_class, tuple(extra), labelled)
    if key not in _shared:
        root = Path(tempfile.mkdtemp(prefix="ailusion-shapes-"))
        _shared[key] = labelled_run(root, classes, per_class=per_class, extra=extra,
                                    labelled=labelled)
    return _shared[key]
