"""The digits recipe as a plain PyTorch script: the yardstick ``bench/digits.py`` holds ailusion to.

    python bench/digits_plain.py EVAL_DIR [--conv-layers 2 --pooling mean] [--real]

The same recipe as ``conf/experiment/digits.yaml`` (read from it, so the two cannot drift): the
glyph images drawn in memory by the glyphs generator's own renderer, grayscale 28×28 with Pillow
(bicubic, /255), the same CNN (``Conv(3×3) → relu → [pool]`` blocks, flatten, ``Linear``) with
Flux's Glorot init, torch's Adam on the cross-entropy, the same epochs, batch size, learning rate
and validation split, on one thread; then the accuracy on the real digits in EVAL_DIR.
``--real`` trains on the first 900 real digits instead (5× the epochs: about as many steps) and
tests on the other 897. Prints one JSON
line: accuracy and seconds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np


def recipe() -> dict:
    """``conf/experiment/digits.yaml`` composed, with ``AILUSION_BENCH_OVERRIDES`` (bench/digits.py
    --quick) on top."""
    import os

    from omegaconf import OmegaConf

    from ailusion.api import compose_config

    extra = os.environ.get("AILUSION_BENCH_OVERRIDES", "").split()
    config = compose_config(["experiment=digits", "eval_dir=unused", *extra])
    return OmegaConf.to_container(config, resolve=True)


def prep(image, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(image.convert("L").resize((size, size), Image.Resampling.BICUBIC),
                      np.float32) / 255


def glyph_data(config: dict):
    from ailusion.plugins.glyphs.fonts import resolve_fonts
    from ailusion.plugins.glyphs.options import parse_options

    render = importlib.import_module("ailusion.plugins.glyphs.render").render
    options = parse_options(config["generator"])
    classes = [str(c) for c in config["classes"]]
    fonts = resolve_fonts(options["fonts"], options["exclude_fonts"], classes)
    size, per_class = config["preprocessor"]["size"], options["num_images_per_prompt"]
    xs, ys, index = [], [], 0
    for label, name in enumerate(classes):  # image i has seed seed + i - 1, class by class
        for _ in range(per_class):
            image, _ = render(name, options["seed"] + index, options, fonts)
            xs.append(prep(image, size))
            ys.append(label)
            index += 1
    return np.stack(xs)[:, None], np.array(ys)


def real_digits(eval_dir: Path, size: int):
    from PIL import Image

    xs, ys, names = [], [], []
    for folder in sorted(p for p in eval_dir.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.png")):
            with Image.open(path) as image:
                xs.append(prep(image, size))
            ys.append(int(folder.name))
            names.append(path.stem)
    order = np.argsort(names, kind="stable")  # the images' order in load_digits()
    return np.stack(xs)[order][:, None], np.array(ys)[order]


def model(conv_layers: int, pooling: str | None, channels: int, size: int, classes: int):
    import torch
    from torch import nn

    layers, cin = [], 1
    for block in range(conv_layers):
        cout = channels * 2 ** block
        layers += [nn.Conv2d(cin, cout, 3), nn.ReLU()]
        if pooling in ("max", "mean"):
            layers.append(nn.MaxPool2d(2) if pooling == "max" else nn.AvgPool2d(2))
        cin = cout
    body = nn.Sequential(*layers)
    features = body(torch.zeros(1, 1, size, size)).numel()
    net = nn.Sequential(body, nn.Flatten(), nn.Linear(features, classes))
    for layer in net.modules():  # Flux's init: Glorot uniform weights, zero biases
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return net


def train(net, x, y, config: dict) -> None:
    import torch
    import torch.nn.functional as F

    t = config["train"]
    rng = np.random.default_rng(t["seed"])
    keep = rng.random(len(x)) >= t["val_fraction"]  # the held-out share is not trained on
    x, y = torch.as_tensor(x[keep]), torch.as_tensor(y[keep])
    optimizer = torch.optim.Adam(net.parameters(), lr=t["lr"], betas=tuple(t["betas"]),
                                 eps=t["eps"])
    for _ in range(t["epochs"]):
        order = torch.as_tensor(rng.permutation(len(x)))
        for start in range(0, len(x), t["batch_size"]):
            batch = order[start:start + t["batch_size"]]
            loss = F.cross_entropy(net(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def main(argv: list[str]) -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("eval_dir", type=Path)
    parser.add_argument("--conv-layers", type=int, default=1)
    parser.add_argument("--pooling", default=None)
    parser.add_argument("--real", action="store_true", help="train on 900 real digits instead")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = recipe()
    size = config["preprocessor"]["size"]
    real_x, real_y = real_digits(args.eval_dir, size)
    if args.real:  # 900 images: as many Adam steps as on the glyphs takes 5× the epochs
        x, y, test_x, test_y = real_x[:900], real_y[:900], real_x[900:], real_y[900:]
        config["train"]["epochs"] *= 5
    else:
        (x, y), test_x, test_y = glyph_data(config), real_x, real_y
    net = model(args.conv_layers, args.pooling, config["model"]["out_channels"], size,
                len(config["classes"]))
    train(net, x, y, config)
    with torch.no_grad():
        predicted = net(torch.as_tensor(test_x)).argmax(1).numpy()
    print(json.dumps({"accuracy": float((predicted == test_y).mean()),
                      "seconds": round(time.perf_counter() - started, 2)}))


if __name__ == "__main__":
    main(sys.argv[1:])
