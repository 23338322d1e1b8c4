"""``ailusion digits DIR``: scikit-learn's 1,797 real handwritten digits as a labelled folder.

The images of ``sklearn.datasets.load_digits()`` (8×8, gray levels 0–16, shipped inside the
scikit-learn wheel: nothing is downloaded) are written as ``DIR/0/0000.png`` … ``DIR/9/1796.png``
(the number is the image's index in ``load_digits()``), the class-subfolder layout that
``eval_dir=DIR`` and the folder generator read. Level v becomes gray ``round(v * 255 / 16)``:
light ink on a dark ground, as the glyphs generator draws by default (``--dark-on-light`` for
the other way round). The folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import AilusionError

EXTRA = "pip install 'ailusion[digits]'"
RESOLVER = "real_digits"  # eval_dir: ${real_digits:} in conf/experiment/digits.yaml


class NeedsScikitLearn(AilusionError):
    """scikit-learn, which holds the digits, is not installed."""


def load_digits():
    """(images (1797, 8, 8) uint8 in 0–255, targets (1797,) int); one-line error without sklearn."""
    import numpy as np

    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise NeedsScikitLearn(f"ailusion digits: needs scikit-learn; install it with {EXTRA}") \
            from None
    data = sklearn_digits()
    images = np.rint(np.asarray(data.images, dtype=np.float64) * 255 / 16).astype(np.uint8)
    return images, np.asarray(data.target, dtype=int)


def write_digits(folder: Path, dark_on_light: bool = False) -> int:
    """Write the digits into ``folder`` (absent or empty); return the number of images."""
    from PIL import Image

    folder = Path(folder).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise AilusionError(f"{folder}: exists and is not an empty folder; give a new one")
    images, targets = load_digits()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for index, (image, target) in enumerate(zip(images, targets)):
            (tmp / str(target)).mkdir(exist_ok=True)
            pixels = 255 - image if dark_on_light else image
            Image.fromarray(pixels, "L").save(tmp / str(target) / f"{index:04d}.png")
        if folder.exists():
            folder.rmdir()
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(images)


def cached_digits() -> str:
    """The digits' folder in the cache dir, written by :func:`write_digits` the first time: what
    ``${real_digits:}`` (``experiment=digits``'s ``eval_dir``) resolves to."""
    from .paths import cache_dir

    folder = cache_dir() / "digits"
    if not folder.is_dir():
        try:
            write_digits(folder)
        except NeedsScikitLearn:
            raise AilusionError(f"eval_dir: the real digits need scikit-learn: {EXTRA} "
                                "(or give eval_dir=DIR)") from None
        except (AilusionError, OSError):
            if not folder.is_dir():  # else another job of the sweep put its copy in place first
                raise
    return str(folder)


def register_resolver() -> None:
    """Register ``${real_digits:}`` with OmegaConf (once; resolved only when a job reads it)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, cached_digits)


def digits_command(argv: list[str]) -> int:
    """``ailusion digits DIR [--dark-on-light]``."""
    parser = argparse.ArgumentParser(
        prog="ailusion digits",
        description="Write scikit-learn's 1,797 real handwritten digits (8x8) as DIR/<digit>/*.png,"
                    " a labelled folder for eval_dir=DIR.",
    )
    parser.add_argument("dir", type=Path, help="the folder to write (new, or empty)")
    parser.add_argument("--dark-on-light", action="store_true",
                        help="dark ink on a light ground (default: light on dark)")
    args = parser.parse_args(argv)
    try:
        count = write_digits(args.dir, args.dark_on_light)
    except AilusionError as exc:
        print(f"ailusion: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ailusion: error: {exc.filename or args.dir}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {count} digits in 10 class folders to {args.dir}")
    return 0
