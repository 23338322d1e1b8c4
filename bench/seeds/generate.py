"""The seeds' first script: generate images with diffusers and save them as PNGs."""

import sys
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

model, out, count, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pipe = StableDiffusionPipeline.from_pretrained(model, use_safetensors=True)
pipe.set_progress_bar_config(disable=True)
out.mkdir(parents=True, exist_ok=True)
for i in range(count):
    image = pipe(
        "a magical forest with glowing trees", num_inference_steps=2, height=size, width=size,
        generator=torch.Generator("cpu").manual_seed(i),
    ).images[0]
    image.save(out / f"generated_image_{i + 1}.png")
