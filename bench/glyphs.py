"""The glyphs generator's speed: images per second per core, for a few settings.

    python bench/glyphs.py [--images 5000]

Each setting draws the digits 0–9 round-robin with the glyphs generator's own ``generate`` (the
fonts found by planning, as in a run), on this one thread; the rate is images ÷ CPU seconds of
this process (so it holds when other work shares the cores), from a cold start (every glyph
drawn for the first time) and warm (the same images again: the drawn glyphs cached).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
ALL = {"rotation": 15, "shear": 15, "scale": [0.85, 1.05], "aspect": [0.8, 1.2],
       "translation": 0.05, "thickness": [0, 0.08], "elastic": [0, 0.1], "blur": [0, 0.6],
       "noise": [0, 0.04]}
SETTINGS = {
    "28×28, no augmentation": {},
    "28×28, every augmentation": ALL,
    # conf/experiment/digits.yaml's generator node, with these keys changed
    "8×8 ×4 supersampled (experiment=digits)": ("digits", {}),
    "the same, the machine's fonts": ("digits", {"fonts": ["default", "system"]}),
}


def rate(options: dict, images: int) -> tuple[float, float]:
    from ailusion.plugins.glyphs import GlyphGenerator
    from ailusion.stages import Prompt

    generator = GlyphGenerator(OmegaConf.create({"plugin": "glyphs", **options}), None)
    requests = list(generator.plan([Prompt(str(d)) for d in range(10)] * (images // 10)))
    rates = []
    for _ in range(2):  # cold, then warm
        started = time.process_time()
        count = sum(1 for _ in generator.generate(requests))
        rates.append(count / (time.process_time() - started))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    args = parser.parse_args()
    print(f"{'setting':42} {'cold img/s':>10} {'warm img/s':>10}   (per core, CPU time)")
    for name, options in SETTINGS.items():
        if isinstance(options, tuple):
            if not (ROOT / "conf" / "experiment" / "digits.yaml").is_file():
                continue
            extra = options[1]
            node = OmegaConf.load(ROOT / "conf" / "experiment" / "digits.yaml").generator
            options = {k: v for k, v in OmegaConf.to_container(node).items()
                       if k != "num_images_per_prompt"} | extra
        cold, warm = rate(options, args.images)
        print(f"{name:42} {cold:10.0f} {warm:10.0f}")


if __name__ == "__main__":
    main()
