"""Generator ``glyphs``: text drawn with the machine's fonts and augmented, no model weights.

Each image draws its class's text (a digit, a letter, a short word: the request's ``label``, or
its prompt in an unlabelled run) with a font and augmentations drawn from the image's own seed
(image i gets ``seed + i - 1``), so any image can be made again alone, whatever the batch or the
shard. conf/generator/glyphs.yaml documents every key and its range; render.py the steps.

    ailusion generator=glyphs 'classes=[0,1,2,3,4,5,6,7,8,9]' generator.num_images_per_prompt=50
"""

from __future__ import annotations

from typing import Iterator, Sequence

from ailusion import hookimpl
from ailusion.errors import ConfigError
from ailusion.planning import Plan, per_prompt
from ailusion.stages import GeneratedImage, ImageRequest, Prompt, StageContext

from .fonts import resolve_fonts
from .options import GlyphsConfig, parse_options
from .render import render

def text_of(request: ImageRequest | Prompt) -> str:
    """What an image (or a prompt's images) shows: its class name when it has one, else its
    prompt."""
    label = getattr(request, "label", None)
    if label is not None:
        return str(label)
    return (request.prompt if isinstance(request, ImageRequest) else request.text) or ""


class GlyphGenerator:
    """Renders ``num_images_per_prompt`` glyph images per prompt (per class × template)."""

    def __init__(self, config, context: StageContext):
        self.options = parse_options(config)
        self.fonts = None

    def plan(self, prompts: Sequence[Prompt]) -> Plan:
        """``num_images_per_prompt`` images per prompt, computed from their number; the k-th
        image of a prompt gets seed ``seed + index - 1``, or the prompt's own seed + k when its
        row gives one. Labels pass through from the prompt."""
        if not prompts:
            raise ConfigError("prompts", "no prompts: give classes=[...], prompts=[...] or "
                                         "prompts_file=PATH")
        o = self.options
        requests = per_prompt(prompts, o["num_images_per_prompt"], o["seed"])
        texts = sorted({text_of(p) for p in prompts})
        if not any(t.strip() for t in texts):
            raise ConfigError("prompts", "the glyphs generator draws each class's name (or "
                                         "prompt), and every one is empty")
        self.fonts = resolve_fonts(self.options["fonts"], self.options["exclude_fonts"], texts)
        return requests

    def setup(self) -> None:
        """Nothing to load (the fonts were found while planning)."""

    def generate(self, requests: Sequence[ImageRequest]) -> Iterator[GeneratedImage]:
        """Yield each request's image, drawn from its seed alone."""
        if self.fonts is None:  # generate() without plan(): find the fonts for these texts
            self.fonts = resolve_fonts(
                self.options["fonts"], self.options["exclude_fonts"], sorted({text_of(r) for r in requests})
            )
        o = self.options
        for request in requests:
            image, drawn = render(text_of(request), request.seed, o, self.fonts)
            info = {"height": o["height"], "width": o["width"], "glyph": drawn}
            yield GeneratedImage(request, image.convert("RGB"), info)


@hookimpl(trylast=True)
def register_generators():
    """The ``glyphs`` generator."""
    return {"glyphs": GlyphGenerator}


@hookimpl(trylast=True)
def register_config_schemas():
    """The keys and types of the ``generator`` node when its plugin is ``glyphs``."""
    return {"generator/glyphs": GlyphsConfig}
