"""One job, generate then train (train=default): the outputs under RUN_DIR/train/, and the
objective returned by the task function to a sweeper that optimises (Optuna)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from labelled_data import class_folder

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Shapes in class subfolders (the folder generator labels a run from them) and others."""
    root = tmp_path_factory.mktemp("onejob")
    return (class_folder(root / "images", CLASSES, 30, seed=0),
            class_folder(root / "held_out", CLASSES, 6, seed=11))


def main_app(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "ailusion", *args], capture_output=True,
                          text=True, timeout=900, cwd=tmp_path)


COMMON = ["generator=folder", "preprocessor.size=16", "model.backend=torch", "progress=false",
          "train=default", "train.epochs=4", "train.lr=0.01"]


@pytest.mark.slow
def test_train_default_generates_then_trains_into_run_dir_train(shapes, tmp_path):
    images, held_out = shapes
    run_dir = tmp_path / "run"
    proc = main_app(tmp_path, *COMMON, f"generator.path={images}", f"eval_dir={held_out}",
                    f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "metadata.jsonl").is_file() and (run_dir / "classes.json").is_file()
    metrics = json.loads((run_dir / "train" / "metrics.json").read_text())
    assert metrics["objective"] == "eval_accuracy" and metrics["eval_images"] == 18
    assert metrics["objective_value"] == metrics["eval_accuracy"] >= 0.8
    for name in ("model_weights.safetensors", "history.jsonl", "curves.png", "confusion.png"):
        assert (run_dir / "train" / name).is_file()
    assert "ailusion: trained 4 epochs" in proc.stderr


@pytest.mark.slow
def test_the_objective_goes_back_to_an_optimising_sweeper(shapes, tmp_path):
    images, _ = shapes
    sweep = tmp_path / "sweep"
    proc = main_app(tmp_path, "-m", *COMMON, f"generator.path={images}",
                    "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                    "hydra.sweeper.direction=maximize", "train.epochs=choice(1,3)",
                    f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    values = []
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        metrics = json.loads((job / "train" / "metrics.json").read_text())
        assert metrics["objective"] == "val_accuracy"
        values.append(metrics["objective_value"])
    assert len(values) == 2
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(values)
