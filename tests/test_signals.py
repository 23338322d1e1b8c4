"""SIGTERM stops a run as SIGINT does; a second signal does not cut the cleanup short; what killed
runs and builds leave is removed at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_resume import TINY as TINY_40, assert_same_files, manifest_lines
from test_trust import make_shards

from ailusion import signals
from ailusion.rundir import files, merge


def test_sigterm_raises_terminated_and_a_second_signal_is_ignored_while_stopping(capfd):
    cleaned = []
    with pytest.raises(signals.Terminated) as caught:
        with signals.stop_cleanly():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here
            finally:
                os.kill(os.getpid(), signal.SIGINT)  # while stopping: ignored
                time.sleep(0.05)
                cleaned.append(True)
    assert cleaned == [True]
    assert signals.exit_status(caught.value) == 143
    assert "still stopping" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_the_command_ignores_signals_after_it_stopped(monkeypatch):
    monkeypatch.setattr(signals, "IGNORE_AFTER_STOP", True)  # as `ailusion` sets it
    try:
        with pytest.raises(signals.Terminated):
            with signals.stop_cleanly():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # while it prints and exits
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_sigint_gives_130():
    with pytest.raises(KeyboardInterrupt) as caught:
        with signals.stop_cleanly():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert not isinstance(caught.value, signals.Terminated)
    assert signals.exit_status(caught.value) == 130


TINY = [o for o in TINY_40 if not o.startswith("prompts=")] + [
    "prompts=[a fox,a boat,a tree,a lamp,a cake,a cup,a hat,a key]"]


def temporaries(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if files.is_temporary(p.name))


def stop_when_written(run_dir: Path, sends: list[int], log: Path) -> subprocess.CompletedProcess:
    """Start the CLI into ``run_dir`` and send ``sends`` once it has written 2 images."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ailusion", *TINY, f"hydra.run.dir={run_dir}"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HYDRA_FULL_ERROR": ""},
        )
        deadline = time.monotonic() + 300
        while manifest_lines(run_dir) < 2:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.002)
        for signum in sends:
            proc.send_signal(signum)
            time.sleep(0.01)
        proc.wait(timeout=120)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sends, status, said", [
    ([signal.SIGTERM], 143, "ailusion: terminated (SIGTERM); run again with the same config to resume"),
    ([signal.SIGINT, signal.SIGINT, signal.SIGTERM], 130,
     "ailusion: interrupted; run again with the same config to resume"),
])
def test_a_stopped_cli_run_cleans_up_says_how_to_resume_and_resumes(tmp_path, sends, status, said):
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    subprocess.run([sys.executable, "-m", "ailusion", *TINY, f"hydra.run.dir={reference}"],
                   check=True, capture_output=True)
    proc = stop_when_written(run_dir, sends, tmp_path / "log")
    log = (tmp_path / "log").read_text()
    assert proc.returncode == status, log
    assert said in log and "Traceback" not in log
    assert temporaries(tmp_path) == []
    assert not (run_dir / ".preprocessed.npy.tmp").exists()
    subprocess.run([sys.executable, "-m", "ailusion", *TINY, f"hydra.run.dir={run_dir}"],
                   check=True, capture_output=True)
    assert_same_files(run_dir, reference)


def test_a_killed_merge_leaves_nothing_after_the_next_merge(tmp_path):
    shards = make_shards(tmp_path / "shards")
    stale = tmp_path / f".merged{merge.MERGING}abc123"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "generated_image_1.png").write_bytes(b"x" * 1000)
    running = tmp_path / f".other{merge.MERGING}def456"
    running.mkdir()
    held = merge._hold(running)  # a merge still running
    try:
        merge.merge(tmp_path / "merged", shards)
        assert not stale.exists() and running.exists()
    finally:
        os.close(held)
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "merged", "shards"]


def test_a_sigterm_during_merge_leaves_nothing(tmp_path, monkeypatch):
    shards = make_shards(tmp_path / "shards")
    real_place = merge._place

    def place(source, target):
        real_place(source, target)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(merge, "_place", place)
    assert merge.merge_command([str(tmp_path / "merged"), *map(str, shards)]) == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]


def test_a_killed_tiny_build_is_removed_at_the_next_start(tmp_path):
    from ailusion.plugins import tiny_sd

    root = tmp_path / "cache"
    (root / tiny_sd.TINY_VERSION).mkdir(parents=True)
    (root / tiny_sd.TINY_VERSION / "model_index.json").write_text("{}")  # built already
    (root / f".{tiny_sd.TINY_VERSION}.k1ll3d").mkdir()
    (root / f".{tiny_sd.TINY_VERSION}.k1ll3d" / "unet").mkdir()
    assert tiny_sd.ensure_tiny_pipeline(root) == root / tiny_sd.TINY_VERSION
    assert not list(root.glob(f".{tiny_sd.TINY_VERSION}.*"))
