"""The sweep summary callback: summary.csv and summary.png after every multirun, any launcher."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from PIL import Image

from ailusion.sweeps import best_line, write_summary

GLYPHS = ["generator=glyphs", "prompts=[0,1]", "preprocessor.size=12", "progress=false"]


def sweep(sweep_dir, *overrides):
    proc = subprocess.run(
        [sys.executable, "-m", "ailusion", "-m", *GLYPHS, f"hydra.sweep.dir={sweep_dir}",
         *overrides], capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_two_job_sweep_gets_its_summary(tmp_path, launcher):
    extra = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
             "submitit_local": ["hydra/launcher=submitit_local"]}[launcher]
    proc = sweep(tmp_path / "sweep", "generator.rotation=0,30", "generator.num_images_per_prompt=2",
                 *extra)
    rows = read_csv(tmp_path / "sweep" / "summary.csv")
    assert [r["job"] for r in rows] == ["0", "1"]
    assert [r["override.generator.rotation"] for r in rows] == ["0", "30"]
    assert all("generator=glyphs" in r["overrides"] for r in rows)
    assert [r["images"] for r in rows] == ["4", "4"]
    assert all(r["status"] == "completed" and float(r["seconds"]) > 0 for r in rows)
    assert all(r["objective_value"] == "" for r in rows)  # nothing trained: no objective
    assert "override.preprocessor.size" not in rows[0]  # the same in every job: not swept
    with Image.open(tmp_path / "sweep" / "summary.png") as image:
        assert image.format == "PNG" and image.width >= 600
    assert f"sweep summary: {tmp_path / 'sweep' / 'summary.csv'}" in proc.stderr


def job_dir(root, num, overrides, value=None, metrics=None):
    hydra = root / str(num) / ".hydra"
    hydra.mkdir(parents=True)
    record = {"job": num, "status": "completed", "overrides": overrides,
              "return_value": value, "seconds": 1.5 + num}
    (hydra / "job_return.json").write_text(json.dumps(record))
    if metrics is not None:
        (root / str(num) / "train").mkdir()
        (root / str(num) / "train" / "metrics.json").write_text(json.dumps(metrics))


def test_summary_from_job_dirs_objective_metrics_and_best(tmp_path, caplog):
    m = lambda v: {"objective": "eval_accuracy", "objective_value": v, "eval_accuracy": v,
                   "val_accuracy": 0.9, "per_class_accuracy": [0.5, 0.7], "confusion": [[1]]}
    job_dir(tmp_path, 0, ["generator.rotation=0", "train.lr=0.01"], 0.61, m(0.61))
    job_dir(tmp_path, 1, ["generator.rotation=10", "train.lr=0.01"], 0.72, m(0.72))
    job_dir(tmp_path, 2, ["generator.rotation=20", "train.lr=0.01"], None, m(0.55))  # from disk
    (tmp_path / "3" / ".hydra").mkdir(parents=True)
    (tmp_path / "3" / ".hydra" / "job_return.json").write_text("{not json")
    csv_path, png_path, rows = write_summary(tmp_path)
    table = read_csv(csv_path)
    assert [r["job"] for r in table] == ["0", "1", "2"]
    assert [r["objective_value"] for r in table] == ["0.61", "0.72", "0.55"]
    assert {r["objective"] for r in table} == {"eval_accuracy"}
    assert [r["eval_accuracy"] for r in table] == ["0.61", "0.72", "0.55"]
    assert "per_class_accuracy" not in table[0] and "override.train.lr" not in table[0]
    assert [r["override.generator.rotation"] for r in table] == ["0", "10", "20"]
    assert best_line(rows) == (
        "; best: job 1, eval_accuracy 0.7200: generator.rotation=10")
    assert "unreadable" in caplog.text and png_path.stat().st_size > 1000


@pytest.mark.slow
def test_a_small_optuna_search_completes_and_names_the_best(tmp_path):
    import yaml

    from ailusion.digits import write_digits

    pytest.importorskip("sklearn")
    write_digits(tmp_path / "digits")
    proc = subprocess.run(
        [sys.executable, "-m", "ailusion", "-m", "experiment=digits_search",
         f"eval_dir={tmp_path / 'digits'}", "hydra.sweeper.n_trials=3",
         "generator.num_images_per_prompt=4", "train.epochs=1", "preprocessor.size=12",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    searched = {"generator.rotation", "generator.shear", "generator.elastic", "generator.blur",
                "generator.thickness", "train.lr"}
    assert set(results["best_params"]) == searched
    rows = read_csv(tmp_path / "sweep" / "summary.csv")
    assert len(rows) == 3 and {r["objective"] for r in rows} == {"eval_accuracy"}
    values = [float(r["objective_value"]) for r in rows]
    assert all(0 <= v <= 1 for v in values) and results["best_value"] == pytest.approx(max(values))
    assert {f"override.{k}" for k in searched} <= set(rows[0])
    best = rows[values.index(max(values))]
    assert float(best["override.generator.rotation"]) == pytest.approx(
        results["best_params"]["generator.rotation"])
