"""The stable_diffusion generator on the tiny model: seeds, batches, schedulers, switches."""

from __future__ import annotations

import numpy as np
import pytest

from ailusion.api import compose_config
from ailusion.plugins.stable_diffusion import StableDiffusionGenerator
from ailusion.plugins.stable_diffusion.loading import set_scheduler
from ailusion.plugins.stable_diffusion.settings import SCHEDULERS
from ailusion.stages import ImageRequest, Prompt, StageContext
from ailusion.threads import cores

#: Largest difference, in [0, 1] pixel space, between an image made in a batch and alone.
BATCH_TOLERANCE = 1e-5


def make_generator(tmp_path, *overrides):
    config = compose_config(
        ["generator=tiny", "generator.height=32", "generator.width=32",
         "generator.num_inference_steps=2", *overrides]
    )
    return StableDiffusionGenerator(config.generator, StageContext(config, tmp_path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One loaded tiny generator for the module (loading is the slow part)."""
    generator = make_generator(tmp_path_factory.mktemp("run"))
    generator.setup()
    return generator


def requests(n=6):
    """Requests of three prompts; every third has a negative prompt, the others none."""
    prompts = ["a red fox", "a blue lake", "a green hill"]
    negatives = [None, None, "blurry"]
    return [
        ImageRequest(i, prompts[(i - 1) % 3], negatives[(i - 1) % 3], 100 + i)
        for i in range(1, n + 1)
    ]


def test_plan_gives_each_image_its_own_seed(tmp_path):
    generator = make_generator(tmp_path, "generator.seed=10", "generator.num_images_per_prompt=2")
    planned = generator.plan([Prompt("a"), Prompt("b", "blurry", seed=7)])
    assert [(r.index, r.prompt, r.seed) for r in planned] == [
        (1, "a", 10), (2, "a", 11), (3, "b", 7), (4, "b", 8)
    ]
    assert [r.negative_prompt for r in planned] == [None, None, "blurry", "blurry"]


def test_config_negative_prompt_fills_in(tmp_path):
    generator = make_generator(tmp_path, "generator.negative_prompt=dark")
    assert [r.negative_prompt for r in generator.plan([Prompt("a"), Prompt("b", "")])] == [
        "dark", ""
    ]


def test_same_seed_gives_same_pixels_and_seed_matters(tiny):
    first, _ = tiny.render(requests(2))
    again, _ = tiny.render(requests(2))
    np.testing.assert_array_equal(first, again)
    other, _ = tiny.render([ImageRequest(1, "a red fox", None, 999)])
    assert np.abs(first[0] - other[0]).max() > 0.05


def test_negative_prompt_changes_the_image(tiny):
    plain, _ = tiny.render([ImageRequest(1, "a red fox", None, 1)])
    negative, _ = tiny.render([ImageRequest(1, "a red fox", "blurry", 1)])
    assert np.abs(plain - negative).max() > 1e-3


def test_batch_matches_one_by_one_within_tolerance(tiny):
    batched, _ = tiny.render(requests(4))
    for request, image in zip(requests(4), batched):
        alone, _ = tiny.render([request])
        assert np.abs(alone[0] - image).max() <= BATCH_TOLERANCE


def plain_call(generator, request, **overrides):
    """The image diffusers makes for ``request`` when handed the text, as a plain loop would."""
    import torch

    c = generator.config
    arguments = dict(
        prompt=request.prompt, negative_prompt=request.negative_prompt,
        generator=torch.Generator("cpu").manual_seed(request.seed),
        num_inference_steps=c.num_inference_steps, guidance_scale=c.guidance_scale,
        height=c.height, width=c.width, output_type="np",
    )
    return generator.pipe(**{**arguments, **overrides}).images


def test_cached_embeddings_give_the_images_the_text_gives(tiny):
    for request in requests(3):  # with and without a negative prompt
        ours, _ = tiny.render([request])
        np.testing.assert_array_equal(ours, plain_call(tiny, request))


def test_without_guidance_no_negative_embeddings_and_the_same_image(tiny, monkeypatch):
    monkeypatch.setitem(tiny.config, "guidance_scale", 1.0)
    request = requests(3)[2]  # has a negative prompt, which guidance 1 ignores
    assert set(tiny.embeddings.arguments([request.prompt], [request.negative_prompt], 1.0)) == {
        "prompt_embeds"
    }
    ours, _ = tiny.render([request])
    np.testing.assert_array_equal(ours, plain_call(tiny, request, guidance_scale=1.0))


def test_text_encoder_runs_once_per_distinct_prompt(tiny, monkeypatch):
    from ailusion.plugins.stable_diffusion.embeddings import PromptEmbeddings

    fresh = PromptEmbeddings(tiny.pipe)
    monkeypatch.setattr(tiny, "embeddings", fresh)
    monkeypatch.setitem(tiny.config, "batch_size", 2)
    list(tiny.generate(requests(6)))  # three distinct (prompt, negative) pairs, twice each
    assert fresh.encoded == 3
    tiny.render(requests(3))
    assert fresh.encoded == 3


def test_embedding_cache_keeps_the_most_recent_prompts(tiny):
    from ailusion.plugins.stable_diffusion.embeddings import PromptEmbeddings

    cache = PromptEmbeddings(tiny.pipe, size=2)
    for prompt in ("one", "two", "three", "two"):
        cache.arguments([prompt], [None], 7.5)
    assert cache.encoded == 3 and list(cache._cache) == [
        ("three", None, True), ("two", None, True)
    ]


def test_other_pipelines_get_the_text():
    from ailusion.plugins.stable_diffusion.embeddings import PromptEmbeddings

    other = PromptEmbeddings(object())
    assert other.names is None
    assert other.arguments(["a", "b"], [None, None], 7.5) == {
        "prompt": ["a", "b"], "negative_prompt": None
    }
    assert other.arguments(["a", "b"], [None, "dark"], 7.5)["negative_prompt"] == ["", "dark"]


@pytest.mark.parametrize("offload, inference", [(False, True), (True, False)])
def test_pipeline_runs_in_inference_mode_unless_offloading(tmp_path, offload, inference):
    import torch

    from ailusion.plugins.stable_diffusion.embeddings import PromptEmbeddings

    class Pipe:  # records the mode it is called in
        def __call__(self, **kwargs):
            self.mode = torch.is_inference_mode_enabled()
            return type("Output", (), {"images": np.zeros((1, 8, 8, 3))})()

    generator = make_generator(tmp_path)
    generator.pipe = Pipe()
    generator.embeddings = PromptEmbeddings(generator.pipe)
    generator.config.cpu_offload = offload
    generator.render(requests(1))
    assert generator.pipe.mode is inference


def test_generate_batches_yield_in_order_with_provenance(tiny):
    tiny.config.batch_size = 4
    try:
        images = list(tiny.generate(requests(6)))
    finally:
        tiny.config.batch_size = 1
    assert [g.request.index for g in images] == [1, 2, 3, 4, 5, 6]
    assert all(g.image.size == (32, 32) and g.image.mode == "RGB" for g in images)
    info = dict(images[0].info)
    # On the CPU the generator records its thread count (the images depend on it).
    assert info.pop("threads", cores()) == cores()
    assert info == {
        "model": "tiny", "scheduler": "DDIMScheduler", "num_inference_steps": 2,
        "guidance_scale": 7.5, "height": 32, "width": 32, "flagged": None,
    }


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_runs_on_tiny(tiny, name):
    original = tiny.pipe.scheduler
    try:
        set_scheduler(tiny.pipe, name)
        assert type(tiny.pipe.scheduler).__name__ == SCHEDULERS[name][0]
        images, _ = tiny.render(requests(1))
    finally:
        tiny.pipe.scheduler = original
    assert images.shape == (1, 32, 32, 3)
    assert np.isfinite(images).all() and images.std() > 0


def test_speed_switches_do_not_change_the_image(tiny, tmp_path):
    switched = make_generator(
        tmp_path, "generator.attention_slicing=true", "generator.vae_tiling=true",
        "generator.channels_last=true", "generator.device=cpu", "generator.dtype=float32",
    )
    switched.setup()
    expected, _ = tiny.render(requests(1))
    got, _ = switched.render(requests(1))
    assert np.abs(expected - got).max() <= BATCH_TOLERANCE


def test_compile_wraps_the_unet(tmp_path, monkeypatch):
    import torch

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    generator = make_generator(tmp_path, "generator.compile=true")
    generator.setup()
    assert compiled == [generator.pipe.unet]


def test_nsfw_verdict_flags_the_image(tiny, monkeypatch):
    def render(batch):  # the safety checker blacks out image 1 and says so
        return np.zeros((len(batch), 32, 32, 3)), [r.index == 1 for r in batch]

    monkeypatch.setattr(tiny, "render", render)
    flags = [g.info["flagged"] for g in tiny.generate(requests(2))]
    assert flags == ["nsfw", None]


def test_auto_device_and_dtype_on_a_cpu_machine(monkeypatch):
    import torch

    from ailusion.plugins.stable_diffusion.loading import resolve_device, resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("auto", "cuda:1") is torch.float16
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


@pytest.mark.parametrize("overrides, key", [
    (("generator.device=cuda",), "generator.device"),
    (("generator.cpu_offload=true",), "generator.cpu_offload"),
])
def test_unusable_device_settings_are_named(tmp_path, monkeypatch, overrides, key):
    import torch

    from ailusion.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as error:
        make_generator(tmp_path, *overrides).setup()
    assert error.value.key == key


def test_loading_options_reach_from_pretrained(tmp_path, monkeypatch):
    import diffusers

    from ailusion.plugins.stable_diffusion.loading import load_pipeline

    calls = []
    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, "from_pretrained",
                        lambda source, **kwargs: calls.append((source, kwargs)) or "pipe")
    config = make_generator(tmp_path, "generator.revision=v2", "generator.variant=fp16",
                            "generator.safety_checker=false").config
    assert load_pipeline(config, "owner/name", False, "float16") == "pipe"
    source, kwargs = calls[0]
    assert source == "owner/name"
    assert {k: kwargs[k] for k in ("revision", "variant", "use_safetensors", "local_files_only",
                                   "safety_checker")} == {
        "revision": "v2", "variant": "fp16", "use_safetensors": True, "local_files_only": False,
        "safety_checker": None,
    }
    config.allow_pickle = True
    load_pipeline(config, "owner/name", True, "float16")
    assert calls[1][1]["use_safetensors"] is None  # safetensors first, pickle files allowed
