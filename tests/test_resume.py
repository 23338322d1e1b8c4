"""Running again into the same dir resumes: it ends byte-identical to an uninterrupted run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_plugins import FAST, plugin_manager

import ailusion
from ailusion.rundir import claim, files, manifest
from ailusion.errors import AilusionError


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run dir by name, except Hydra's logs and the lock."""
    return {
        str(path.relative_to(run_dir)): path.read_bytes()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
        and ".hydra" not in path.parts
        and path.suffix != ".log"
        and path.name != claim.LOCK_FILE
    }


def assert_same_files(resumed: Path, reference: Path) -> None:
    got, want = snapshot(resumed), snapshot(reference)
    assert sorted(got) == sorted(want)
    assert [name for name in want if got[name] != want[name]] == []


def run_fast(run_dir, *overrides):
    return ailusion.run([*FAST, "prompts=[a,b,c,d,e]", "model.batch_size=2", *overrides],
                        run_dir=run_dir, pm=plugin_manager())


# --- in process, with fast fake stages -----------------------------------------------------------


def test_rerun_skips_every_complete_image(tmp_path):
    first = run_fast(tmp_path / "run")
    before = snapshot(tmp_path / "run")
    again = run_fast(tmp_path / "run")
    assert (first.summary["written"], first.summary["skipped"]) == (5, 0)
    assert (again.summary["written"], again.summary["skipped"]) == (0, 5)
    assert snapshot(tmp_path / "run") == before


def test_missing_and_corrupt_images_are_made_again(tmp_path):
    run_fast(tmp_path / "reference")
    run_dir = tmp_path / "run"
    run_fast(run_dir)
    (run_dir / "generated_image_2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (run_dir / "preprocessed_image_4.png").unlink()
    (run_dir / "preprocessed.npy").unlink()
    result = run_fast(run_dir)
    assert (result.summary["written"], result.summary["skipped"]) == (2, 3)
    assert_same_files(run_dir, tmp_path / "reference")


def test_what_a_killed_run_leaves_is_cleaned_up(tmp_path):
    run_fast(tmp_path / "reference")
    run_dir = tmp_path / "run"
    run_fast(run_dir)
    # A killed run's leftovers: a temporary PNG, a torn manifest line, no finished arrays.
    (run_dir / ".generated_image_5.png.x1y2.tmp").write_bytes(b"half a png")
    (run_dir / ".preprocessed.npy.tmp").write_bytes(b"half an array")
    with open(run_dir / manifest.MANIFEST, "a", encoding="utf-8") as out:
        out.write('{"file_name": "generated_ima')
    for name in ("predictions.json", "predictions.npy", "contact_sheet.png"):
        (run_dir / name).unlink()
    run_fast(run_dir)
    assert_same_files(run_dir, tmp_path / "reference")


def test_run_that_failed_part_way_resumes_to_the_same_files(tmp_path, monkeypatch):
    run_fast(tmp_path / "reference")
    real_save, calls = files.save_png, []

    def failing_save(image, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 6:
            raise AilusionError(f"{path}: cannot write: No space left on device")
        return real_save(image, path, *args, **kwargs)

    monkeypatch.setattr(files, "save_png", failing_save)
    with pytest.raises(AilusionError, match="No space left on device"):
        run_fast(tmp_path / "run")
    monkeypatch.setattr(files, "save_png", real_save)
    result = run_fast(tmp_path / "run")
    assert 0 < result.summary["skipped"] < 5
    assert_same_files(tmp_path / "run", tmp_path / "reference")


def test_another_config_is_refused_and_changes_nothing(tmp_path):
    run_fast(tmp_path / "run")
    before = snapshot(tmp_path / "run")
    with pytest.raises(AilusionError) as caught:
        run_fast(tmp_path / "run", "preprocessor.size=4")
    assert str(caught.value) == (
        f"{tmp_path / 'run'}: holds a run of another config (preprocessor.size: 8 there, 4 now); "
        "resume it with the same config or pick another hydra.run.dir"
    )
    assert snapshot(tmp_path / "run") == before


def test_other_prompts_are_another_config(tmp_path):
    run_fast(tmp_path / "run")
    with pytest.raises(AilusionError, match=r"another config \(prompts: "):
        ailusion.run([*FAST, "prompts=[a,b,c,d,x]", "model.batch_size=2"],
                     run_dir=tmp_path / "run", pm=plugin_manager())


def test_progress_setting_does_not_count_as_another_config(tmp_path):
    run_fast(tmp_path / "run")
    result = run_fast(tmp_path / "run", "progress=true")
    assert result.summary["skipped"] == 5


def test_gpu_per_job_does_not_count_as_another_config(tmp_path):
    # Which GPU a job ran on does not change its images: a sweep's dir resumes either way.
    run_fast(tmp_path / "run", "gpu_per_job=true")
    result = run_fast(tmp_path / "run", "gpu_per_job=false")
    assert result.summary["skipped"] == 5


def test_png_settings_do_not_count_as_another_config(tmp_path):
    # They change how the files are compressed, not the pixels: a run may finish with faster ones.
    run_fast(tmp_path / "run")
    result = run_fast(tmp_path / "run", "png_strategy=default", "png_compress_level=1")
    assert result.summary["skipped"] == 5


def test_a_record_that_lists_png_settings_still_resumes(tmp_path):
    import json

    run_fast(tmp_path / "run")
    path = tmp_path / "run" / claim.RUN_FILE
    record = json.loads(path.read_text())
    record["config"].update(png_compress_level=6)  # as runs recorded before it was ignored
    path.write_text(json.dumps(record))
    assert run_fast(tmp_path / "run").summary["skipped"] == 5


# --- the CLI, killed with SIGKILL at different points --------------------------------------------

PROMPTS = "[" + ",".join(f"prompt {i}" for i in range(40)) + "]"
TINY = [
    "generator=tiny", "generator.height=32", "generator.width=32",
    "generator.num_inference_steps=1", "preprocessor.size=16", "model.batch_size=2",
    f"prompts={PROMPTS}", "progress=false",
]


def cli(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "ailusion", *TINY, f"hydra.run.dir={run_dir}"]


def manifest_lines(run_dir: Path) -> int:
    try:
        return (run_dir / manifest.MANIFEST).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_when(run_dir: Path, ready, log: Path) -> None:
    """Start the CLI on ``run_dir`` and SIGKILL it as soon as ``ready()`` is true."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cli(run_dir), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not ready():
        assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()}"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_cli_killed_three_times_resumes_to_an_identical_dir(tmp_path):
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    subprocess.run(cli(reference), check=True, capture_output=True)

    # 1. Killed as soon as it starts writing, before its first image
    kill_when(run_dir, lambda: (run_dir / claim.RUN_FILE).exists(), tmp_path / "1.log")
    # 2. Killed after a few images, and 3. after many more: mid-batch, mid-write, wherever
    kill_when(run_dir, lambda: manifest_lines(run_dir) >= 5, tmp_path / "2.log")
    assert 5 <= manifest_lines(run_dir) < 40
    kill_when(run_dir, lambda: manifest_lines(run_dir) >= 21, tmp_path / "3.log")
    assert 21 <= manifest_lines(run_dir) < 40

    final = subprocess.run(cli(run_dir), check=True, capture_output=True, text=True)
    written, skipped = map(int, re.search(r"(\d+) images written, (\d+) skipped", final.stdout).groups())
    assert written + skipped == 40 and skipped >= 21
    assert_same_files(run_dir, reference)
    assert [p for p in os.listdir(run_dir) if files.is_temporary(p)] == []
