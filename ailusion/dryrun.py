"""``ailusion plan [OVERRIDES…]``: what a config would make, without making it.

A dry run: the config is composed and checked and the images are planned exactly as a run would
(lazily, so a plan of ten million images answers at once), but no model is loaded, torch is not
imported and nothing is written. It prints the images per prompt and per class, the shards, and
per output format the files and the disk they would take. Output formats contribute their
estimate through the ``estimate_output(layout)`` hook; the imagefolder layout's is here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import AilusionError

#: A generated PNG's size as a share of its raw pixels: a typical photo-like diffusion image
#: (noise compresses worse, up to 1.0; flat images far better). An estimate, said to be one.
PNG_RATIO = 0.5
#: Bytes of a manifest row beside its prompt and logits (names, settings, digests).
ROW_BYTES = 700


@dataclass(frozen=True)
class Layout:
    """What an output format needs to estimate its files: counts and per-image shapes."""

    images: int  # made by this job (its shard)
    total_images: int  # in the whole run
    num_shards: int
    image_size: tuple[int, int] | None  # (height, width) of a generated image, when fixed
    array_shape: tuple[int, int, int]  # (C, H, W) of a preprocessed array
    array_itemsize: int  # bytes per array element (4 for float32, 2 for float16)
    num_outputs: int  # logits per image
    prompt_chars: int  # mean prompt length
    shard_size: int = 5000  # images per shard of a shard format (output.shard_size)

    def png_bytes(self, height: int, width: int, channels: int = 3) -> int:
        """The estimated size of one PNG of that shape (:data:`PNG_RATIO` of its raw pixels)."""
        return int(height * width * channels * PNG_RATIO) + 200

    def row_bytes(self) -> int:
        return ROW_BYTES + self.prompt_chars + 12 * self.num_outputs


def imagefolder_estimate(layout: Layout) -> dict:
    """Today's run dir: two PNGs per image, the arrays in one .npy, the manifest, the rest."""
    c, h, w = layout.array_shape
    generated = layout.png_bytes(*layout.image_size) if layout.image_size else 0
    preprocessed = layout.png_bytes(h, w, 3)
    array = c * h * w * layout.array_itemsize
    per_image = generated + preprocessed + array + layout.row_bytes() + 4 * layout.num_outputs
    return {
        "files": 2 * layout.images + 8,
        "bytes": per_image * layout.images,
        "per_image": {"generated_png": generated, "preprocessed_png": preprocessed,
                      "array": array, "manifest_row": layout.row_bytes()},
    }


def estimate(pm, layout: Layout) -> dict[str, dict]:
    """Every output format's estimate for ``layout`` (the ``estimate_output`` hook)."""
    estimates = {"imagefolder": imagefolder_estimate(layout)}
    for result in pm.hook.estimate_output(layout=layout):
        estimates.update(result or {})
    return estimates


def describe(overrides: list[str], pm=None) -> dict:
    """Plan the run of ``overrides`` as ``ailusion OVERRIDES…`` would, and describe it."""
    from .api import compose_config
    from .manager import get_plugin_manager
    from .pipeline import build_stages, check_config, job_requests
    from .planning import run_classes
    from .prompts import load_prompts
    from .rundir.writers import writer_factory
    from .stages import StageContext

    config = compose_config(overrides)
    pm = pm or get_plugin_manager()
    check_config(config)
    writer_factory(config, pm)  # an unknown output.format or a bad key of it, as a run says
    generator, preprocessor, model = build_stages(
        config, StageContext(config=config, run_dir=Path("."), job_num=0), pm)
    prompts = load_prompts(config)
    plan = generator.plan(prompts)
    classes = run_classes(prompts, plan)
    job = job_requests(plan, config)
    node = config.generator
    size = (node.height, node.width) if "height" in node and "width" in node else None
    shown = [prompts[i].text for i in range(min(len(prompts), 1000))]
    layout = Layout(
        images=len(job), total_images=len(plan), num_shards=config.num_shards,
        image_size=size, array_shape=tuple(preprocessor.output_shape),
        array_itemsize=2 if str(config.preprocessor.get("dtype")) == "float16" else 4,
        num_outputs=len(model.labels),
        prompt_chars=sum(map(len, shown)) // max(1, len(shown)),
        shard_size=int((config.get("output") or {}).get("shard_size", 5000)),
    )
    whole = Layout(**{**asdict(layout), "images": len(plan), "num_shards": 1})
    per_prompt = getattr(plan, "images_per_prompt", None)
    return {
        "generator": node.get("plugin"),
        "prompts": len(prompts),
        "images": len(plan),
        "images_per_prompt": per_prompt,
        "classes": None if classes is None else _per_class(classes, prompts, plan, per_prompt),
        "num_shards": config.num_shards,
        "shard": config.shard,
        "shard_images": len(job),
        "layout": asdict(layout),
        "estimates": estimate(pm, whole),
        "shard_estimates": estimate(pm, layout),
        "format": (config.get("output") or {}).get("format", "imagefolder"),
    }


def _per_class(classes, prompts, plan, per_prompt) -> dict[str, int]:
    """Images per class: from the prompts when each makes the same number (nothing listed),
    else by reading the plan."""
    if per_prompt is not None and getattr(plan, "classes", None) is None:
        counts = Counter(p.label for p in prompts)
        return {name: counts[name] * per_prompt for name in classes}
    counts = Counter(r.label for r in plan)
    return {name: counts[name] for name in classes}


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def print_plan(plan: dict, out=sys.stdout) -> None:
    """The plan as a person reads it."""
    lines = [f"generator     {plan['generator']}"]
    per = plan["images_per_prompt"]
    if per:
        lines.append(f"prompts       {plan['prompts']:,}, {per:,} image{'s' * (per > 1)} each")
    lines.append(f"images        {plan['images']:,}")
    if plan["classes"] is not None:
        counts = list(plan["classes"].items())
        shown = ", ".join(f"{name}: {count:,}" for name, count in counts[:10])
        more = f", … {len(counts) - 10:,} more" if len(counts) > 10 else ""
        lines.append(f"classes       {len(counts):,}: {shown}{more}")
    if plan["num_shards"] > 1:
        lines.append(f"shards        {plan['num_shards']:,} jobs; shard {plan['shard']} makes "
                     f"{plan['shard_images']:,} images")
    sharded = plan["num_shards"] > 1
    head = "disk (est.)   format          per image    run: files        size"
    lines.append(head + ("    this job: files        size" if sharded else ""))
    for name, whole in plan["estimates"].items():
        mark = "*" if name == plan["format"] else " "
        job = plan["shard_estimates"][name]
        line = (f"            {mark} {name:<14} {_size(whole['bytes'] / max(1, plan['images'])):>9}"
                f"    {whole['files']:>11,} {_size(whole['bytes']):>11}")
        if sharded:
            line += f"    {job['files']:>16,} {_size(job['bytes']):>11}"
        lines.append(line)
    lines.append(f"(PNG sizes assume {PNG_RATIO:.0%} of the raw pixels, as photo-like images; "
                 "* marks output.format)")
    print("\n".join(lines), file=out)


def plan_command(argv: list[str], error_line=str) -> int:
    """``ailusion plan [--json] [OVERRIDES…]``; one line (``error_line(exc)``) and exit status 1
    on a user error."""
    parser = argparse.ArgumentParser(
        prog="ailusion plan",
        description="Print what a config would make (images, classes, shards, files, disk), "
                    "without loading a model or writing anything.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for `ailusion`")
    args = parser.parse_args(argv)
    try:
        plan = describe(args.overrides)
    except Exception as exc:
        if not isinstance(exc, AilusionError) and type(exc).__module__.split(".")[0] not in (
                "hydra", "omegaconf"):
            raise
        print(f"ailusion plan: error: {error_line(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(plan, indent=1))
    else:
        print_plan(plan)
    return 0
