"""``ailusion train`` and ``ailusion evaluate``: Hydra apps with their own primary configs
(``conf/train_app.yaml``, ``conf/evaluate_app.yaml``), so overrides, ``--cfg``, ``--help`` and
``-m`` sweeps work as in the main app. Each task returns its objective (a float) for sweepers
that optimise."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import hydra_files
from ..errors import AilusionError, ConfigError


_on_error = None  # the CLI's handler of a job's error (see hydra_app)


def hydra_app(name: str, on_error=None) -> None:
    """Run the Hydra app ``name`` (``train`` or ``evaluate``) on ``sys.argv``; a job's error
    goes to ``on_error(exc)`` (the CLI prints it as one line) instead of Hydra."""
    global _on_error
    import hydra
    from hydra_plugins.ailusion_searchpath.ailusion_searchpath import register

    register()
    _on_error = on_error
    task = {"train": train_task, "evaluate": evaluate_task}[name]
    hydra.main(version_base="1.3", config_path="pkg://ailusion.conf",
               config_name=f"{name}_app")(task)()


def _run(config, work):
    """Run ``work(out_dir, pm, subdir)`` as a job; a job refused before it started leaves no
    run dir behind."""
    from hydra.core.hydra_config import HydraConfig

    from ..manager import get_plugin_manager
    from ..rundir.claim import discard_if_unused

    runtime = HydraConfig.get()
    out_dir = Path(runtime.runtime.output_dir)
    pm = get_plugin_manager()
    subdir = runtime.job.env_set.get(hydra_files.SUBDIR_ENV)
    try:
        return work(out_dir, pm, subdir)
    except BaseException as exc:
        discard_if_unused(out_dir)
        if _on_error is None or not isinstance(exc, Exception):
            raise
        _on_error(exc)


def _write_hydra_files(config, out_dir: Path, subdir) -> None:
    if subdir:
        hydra_files.HydraFiles(config, subdir).run_start(run_dir=out_dir)


def _require(config, key: str, how: str) -> None:
    from omegaconf import OmegaConf

    if OmegaConf.is_missing(config, key):
        raise ConfigError(key, how)


def train_task(config) -> float:
    """``ailusion train data=RUN_DIR [eval_dir=DIR] [train.*=…] [model.*=…]``."""
    from . import job, onejob
    from .data import LABELLED_HOW

    def work(out_dir, pm, subdir):
        _require(config, "data", f"give the labelled data to train on: data=DIR or "
                 f"data=[DIR1,DIR2]; {LABELLED_HOW}")
        metrics = job.train(config, config.data, out_dir, pm, onejob.explicit_keys(),
                            on_start=lambda: _write_hydra_files(config, out_dir, subdir))
        print(job.summary_line(metrics, out_dir), file=sys.stderr)
        return metrics["objective_value"]

    return _run(config, work)


def evaluate_task(config) -> float:
    """``ailusion evaluate weights=FILE eval_dir=DIR``: accuracy of trained weights on real
    images, preprocessed as their training data was."""
    from omegaconf import OmegaConf

    from ..rundir import files
    from ..rundir.claim import RUN_FILE
    from . import evaluation, job, plots
    from .data import open_data

    def work(out_dir, pm, subdir):
        import numpy as np

        _require(config, "weights", "give the weights to evaluate: weights=FILE "
                 "(the model_weights.safetensors of an ailusion train run)")
        _require(config, "eval_dir", "give the real images: eval_dir=DIR (DIR/CLASS/*.png)")
        weights = Path(config.weights).expanduser()
        if not weights.is_file():
            raise ConfigError("weights", f"no such file: {weights}")
        record = job.read_record(weights.parent / job.TRAINING_RECORD)
        if record is None:  # weights a generation run wrote
            made = job.read_record(weights.parent / RUN_FILE) or {}
            record = {k: made.get("config", {}).get(k) for k in ("model", "preprocessor")}
        if config.data is not None:
            record["preprocessor"] = open_data(config.data, pm).preprocessing
        if not isinstance(record.get("preprocessor"), dict) or not isinstance(
                record.get("model"), dict):
            raise AilusionError(
                f"weights: {weights.parent} records no preprocessing (no {job.TRAINING_RECORD}); "
                "give data=DIR, the data the weights were trained on"
            )
        node = OmegaConf.create({**record["model"], "weights": str(weights),
                                 "backend": config.backend, "labels": None})
        model = job.build_stage("model", node, config, out_dir, pm)
        preprocessor = job.build_stage("preprocessor", OmegaConf.create(record["preprocessor"]),
                                       config, out_dir, pm)
        classes = list(model.labels)
        folder = evaluation.EvalFolder(config.eval_dir, classes)
        model.setup(tuple(preprocessor.output_shape))
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_hydra_files(config, out_dir, subdir)
        scores = evaluation.evaluate(model, folder, preprocessor, config.batch_size,
                                     config.progress)
        metrics = {
            "objective": "eval_accuracy", "objective_value": scores["accuracy"],
            "eval_accuracy": scores["accuracy"], "per_class_accuracy": scores["per_class_accuracy"],
            "confusion": scores["confusion"], "eval_images": scores["count"],
            "eval_dir": str(folder.path), "weights": str(weights), "classes": classes,
        }
        plots.confusion(np.asarray(scores["confusion"]), classes, out_dir / "confusion.png",
                        f"eval: {folder.path.name} — accuracy {scores['accuracy']:.3f}")
        files.write_json(out_dir / "metrics.json", metrics)
        print(f"ailusion: eval accuracy {scores['accuracy']:.3f} on {scores['count']} images; "
              f"outputs in {out_dir}", file=sys.stderr)
        return scores["accuracy"]

    return _run(config, work)
