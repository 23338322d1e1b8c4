"""One job, generate then train (train=default): the outputs under RUN_DIR/train/, and the
objective returned by the task function to a sweeper that optimises (Optuna)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from labelled_data import class_folder, draw

CLASSES = ["circle", "square", "triangle"]

# The main app, its jobs' runs labelled from their source file names by a plugin's run_end hook
# (so the test does not depend on how a generator labels its images).
SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import ailusion.manager as manager
    from ailusion import hookimpl
    from ailusion.rundir import files, manifest

    CLASSES = %r

    class Labeller:
        @hookimpl(tryfirst=True)
        def run_end(self, run_dir):
            rows = manifest.read_manifest(run_dir)
            for row in rows.values():
                label = Path(row["source"]).name.split("-")[0]
                row["label"], row["label_id"] = label, CLASSES.index(label)
            manifest.write_manifest(run_dir, rows)
            files.write_json(Path(run_dir) / "classes.json", {"classes": CLASSES})

    plain = manager.get_plugin_manager

    def with_labeller():
        pm = plain()
        pm.register(Labeller())
        return pm

    manager.get_plugin_manager = with_labeller
    from ailusion.cli import main
    sys.argv = ["ailusion", *sys.argv[1:]]
    main()
''') % (CLASSES,)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    import numpy as np

    root = tmp_path_factory.mktemp("onejob")
    flat = root / "images"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for name in CLASSES:
        for i in range(30):
            draw(name, rng).save(flat / f"{name}-{i:03d}.png")
    return flat, class_folder(root / "held_out", CLASSES, 6, seed=11)


def main_app(tmp_path, *args):
    script = tmp_path / "labelled_ailusion.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)


COMMON = ["generator=folder", "preprocessor.size=16", "model.backend=torch", "progress=false",
          "train=default", "train.epochs=4", "train.lr=0.01"]


@pytest.mark.slow
def test_train_default_generates_then_trains_into_run_dir_train(shapes, tmp_path):
    flat, held_out = shapes
    run_dir = tmp_path / "run"
    proc = main_app(tmp_path, *COMMON, f"generator.path={flat}", f"eval_dir={held_out}",
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
    flat, _ = shapes
    sweep = tmp_path / "sweep"
    proc = main_app(tmp_path, "-m", *COMMON, f"generator.path={flat}",
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
