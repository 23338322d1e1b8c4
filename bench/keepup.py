"""Keep-up benchmark: can ailusion's CPU side keep up with a fast GPU?

    python bench/keepup.py                     # ailusion's PNG settings, 600 images per run
    python bench/keepup.py --images 120 --encoders pillow fpng

On a GPU the generating thread only waits on kernels; the CPU work per image (two PNG encodes,
preprocessing, the forward pass, the manifest) sets the pace. With no GPU here, a *paced
generator* stands in for one: a bench-only plugin, registered by hand, that yields pre-rendered
photo-like 512² images at a set rate and spends its time in ``time.sleep`` (which, like waiting
on CUDA, leaves the CPU and the GIL to the workers). It prints

  * L, the physical limit: cores ÷ the single-core cost per image of the work every image needs,
    each stage measured here, now, with ailusion's own code (one thread, no other work running);
  * L measured with every core busy: the same stages run by one process per core at once.
    Cores that share caches, memory bandwidth or a host deliver less than ``cores`` times one
    core's rate (here two Pillow encoders at once reach about 1.7–1.9 times one), so this is the
    limit the bare work itself reaches on this machine, and C ÷ it what ailusion adds;
  * C, ailusion's capacity: images/s when the generator never waits, and C ÷ L;
  * achieved ÷ offered: the rate a run delivers (images ÷ the time from the first image to the
    end of the run, its last files written) when the generator offers 0.5·C and 0.8·C.

The paced generator models a GPU that works one image ahead: the time the generating thread
spends handing an image over comes out of the next image's sleep, but a hand-over that takes
longer than an image is lost, as a GPU left without work loses it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ailusion import hookimpl

SIDE = 512
#: Images each stage of :func:`stage_costs` handles per repeat.
IMAGES = 8
#: The first stages' overrides: the torch twin on the CPU (Julia may be absent), no progress bar.
OVERRIDES = ["generator=tiny", "model.backend=torch", "model.device=cpu", "progress=false"]


def photos(count: int = 12, side: int = SIDE) -> list:
    """``count`` distinct photo-like ``side``² RGB images: crops (and their mirror images) of the
    two photographs scikit-learn ships, scaled to ``side`` pixels high."""
    from PIL import Image, ImageOps
    from sklearn.datasets import load_sample_images

    images = []
    for pixels in load_sample_images().images:
        photo = Image.fromarray(pixels)
        photo = photo.resize((round(photo.width * side / photo.height), side), Image.BICUBIC)
        for left in np.linspace(0, photo.width - side, 3).round().astype(int):
            crop = photo.crop((left, 0, left + side, side))
            images += [crop, ImageOps.mirror(crop)]
    for image in images:
        image.load()
    return [images[i % len(images)] for i in range(count)]


class PacedGenerator:
    """Yields ``count`` pre-rendered images at ``rate`` images/s (0: as fast as it is asked)."""

    def __init__(self, config, context=None):
        self.rate, self.count = float(config.rate), int(config.count)
        self.images = photos()
        self.started = None  # perf_counter time of the first image's start

    def plan(self, prompts):
        from ailusion.stages import ImageRequest

        texts = [p.text for p in prompts] or ["a photograph"]
        return [ImageRequest(index=i + 1, prompt=texts[i % len(texts)], seed=i)
                for i in range(self.count)]

    def setup(self) -> None:
        pass

    def generate(self, requests):
        from ailusion.stages import GeneratedImage

        period = 1 / self.rate if self.rate > 0 else 0.0
        info = {"model": "paced", "num_inference_steps": 1, "guidance_scale": 0.0,
                "height": SIDE, "width": SIDE}
        ready = self.started = time.perf_counter()
        for request in requests:
            ready += period
            pause = ready - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            else:  # the hand-over took longer than an image: that time is lost
                ready -= pause
            yield GeneratedImage(request, self.images[request.index % len(self.images)], dict(info))


class PacedPlugin:
    """Registers ``paced`` and times each run from its first image to its end."""

    def __init__(self):
        self.generator: PacedGenerator | None = None
        self.ended = None

    @hookimpl
    def register_generators(self):
        def factory(config, context):
            self.generator = PacedGenerator(config, context)
            return self.generator
        return {"paced": factory}

    @hookimpl
    def run_end(self):
        self.ended = time.perf_counter()


def keep_up(rate: float, count: int, work: Path, overrides=()) -> float:
    """Images/s a run of ``count`` paced images delivers when offered ``rate`` (0: unpaced)."""
    from omegaconf import open_dict

    from ailusion import threads
    from ailusion.api import compose_config
    from ailusion.manager import get_plugin_manager
    from ailusion.pipeline import run_pipeline

    # The workers run below the generating thread so that a generator on the CPU keeps its pace;
    # this one only sleeps, and on a shared machine the lower priority would hand the workers'
    # time to other processes instead: measured as on a node of its own, at equal priority.
    threads.WORKER_NICENESS = 0
    config = compose_config([*OVERRIDES, *overrides])
    with open_dict(config):
        config.generator = {"plugin": "paced", "rate": rate, "count": count}
    pm, plugin = get_plugin_manager(), PacedPlugin()
    pm.register(plugin, name="paced")
    run_dir = work / "keepup"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_pipeline(config, run_dir, pm=pm)
    return count / (plugin.ended - plugin.generator.started)


def stage_costs(overrides=(), repeats: int = 5) -> dict[str, float]:
    """Seconds per image, on one core, of each stage every image needs, as the run does it: two
    PNG encodes, preprocessing, the forward pass, the files' atomic writes and sha256 (which
    the manifest records), a row of preprocessed.npy with its sha256 (which the run's record
    keeps) and one of the manifest. The contact sheet,
    the black check, the 8-bit view and handing work between threads are left out: they are
    the overheads C ÷ L shows."""
    with _stages(overrides) as stages:
        return {name: _best(stage, repeats) / IMAGES for name, stage in stages.items()}


def stage_costs_all_cores(overrides=(), repeats: int = 5) -> dict[str, float]:
    """The same stages, run by ``cores()`` processes at once, one per core: seconds per image
    each copy takes while every core is busy with the same work (each repeat starts together;
    per stage, the best repeat of the slowest copy). On a machine whose cores share caches and
    memory bandwidth, or whose virtual cores share more, this is more than :func:`stage_costs`."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # torch is loaded here already: no fork
    count = cores()
    barrier, results = context.Barrier(count), context.Queue()
    copies = [context.Process(target=_timed_stages, args=(list(overrides), repeats, barrier,
                                                          results)) for _ in range(count)]
    for copy in copies:
        copy.start()
    runs = [results.get(timeout=600) for _ in copies]
    for copy in copies:
        copy.join()
    if any(isinstance(run, str) for run in runs):
        raise RuntimeError(next(run for run in runs if isinstance(run, str)))
    return {name: min(max(run[name][k] for run in runs) for k in range(repeats)) / IMAGES
            for name in runs[0]}


def _timed_stages(overrides, repeats: int, barrier, results) -> None:
    """Put each stage's time per repeat into ``results``, every repeat started together with the
    other copies (or why this copy failed, as text)."""
    times: dict[str, list[float]] = {}
    try:
        with _stages(overrides) as stages:
            for name, stage in stages.items():
                stage()  # warm
                for _ in range(repeats):
                    barrier.wait(timeout=300)
                    started = time.perf_counter()
                    stage()
                    times.setdefault(name, []).append(time.perf_counter() - started)
    except BaseException as exc:
        barrier.abort()
        results.put(f"{type(exc).__name__}: {exc}")
        raise
    results.put(times)


@contextmanager
def _stages(overrides=()):
    """The stages :func:`stage_costs` times, each a function handling :data:`IMAGES` images,
    with torch on one thread meanwhile."""
    import torch

    from ailusion.rundir.files import write_bytes
    from ailusion.rundir.manifest import dumps_row
    from ailusion.api import compose_config
    from ailusion.manager import get_plugin_manager, resolve
    from ailusion.stages import StageContext

    config = compose_config([*OVERRIDES, *overrides, "preprocessor.num_workers=1"])
    pm, context = get_plugin_manager(), StageContext(config=config, run_dir=Path("."))
    preprocessor = resolve(pm, "preprocessor", "image")(config.preprocessor, context)
    model = resolve(pm, "model", config.model.plugin)(config.model, context)
    model.setup(preprocessor.output_shape)
    images = photos(IMAGES)
    arrays = preprocessor.preprocess(images)
    views = [preprocessor.to_image(row) for row in arrays]
    text = {"prompt": "a magical forest with glowing trees", "seed": 3, "model": "paced",
            "num_inference_steps": 1, "guidance_scale": 0.0, "height": SIDE, "width": SIDE}
    row = {"file_name": "generated_image_1.png", "index": 1, **text, "negative_prompt": None,
           "source": None, "preprocessed_file_name": "preprocessed_image_1.png",
           "preprocessing": preprocessor.settings(), "flagged": None, "label": "3",
           "probability": 0.123456, "logits": [0.1] * len(model.labels)}
    encode = _encoder(config)
    files = [encode(image, text) for image in images] + [encode(view, None) for view in views]
    with tempfile.TemporaryDirectory() as tmp:
        npy, manifest = open(Path(tmp) / "rows.npy", "wb"), open(Path(tmp) / "m.jsonl", "w")
        sha, rows = hashlib.sha256(), [memoryview(row).cast("B") for row in arrays]
        stages = {
            f"PNG {SIDE}²": lambda: [encode(image, text) for image in images],
            f"PNG {preprocessor.output_shape[1]}²": lambda: [encode(view, None) for view in views],
            "preprocess": lambda: preprocessor.preprocess(images),
            f"forward (batch {len(images)})": lambda: model.forward(arrays),
            "write + sha256 of both": lambda: [write_bytes(Path(tmp) / f"{i}.png", data)
                                            for i, data in enumerate(files)],
            # the run hashes each row as it writes it (the record keeps the array's sha256)
            "npy row + sha256": lambda: [npy.write(sha.update(row) or row) for row in rows],
            "manifest row": lambda: [manifest.write(dumps_row(row)) or manifest.flush()
                                     for _ in images],
        }
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield stages
        finally:
            torch.set_num_threads(threads)
            npy.close(), manifest.close()


def _encoder(config):
    """One image → PNG bytes, as the run encodes it (text chunks included)."""
    from ailusion import png

    encoder = png.resolve(config.get("png_encoder", "pillow"))
    return lambda image, text: png.encode(image, text, encoder, config.png_compress_level,
                                          config.png_strategy)


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def measure(images: int, work: Path, overrides=(), repeats: int = 1, paced: bool = True) -> dict:
    """L, C, C ÷ L and achieved ÷ offered at 0.5·C and 0.8·C, for one set of ``overrides``.

    The stage costs and the unpaced run are measured ``repeats`` times, interleaved, and the best
    of each kept: on a shared machine that catches a quiet moment for both."""
    keep_up(0, min(images, 48), work, overrides)  # warm: imports, first-call costs
    costs, busy, capacity = {}, {}, 0.0
    for _ in range(repeats):
        for name, cost in stage_costs(overrides).items():
            costs[name] = min(cost, costs.get(name, float("inf")))
        capacity = max(capacity, keep_up(0, images, work, overrides))
        for name, cost in stage_costs_all_cores(overrides).items():
            busy[name] = min(cost, busy.get(name, float("inf")))
    limit, busy_limit = cores() / sum(costs.values()), cores() / sum(busy.values())
    written = [p.stat().st_size for p in (work / "keepup").glob("*_image_*.png")]
    result = {"cores": cores(), "costs_ms": {k: round(v * 1000, 3) for k, v in costs.items()},
              "L": limit, "C": capacity, "C/L": capacity / limit,
              "costs_ms_all_cores_busy": {k: round(v * 1000, 3) for k, v in busy.items()},
              "L_all_cores_busy": busy_limit, "C/L_all_cores_busy": capacity / busy_limit,
              "png_kib_per_image": sum(written) / images / 1024}
    if paced:
        for share in (0.5, 0.8):
            offered = share * capacity
            result[f"achieved/offered at {share}·C"] = keep_up(offered, images, work,
                                                               overrides) / offered
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="images per run (default 600)")
    parser.add_argument("--repeats", type=int, default=1, help="unpaced runs, best kept")
    parser.add_argument("overrides", nargs="*", help="ailusion overrides, e.g. png_strategy=default")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="ailusion-keepup-") as tmp:
        result = measure(args.images, Path(tmp), args.overrides, args.repeats)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
