"""ailusion train and ailusion evaluate as Hydra apps: --cfg, -m sweeps over train.* and
model.*, evaluation of saved weights; and a third-party model trained through the contract."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

import ailusion
from ailusion import hookimpl

from labelled_data import class_folder, shared_run

CLASSES = ["circle", "square", "triangle"]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ailusion", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def test_cfg_job_shows_the_train_node_and_the_data():
    proc = cli("train", "data=somewhere", "train.lr=0.01", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    assert config["data"] == "somewhere" and config["eval_dir"] is None
    assert config["train"]["lr"] == 0.01 and config["train"]["epochs"] == 10
    assert set(config["train"]) == {"epochs", "batch_size", "lr", "betas", "eps",
                                    "weight_decay", "seed", "val_fraction", "threads",
                                    "objective"}
    assert config["model"]["plugin"] == "flux_cnn"


@pytest.mark.slow
def test_a_sweep_over_train_and_model_keys_trains_each_job_into_its_own_dir(tmp_path):
    data = shared_run()
    sweep = tmp_path / "sweep"
    proc = cli("train", "-m", f"data={data}", "train.epochs=1", "train.lr=0.01,0.001",
               "model.out_channels=2,4", "model.backend=torch", "progress=false",
               f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 4
    seen = set()
    for job in jobs:
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        seen.add((config["train"]["lr"], config["model"]["out_channels"]))
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["objective"] == "val_accuracy"
        from safetensors import safe_open

        with safe_open(str(job / "model_weights.safetensors"), "numpy") as f:
            assert f.get_tensor("conv.weight").shape[-1] == config["model"]["out_channels"]
    assert seen == {(0.01, 2), (0.01, 4), (0.001, 2), (0.001, 4)}


@pytest.mark.slow
def test_evaluate_scores_saved_weights_as_the_training_did(tmp_path):
    data = shared_run()
    eval_dir = class_folder(tmp_path / "eval", CLASSES, 5, seed=5)
    trained = tmp_path / "trained"
    metrics = ailusion.train([f"data={data}", f"eval_dir={eval_dir}", "train.epochs=3",
                              "progress=false", "model.backend=torch"], run_dir=trained)
    proc = cli("evaluate", f"weights={trained / 'model_weights.safetensors'}",
               f"eval_dir={eval_dir}", "backend=torch", "progress=false",
               f"hydra.run.dir={tmp_path / 'scored'}")
    assert proc.returncode == 0, proc.stderr
    scored = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert scored["eval_accuracy"] == metrics["eval_accuracy"]
    assert scored["confusion"] == metrics["confusion"]
    assert scored["classes"] == CLASSES
    assert (tmp_path / "scored" / "confusion.png").stat().st_size > 0
    assert (tmp_path / "scored" / ".hydra" / "config.yaml").is_file()


class Centroids:
    """The docs' third-party trainable model: minus the distance to each class's mean image."""

    def __init__(self, config, context):
        self.labels = list(config.labels or [])

    def setup(self, input_shape):
        self.means = np.zeros((len(self.labels), int(np.prod(input_shape))), np.float32)
        self.counts = np.zeros(len(self.labels), np.int64)

    def forward(self, batch):
        flat = batch.reshape(len(batch), -1)
        return -((flat[:, None] - self.means[None]) ** 2).sum(axis=2)

    def train_setup(self, settings):
        self.settings = settings

    def train_step(self, x, y):
        logits = self.forward(x)
        loss = float(np.mean(np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
                             + logits.max(1) - logits[np.arange(len(y)), y]))
        for image, label in zip(x.reshape(len(x), -1), y):
            self.counts[label] += 1
            self.means[label] += (image - self.means[label]) / self.counts[label]
        return loss, logits

    def train_state(self):
        return {"means": self.means.copy(), "counts": self.counts.copy()}

    def load_train_state(self, state):
        self.means, self.counts = state["means"].copy(), state["counts"].copy()


class CentroidsPlugin:
    @hookimpl
    def register_models(self):
        return {"centroids": Centroids}


def test_a_third_party_model_trains_through_the_contract(tmp_path):
    from ailusion.manager import get_plugin_manager

    pm = get_plugin_manager()
    pm.register(CentroidsPlugin())
    eval_dir = class_folder(tmp_path / "eval", CLASSES, 5, seed=5)
    metrics = ailusion.train([f"data={shared_run()}", f"eval_dir={eval_dir}", "train.epochs=2",
                              "model.plugin=centroids", "progress=false"],
                             run_dir=tmp_path / "out", pm=pm)
    assert metrics["eval_accuracy"] >= 0.8
    assert metrics["epochs"] == 2
    assert (tmp_path / "out" / "checkpoint.safetensors").is_file()
