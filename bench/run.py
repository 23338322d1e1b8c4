"""ailusion's throughput benchmarks: one command, one table of ratios measured side by side.

    python bench/run.py            # every measure (about five minutes on 2 cores)
    python bench/run.py --quick    # fewer repeats and images, for a smoke test
    python bench/run.py --only keep-up   # only the measures whose name has this text

Absolute times vary from machine to machine and minute to minute; each ratio compares two things
measured in the same run, interleaved, best of several, which holds far better. BENCHMARKS.md has
the last results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPT = "a magical forest with glowing trees"


def best_of(repeats: int, *commands):
    """Run each callable ``repeats`` times, interleaved, and return each one's fastest time."""
    best = [float("inf")] * len(commands)
    for _ in range(repeats):
        for i, command in enumerate(commands):
            started = time.perf_counter()
            command()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def cli(*args, cwd=None):
    """Run ``ailusion ARGS…`` quietly; return its peak RSS in MiB."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ailusion", *args], cwd=cwd,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"ailusion {' '.join(args)} failed:\n{proc.stderr.read()}")
    return usage.ru_maxrss / 1024


def tiny_args(count: int, run_dir: Path) -> list[str]:
    return [
        "generator=tiny", f"prompts=[{PROMPT}]", f"generator.num_images_per_prompt={count}",
        "progress=false", f"hydra.run.dir={run_dir}",
    ]


def measure_end_to_end(images: int, repeats: int, work: Path):
    """ailusion (generate + save + preprocess + forward + manifest) ÷ a bare diffusers loop."""
    import torch
    from diffusers import StableDiffusionPipeline

    import ailusion
    from ailusion.plugins.tiny_sd import ensure_tiny_pipeline

    model = ensure_tiny_pipeline()

    def bare_loop():
        pipe = StableDiffusionPipeline.from_pretrained(model, use_safetensors=True)
        pipe.set_progress_bar_config(disable=True)
        for seed in range(images):
            pipe(PROMPT, num_inference_steps=2, height=64, width=64,
                 generator=torch.Generator("cpu").manual_seed(seed))

    def pipeline():
        run_dir = work / "e2e"
        shutil.rmtree(run_dir, ignore_errors=True)
        ailusion.run(tiny_args(images, run_dir)[:-1], run_dir=run_dir)

    ours, bare = best_of(repeats, pipeline, bare_loop)
    return ours / bare, f"{ours:.2f}s vs {bare:.2f}s"


def measure_memory(small: int, large: int, work: Path):
    """Peak RSS of a run of ``large`` images ÷ one of ``small`` images."""
    rss_small = cli(*tiny_args(small, work / "rss_small"))
    rss_large = cli(*tiny_args(large, work / "rss_large"))
    return rss_large / rss_small, f"{rss_large:.0f} MiB vs {rss_small:.0f} MiB"


def measure_help(repeats: int):
    """Wall time of ``ailusion --help`` ÷ ``python -c "import hydra"`` (help cache warm)."""
    def run(*args):
        return lambda: subprocess.run(args, check=True, stdout=subprocess.DEVNULL)

    run(sys.executable, "-m", "ailusion", "--help")()  # warms the help cache
    ours, hydra = best_of(
        repeats, run(sys.executable, "-m", "ailusion", "--help"),
        run(sys.executable, "-c", "import hydra"),
    )
    return ours / hydra, f"{ours * 1000:.0f} ms vs {hydra * 1000:.0f} ms"


def measure_batched_forward(repeats: int, work: Path):
    """Forward throughput of the torch backend: a batch of 32 in one call ÷ 32 single calls."""
    import numpy as np

    from ailusion.api import compose_config
    from ailusion.manager import get_plugin_manager, resolve
    from ailusion.stages import StageContext

    config = compose_config(["model.backend=torch", "model.device=cpu"])
    factory = resolve(get_plugin_manager(), "model", config.model.plugin)
    model = factory(config.model, StageContext(config=config, run_dir=work / "forward"))
    model.setup((3, 224, 224))
    batch = np.random.default_rng(0).random((32, 3, 224, 224), dtype=np.float32)
    batched, single = best_of(
        repeats, lambda: model.forward(batch), lambda: [model.forward(batch[i:i + 1]) for i in range(32)]
    )
    return single / batched, f"{32 / batched:.0f} img/s vs {32 / single:.0f} img/s"


def measure_preprocess(repeats: int):
    """The preprocessor's throughput ÷ (cores × one core's resize-and-scale rate): bench_preprocess."""
    sys.path.insert(0, str(HERE))
    from bench_preprocess import measure

    return measure(repeats=repeats)


def measure_seeds_workflow(images: int, work: Path):
    """The seeds' three scripts (generate, preprocess from PNGs, model) ÷ one ailusion run."""
    from ailusion.plugins.tiny_sd import ensure_tiny_pipeline

    model, seeds_dir = str(ensure_tiny_pipeline()), work / "seeds"

    def seeds():
        shutil.rmtree(seeds_dir, ignore_errors=True)
        for script, *args in (("generate.py", model, seeds_dir, images, 64),
                              ("preprocess.py", seeds_dir), ("model.py", seeds_dir)):
            subprocess.run([sys.executable, HERE / "seeds" / script, *map(str, args)], check=True,
                           stderr=subprocess.DEVNULL)

    def ours():
        shutil.rmtree(work / "ours", ignore_errors=True)
        cli(*tiny_args(images, work / "ours"))

    theirs, mine = best_of(1, seeds, ours)
    return theirs / mine, f"{theirs:.2f}s vs {mine:.2f}s"


def measure_training(quick: bool):
    """The twin trained through ailusion (from a run dir) ÷ a plain PyTorch loop: bench/train.py."""
    sys.path.insert(0, str(HERE))
    import train

    plain, _, run_dir, from_memory, from_run_dir = train.measure(quick, (1,))[1]
    return from_run_dir, (f"best epochs {run_dir:.0f} vs {plain:.0f} img/s, one torch thread; "
                          f"median of rounds; from memory {from_memory:.2f}")


def keep_up_rows(quick: bool, work: Path) -> list:
    """The keep-up measures (bench/keepup.py): two measurements (Pillow, fpng), several rows."""
    sys.path.insert(0, str(HERE))
    import keepup

    images, memo = (120 if quick else 600), {}

    def result(encoder="pillow"):
        if encoder not in memo:
            memo[encoder] = keepup.measure(images, work, [f"png_encoder={encoder}"],
                                           repeats=1 if quick else 2, paced=encoder == "pillow")
        return memo[encoder]

    def costs(r):
        return ", ".join(f"{k} {v:.2f}" for k, v in r["costs_ms"].items())

    def limit():
        r = result()
        return r["C/L"], (f"C {r['C']:.1f} img/s, L {r['L']:.1f} img/s = {r['cores']} cores ÷ "
                          f"({costs(r)} ms)")

    def busy_limit():
        r = result()
        return r["C/L_all_cores_busy"], (
            f"L {r['L_all_cores_busy']:.1f} img/s with the stages run on every core at once "
            f"({', '.join(f'{k} {v:.2f}' for k, v in r['costs_ms_all_cores_busy'].items())} ms)")

    def paced(share):
        key = f"achieved/offered at {share}·C"
        return lambda: (result()[key], f"{share * result()['C']:.1f} img/s offered")

    def fpng_capacity():
        fast, slow = result("fpng"), result()
        return fast["C"] / slow["C"], (f"C {fast['C']:.1f} vs {slow['C']:.1f} img/s; with fpng "
                                       f"C ÷ L {fast['C/L']:.2f} (L {fast['L']:.0f} img/s)")

    def fpng_size():
        fast, slow = result("fpng"), result()
        return (fast["png_kib_per_image"] / slow["png_kib_per_image"],
                f"{fast['png_kib_per_image']:.0f} vs {slow['png_kib_per_image']:.0f} KiB per image")

    return [
        (f"keep-up: C ÷ L ({images} paced 512² images)", "≥ 0.90", limit, lambda r: r >= 0.90),
        ("keep-up: C ÷ L measured with every core busy", "report", busy_limit, lambda r: True),
        ("keep-up: achieved ÷ offered at 0.8·C", "≥ 0.99", paced(0.8), lambda r: r >= 0.99),
        ("keep-up: achieved ÷ offered at 0.5·C", "≥ 0.99", paced(0.5), lambda r: r >= 0.99),
        ("keep-up: C with png_encoder=fpng ÷ with pillow", "≥ 2", fpng_capacity, lambda r: r >= 2),
        ("keep-up: PNG bytes per image, fpng ÷ pillow", "report", fpng_size, lambda r: True),
    ]


def png_levels(levels=(0, 1, 3, 6, 9), repeats: int = 5) -> None:
    """Print the time and size of one 512² PNG at each ``png_compress_level``, with zlib's default
    strategy and with ``png_strategy=rle`` (ailusion's default)."""
    import io

    from PIL import Image

    from ailusion.png import PNG_STRATEGIES

    # A structured image with fine detail, closer to a photo than flat colour or pure noise.
    gray = Image.effect_mandelbrot((512, 512), (-2.0, -1.25, 0.75, 1.25), 100)
    image = Image.merge("RGB", (gray, gray.rotate(90), gray.transpose(Image.FLIP_LEFT_RIGHT)))
    print(f"\n{'png_strategy':>12} {'png_compress_level':>18} {'ms per 512² image':>18} {'KiB':>6}")
    for strategy, level in [("default", level) for level in levels] + [("rle", 1), ("rle", 6)]:
        options = dict(compress_level=level, compress_type=PNG_STRATEGIES[strategy])
        buffer = io.BytesIO()
        (seconds,) = best_of(repeats, lambda: image.save(io.BytesIO(), "PNG", **options))
        image.save(buffer, "PNG", **options)
        print(f"{strategy:>12} {level:>18} {seconds * 1000:>18.1f} {len(buffer.getvalue()) / 1024:>6.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and images")
    parser.add_argument("--only", metavar="TEXT", help="only the measures whose name has TEXT")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="ailusion-bench-") as tmp:
        work = Path(tmp)
        rows = [
            # First, before torch is loaded into this process and its threads take a share.
            ("preprocess ÷ (cores × one core's resize+scale), 512² → 224²", "≥ 0.85",
             lambda: measure_preprocess(5 if args.quick else 15), lambda r: r >= 0.85),
            ("end to end ÷ bare diffusers loop (48 images, 64 px)", "≤ 1.10",
             lambda: measure_end_to_end(12 if args.quick else 48, repeats, work), lambda r: r <= 1.10),
            ("peak RSS, 500 images ÷ 20 images", "≤ 1.15",
             lambda: measure_memory(20, 100 if args.quick else 500, work), lambda r: r <= 1.15),
            ("`ailusion --help` ÷ `python -c 'import hydra'`", "≤ 1.5",
             lambda: measure_help(3 if args.quick else 7), lambda r: r <= 1.5),
            ("torch forward: batch of 32 ÷ 32 single calls", "≥ 5",
             lambda: measure_batched_forward(repeats, work), lambda r: r >= 5),
            ("seeds' three scripts ÷ ailusion (48 images)", "report",
             lambda: measure_seeds_workflow(12 if args.quick else 48, work), lambda r: True),
            ("training: the twin through ailusion ÷ plain PyTorch", "≥ 0.95",
             lambda: measure_training(args.quick), lambda r: r >= 0.95),
        ] + keep_up_rows(args.quick, work)
        print(f"{'measure':<54} {'ratio':>7} {'target':>7}  {'':4} detail")
        for name, target, measure, passes in rows:
            if args.only and args.only not in name:
                continue
            ratio, detail = measure()
            verdict = "" if target == "report" else ("ok" if passes(ratio) else "MISS")
            detail = detail.replace("\n", "; ")
            print(f"{name:<54} {ratio:>7.2f} {target:>7}  {verdict:<4} {detail}", flush=True)
    if not args.only:
        png_levels(repeats=2 if args.quick else 5)


if __name__ == "__main__":
    main()
