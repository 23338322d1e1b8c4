"""One training job, start to end: check everything, train, evaluate, write the outputs.

Every bad input (the ``train`` node, the data, the eval dir, the model) fails with one line
before the first step; the outputs appear only once training has finished.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ..rundir import files
from ..rundir.claim import discard_if_unused, snapshot
from ..errors import AilusionError, ConfigError
from ..stages import StageContext
from . import evaluation, loop, plots, settings
from .data import open_data, validation_mask

log = logging.getLogger(__name__)
TRAINING_RECORD = "training.json"
TRAIN_METHODS = ("train_setup", "train_step", "train_state", "load_train_state")


def build_stage(stage: str, node, config, run_dir: Path, pm):
    """A stage from its config node, as the pipeline builds one."""
    from ..manager import resolve

    factory = resolve(pm, stage, node.get("plugin"))
    try:
        return factory(node, StageContext(config=config, run_dir=Path(run_dir)))
    except AilusionError:
        raise
    except Exception as exc:
        raise AilusionError(f"{stage}.plugin: plugin {node.get('plugin')!r} failed to start: "
                            f"{type(exc).__name__}: {exc}") from exc


def model_node(node, classes: list[str], explicit: bool):
    """The model's config node for ``classes``: one output per class, named after it.
    ``model.num_outputs`` given explicitly must agree with the class count."""
    values = OmegaConf.to_container(node, resolve=True)
    outputs = values.get("num_outputs")
    if explicit and outputs is not None and outputs != len(classes):
        raise ConfigError(
            "model.num_outputs", f"is {outputs}, but the data has {len(classes)} classes "
            f"({', '.join(classes)}); leave it out to take the class count"
        )
    values["num_outputs"], values["labels"] = len(classes), list(classes)
    return OmegaConf.create(values)


def trainable(model, name) -> None:
    missing = [m for m in TRAIN_METHODS if not callable(getattr(model, m, None))]
    if missing:
        raise AilusionError(
            f"model.plugin: model {name!r} cannot be trained (it has no {missing[0]}; "
            "docs/plugins.md, 'Training', lists what a trainable model implements)"
        )


def train(config, data_paths, out_dir: Path, pm=None, explicit: frozenset = frozenset(),
          on_start=None) -> dict:
    """Train ``config.model`` on ``data_paths`` with ``config.train``, evaluate on
    ``config.eval_dir`` if given; write the outputs into ``out_dir``; return the metrics.
    ``explicit`` holds the keys the user set (``model.num_outputs`` must then agree with the
    class count); ``on_start()`` is called once every check passed, before the first step."""
    from ..manager import get_plugin_manager

    pm = pm or get_plugin_manager()
    out_dir = Path(out_dir)
    eval_dir = config.get("eval_dir")
    plan = settings.check(config.train, evaluated=eval_dir is not None)
    progress = bool(config.get("progress", True))

    # 1. Data, split, eval folder, model and preprocessor: every check before training
    data = open_data(data_paths, pm)
    classes = data.classes
    if len(classes) < 2:
        raise AilusionError(f"data: {data.paths[0]} has a single class ({classes[0]}): "
                            "a classifier needs at least two")
    counts = np.bincount(data.labels, minlength=len(classes))
    if not counts.all():
        empty = classes[int(np.argmin(counts))]
        raise AilusionError(f"data: class {empty!r} has no images in {', '.join(map(str, data.paths))}")
    is_val = validation_mask(data.numbers, plan.val_fraction)
    train_pos, val_pos = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if not len(val_pos) or not len(train_pos):
        side = "validation" if not len(val_pos) else "training"
        raise ConfigError("train.val_fraction", f"{plan.val_fraction} of {len(data)} images "
                          f"leaves no {side} image; change it or add images")
    folder = evaluation.EvalFolder(eval_dir, classes) if eval_dir is not None else None
    preprocessor = None
    if folder is not None:
        preprocessor = build_stage("preprocessor", OmegaConf.create(data.preprocessing),
                                   config, out_dir, pm)
        evaluation.check_preprocessor(preprocessor, data.input_shape, data.preprocessing)
    node = model_node(config.model, classes, "model.num_outputs" in explicit)
    model = build_stage("model", node, config, out_dir, pm)
    trainable(model, node.get("plugin"))
    model.setup(data.input_shape)
    model.train_setup(plan.settings(len(classes)))

    # 2. Train (resuming what a killed run into out_dir finished)
    before = snapshot(out_dir)  # a run that fails before its first epoch removes what it made
    out_dir.mkdir(parents=True, exist_ok=True)
    if on_start is not None:
        on_start()
    fingerprint = {
        "data": [str(Path(p).resolve()) for p in data.paths], "classes": classes,
        "images": len(data), "model": OmegaConf.to_container(node),
        "train": {k: v for k, v in asdict(plan).items() if k not in ("threads", "objective")},
    }

    def epoch_end(row):
        pm.hook.train_epoch_end(config=config, run_dir=out_dir, row=row)

    try:
        fitted = loop.fit(model, data, train_pos, val_pos, plan, out_dir, fingerprint, progress,
                          epoch_end)
    except BaseException:
        discard_if_unused(out_dir, before)  # no epoch finished: nothing to keep
        raise

    # 3. Scores and outputs
    val_logits, val_y = loop.predict(model, data, val_pos, plan.batch_size)
    val = evaluation.scores(val_logits.argmax(axis=1), val_y, classes)
    last = fitted.history[-1]
    metrics = {
        "train_accuracy": last["train_accuracy"], "train_loss": last["train_loss"],
        "val_accuracy": val["accuracy"], "val_loss": loop.cross_entropy(val_logits, val_y),
        "epochs": len(fitted.history), "stopped": fitted.stopped, "classes": classes,
        "train_images": int(len(train_pos)), "val_images": int(len(val_pos)),
        "val_per_class_accuracy": val["per_class_accuracy"], "val_confusion": val["confusion"],
    }
    if folder is not None:
        scores = evaluation.evaluate(model, folder, preprocessor, plan.batch_size, progress)
        metrics |= {
            "eval_dir": str(folder.path), "eval_images": scores["count"],
            "eval_accuracy": scores["accuracy"], "per_class_accuracy": scores["per_class_accuracy"],
            "confusion": scores["confusion"],
        }
    objective = plan.objective_for(folder is not None)
    metrics = {"objective": objective, "objective_value": float(metrics[objective]), **metrics}
    if callable(getattr(model, "save", None)):
        model.save(out_dir)
    else:
        log.warning("model %r has no save(run_dir): its trained weights are not written",
                    node.get("plugin"))
    files.write_json(out_dir / TRAINING_RECORD, {
        "data": fingerprint["data"], "classes": classes, "input_shape": list(data.input_shape),
        "preprocessor": data.preprocessing, "model": fingerprint["model"],
    })
    plots.curves(fitted.history, out_dir / "curves.png", metrics.get("eval_accuracy"))
    evaluated = folder is not None
    plots.confusion(
        np.array(metrics["confusion"] if evaluated else val["confusion"]), classes,
        out_dir / "confusion.png",
        f"{'eval: ' + folder.path.name if evaluated else 'validation'} — accuracy "
        f"{metrics['eval_accuracy' if evaluated else 'val_accuracy']:.3f}",
    )
    files.write_json(out_dir / "metrics.json", metrics)
    pm.hook.train_end(config=config, run_dir=out_dir, metrics=metrics)
    return metrics


def summary_line(metrics: dict, out_dir: Path) -> str:
    parts = [f"{metrics['epochs']} epochs", f"validation accuracy {metrics['val_accuracy']:.3f}"]
    if "eval_accuracy" in metrics:
        parts.append(f"eval accuracy {metrics['eval_accuracy']:.3f}")
    where = os.path.relpath(out_dir)
    where = str(out_dir) if where.startswith("..") else where
    return f"ailusion: trained {', '.join(parts)}; outputs in {where}"


def read_record(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AilusionError(f"{path}: not readable JSON ({exc})") from None
