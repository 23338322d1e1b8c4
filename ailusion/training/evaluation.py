"""Evaluation on real images: a folder of class subfolders (torchvision's ``ImageFolder`` layout,
``DIR/cat/*.png``), preprocessed exactly as the training data was (its recorded preprocessor),
run through the model: accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..errors import AilusionError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


class EvalFolder:
    """The images of ``path/CLASS/*``, each with its class id in ``classes`` (checked at once,
    before any training: every subfolder a known class, none empty, every file an image)."""

    def __init__(self, path, classes: list[str], key: str = "eval_dir"):
        from PIL import Image, UnidentifiedImageError

        self.path = path = Path(path).expanduser()
        if not path.is_dir():
            raise AilusionError(f"{key}: no such folder: {path}")
        folders = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not folders:
            raise AilusionError(f"{key}: {path} has no class subfolders "
                                f"(expects {path}/CLASS/IMAGE.png, one folder per class)")
        self.items: list[tuple[Path, int]] = []
        for folder in folders:
            if folder.name not in classes:
                raise AilusionError(
                    f"{key}: {folder} is class {folder.name!r}, which the training data lacks "
                    f"(its classes: {', '.join(classes)})"
                )
            files = sorted(f for f in folder.rglob("*")  # nested folders too, as ImageFolder
                           if f.is_file() and f.suffix.lower() in EXTENSIONS)
            if not files:
                raise AilusionError(f"{key}: {folder} is an empty class folder "
                                    f"(no {'/'.join(EXTENSIONS)} files)")
            for file in files:
                try:
                    with Image.open(file):
                        pass
                except (OSError, UnidentifiedImageError) as exc:
                    raise AilusionError(f"{key}: cannot read {file}: {exc}") from None
                self.items.append((file, classes.index(folder.name)))
        self.classes = list(classes)
        self.present = sorted({label for _, label in self.items})

    def __len__(self) -> int:
        return len(self.items)


def load_image(path: Path):
    from ..images import open_image

    return open_image(path)  # every mode scaled to 8-bit RGB, not clipped


def evaluate(model, folder: EvalFolder, preprocessor, batch_size: int,
             progress: bool = True) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix of ``model`` on ``folder``."""
    from tqdm.auto import tqdm

    predicted, truth = [], []
    with tqdm(total=len(folder), desc="evaluating", unit="img", disable=not progress,
              file=sys.stderr, leave=False) as bar:
        for start in range(0, len(folder), batch_size):
            chunk = folder.items[start:start + batch_size]
            x = preprocessor.preprocess([load_image(path) for path, _ in chunk])
            logits = np.asarray(model.forward(np.asarray(x, np.float32)))
            predicted.append(logits.argmax(axis=1))
            truth.append(np.array([label for _, label in chunk], np.int64))
            bar.update(len(chunk))
    return scores(np.concatenate(predicted), np.concatenate(truth), folder.classes,
                  folder.present)


def scores(predicted: np.ndarray, truth: np.ndarray, classes: list[str], present=None) -> dict:
    """``accuracy``, ``per_class_accuracy`` (over the classes with images) and ``confusion``
    (rows: true class, columns: predicted, in the order of ``classes``)."""
    k = len(classes)
    matrix = np.zeros((k, k), np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    present = sorted(set(truth.tolist())) if present is None else present
    per_class = {classes[c]: float(matrix[c, c] / matrix[c].sum()) for c in present}
    return {
        "accuracy": float((predicted == truth).mean()) if len(truth) else float("nan"),
        "per_class_accuracy": per_class,
        "confusion": matrix.tolist(),
        "count": int(len(truth)),
    }


def check_preprocessor(preprocessor, input_shape, record: dict) -> None:
    shape = tuple(int(n) for n in preprocessor.output_shape)
    if shape != tuple(input_shape):
        raise AilusionError(
            f"the recorded preprocessor {record.get('plugin')!r} now makes inputs of shape "
            f"{shape}, but the data holds {tuple(input_shape)}"
        )
