"""The seeds' second script: read the PNGs back, resize to 224², scale to [0, 1], save the batch."""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

out = Path(sys.argv[1])
paths = sorted(out.glob("generated_image_*.png"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
arrays = []
for path in paths:
    image = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255
    Image.fromarray((array * 255).astype(np.uint8)).save(out / path.name.replace("generated", "preprocessed"))
    arrays.append(array.transpose(2, 0, 1))
np.save(out / "preprocessed.npy", np.stack(arrays))
