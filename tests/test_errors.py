"""Every row of docs/errors.md: the input gets exactly its one-line message, and nothing more.

Rows whose input is an ``ailusion …`` command run the CLI in a subprocess; the others run
``ailusion.run`` with the fake plugins of tests/fake_plugins.py, and check the line the CLI
prints for that error (:func:`ailusion.cli.error_line`).
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_plugins import FAST, plugin_manager
from test_lock import lock_in_other_process
from test_trust import SCENARIOS as TRUST_SCENARIOS

import ailusion
from ailusion.rundir import claim, files, manifest
from ailusion.cli import error_line

DOC = Path(__file__).parents[1] / "docs" / "errors.md"
ROW = re.compile(r"^\| `?([a-z0-9-]+)`? \| (.+?) \| `(.+)` \|$")


def doc_rows() -> dict[str, tuple[str, str]]:
    """``{id: (input, message)}`` from the tables of docs/errors.md."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows[match[1]] = (match[2].strip(), match[3])
    return rows


ROWS = doc_rows()
CLI_ROWS = [key for key, (given, _) in ROWS.items() if given.startswith("`ailusion ")]
API_ROWS = [key for key in ROWS if key not in CLI_ROWS]


def matches(line: str, message: str, run_dir: Path) -> bool:
    """``line`` is ``message`` with ``RUN_DIR`` filled in and ``…`` standing for any text."""
    parts = message.replace("RUN_DIR", str(run_dir)).split("…")
    return re.fullmatch(".*".join(re.escape(part) for part in parts), line) is not None


def leftovers(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if files.is_temporary(p.name))


# --- the CLI --------------------------------------------------------------------------------


def hold_lock(run_dir: Path):
    """Another process holding ``run_dir``, as a run in progress would."""
    run_dir.mkdir(parents=True)
    (run_dir / "generated_image_1.png").write_bytes(b"owned by the other run")
    return lock_in_other_process(run_dir)


CLI_SETUP = {
    "run-dir-is-a-file": lambda run_dir: run_dir.write_text("not a dir") and None,
    "run-dir-in-use": hold_lock,
}


@pytest.mark.parametrize("key", CLI_ROWS)
def test_cli_error(key, tmp_path):
    given, message = ROWS[key]
    run_dir = tmp_path / "run"
    holder = CLI_SETUP.get(key, lambda _: None)(run_dir)
    before = sorted(tmp_path.rglob("*"))
    command = re.match(r"`ailusion ([^`]*)`", given)[1]
    args = [a.replace("RUN_DIR", str(run_dir)) for a in shlex.split(command)]
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={run_dir}")
    env = {**os.environ, "HYDRA_FULL_ERROR": ""}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ailusion", *args[:1 if args[0] in SUBAPPS else 0],
             "progress=false", *args[1 if args[0] in SUBAPPS else 0:]],
            capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
        )
    finally:
        if holder is not None:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not _is_warning(line)]
    assert len(errors) == 1, proc.stderr
    assert matches(errors[0], f"ailusion: error: {message}", run_dir), errors[0]
    # Nothing written: the dir is as it was before the run (absent, or the other run's), but
    # for the log file Hydra opens before any code of ours runs.
    assert [p for p in sorted(tmp_path.rglob("*")) if p.suffix != ".log"] == before
    assert proc.stdout == ""


SUBAPPS = ("train", "evaluate")  # Hydra apps of their own: progress=false follows their name


def _is_warning(line: str) -> bool:
    # Stages may log warnings (a missing optional library, say); errors are what is checked.
    return line.startswith("ailusion: warning: ") or bool(re.match(r"^\[[^]]+\]\[[^]]+\]\[WARNING\]", line))


def test_full_error_env_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ailusion", "generator=tiny", "num_shards=0", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, env={**os.environ, "HYDRA_FULL_ERROR": "1"}, timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "AilusionError: num_shards: must be at least 1, got 0" in proc.stderr


def test_broken_entry_point_plugin_is_one_warning(tmp_path):
    """A plugin that fails to import is skipped with one warning line; the others still work."""
    dist = tmp_path / "site" / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ailusion]\nbroken = broken_plugin_mod\n")
    (tmp_path / "site" / "broken_plugin_mod.py").write_text("raise ImportError('needs torchvision')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "HYDRA_FULL_ERROR": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "ailusion", "generator=tiny", "model.plugin=broken",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "ailusion: warning: plugin 'broken' (broken_plugin_mod, from broken-plugin) failed to "
        "load and is skipped: ImportError: needs torchvision",
        "ailusion: error: model.plugin: no model plugin named 'broken' is installed "
        "(installed: flux_cnn)",
    ]
    assert not (tmp_path / "run").exists()


# --- the API, with fake plugins ----------------------------------------------------------------


def _different_config(run_dir):
    ailusion.run([*FAST, "prompts=[a,b]"], run_dir=run_dir, pm=plugin_manager())
    ailusion.run([*FAST, "prompts=[a,b]", "generator.seed=1"], run_dir=run_dir, pm=plugin_manager())


def _failing_write(run_dir, monkeypatch):
    from test_manifest import disk_full_after

    monkeypatch.setattr(files, "open", disk_full_after(100, "generated_image_2.png"),
                        raising=False)
    ailusion.run([*FAST, "prompts=[a,b,c,d]", "model.batch_size=1"], run_dir=run_dir, pm=plugin_manager())


def _digits_into_full_dir(run_dir):
    from ailusion.digits import write_digits

    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    write_digits(run_dir)


def _digits_without_sklearn(run_dir, monkeypatch):
    from ailusion.digits import write_digits

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if absent
    write_digits(run_dir)


def _digits_experiment_without_sklearn(run_dir, monkeypatch):
    monkeypatch.setenv("AILUSION_CACHE", str(run_dir / "cache"))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    ailusion.run(["experiment=digits", "progress=false"], run_dir=run_dir / "run")


def _train(run_dir, *overrides, data=None, pm=None):
    from labelled_data import shared_run

    data = data or f"data={shared_run()}"
    return ailusion.train([data, "progress=false", "model.backend=torch", *overrides],
                          run_dir=run_dir, pm=pm)


def _two_runs(**kwargs):
    from labelled_data import shared_run

    return f"data=[{shared_run()},{shared_run(**kwargs)}]"


def _eval_dir(run_dir, classes, empty=()):
    from labelled_data import class_folder

    folder = class_folder(run_dir.parent / "eval", classes, 1)
    for name in empty:
        (folder / name).mkdir()
    return f"eval_dir={folder}"


def _unlabelled_run(run_dir):
    from labelled_data import shared_run

    _train(run_dir, data=f"data={shared_run(labelled=False)}")


def _nan_at_once(run_dir, monkeypatch):
    from ailusion.plugins.flux_cnn import torch_training

    monkeypatch.setattr(torch_training.TorchTrainer, "step",
                        lambda self, x, y: (float("nan"), np.zeros((len(y), 3), np.float32)))
    _train(run_dir)


def _other_training_config(run_dir):
    _train(run_dir, "train.epochs=1")
    _train(run_dir, "train.epochs=1", "train.lr=0.01")


TRAIN_SCENARIOS = {
    "train-no-labels": lambda run_dir, _: _unlabelled_run(run_dir),
    "train-classes-differ": lambda run_dir, _: _train(
        run_dir, data=_two_runs(classes=("circle", "square"))),
    "train-preprocessing-differs": lambda run_dir, _: _train(
        run_dir, data=_two_runs(extra=("preprocessor.grayscale=true",))),
    "train-single-class": lambda run_dir, _: _train(
        run_dir, data=f"data={__import__('labelled_data').shared_run(classes=('circle',))}"),
    "train-num-outputs": lambda run_dir, _: _train(run_dir, "model.num_outputs=4"),
    "eval-unknown-class": lambda run_dir, _: _train(
        run_dir, _eval_dir(run_dir, ["circle", "cross"])),
    "eval-empty-class": lambda run_dir, _: _train(
        run_dir, _eval_dir(run_dir, ["circle"], empty=["square"])),
    "model-cannot-train": lambda run_dir, _: _train(
        run_dir, "model.plugin=mean", pm=plugin_manager()),
    "train-nan-at-once": _nan_at_once,
    "train-other-config": lambda run_dir, _: _other_training_config(run_dir),
}
def _different_format(run_dir):
    ailusion.run([*FAST, "prompts=[a,b]"], run_dir=run_dir, pm=plugin_manager())
    ailusion.run([*FAST, "prompts=[a,b]", "output.format=webdataset"], run_dir=run_dir,
                 pm=plugin_manager())


def _job(run_dir, fmt, *overrides):
    ailusion.run([*FAST, "prompts=[a,b,c,d,e]", f"output.format={fmt}", "output.shard_size=2",
                  *overrides], run_dir=run_dir, pm=plugin_manager())
    return run_dir


def _merge_different_formats(run_dir):
    from ailusion.rundir.merge import merge

    merge(run_dir / "out", [_job(run_dir / "a", "webdataset"), _job(run_dir / "b", "imagefolder")])


def _merge_missing_shard(run_dir):
    from ailusion.rundir.merge import merge

    merge(run_dir / "out", [_job(run_dir / "a", "webdataset", "shard=0", "num_shards=2")])


API_SCENARIOS = {
    "different-format": lambda run_dir, _: _different_format(run_dir),
    "merge-different-formats": lambda run_dir, _: _merge_different_formats(run_dir),
    "merge-missing-shard": lambda run_dir, _: _merge_missing_shard(run_dir),
    "digits-dir-not-empty": lambda run_dir, _: _digits_into_full_dir(run_dir),
    "digits-needs-sklearn": _digits_without_sklearn,
    "digits-experiment-needs-sklearn": _digits_experiment_without_sklearn,
    "model-forward-raises": lambda run_dir, _: ailusion.run(
        [*FAST, "prompts=[a,b,c]", "model.plugin=failing"], run_dir=run_dir, pm=plugin_manager()),
    "model-wrong-shape": lambda run_dir, _: ailusion.run(
        [*FAST, "prompts=[a,b]", "model.plugin=short"], run_dir=run_dir, pm=plugin_manager()),
    "generator-raises": lambda run_dir, _: ailusion.run(
        [*FAST, "prompts=[a,b,boom,c]", "model.batch_size=1"], run_dir=run_dir, pm=plugin_manager()),
    "plugin-factory-bug": lambda run_dir, _: ailusion.run(
        [*FAST, "generator.plugin=broken"], run_dir=run_dir, pm=plugin_manager()),
    "disk-write-fails": _failing_write,
    "different-config": lambda run_dir, _: _different_config(run_dir),
    **TRAIN_SCENARIOS,
}


API_SCENARIOS.update(TRUST_SCENARIOS)


def _class_folders(run_dir, stray: bool):
    """``images/cat/a.png`` and an empty ``images/owl/``, or a stray ``images/b.png``."""
    from PIL import Image

    root = run_dir.parent / "images"
    (root / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "cat" / "a.png")
    if stray:
        Image.new("RGB", (8, 8)).save(root / "b.png")
    else:
        (root / "owl").mkdir()
    fast = [o for o in FAST if not o.startswith("generator")]
    ailusion.run([*fast, "generator=folder", f"generator.path={root}"], run_dir=run_dir,
                 pm=plugin_manager())


def _unlabelled_row(run_dir):
    path = run_dir.parent / "p.csv"
    path.write_text("prompt,label\na cat,cat\na dog,\n")
    ailusion.run([*FAST, f"prompts_file={path}"], run_dir=run_dir, pm=plugin_manager())


API_SCENARIOS.update({
    "folder-empty-class": lambda run_dir, _: _class_folders(run_dir, stray=False),
    "folder-images-and-classes": lambda run_dir, _: _class_folders(run_dir, stray=True),
    "prompts-label-missing": lambda run_dir, _: _unlabelled_row(run_dir),
})


def test_every_row_has_a_test():
    assert ROWS, f"no rows found in {DOC}"
    assert sorted(API_ROWS) == sorted(API_SCENARIOS)


@pytest.mark.parametrize("key", API_ROWS)
def test_api_error(key, tmp_path, monkeypatch):
    from filelock import FileLock

    run_dir = tmp_path / "run"
    with pytest.raises(Exception) as caught:
        API_SCENARIOS[key](run_dir, monkeypatch)
    assert "\n" not in error_line(caught.value)
    assert matches(error_line(caught.value), ROWS[key][1], run_dir), error_line(caught.value)
    assert leftovers(tmp_path) == []
    if key == "plugin-factory-bug" or (key in TRAIN_SCENARIOS and key != "train-other-config"):
        assert not run_dir.exists()  # found before any work: no run dir at all
    if run_dir.exists():  # the dir is free, and every row of its manifest is complete
        FileLock(str(run_dir / claim.LOCK_FILE), timeout=0).acquire()
        for row in manifest.read_manifest(run_dir).values():
            assert manifest.is_complete(run_dir, row), row
