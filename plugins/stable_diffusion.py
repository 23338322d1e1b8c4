"""Generator ``stable_diffusion``: any diffusers text-to-image pipeline."""

from __future__ import annotations

from typing import Iterator, Sequence

from ailusion import hookimpl
from ailusion.errors import ConfigError
from ailusion.stages import GeneratedImage, ImageRequest, Prompt, StageContext


class StableDiffusionGenerator:
    """Makes one image per request, each from its own seeded CPU ``torch.Generator``."""

    def __init__(self, config, context: StageContext):
        self.config = config
        for key in ("height", "width"):
            value = config[key]
            if not isinstance(value, int) or value <= 0 or value % 8:
                raise ConfigError(f"generator.{key}", f"must be a positive multiple of 8, got {value}")
        if config.num_inference_steps < 1:
            raise ConfigError("generator.num_inference_steps", "must be at least 1")
        self.pipe = None

    def plan(self, prompts: Sequence[Prompt]) -> list[ImageRequest]:
        if not prompts:
            raise ConfigError("prompts", "no prompts: give prompts=[...] or prompts_file=PATH")
        requests, per_prompt = [], self.config.num_images_per_prompt
        for prompt in prompts:
            for _ in range(per_prompt):
                index = len(requests) + 1
                seed = prompt.seed if prompt.seed is not None else self.config.seed + index - 1
                negative = prompt.negative_prompt or self.config.negative_prompt
                requests.append(ImageRequest(index, prompt.text, negative, seed))
        return requests

    def setup(self) -> None:
        from diffusers import AutoPipelineForText2Image

        model = self.config.model
        if model == "tiny":
            from .tiny_sd import ensure_tiny_pipeline

            model = str(ensure_tiny_pipeline())
        self.pipe = AutoPipelineForText2Image.from_pretrained(model, use_safetensors=True)
        self.pipe.set_progress_bar_config(disable=True)

    def generate(self, requests: Sequence[ImageRequest]) -> Iterator[GeneratedImage]:
        import torch

        c = self.config
        for request in requests:
            image = self.pipe(
                request.prompt,
                negative_prompt=request.negative_prompt,
                num_inference_steps=c.num_inference_steps,
                guidance_scale=c.guidance_scale,
                height=c.height,
                width=c.width,
                generator=torch.Generator("cpu").manual_seed(request.seed),
            ).images[0]
            info = {
                "model": c.model,
                "scheduler": type(self.pipe.scheduler).__name__,
                "num_inference_steps": c.num_inference_steps,
                "guidance_scale": c.guidance_scale,
                "height": c.height,
                "width": c.width,
            }
            yield GeneratedImage(request, image.convert("RGB"), info)


@hookimpl(trylast=True)
def register_generators():
    return {"stable_diffusion": StableDiffusionGenerator}
