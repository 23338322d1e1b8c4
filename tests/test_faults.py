"""Every exit leaves the dir as a rerun expects it: a full disk, a read-only dir, a failed start."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from fake_plugins import FAST, plugin_manager
from test_resume import assert_same_files

import ailusion
from ailusion.cli import error_line
from ailusion.errors import AilusionError
from ailusion.rundir import files, manifest

TINY = ["generator=tiny", "generator.height=32", "generator.width=32",
        "generator.num_inference_steps=1", "preprocessor.size=16", "progress=false"]


@contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (root only; else the test is skipped)."""
    path.mkdir(parents=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def temporaries(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if files.is_temporary(p.name))


def test_a_full_disk_leaves_whole_rows_names_the_file_and_resumes(tmp_path):
    reference = tmp_path / "reference"
    overrides = [*FAST, "preprocessor.size=64", f"prompts=[{','.join('abcdefghijklmnopqrstuvwxyz')}]",
                 "model.batch_size=1"]
    ailusion.run(overrides, run_dir=reference, pm=plugin_manager())
    with small_disk(tmp_path / "disk", "160k") as disk:
        run_dir = disk / "run"
        with pytest.raises(AilusionError) as caught:
            ailusion.run(overrides, run_dir=run_dir, pm=plugin_manager())
        line = error_line(caught.value)
        assert "No space left on device" in line and str(run_dir) in line
        assert ".tmp" not in line and "\n" not in line
        assert temporaries(disk) == []
        text = (run_dir / manifest.MANIFEST).read_text()
        assert text == "" or text.endswith("\n")
        rows = [json.loads(line) for line in text.splitlines()]  # no torn row
        assert all(manifest.is_complete(run_dir, row) for row in rows)
        shutil.copytree(run_dir, tmp_path / "moved", symlinks=True)
    resumed = ailusion.run(overrides, run_dir=tmp_path / "moved", pm=plugin_manager())
    assert resumed.summary["skipped"] == len(rows)
    assert_same_files(tmp_path / "moved", reference)


def test_a_row_the_disk_cannot_take_is_cut_off_again(tmp_path, monkeypatch):
    (tmp_path / manifest.MANIFEST).write_text('{"index": 1}\n')
    writer = manifest.ManifestWriter(tmp_path)
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 10:
            return real_write(fd, data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(AilusionError, match=f"^{tmp_path / manifest.MANIFEST}: cannot write: No space"):
        writer.append({"index": 2, "file_name": "x.png"})
    monkeypatch.undo()
    writer.close()
    assert (tmp_path / manifest.MANIFEST).read_text() == '{"index": 1}\n'


def test_a_failed_run_keeps_the_dir_and_files_the_user_had(tmp_path):
    mylogs = tmp_path / "mylogs"
    mylogs.mkdir()
    (mylogs / "train.log").write_text("my training")
    (mylogs / "eval.log").write_text("my evaluation")
    with pytest.raises(AilusionError, match="prompt 1 is blank"):
        ailusion.run([*FAST, "prompts=['']"], run_dir=mylogs, pm=plugin_manager())
    assert sorted(os.listdir(mylogs)) == ["eval.log", "train.log"]
    assert (mylogs / "train.log").read_text() == "my training"
    # A dir the run made itself goes again
    with pytest.raises(AilusionError):
        ailusion.run([*FAST, "prompts=['']"], run_dir=tmp_path / "new", pm=plugin_manager())
    assert not (tmp_path / "new").exists()


def test_a_failed_cli_run_keeps_the_dir_and_files_the_user_had(tmp_path):
    mylogs = tmp_path / "mylogs"
    mylogs.mkdir()
    (mylogs / "train.log").write_text("my training")
    (mylogs / "eval.log").write_text("my evaluation")
    proc = subprocess.run(
        [sys.executable, "-m", "ailusion", *TINY, "prompts=['']", f"hydra.run.dir={mylogs}"],
        capture_output=True, text=True, env={**os.environ, "HYDRA_FULL_ERROR": ""}, timeout=300,
    )
    assert proc.returncode == 1 and "prompt 1 is blank" in proc.stderr
    assert sorted(os.listdir(mylogs)) == ["eval.log", "train.log"]  # Hydra's own log went
    assert (mylogs / "eval.log").read_text() == "my evaluation"


def test_a_failed_run_into_a_dir_with_data_keeps_everything(tmp_path):
    run_dir = tmp_path / "run"
    ailusion.run([*FAST, "prompts=[a,b]"], run_dir=run_dir, pm=plugin_manager())
    (run_dir / "cli.log").write_text("the first run's log")
    before = sorted(os.listdir(run_dir))
    with pytest.raises(AilusionError):
        ailusion.run([*FAST, "prompts=['']"], run_dir=run_dir, pm=plugin_manager())
    assert sorted(os.listdir(run_dir)) == before


def test_hydras_log_file_on_a_read_only_dir_is_one_line_saying_so():
    cause = PermissionError(errno.EROFS, "Read-only file system")
    cause.filename = "/data/run/cli.log"
    try:
        raise ValueError("Unable to configure handler 'file'") from cause
    except ValueError as exc:
        line = error_line(exc)
    assert line.startswith("/data/run: is read-only (Read-only file system: cannot write cli.log)")


def test_a_finished_run_dir_on_a_read_only_file_system_says_so(tmp_path):
    with small_disk(tmp_path / "disk", "20m") as disk:
        command = [sys.executable, "-m", "ailusion", *TINY, "prompts=[a,b]",
                   f"hydra.run.dir={disk / 'run'}"]
        env = {**os.environ, "HYDRA_FULL_ERROR": ""}
        subprocess.run(command, check=True, capture_output=True, env=env, timeout=300)
        before = sorted(os.listdir(disk / "run"))
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr and "Unable to configure handler" not in proc.stderr
        assert proc.stderr.splitlines()[-1].startswith(
            f"ailusion: error: {disk / 'run'}: is read-only (Read-only file system: cannot write ")
        assert sorted(os.listdir(disk / "run")) == before
