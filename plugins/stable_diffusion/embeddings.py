"""Text embeddings computed once per prompt, not once per image.

A run usually makes many images of each prompt (``num_images_per_prompt``, a sweep over seeds),
and a diffusers pipeline called with text runs its text encoder on every call: for one or two
step (turbo) models that is a large share of each image. :class:`PromptEmbeddings` encodes each
distinct (prompt, negative prompt) once, with the pipeline's own ``encode_prompt``, and hands the
pipeline the embeddings instead of the text: the images are the same, bit for bit, as with the
text (tested). Each prompt is encoded alone, so an image in a batch gets the same embeddings as
made alone.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

#: Distinct prompts whose embeddings are kept; a run goes prompt by prompt, so a few suffice
#: (an SDXL entry is about 1.3 MB).
CACHED_PROMPTS = 16

#: The embeddings ``encode_prompt`` returns, in order, as ``__call__`` takes them.
_SD = ("prompt_embeds", "negative_prompt_embeds")
_SDXL = _SD + ("pooled_prompt_embeds", "negative_pooled_prompt_embeds")


def embedding_names(pipe) -> tuple[str, ...] | None:
    """The embedding arguments of ``pipe``, or None for a pipeline that only gets text.

    Stable Diffusion 1.x/2.x (and turbo) and SDXL (and turbo) are known to take the embeddings
    their ``encode_prompt`` returns; other pipelines encode differently and get the text.
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if isinstance(pipe, StableDiffusionXLPipeline):
        return _SDXL
    if isinstance(pipe, StableDiffusionPipeline):
        return _SD
    return None


class PromptEmbeddings:
    """The prompt arguments of one pipeline call, with each prompt's embeddings cached."""

    def __init__(self, pipe, size: int = CACHED_PROMPTS):
        self.pipe, self.size = pipe, size
        self.names = embedding_names(pipe)
        self._cache: OrderedDict[tuple, tuple] = OrderedDict()
        self.encoded = 0  # calls of the text encoder, for tests and curiosity

    def arguments(self, prompts: Sequence[str], negatives: Sequence[str | None],
                  guidance_scale: float) -> dict:
        """Keyword arguments for ``pipe(...)`` making one image per prompt."""
        import torch

        if self.names is None:
            return {
                "prompt": list(prompts),
                # None, not "", when no image has one: SDXL then uses zeros, as diffusers does
                "negative_prompt": None if set(negatives) == {None} else [n or "" for n in negatives],
            }
        guided = self._guided(guidance_scale)
        parts = [self._encode(p, n, guided) for p, n in zip(prompts, negatives)]
        arguments = {}
        for i, name in enumerate(self.names):
            if parts[0][i] is not None:  # no negative embeddings without guidance
                arguments[name] = torch.cat([part[i] for part in parts])
        return arguments

    def _guided(self, guidance_scale: float) -> bool:
        # As the pipelines decide classifier-free guidance: off for guidance-distilled UNets.
        unet = getattr(self.pipe, "unet", None)
        distilled = getattr(getattr(unet, "config", None), "time_cond_proj_dim", None) is not None
        return guidance_scale > 1 and not distilled

    def _encode(self, prompt: str, negative: str | None, guided: bool) -> tuple:
        import torch

        key = (prompt, negative, guided)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        with torch.no_grad():
            embeddings = self.pipe.encode_prompt(
                prompt=prompt, device=self.pipe._execution_device, num_images_per_prompt=1,
                do_classifier_free_guidance=guided, negative_prompt=negative,
            )
        self.encoded += 1
        self._cache[key] = tuple(embeddings)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return self._cache[key]
