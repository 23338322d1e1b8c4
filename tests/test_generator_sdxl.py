"""The stable_diffusion generator on a tiny random SDXL pipeline (sdxl_turbo's code path)."""

from __future__ import annotations

import numpy as np
import pytest

from ailusion.api import compose_config
from ailusion.plugins.stable_diffusion import StableDiffusionGenerator
from ailusion.plugins.stable_diffusion.embeddings import PromptEmbeddings
from ailusion.stages import ImageRequest, StageContext

from test_generator import BATCH_TOLERANCE, plain_call


def tiny_sdxl(folder):
    """A random SDXL pipeline small enough for a test, built as diffusers' own tests build it."""
    import torch
    from diffusers import (
        AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from ailusion.plugins.tiny_sd import _tokenizer

    tokenizer = _tokenizer(folder)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(2, 4), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=1,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4, norm_num_groups=2,
    )
    config = CLIPTextConfig(
        bos_token_id=len(tokenizer) - 2, eos_token_id=len(tokenizer) - 1,
        pad_token_id=len(tokenizer) - 1, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=77, projection_dim=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        unet=unet, vae=vae, text_encoder=CLIPTextModel(config), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(config), tokenizer_2=tokenizer,
        scheduler=scheduler,
    )


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    config = compose_config(["generator=tiny", "generator.height=32", "generator.width=32"])
    generator = StableDiffusionGenerator(config.generator, StageContext(config, None))
    generator.pipe = tiny_sdxl(tmp_path_factory.mktemp("tokenizer"))
    generator.pipe.set_progress_bar_config(disable=True)
    generator.embeddings = PromptEmbeddings(generator.pipe)
    return generator


REQUESTS = [
    ImageRequest(1, "a red fox", None, 1),  # SDXL: no negative prompt means zero embeddings
    ImageRequest(2, "a blue lake", "blurry", 2),
    ImageRequest(3, "a green hill", "", 3),
]


def test_sdxl_gets_pooled_embeddings_and_the_images_the_text_gives(sdxl):
    assert sdxl.embeddings.names[2:] == ("pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    for request in REQUESTS:
        ours, _ = sdxl.render([request])
        assert np.isfinite(ours).all() and ours.std() > 0
        np.testing.assert_array_equal(ours, plain_call(sdxl, request))


def test_sdxl_batch_with_and_without_negative_prompts_matches_one_by_one(sdxl):
    batched, _ = sdxl.render(REQUESTS)
    for request, image in zip(REQUESTS, batched):
        alone, _ = sdxl.render([request])
        assert np.abs(alone[0] - image).max() <= BATCH_TOLERANCE


def test_sdxl_turbo_settings_need_no_negative_embeddings(sdxl, monkeypatch):
    monkeypatch.setitem(sdxl.config, "guidance_scale", 0.0)
    monkeypatch.setitem(sdxl.config, "num_inference_steps", 1)
    arguments = sdxl.embeddings.arguments(["a red fox"], ["blurry"], 0.0)
    assert set(arguments) == {"prompt_embeds", "pooled_prompt_embeds"}
    ours, _ = sdxl.render(REQUESTS[1:2])
    np.testing.assert_array_equal(ours, plain_call(sdxl, REQUESTS[1]))
