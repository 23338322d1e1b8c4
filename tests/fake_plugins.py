"""Stage plugins for tests: fast, torch-free, and each wrong in one known way."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ailusion import hookimpl
from ailusion.errors import ConfigError
from ailusion.planning import per_prompt
from ailusion.stages import GeneratedImage


class NoiseGenerator:
    """Generator ``noise``: a 16×16 image of noise drawn from each request's seed; the prompt
    ``black`` gives an all-black image, the prompt ``boom`` raises."""

    def __init__(self, config, context):
        self.seed = int(config.get("seed", 0))
        self.images_per_prompt = int(config.get("num_images_per_prompt", 1))

    def plan(self, prompts):
        if not prompts:
            raise ConfigError("prompts", "no prompts")
        return per_prompt(prompts, self.images_per_prompt, self.seed)

    def setup(self):
        pass

    def generate(self, requests):
        for request in requests:
            if request.prompt == "boom":
                raise RuntimeError("the generator broke")
            pixels = np.random.default_rng(request.seed).integers(0, 256, (16, 16, 3), np.uint8)
            if request.prompt == "black":
                pixels[:] = 0
            yield GeneratedImage(request, Image.fromarray(pixels), {"model": "noise"})


class MeanModel:
    """Model ``mean``: logits are the channel means, repeated to ``num_outputs``."""

    def __init__(self, config, context):
        self.labels = [str(i) for i in range(int(config.num_outputs))]

    def setup(self, input_shape):
        pass

    def forward(self, batch):
        means = batch.mean(axis=(2, 3))
        return np.resize(means, (len(batch), len(self.labels))).astype(np.float32)


class NanModel(MeanModel):
    """Model ``nan_logits``: NaN logits for every image."""

    def forward(self, batch):
        return np.full((len(batch), len(self.labels)), np.nan, np.float32)


class ShortModel(MeanModel):
    """Model ``short``: three logits whatever ``num_outputs`` says."""

    def forward(self, batch):
        return np.zeros((len(batch), 3), np.float32)


class FailingModel(MeanModel):
    """Model ``failing``: the forward pass raises."""

    def forward(self, batch):
        raise RuntimeError("the model broke")


class BrokenFactory:
    """Generator ``broken``: its factory fails with a plugin bug, not a config error."""

    def __init__(self, config, context):
        raise KeyError("weights")


class FakePlugins:
    @hookimpl
    def register_generators(self):
        return {"noise": NoiseGenerator, "broken": BrokenFactory}

    @hookimpl
    def register_models(self):
        return {"mean": MeanModel, "nan_logits": NanModel, "failing": FailingModel,
                "short": ShortModel}


def plugin_manager():
    """The installed plugins plus :class:`FakePlugins`."""
    from ailusion.manager import get_plugin_manager

    pm = get_plugin_manager()
    pm.register(FakePlugins(), name="fakes")
    return pm


#: Overrides for a fast run on the fake stages.
FAST = [
    "generator=tiny", "generator.plugin=noise", "model.plugin=mean", "preprocessor.size=8",
    "progress=false",
]
