"""ailusion train: learning a labelled folder, the outputs, resume after a kill, the split, and
one line for every bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ailusion
from ailusion.errors import AilusionError
from ailusion.training.data import RunDirReader, open_data, validation_mask

from labelled_data import class_folder, labelled_run

CLASSES = ["circle", "square", "triangle"]
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A labelled run dir of 3 × 40 shapes (16×16) and a held-out folder of 3 × 15 others."""
    root = tmp_path_factory.mktemp("shapes")
    run = labelled_run(root, CLASSES, per_class=40, seed=0)
    held_out = class_folder(root / "held_out", CLASSES, per_class=15, seed=123)
    return run, held_out


def train(run_dir, *overrides, data=None):
    data = data if data is not None else f"data={run_dir}"
    return ailusion.train([data, "progress=false", "model.backend=torch", *overrides],
                          run_dir=run_dir.parent / f"trained-{time.monotonic_ns()}")


def test_training_on_a_learnable_folder_reaches_high_accuracy_on_held_out_images(shapes, tmp_path):
    run, held_out = shapes
    out = tmp_path / "trained"
    metrics = ailusion.train(
        [f"data={run}", f"eval_dir={held_out}", "train.epochs=8", "progress=false",
         "model.backend=torch"], run_dir=out)
    assert metrics["eval_accuracy"] >= 0.9
    assert metrics["objective"] == "eval_accuracy"
    assert metrics["objective_value"] == metrics["eval_accuracy"]
    assert set(metrics["per_class_accuracy"]) == set(CLASSES)
    confusion = np.array(metrics["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 45
    assert np.trace(confusion) / 45 == pytest.approx(metrics["eval_accuracy"])
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == list(range(1, 9))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert metrics["val_accuracy"] == pytest.approx(history[-1]["val_accuracy"])
    for name in ("curves.png", "confusion.png", "metrics.json", "model_weights.safetensors"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "metrics.json").read_text())["eval_accuracy"] == metrics["eval_accuracy"]

    # The weights carry the class names: a prediction run with them predicts class names.
    from safetensors import safe_open

    with safe_open(str(out / "model_weights.safetensors"), "numpy") as f:
        assert json.loads(f.metadata()["classes"]) == CLASSES
        assert f.get_tensor("dense.weight").shape[0] == 3
    folder = tmp_path / "circles"
    class_folder(folder, ["circle"], 4, seed=7)
    result = ailusion.run(["generator=folder", f"generator.path={folder / 'circle'}",
                           "preprocessor.size=16", "model.backend=torch", "progress=false",
                           f"model.weights={out / 'model_weights.safetensors'}"],
                          run_dir=tmp_path / "predict")
    assert result.labels == CLASSES
    assert [CLASSES[i] for i in result.predictions.argmax(axis=1)] == ["circle"] * 4
    rows = [json.loads(line) for line in (tmp_path / "predict" / "metadata.jsonl").read_text().splitlines()]
    assert [row["prediction"] for row in rows] == ["circle"] * 4


def test_the_split_is_decided_by_each_images_number_alone():
    numbers = np.arange(1, 20001)
    mask = validation_mask(numbers, 0.2)
    assert abs(mask.mean() - 0.2) < 0.01
    # Any shard (every 4th image) or any order sees the same split of its images.
    shard = numbers[2::4]
    np.testing.assert_array_equal(validation_mask(shard, 0.2), mask[2::4])
    shuffled = np.random.default_rng(0).permutation(numbers)
    np.testing.assert_array_equal(validation_mask(shuffled, 0.2), mask[shuffled - 1])
    # A larger fraction only adds images to validation.
    assert (validation_mask(numbers, 0.3) >= mask).all()


def test_the_reader_reads_the_rows_asked_for_in_their_order(shapes):
    run, _ = shapes
    reader = RunDirReader(run)
    assert reader.classes == CLASSES and reader.input_shape == (3, 16, 16) and len(reader) == 120
    arrays = np.load(run / "preprocessed.npy")
    order = json.loads((run / "preprocessed_index.json").read_text())
    rows = {r["file_name"]: r for r in map(json.loads, (run / "metadata.jsonl").read_text().splitlines())}
    positions = np.array([7, 3, 99, 3])
    x, y = reader.batch(positions)
    assert x.dtype == np.float32 and x.flags.c_contiguous and y.dtype == np.int64
    np.testing.assert_array_equal(x, arrays[positions])
    assert list(y) == [rows[order[p]]["label_id"] for p in positions]
    assert list(reader.numbers[positions]) == [rows[order[p]]["index"] for p in positions]


def test_two_data_dirs_train_as_one(shapes, tmp_path):
    run, _ = shapes
    other = labelled_run(tmp_path, CLASSES, per_class=5, seed=3, name="more")
    data = open_data([run, other])
    assert len(data) == 135
    x, y = data.batch(np.array([134, 0, 120]))
    np.testing.assert_array_equal(x[0], RunDirReader(other).batch([14])[0][0])
    np.testing.assert_array_equal(x[1], RunDirReader(run).batch([0])[0][0])
    metrics = train(run, "train.epochs=1", data=f"data=[{run},{other}]")
    assert metrics["train_images"] + metrics["val_images"] == 135


# -- resume --------------------------------------------------------------------------------------


def cli(*args, **kwargs):
    return subprocess.Popen(["ailusion", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


@pytest.mark.slow
def test_a_killed_training_resumes_and_ends_with_the_same_weights(shapes, tmp_path):
    run, _ = shapes
    args = [f"data={run}", "train.epochs=12", "train.batch_size=4", "model.backend=torch",
            "model.out_channels=16", "train.threads=1"]
    whole = cli("train", *args, f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.wait(timeout=600) == 0, whole.stderr.read()

    killed_dir = tmp_path / "killed"
    killed = cli("train", *args, f"hydra.run.dir={killed_dir}")
    history = killed_dir / "history.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and killed.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    done = len(history.read_text().splitlines())
    assert 3 <= done < 12 and not (killed_dir / "model_weights.safetensors").exists()

    resumed = cli("train", *args, f"hydra.run.dir={killed_dir}")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    lines = (killed_dir / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 13))
    assert ((killed_dir / "model_weights.safetensors").read_bytes()
            == (tmp_path / "whole" / "model_weights.safetensors").read_bytes())
    drop = lambda row: {k: v for k, v in row.items() if k != "seconds"}
    whole_lines = (tmp_path / "whole" / "history.jsonl").read_text().splitlines()
    assert [drop(json.loads(a)) for a in lines] == [drop(json.loads(b)) for b in whole_lines]


def test_resuming_with_another_config_is_refused(shapes, tmp_path):
    run, _ = shapes
    out = tmp_path / "out"
    ailusion.train([f"data={run}", "train.epochs=1", "progress=false", "model.backend=torch"],
                   run_dir=out)
    with pytest.raises(AilusionError, match=r"holds training of another config \(train differs\)"):
        ailusion.train([f"data={run}", "train.epochs=1", "train.lr=0.01", "progress=false",
                        "model.backend=torch"], run_dir=out)
    # The same config again finds every epoch done and writes the same weights.
    before = (out / "model_weights.safetensors").read_bytes()
    ailusion.train([f"data={run}", "train.epochs=1", "progress=false", "model.backend=torch"],
                   run_dir=out)
    assert (out / "model_weights.safetensors").read_bytes() == before


# -- bad input -----------------------------------------------------------------------------------


def refused(run, *overrides, data=None, match):
    with pytest.raises(AilusionError, match=match):
        train(run, *overrides, data=data)


def test_data_without_labels_says_how_to_make_labelled_data(tmp_path):
    source = tmp_path / "images"
    class_folder(source, ["circle"], 3)
    ailusion.run(["generator=folder", f"generator.path={source / 'circle'}", "preprocessor.size=8",
                  "model.backend=torch", "progress=false"], run_dir=tmp_path / "plain")
    refused(tmp_path / "plain", match=r"^data: .*plain has no labels \(no classes.json\); make "
            r"labelled data first: a run with classes=\[cat,dog\]")


def test_data_dirs_with_other_classes_or_preprocessing_are_refused(shapes, tmp_path):
    run, _ = shapes
    two = labelled_run(tmp_path, ["circle", "square"], per_class=3, name="two")
    refused(run, data=f"data=[{run},{two}]",
            match=r"^data: .*two has classes \['circle', 'square'\] but .* has \['circle', "
                  r"'square', 'triangle'\]: train on data dirs made with one class list$")
    gray = labelled_run(tmp_path, CLASSES, per_class=2, name="gray",
                        extra=["preprocessor.grayscale=true"])
    refused(run, data=f"data=[{run},{gray}]",
            match=r"^data: .*gray was made with preprocessor.grayscale=true, .*data with false: "
                  r"train on data dirs made with the same preprocessing$")


def test_eval_dirs_with_unknown_or_empty_classes_are_refused(shapes, tmp_path):
    run, _ = shapes
    unknown = class_folder(tmp_path / "unknown", ["circle", "cross"], 2)
    refused(run, f"eval_dir={unknown}", match=r"^eval_dir: .*unknown/cross is class 'cross', "
            r"which the training data lacks \(its classes: circle, square, triangle\)$")
    empty = class_folder(tmp_path / "empty", ["circle"], 2)
    (empty / "square").mkdir()
    refused(run, f"eval_dir={empty}",
            match=r"^eval_dir: .*empty/square is an empty class folder")
    refused(run, f"eval_dir={tmp_path / 'none'}", match=r"^eval_dir: no such folder")


def test_a_single_class_is_refused(tmp_path):
    one = labelled_run(tmp_path, ["circle"], per_class=4, name="one")
    refused(one, match=r"^data: .*one has a single class \(circle\): a classifier needs at "
            r"least two$")


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1"])
def test_val_fraction_outside_0_1_is_refused(shapes, value):
    refused(shapes[0], f"train.val_fraction={value}",
            match=rf"^train.val_fraction: must be a number in \(0.0, 1.0\), got {value}$")


def test_a_split_that_leaves_one_side_empty_is_refused(tmp_path):
    small = labelled_run(tmp_path, ["circle", "square"], per_class=2, name="small")
    refused(small, "train.val_fraction=0.01",
            match=r"^train.val_fraction: 0.01 of 4 images leaves no validation image")


def test_num_outputs_that_disagrees_with_the_classes_is_refused(shapes):
    refused(shapes[0], "model.num_outputs=4", match=r"^model.num_outputs: is 4, but the data "
            r"has 3 classes \(circle, square, triangle\); leave it out to take the class count$")


@pytest.mark.parametrize("override, key", [
    ("train.epochs=0", "train.epochs"), ("train.lr=0", "train.lr"),
    ("train.betas=[0.9,1.0]", "train.betas"), ("train.objective=best", "train.objective"),
    ("train.objective=eval_accuracy", "train.objective"), ("train.batch_size=0", "train.batch_size"),
])
def test_bad_train_settings_name_their_key(shapes, override, key):
    refused(shapes[0], override, match=rf"^{key}: ")


def test_a_nan_loss_stops_and_keeps_the_last_good_epoch(shapes, tmp_path, monkeypatch):
    from ailusion.plugins.flux_cnn import torch_training

    step = torch_training.TorchTrainer.step
    calls = []

    def poisoned(self, x, y):  # finite for 2 epochs (4 batches each), NaN from then on
        calls.append(1)
        loss, logits = step(self, x, y)
        return (math.nan if len(calls) > 8 else loss), logits

    monkeypatch.setattr(torch_training.TorchTrainer, "step", poisoned)
    run, _ = shapes
    out = tmp_path / "nan"
    metrics = ailusion.train([f"data={run}", "train.epochs=5", "progress=false",
                              "model.backend=torch"], run_dir=out)
    assert metrics["epochs"] == 2 and metrics["stopped"] == "nan loss in epoch 3, batch 1"
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    # The weights written are epoch 2's, not those of the step that went wrong.
    from safetensors.numpy import load_file

    saved = load_file(out / "model_weights.safetensors")
    state = load_file(out / "checkpoint.safetensors")
    for name, array in saved.items():
        np.testing.assert_array_equal(array, state[f"weights.{name}"])
    calls.clear()
    calls.extend([1] * 100)
    with pytest.raises(AilusionError, match=r"^train.lr: the loss became NaN in epoch 1, batch 1"):
        ailusion.train([f"data={run}", "train.epochs=2", "progress=false", "model.backend=torch"],
                       run_dir=tmp_path / "nan-at-once")


def test_a_model_that_cannot_train_says_so_in_one_line(shapes):
    from fake_plugins import plugin_manager

    with pytest.raises(AilusionError, match=r"^model.plugin: model 'mean' cannot be trained "
                       r"\(it has no train_setup; docs/plugins.md"):
        ailusion.train([f"data={shapes[0]}", "model.plugin=mean", "progress=false"],
                       run_dir=shapes[0].parent / "frozen", pm=plugin_manager())
    assert not (shapes[0].parent / "frozen").exists()


def test_reading_batches_keeps_memory_flat(tmp_path, monkeypatch):
    """Only the rows asked for are read: memory does not grow with the data."""
    import tracemalloc

    from ailusion.rundir.files import write_json

    run = tmp_path / "big"
    run.mkdir()
    n, shape = 3000, (3, 24, 24)
    x = np.lib.format.open_memmap(run / "preprocessed.npy", "w+", np.float32, (n, *shape))
    x[:] = np.arange(n, dtype=np.float32)[:, None, None, None]
    x.flush()
    del x
    names = [f"generated_image_{i}.png" for i in range(1, n + 1)]
    write_json(run / "preprocessed_index.json", names)
    rows = "".join(json.dumps({"file_name": f, "index": i + 1, "label": CLASSES[i % 3],
                               "label_id": i % 3}) + "\n" for i, f in enumerate(names))
    (run / "metadata.jsonl").write_text(rows)
    write_json(run / "classes.json", {"classes": CLASSES})
    write_json(run / ".ailusion.json", {"requests_sha256": "0" * 64, "plan_sha256": "0" * 64,
                                        "config": {"preprocessor": {"plugin": "image"}}})
    monkeypatch.setattr(np, "load", None)  # the reader never loads the whole array
    reader = RunDirReader(run)
    order = np.random.default_rng(0).permutation(n)
    tracemalloc.start()
    for start in range(0, n, 16):
        xb, yb = reader.batch(order[start:start + 16])
        assert (xb[:, 0, 0, 0] == order[start:start + 16]).all()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    batch_bytes = 16 * int(np.prod(shape)) * 4
    assert peak < 4 * batch_bytes, (peak, batch_bytes)  # the file is 3000 rows: 190 batches
