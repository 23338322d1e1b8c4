"""Lazy planning: a run that plans ten million images starts as fast, and as small, as one that
plans ten.

    python bench/bench_planning.py            # 3 interleaved repeats
    python bench/bench_planning.py --quick    # 1 repeat

Two runs of the tiny offline model, each in a fresh process: 10 classes × 1 image (10 planned,
all made), and 10 classes × 1,000,000 images (10M planned) as shard 0 of 100,000 jobs of whole
blocks of ``output.shard_size=100`` images (100 made).
Start-up is the time from the process's start to its first image on disk; peak memory is the
process's peak RSS. Each ratio is 10M ÷ 10, best of the repeats; the target is within 10%.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = "classes=[c0,c1,c2,c3,c4,c5,c6,c7,c8,c9]"
CONFIGS = {
    "10 planned": [CLASSES, "generator.num_images_per_prompt=1"],
    "10M planned (shard of 100)": [CLASSES, "generator.num_images_per_prompt=1000000",
                                   "num_shards=100000", "shard=0", "output.shard_size=100"],
}

#: Runs in the child: one run, timing its first image from the process's start.
CHILD = r"""
import json, resource, sys, time
started = float(sys.argv[3])  # when the parent started this process
import ailusion
from ailusion import hookimpl
from ailusion.manager import get_plugin_manager

first = {}
class Clock:
    @hookimpl
    def image_written(self, record, run_dir):
        first.setdefault("t", time.time())
pm = get_plugin_manager()
pm.register(Clock())
result = ailusion.run(json.loads(sys.argv[1]), run_dir=sys.argv[2], pm=pm)
print(json.dumps({"startup": first["t"] - started, "images": result.summary["written"],
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(overrides: list[str], run_dir: Path) -> dict:
    args = ["generator=tiny", "generator.height=32", "generator.width=32",
            "generator.num_inference_steps=1", "preprocessor.size=32", "progress=false",
            "model.backend=torch", *overrides]
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args), str(run_dir),
                           repr(time.time())],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"bench_planning: a run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    best: dict[str, dict] = {}
    root = Path(tempfile.mkdtemp(prefix="bench_planning."))
    try:
        measure(CONFIGS["10 planned"], root / "warm")  # build the tiny model's cache first
        for repeat in range(repeats):
            for name, overrides in CONFIGS.items():
                got = measure(overrides, root / f"{repeat}-{len(best)}-{name[:3].strip()}")
                shutil.rmtree(root / f"{repeat}-{len(best)}-{name[:3].strip()}", True)
                old = best.get(name)
                best[name] = {key: min(got[key], old[key]) if old else got[key]
                              for key in ("startup", "peak_mib")} | {"images": got["images"]}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    small, big = best["10 planned"], best["10M planned (shard of 100)"]
    print(f"{'':34}{'10 planned':>14}{'10M planned':>14}{'10M ÷ 10':>10}  target")
    print(f"{'images made':34}{small['images']:>14}{big['images']:>14}")
    print(f"{'start-up to the first image (s)':34}{small['startup']:>14.2f}{big['startup']:>14.2f}"
          f"{big['startup'] / small['startup']:>10.2f}  <= 1.10")
    print(f"{'peak RSS (MiB)':34}{small['peak_mib']:>14.0f}{big['peak_mib']:>14.0f}"
          f"{big['peak_mib'] / small['peak_mib']:>10.2f}  <= 1.10")
    return 0


if __name__ == "__main__":
    sys.exit(main())
