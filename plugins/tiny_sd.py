"""The tiny offline Stable Diffusion behind ``generator=tiny``.

Random weights from a fixed seed (the same on every machine), components shaped like diffusers'
own test pipelines, and a CLIP tokenizer over a byte-level vocabulary, so nothing is downloaded.
It is saved once per cache dir with ``save_pretrained`` (safetensors) and loaded back through the
same ``from_pretrained`` path as a real model. The build goes to a temporary folder that is
renamed into place under a file lock, so concurrent runs never see half a pipeline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

#: Bump when anything saved changes (architecture, seed, a config), so old caches are not reused.
TINY_VERSION = "tiny-sd-v2"
SEED = 0


def ensure_tiny_pipeline(root: Path | None = None) -> Path:
    """Return the folder of the tiny pipeline, building it first if it is not cached."""
    from filelock import FileLock

    from ailusion.paths import cache_dir

    root = Path(root) if root is not None else cache_dir()
    target = root / TINY_VERSION
    stale = f".{TINY_VERSION}.*"  # the temporary folders of builds that were killed
    if (target / "model_index.json").exists() and not any(root.glob(stale)):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{TINY_VERSION}.lock")):
        for folder in root.glob(stale):  # no build runs but under this lock: none is in use
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
        if not (target / "model_index.json").exists():
            tmp = Path(tempfile.mkdtemp(prefix=f".{TINY_VERSION}.", dir=root))
            try:
                build_tiny_pipeline().save_pretrained(tmp, safe_serialization=True)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=77
    )


def build_tiny_pipeline():
    """Build the tiny pipeline in memory (deterministic: every weight drawn from ``SEED``)."""
    import torch
    from diffusers import (
        AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    with tempfile.TemporaryDirectory() as folder:
        tokenizer = _tokenizer(Path(folder))
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        norm_num_groups=2,
    )
    torch.manual_seed(SEED)
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4, norm_num_groups=2,
    )
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=len(tokenizer) - 2, eos_token_id=len(tokenizer) - 1,
        pad_token_id=len(tokenizer) - 1, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=5,
        vocab_size=len(tokenizer), max_position_embeddings=77,
    ))
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
