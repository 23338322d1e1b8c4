"""One writer per run dir: a second run fails at once; a killed run's lock does not linger."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_plugins import FAST, plugin_manager
from filelock import FileLock

import ailusion
from ailusion.rundir import claim, manifest
from ailusion.errors import AilusionError


def run_fast(run_dir, *overrides):
    return ailusion.run([*FAST, "prompts=[a,b,c]", *overrides], run_dir=run_dir, pm=plugin_manager())


def lock_in_other_process(run_dir):
    """A process holding ``run_dir``'s lock, as a run in progress does."""
    run_dir.mkdir(parents=True, exist_ok=True)
    code = (
        "import time; from filelock import FileLock; "
        f"lock = FileLock({str(run_dir / claim.LOCK_FILE)!r}); lock.acquire(); print('held', flush=True); "
        "time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_run_on_a_dir_in_use_fails_at_once(tmp_path):
    run_dir = tmp_path / "run"
    holder = lock_in_other_process(run_dir)
    try:
        started = time.monotonic()
        with pytest.raises(AilusionError) as caught:
            run_fast(run_dir)
        assert time.monotonic() - started < 10  # no waiting for the lock
    finally:
        holder.kill()
        holder.wait()
    assert str(caught.value) == (
        f"{run_dir}: in use by another ailusion run (it holds {claim.LOCK_FILE}); "
        "wait for it to finish or pick another hydra.run.dir"
    )
    # The other run's dir is left alone: nothing added, nothing removed.
    assert sorted(p.name for p in run_dir.iterdir()) == [claim.LOCK_FILE]


def test_lock_of_a_killed_run_does_not_block(tmp_path):
    run_dir = tmp_path / "run"
    holder = lock_in_other_process(run_dir)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (run_dir / claim.LOCK_FILE).exists()  # the file stays; the flock went with the process
    assert run_fast(run_dir).summary["written"] == 3


def test_lock_is_held_during_the_run_and_released_after(tmp_path):
    run_dir = tmp_path / "run"
    seen = []

    class Spy:
        @ailusion.hookimpl
        def run_start(self, run_dir):
            with pytest.raises(Exception):
                FileLock(str(run_dir / claim.LOCK_FILE), timeout=0).acquire()
            seen.append("held")

    pm = plugin_manager()
    pm.register(Spy())
    ailusion.run([*FAST, "prompts=[a]"], run_dir=run_dir, pm=pm)
    assert seen == ["held"]
    FileLock(str(run_dir / claim.LOCK_FILE), timeout=0).acquire()


def test_lock_is_released_when_a_run_fails(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="the model broke"):
        run_fast(run_dir, "model.plugin=failing")
    FileLock(str(run_dir / claim.LOCK_FILE), timeout=0).acquire()


def test_concurrent_jobs_in_their_own_dirs_do_not_touch_each_other(tmp_path):
    """Two sweep jobs at once, each in its own dir, as ``-m`` runs them."""
    code = (
        "import sys; sys.path.insert(0, {tests!r}); import ailusion; "
        "from fake_plugins import FAST, plugin_manager; "
        "ailusion.run([*FAST, 'prompts=[a,b,c,d]', 'generator.seed=' + sys.argv[1]], "
        "run_dir=sys.argv[2], pm=plugin_manager())"
    ).format(tests=str(Path(__file__).parent))
    jobs = [
        subprocess.Popen([sys.executable, "-c", code, str(seed), str(tmp_path / f"job{seed}")])
        for seed in (1, 2)
    ]
    assert [job.wait(timeout=300) for job in jobs] == [0, 0]
    for seed in (1, 2):
        rows = manifest.read_manifest(tmp_path / f"job{seed}")
        assert [rows[i]["seed"] for i in sorted(rows)] == [seed, seed + 1, seed + 2, seed + 3]
