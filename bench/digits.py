"""The digits experiment against a plain PyTorch script of the same recipe, side by side.

    python bench/digits.py            # minimal and deeper model, each in ailusion and plain
    python bench/digits.py --quick    # 500 glyphs, 1 epoch: a smoke test of the harness

For each model: ``ailusion experiment=digits`` (one job: 10,000 glyphs, train, evaluate on the
1,797 real digits) and ``bench/digits_plain.py`` (the same recipe in plain PyTorch, reading the
same experiment config), each in a fresh process; then the trained-on-real reference (900 real
digits, tested on the other 897). Prints accuracy, wall seconds and CPU seconds (the children's
user + system time, which holds when other work shares the cores), and ailusion ÷ plain.
BENCHMARKS.md and docs/experiments.md have the last results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEEPER = ["model.conv_layers=2"]


def timed(command: list[str]) -> tuple[str, float, float]:
    """Run ``command``; its stdout, wall seconds and CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.stdout, wall, cpu


def ailusion_run(eval_dir: Path, out: Path, extra: list[str]) -> tuple[float, float, float]:
    _, wall, cpu = timed([sys.executable, "-m", "ailusion", "experiment=digits",
                          f"eval_dir={eval_dir}", f"hydra.run.dir={out}", *extra])
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    return metrics["eval_accuracy"], wall, cpu


def plain_run(eval_dir: Path, extra: list[str]) -> tuple[float, float, float]:
    stdout, wall, cpu = timed([sys.executable, str(HERE / "digits_plain.py"), str(eval_dir),
                               *extra])
    return json.loads(stdout.strip().splitlines()[-1])["accuracy"], wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 glyphs, 1 epoch")
    args = parser.parse_args()
    quick = ["generator.num_images_per_prompt=50", "train.epochs=1"] if args.quick else []
    os.environ["AILUSION_BENCH_OVERRIDES"] = " ".join(quick)  # read by digits_plain.py
    from ailusion.digits import write_digits

    with tempfile.TemporaryDirectory() as tmp:
        eval_dir = Path(tmp) / "digits"
        write_digits(eval_dir)
        rows = []
        for name, model, plain in (("minimal (1 conv block)", [], []),
                                   ("deeper (2 blocks, no pooling)", DEEPER,
                                    ["--conv-layers", "2"])):
            ours = ailusion_run(eval_dir, Path(tmp) / name.split()[0], [*model, *quick])
            theirs = plain_run(eval_dir, plain)
            rows.append((name, ours, theirs))
        real = plain_run(eval_dir, ["--real"])
    print(f"{'model':32} {'ailusion acc':>12} {'plain acc':>9} {'wall s':>15} {'CPU s':>15}"
          f" {'CPU ratio':>9}")
    for name, (acc, wall, cpu), (p_acc, p_wall, p_cpu) in rows:
        print(f"{name:32} {acc:12.3f} {p_acc:9.3f} {wall:7.1f} / {p_wall:5.1f} "
              f"{cpu:7.1f} / {p_cpu:5.1f} {cpu / p_cpu:9.2f}")
    print(f"{'trained on 900 real digits':32} {'':12} {real[0]:9.3f} {'':7}   {real[1]:5.1f} "
          f"{'':7}   {real[2]:5.1f}")
    print("wall and CPU: ailusion / plain PyTorch; accuracy on the 1,797 real digits "
          "(the real-trained reference: on the 897 it did not train on)")


if __name__ == "__main__":
    main()
