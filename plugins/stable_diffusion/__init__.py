"""Generator ``stable_diffusion``: any diffusers text-to-image pipeline, one seed per image.

Each image has its own seed and its own CPU ``torch.Generator``, so a batch of ``batch_size``
images comes out as the same images made one by one (to float rounding, ~1e-6 on CPU), and any
image can be made again alone from its prompt and seed.
"""

from __future__ import annotations

import random
from typing import Iterable, Iterator, Sequence

from ailusion import hookimpl
from ailusion.errors import ConfigError
from ailusion.planning import Plan, batches, per_prompt
from ailusion.stages import GeneratedImage, ImageRequest, Prompt, StageContext

from .embeddings import PromptEmbeddings
from .settings import StableDiffusionConfig, check_config


class StableDiffusionGenerator:
    """Makes ``num_images_per_prompt`` images per prompt, ``batch_size`` per pipeline call."""

    def __init__(self, config, context: StageContext):
        check_config(config)
        self.config = config
        self.pipe = None

    def plan(self, prompts: Sequence[Prompt]) -> Plan:
        """``num_images_per_prompt`` images per prompt, computed from their number: the k-th
        image of a prompt gets seed ``seed + index - 1``, or the prompt's own seed + k when its
        row gives one."""
        if not prompts:
            raise ConfigError("prompts", "no prompts: give prompts=[...] or prompts_file=PATH")
        c = self.config
        return per_prompt(prompts, c.num_images_per_prompt, c.seed, c.negative_prompt)

    def setup(self) -> None:
        """Load the pipeline on its device, with the configured scheduler and switches."""
        from .hub import locate_model
        from .loading import (
            apply_switches, load_pipeline, quiet_libraries, resolve_device, resolve_dtype,
            set_scheduler,
        )

        c = self.config
        # 1. Find the model (asking the Hub, briefly) before diffusers is even imported
        if c.model != "tiny":
            source, local_only = locate_model(c.model, c.revision)
        quiet_libraries()
        device = resolve_device(c.device, c.cpu_offload)
        threads = generation_threads(c.threads)
        dtype = resolve_dtype(c.dtype, device)
        if c.model == "tiny":
            from ..tiny_sd import ensure_tiny_pipeline

            source, local_only = str(ensure_tiny_pipeline()), True
        # 2. Load it, then swap the scheduler and turn on the switches
        pipe = load_pipeline(c, source, local_only, dtype)
        set_scheduler(pipe, c.scheduler)
        apply_switches(pipe, c, device)
        pipe.set_progress_bar_config(disable=not c.show_step_progress)
        self.pipe = pipe
        self.embeddings = PromptEmbeddings(pipe)
        self.info = {
            "model": c.model,
            "scheduler": c.scheduler or type(pipe.scheduler).__name__,
            "num_inference_steps": c.num_inference_steps,
            "height": c.height,
            "width": c.width,
        }
        if device == "cpu":  # on a GPU the CPU's threads do not touch the images
            self.info["threads"] = threads

    def render(self, requests: Sequence[ImageRequest]):
        """Run the pipeline once for ``requests`` (of one guidance scale); return (N, H, W, 3)
        floats in [0, 1] and the safety checker's verdict per image."""
        import torch

        c = self.config
        guidance_scale = guidance_for(c.guidance_scale, requests[0].seed)
        # Inference mode (a few % faster than the no_grad diffusers uses, same images); not with
        # CPU offload, whose hooks move the weights during the call and must not mark them.
        with torch.inference_mode(not c.cpu_offload):
            output = self.pipe(
                **self.embeddings.arguments(
                    [r.prompt for r in requests], [r.negative_prompt for r in requests],
                    guidance_scale,
                ),
                generator=[torch.Generator("cpu").manual_seed(r.seed) for r in requests],
                num_inference_steps=c.num_inference_steps,
                guidance_scale=guidance_scale,
                height=c.height,
                width=c.width,
                output_type="np",
            )
        nsfw = getattr(output, "nsfw_content_detected", None) or [False] * len(requests)
        return output.images, nsfw

    def generate(self, requests: Iterable[ImageRequest]) -> Iterator[GeneratedImage]:
        """Yield each request's image, up to ``batch_size`` requests per pipeline call (images
        of one call share a guidance scale: with a range, each image is drawn its own)."""
        from PIL import Image

        scale = self.config.guidance_scale
        for batch in batches(requests, self.config.batch_size):
            for group in _same_guidance(batch, scale):
                guidance = guidance_for(scale, group[0].seed)
                images, nsfw = self.render(group)
                for request, array, flagged in zip(group, images, nsfw):
                    image = Image.fromarray((array * 255).round().astype("uint8")).convert("RGB")
                    info = dict(self.info, guidance_scale=guidance,
                                flagged="nsfw" if flagged else None)
                    yield GeneratedImage(request, image, info)


def guidance_for(scale, seed: int) -> float:
    """The guidance scale of the image with ``seed``: ``scale`` itself, or for a range
    ``[low, high]`` a value drawn uniformly from the seed (the same for the same seed on every
    machine), rounded to 4 decimals (what is recorded is what was used)."""
    if isinstance(scale, (int, float)):
        return scale
    low, high = (float(v) for v in scale)
    return round(random.Random(f"guidance_scale:{seed}").uniform(low, high), 4)


def _same_guidance(batch: list[ImageRequest], scale) -> list[list[ImageRequest]]:
    """``batch`` split into runs of consecutive requests with the same guidance scale."""
    groups: list[list[ImageRequest]] = []
    for request in batch:
        if groups and guidance_for(scale, request.seed) == guidance_for(scale, groups[-1][0].seed):
            groups[-1].append(request)
        else:
            groups.append([request])
    return groups


def generation_threads(threads: int | None) -> int:
    """Set torch's intra-op threads for generating: ``threads``, or every core this process may
    use. Not torch's default, which follows ``OMP_NUM_THREADS`` — and launchers (joblib's loky)
    lower that per job, which would change the last bits of CPU images between a sharded and an
    unsharded run."""
    import torch

    from ailusion.threads import cores

    threads = threads or cores()
    torch.set_num_threads(threads)
    return threads


@hookimpl(trylast=True)
def register_generators():
    """The ``stable_diffusion`` generator (also behind generator=tiny, sd15, sd_turbo, …)."""
    return {"stable_diffusion": StableDiffusionGenerator}


@hookimpl(trylast=True)
def register_config_schemas():
    """The keys and types of the ``generator`` node when its plugin is ``stable_diffusion``."""
    return {"generator/stable_diffusion": StableDiffusionConfig}
