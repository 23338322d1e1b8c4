"""Preprocessing throughput: ailusion's ``image`` preprocessor against the ideal and the seeds.

    python bench/bench_preprocess.py                  # 64 images of 512×512, best of 7
    python bench/bench_preprocess.py --images 32 --repeats 3

Prints images/s for
  * ailusion: ``ImagePreprocessor.preprocess`` on the batch, all cores;
  * one core: the least work one image needs (Pillow's bicubic resize to 224², then one float32
    division by 255 into a preallocated array), one image after another on this thread;
  * the seeds: ``np.asarray(img.resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255`` per
    image, then ``np.stack`` — the naive loop;
and the ratio ailusion ÷ (cores × one core), the share of the ideal parallel speed it reaches
(target ≥ 0.85). The three are timed interleaved, best of several rounds, so that load from other
processes hits them alike; on a busy machine the ratio still comes out low, so rerun it quiet.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

from ailusion.plugins.image import ImagePreprocessor

SIZE = (224, 224)


def make_images(count: int, side: int) -> list[Image.Image]:
    """Noise over a gradient, like nothing in particular: no filter gets an easy ride."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, side, dtype=np.float32)[None, :, None]
    return [
        Image.fromarray((ramp + rng.integers(0, 56, (side, side, 3))).astype(np.uint8), "RGB")
        for _ in range(count)
    ]


def one_core(images) -> np.ndarray:
    out = np.empty((len(images), 3, *SIZE), np.float32)
    for row, image in zip(out, images):
        pixels = np.asarray(image.resize(SIZE, Image.BICUBIC)).transpose(2, 0, 1)
        np.divide(pixels, np.float32(255), out=row)
    return out


def seeds(images) -> np.ndarray:
    arrays = [np.asarray(image.resize(SIZE, Image.BICUBIC), dtype=np.float32) / 255 for image in images]
    return np.stack([array.transpose(2, 0, 1) for array in arrays])


def best_of(repeats: int, *commands) -> list[float]:
    """Each callable's fastest time over ``repeats`` interleaved rounds."""
    best = [float("inf")] * len(commands)
    for _ in range(repeats):
        for i, command in enumerate(commands):
            started = time.perf_counter()
            command()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def measure(images: int = 64, side: int = 512, repeats: int = 7) -> tuple[float, str]:
    """Return (ailusion ÷ (cores × one core), a line of images/s) for ``images`` of side²."""
    batch = make_images(images, side)
    preprocessor = ImagePreprocessor(OmegaConf.create({"plugin": "image"}))
    # Same numbers from all three, or the comparison means nothing.
    ours = preprocessor.preprocess(batch)
    assert np.array_equal(ours, one_core(batch)) and np.array_equal(ours, seeds(batch))
    cores = len(os.sched_getaffinity(0))
    t_ours, t_one, t_seeds = best_of(
        repeats, lambda: preprocessor.preprocess(batch), lambda: one_core(batch), lambda: seeds(batch)
    )
    rate_ours, rate_one, rate_seeds = (images / t for t in (t_ours, t_one, t_seeds))
    ratio = rate_ours / (cores * rate_one)
    detail = (
        f"ailusion {rate_ours:.0f} img/s, one core {rate_one:.0f} img/s × {cores} cores, "
        f"seeds' loop {rate_seeds:.0f} img/s ({rate_ours / rate_seeds:.2f}× faster)"
    )
    return ratio, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--side", type=int, default=512, help="input side in pixels (default 512)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    args = parser.parse_args()
    ratio, detail = measure(args.images, args.side, args.repeats)
    print(f"{args.images} images {args.side}×{args.side} → 224×224, bicubic, best of {args.repeats}")
    print(detail)
    print(f"ailusion ÷ (cores × one core) = {ratio:.2f}  (target ≥ 0.85: {'ok' if ratio >= 0.85 else 'MISS'})")


if __name__ == "__main__":
    main()
