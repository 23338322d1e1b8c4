"""Writing throughput per output format: webdataset and parquet ÷ imagefolder, on the same images.

    python bench/formats.py                    # 240 images per format, best of 3
    python bench/formats.py --images 600 --repeats 5 --shard-size 100

Every format gets the same photo-like 512² images (bench/keepup.py's), already preprocessed (the
default preprocessor: 3 × 224 × 224 float32) and with logits, and writes them through the run's
own writing path: :class:`ailusion.rundir.outputs.Outputs` with that format's writer, so the PNG
encoding on the worker threads, the files and shards, the manifest or the stats are all counted,
and nothing else (no generation, preprocessing or forward pass, which are the same whatever the
format). It prints, side by side, images/s per format, its ratio to imagefolder, the files it
made and its bytes per image.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

FORMATS = ("imagefolder", "webdataset", "parquet")


def stages(fmt: str, shard_size: int, run_dir: Path):
    """(preprocessor, model, writer, config) for a run of ``fmt``; no model is loaded."""
    from ailusion.api import compose_config
    from ailusion.manager import get_plugin_manager
    from ailusion.pipeline import build_stages
    from ailusion.rundir.writers import build_writer
    from ailusion.stages import StageContext

    config = compose_config(["generator=tiny", "model.backend=torch", "progress=false",
                             f"output.format={fmt}", f"output.shard_size={shard_size}"])
    pm = get_plugin_manager()
    context = StageContext(config=config, run_dir=run_dir)
    _, preprocessor, model = build_stages(config, context, pm)
    return preprocessor, model, build_writer(config, context, pm), config


def write(fmt: str, images, arrays, logits, shard_size: int, run_dir: Path) -> float:
    """Seconds to write ``images`` in ``fmt`` into the new dir ``run_dir``."""
    from ailusion.rundir.outputs import Outputs
    from ailusion.rundir.writers import RunInfo
    from ailusion.stages import GeneratedImage, ImageRequest

    run_dir.mkdir(parents=True)
    preprocessor, model, writer, config = stages(fmt, shard_size, run_dir)
    count = len(images)
    requests = [ImageRequest(i + 1, f"a photograph, number {i + 1}", None, i) for i in range(count)]
    info = RunInfo(fmt, shard_size, count, preprocessor.settings(), preprocessor.output_shape,
                   "float32", list(model.labels))
    writer.complete(requests)
    generated = [GeneratedImage(r, images[i], {"model": "bench", "height": 512, "width": 512})
                 for i, r in enumerate(requests)]
    batch_size = 8
    started = time.perf_counter()
    writer.start(requests, info, {})
    outputs = Outputs(run_dir, count, preprocessor, model, writer)
    for start in range(0, count, batch_size):
        part = slice(start, min(start + batch_size, count))
        for item in generated[part]:
            outputs.begin(item.request, item)
        outputs.add_batch([(g.request, g, None) for g in generated[part]], images[part],
                          arrays[part], logits[part])
    outputs.finish()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=100)
    args = parser.parse_args()

    from keepup import photos

    images = photos(args.images)
    preprocessor = stages("imagefolder", args.shard_size, Path(tempfile.mkdtemp()))[0]
    distinct = {id(image): i for i, image in enumerate(images)}
    done = {i: preprocessor.preprocess([images[i]])[0] for i in set(distinct.values())}
    arrays = np.stack([done[distinct[id(image)]] for image in images])
    logits = np.random.default_rng(0).standard_normal((args.images, 10)).astype(np.float32)

    work = Path(tempfile.mkdtemp(prefix="ailusion-formats-"))
    results = {}
    try:
        for repeat in range(args.repeats):
            for fmt in FORMATS:  # interleaved, so a slow moment of the machine hits every format
                run_dir = work / f"{fmt}-{repeat}"
                seconds = write(fmt, images, arrays, logits, args.shard_size, run_dir)
                files = [p for p in run_dir.rglob("*") if p.is_file()]
                size = sum(p.stat().st_size for p in files)
                best = results.get(fmt, (float("inf"),))[0]
                results[fmt] = (min(best, seconds), len(files), size)
                if repeat < args.repeats - 1:
                    shutil.rmtree(run_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = args.images / results["imagefolder"][0]
    print(f"writing {args.images} photo-like 512² images (+ 3×224×224 float32 arrays), "
          f"shard_size={args.shard_size}, best of {args.repeats}")
    print(f"{'format':<12} {'images/s':>9} {'÷ imagefolder':>14} {'files':>6} {'KiB/image':>10}")
    for fmt in FORMATS:
        seconds, count, size = results[fmt]
        rate = args.images / seconds
        print(f"{fmt:<12} {rate:>9.1f} {rate / base:>14.2f} {count:>6} "
              f"{size / args.images / 1024:>10.1f}")


if __name__ == "__main__":
    main()
