"""Shard formats at work: resume after kill -9, jobs by shard, merge, a third party's writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_plugins import FAST, plugin_manager

import ailusion
from ailusion import hookimpl
from ailusion.rundir import shards
from ailusion.rundir.merge import merge
from ailusion.rundir.shards import ShardWriter

TESTS = Path(__file__).parent
PROMPTS = "prompts=[" + ",".join(f"p{i}" for i in range(7)) + ",black]"  # 8 images, one flagged
SUFFIX = {"webdataset": ".tar", "parquet": ".parquet"}


def overrides(fmt, *more):
    return [*FAST, PROMPTS, "model.batch_size=2", f"output.format={fmt}", "output.shard_size=3",
            *more]


def run(run_dir, fmt, *more, pm=None):
    return ailusion.run(overrides(fmt, *more), run_dir=run_dir, pm=pm or plugin_manager())


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run dir, but Hydra's, the lock, and the seconds in the shards' stats."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        name = str(path.relative_to(run_dir))
        if not path.is_file() or ".hydra" in path.parts or path.name == ".ailusion.lock":
            continue
        data = path.read_bytes()
        if path.name.endswith("_stats.json"):
            stats = json.loads(data)
            assert stats.pop("seconds") >= 0
            data = json.dumps(stats).encode()
        out[name] = data
    return out


KILLER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from fake_plugins import plugin_manager
import ailusion
from ailusion import hookimpl
from ailusion.rundir import files

class Killer:
    @hookimpl
    def image_written(self, record, run_dir):
        if {at!r} == record["index"]:
            os.kill(os.getpid(), signal.SIGKILL)

real = files.write_json
def write_json(path, value):
    if path.name == {at!r}:  # between a shard's rename and its stats
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, value)
files.write_json = write_json

pm = plugin_manager()
pm.register(Killer())
ailusion.run({overrides!r}, run_dir={run_dir!r}, pm=pm)
"""


def kill_at(run_dir: Path, fmt: str, at, *more) -> None:
    """Run in a child process and SIGKILL it once image ``at`` is written, or just before it
    writes the file named ``at``."""
    script = KILLER.format(tests=str(TESTS), at=at, overrides=overrides(fmt, *more),
                           run_dir=str(run_dir))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    for fmt in SUFFIX:
        run(root / fmt, fmt)
    return root


@pytest.mark.parametrize("fmt", sorted(SUFFIX))
@pytest.mark.parametrize("at, kept", [
    (6, 6),  # at a shard boundary: shards 00000 and 00001 complete
    (5, 3),  # mid-shard: 00001 open, with two of its three images in its temporary file
    ("00001_stats.json", 3),  # between renaming 00001 into place and writing its stats
])
def test_killed_run_resumes_byte_identical(fmt, at, kept, tmp_path, references):
    run_dir = tmp_path / "run"
    kill_at(run_dir, fmt, at)
    complete_before = {n: (run_dir / shards.shard_name(n, SUFFIX[fmt])).stat().st_mtime_ns
                       for n in range(kept // 3)}
    result = run(run_dir, fmt)
    assert (result.summary["skipped"], result.summary["written"]) == (kept, 8 - kept)
    for n, mtime in complete_before.items():  # a complete shard is never written again
        assert (run_dir / shards.shard_name(n, SUFFIX[fmt])).stat().st_mtime_ns == mtime
    got, want = snapshot(run_dir), snapshot(references / fmt)
    assert sorted(got) == sorted(want)
    assert [name for name in want if got[name] != want[name]] == []


@pytest.mark.parametrize("at, kept", [(3, 3), (7, 4)])  # at a chunk boundary, mid-chunk
def test_a_killed_job_of_a_big_imagefolder_run_resumes_byte_identical(at, kept, tmp_path):
    # chunks of 3 images: job 0 makes chunks 0 and 2, images 1-3 and 7-8
    big = ("output.subdirs_above=2", "shard=0", "num_shards=2")
    run(tmp_path / "reference", "imagefolder", *big)
    kill_at(tmp_path / "run", "imagefolder", at, *big)
    result = run(tmp_path / "run", "imagefolder", *big)
    assert (result.summary["skipped"], result.summary["written"]) == (kept, 5 - kept)
    got, want = snapshot(tmp_path / "run"), snapshot(tmp_path / "reference")
    assert "preprocessed/00002.npy" in want and "preprocessed/00001.npy" not in want
    assert sorted(got) == sorted(want)
    assert [name for name in want if got[name] != want[name]] == []


def test_a_rerun_of_a_complete_run_writes_nothing(tmp_path):
    run(tmp_path / "run", "webdataset")
    before = snapshot(tmp_path / "run")
    again = run(tmp_path / "run", "webdataset")
    assert (again.summary["written"], again.summary["skipped"]) == (0, 8)
    assert snapshot(tmp_path / "run") == before


def test_a_shard_that_lost_its_file_is_written_again(tmp_path, references):
    run(tmp_path / "run", "parquet")
    (tmp_path / "run" / "00001.parquet").write_bytes(b"truncated")
    again = run(tmp_path / "run", "parquet")
    assert (again.summary["written"], again.summary["skipped"]) == (3, 5)
    assert snapshot(tmp_path / "run") == snapshot(references / "parquet")


def flip_one_byte(path: Path) -> None:
    """Change one byte in the middle of ``path``: the size stays, the content does not."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", sorted(SUFFIX))
def test_a_complete_shard_with_one_byte_changed_is_detected_and_written_again(
        fmt, tmp_path, references):
    run(tmp_path / "run", fmt)
    shard = tmp_path / "run" / shards.shard_name(1, SUFFIX[fmt])
    flip_one_byte(shard)
    with pytest.warns(UserWarning, match=rf"{shard.name}: differs from the shard written "
                                         r"\(sha256 .*; it is written again") as caught:
        again = run(tmp_path / "run", fmt)
    assert len([w for w in caught if "differs" in str(w.message)]) == 1
    assert (again.summary["written"], again.summary["skipped"]) == (3, 5)
    assert snapshot(tmp_path / "run") == snapshot(references / fmt)


def test_a_rerun_keeps_what_it_skips_as_ranges_not_one_number_per_image(tmp_path):
    from types import SimpleNamespace

    from ailusion.planning import Plan, per_prompt
    from ailusion.plugins.output.webdataset import WebDatasetWriter
    from ailusion.stages import Prompt

    run(tmp_path / "run", "webdataset")
    config = SimpleNamespace(shard_size=3, format="webdataset")
    writer = WebDatasetWriter(config, SimpleNamespace(run_dir=tmp_path / "run", config={}))
    plan, calls = per_prompt([Prompt("p")] * 8, 1), []
    counting = Plan(len(plan), lambda index: calls.append(index) or plan.request(index))
    done, kept = writer.complete(shards.job_requests(counting, 0, 1, 3))
    assert done == {} and len(kept) == 8 and 8 in kept and 9 not in kept and 0 not in kept
    assert kept.ranges() == [range(1, 9)]  # one range for the eight complete images
    assert calls == []  # counted from the plan's numbers: no request is made


def test_ranges_hold_numbers_added_in_order():
    kept = shards.Ranges()
    for index in (1, 2, 3, 7, 8, 20):
        kept.add(index)
    assert kept.ranges() == [range(1, 4), range(7, 9), range(20, 21)] and len(kept) == 6
    assert [i for i in range(0, 22) if i in kept] == [1, 2, 3, 7, 8, 20]
    with pytest.raises(ValueError):
        kept.add(5)


@pytest.mark.parametrize("fmt", sorted(SUFFIX))
def test_two_jobs_write_disjoint_whole_shards_that_merge_into_the_run(fmt, tmp_path, references):
    jobs = [tmp_path / f"job{k}" for k in range(2)]
    for k, job in enumerate(jobs):
        run(job, fmt, f"shard={k}", "num_shards=2")
    suffix = SUFFIX[fmt]
    names = [sorted(p.name for p in job.glob("*" + suffix)) for job in jobs]
    assert names == [["00000" + suffix, "00002" + suffix], ["00001" + suffix]]
    for job, shard_names in zip(jobs, names):
        for name in shard_names:  # each job's shards are the unsharded run's, byte for byte
            assert (job / name).read_bytes() == (references / fmt / name).read_bytes()

    merged = merge(tmp_path / "merged", jobs)
    for name in ("00000", "00001", "00002"):
        target = merged / (name + suffix)
        assert os.stat(target).st_ino == os.stat(next(j for j in jobs if (j / target.name).exists())
                                                 / target.name).st_ino  # linked, not copied
    index = json.loads((merged / "shards.json").read_text())
    assert [s["shard"] for s in index["shards"]] == [f"0000{n}{suffix}" for n in range(3)]
    assert [s["source"] for s in index["shards"]] == [
        f"../job0/00000{suffix}", f"../job1/00001{suffix}", f"../job0/00002{suffix}"]
    stats = json.loads((merged / "_stats.json").read_text())
    assert (stats["shards"], stats["count"], stats["flagged"]) == (3, 8, 1)
    assert json.loads((merged / "info.json").read_text())["planned"] == 8


@pytest.mark.parametrize("fmt", sorted(SUFFIX))
def test_a_merged_dir_is_the_run_dir_of_the_unsharded_run_and_resumes_as_one(
        fmt, tmp_path, references):
    jobs = [tmp_path / f"job{k}" for k in range(2)]
    for k, job in enumerate(jobs):
        run(job, fmt, f"shard={k}", "num_shards=2")
    merged = merge(tmp_path / "merged", jobs)
    record = json.loads((merged / ".ailusion.json").read_text())
    whole = json.loads((references / fmt / ".ailusion.json").read_text())
    assert record["config"] == whole["config"]  # shard=0 num_shards=1, written once
    assert (record["plan_sha256"], record["prompts_sha256"]) == \
        (whole["plan_sha256"], whole["prompts_sha256"])
    before = snapshot(merged)
    again = run(merged, fmt)  # the same config resumes into it: nothing is made
    assert (again.summary["written"], again.summary["skipped"]) == (0, 8)
    after = snapshot(merged)
    assert {k: v for k, v in after.items() if k != ".ailusion.json"} == \
        {k: v for k, v in before.items() if k != ".ailusion.json"}
    with pytest.raises(ailusion.errors.AilusionError, match="holds a run of another config"):
        run(merged, fmt, "preprocessor.size=4")


def test_training_reads_a_merged_dir_of_a_shard_format(tmp_path):
    from labelled_data import class_folder

    from ailusion.manager import get_plugin_manager
    from ailusion.training.data import open_reader

    folder = class_folder(tmp_path / "shapes", ("circle", "square"), 4)
    common = ["generator=folder", f"generator.path={folder}", "preprocessor.size=8",
              "model.backend=torch", "progress=false", "output.shard_size=3",
              "output.format=parquet", "num_shards=2"]
    jobs = [tmp_path / f"job{k}" for k in range(2)]
    for k, job in enumerate(jobs):
        ailusion.run([*common, f"shard={k}"], run_dir=job)
    merged = merge(tmp_path / "merged", jobs)
    ailusion.run(common[:-2], run_dir=tmp_path / "whole")
    pm = get_plugin_manager()
    got, want = open_reader(merged, pm), open_reader(tmp_path / "whole", pm)
    assert got.classes == want.classes == ["circle", "square"]
    np.testing.assert_array_equal(np.sort(got.numbers), np.sort(want.numbers))
    x, y = got.batch(np.arange(len(got)))
    wx, wy = want.batch(np.searchsorted(want.numbers, got.numbers))
    np.testing.assert_array_equal(x, wx)
    np.testing.assert_array_equal(y, wy)


def test_merge_refuses_jobs_of_other_settings_in_one_line(tmp_path, capsys):
    from ailusion.rundir.merge import merge_command

    run(tmp_path / "a", "webdataset", "shard=0", "num_shards=2")
    run(tmp_path / "b", "webdataset", "shard=1", "num_shards=2", "preprocessor.size=4")
    assert merge_command([str(tmp_path / "out"), str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert err == (f"ailusion merge: error: {tmp_path / 'b'} was made with another config than "
                   f"{tmp_path / 'a'} (only shard may differ)\n")
    assert not (tmp_path / "out").exists()


def test_merge_refuses_a_shard_twice(tmp_path):
    run(tmp_path / "a", "webdataset", "shard=0", "num_shards=2")
    run(tmp_path / "b", "webdataset", "shard=0", "num_shards=2")
    with pytest.raises(ailusion.errors.AilusionError, match="shard 00000 is in both"):
        merge(tmp_path / "out", [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "out").exists()


def test_merge_refuses_a_shard_whose_file_is_not_what_its_stats_say(tmp_path):
    for k in range(2):
        run(tmp_path / f"job{k}", "webdataset", f"shard={k}", "num_shards=2")
    (tmp_path / "job1" / "00001.tar").write_bytes(b"short")
    with pytest.raises(ailusion.errors.AilusionError, match="00001.tar: missing or not the size"):
        merge(tmp_path / "out", [tmp_path / "job0", tmp_path / "job1"])


def test_merge_refuses_a_shard_with_one_byte_changed(tmp_path):
    for k in range(2):
        run(tmp_path / f"job{k}", "webdataset", f"shard={k}", "num_shards=2")
    flip_one_byte(tmp_path / "job1" / "00001.tar")
    with pytest.raises(ailusion.errors.AilusionError,
                       match=r"00001.tar: differs from the shard written \(sha256 .*; run that "
                             "job again"):
        merge(tmp_path / "out", [tmp_path / "job0", tmp_path / "job1"])
    assert not (tmp_path / "out").exists()


# --- a third party's format ------------------------------------------------------------------


class LinesWriter(ShardWriter):
    """Format ``lines``: a shard is a text file, one JSON line per image."""

    suffix = ".jsonl"

    def names(self, index):
        return {}

    def open_shard(self, path, info):
        self._file = open(path, "w", encoding="utf-8")

    def write_sample(self, sample):
        self._file.write(json.dumps({"index": sample.index, "png_bytes": len(sample.encoded["png"]),
                                     "prompt": sample.row["prompt"]}) + "\n")

    def close_shard(self):
        self._file.close()


class LinesPlugin:
    @hookimpl
    def register_writers(self):
        return {"lines": LinesWriter}


def test_a_third_party_writer_registers_and_runs(tmp_path):
    pm = plugin_manager()
    pm.register(LinesPlugin(), name="lines-plugin")
    result = run(tmp_path / "run", "lines", pm=pm)
    assert result.summary["written"] == 8
    shard = [json.loads(line) for line in (tmp_path / "run" / "00002.jsonl").read_text().splitlines()]
    assert [(row["index"], row["prompt"]) for row in shard] == [(7, "p6"), (8, "black")]
    assert all(row["png_bytes"] > 100 for row in shard)
    assert json.loads((tmp_path / "run" / "00002_stats.json").read_text())["flagged"] == 1
    with pytest.raises(ailusion.errors.AilusionError, match=r"installed: imagefolder, lines, "):
        run(tmp_path / "other", "nope", pm=pm)


def test_plan_estimates_the_shard_formats_files_and_disk():
    from ailusion.dryrun import Layout
    from ailusion.plugins.output import estimate_output

    layout = Layout(images=10_000_000, total_images=10_000_000, num_shards=1,
                    image_size=(512, 512), array_shape=(3, 224, 224), array_itemsize=4,
                    num_outputs=10, prompt_chars=40, shard_size=5000)
    estimates = estimate_output(layout)
    assert estimates["webdataset"]["shards"] == estimates["parquet"]["shards"] == 2000
    assert estimates["parquet"]["files"] == 6001  # shards, stats, sheets, info.json
    array = 3 * 224 * 224 * 4
    assert array < estimates["parquet"]["per_image"] < estimates["webdataset"]["per_image"]


def test_a_shard_formats_images_are_named_by_shard_and_key(tmp_path, capsys):
    from ailusion.report import print_predictions

    result = run(tmp_path / "run", "parquet")
    assert result.image_paths == []  # no file per image
    assert result.names[:4] == ["00000.parquet:00000001", "00000.parquet:00000002",
                                "00000.parquet:00000003", "00001.parquet:00000004"]
    print_predictions(result)
    assert "00002.parquet:00000008" in capsys.readouterr().out
