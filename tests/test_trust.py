"""Nothing read from a run dir is trusted: paths, records and files are checked where they are read.

The ``SCENARIOS`` here are rows of docs/errors.md (``tests/test_errors.py`` runs them and checks
their one-line messages); the tests below check what else must hold: nothing is written outside
the dirs, and resume redoes what was changed by hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from fake_plugins import FAST, plugin_manager

import ailusion
from ailusion.rundir import claim, manifest, records
from ailusion.errors import AilusionError
from ailusion.rundir.merge import merge, merge_command

PROMPTS = "prompts=[a,b,c,d,e]"


def make_shards(root: Path, *overrides: str) -> list[Path]:
    dirs = [root / "shard0", root / "shard1"]
    for shard, run_dir in enumerate(dirs):
        ailusion.run([*FAST, PROMPTS, "num_shards=2", f"shard={shard}", *overrides],
                     run_dir=run_dir, pm=plugin_manager())
    return dirs


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / manifest.MANIFEST).read_text().splitlines()]


def edit_row(run_dir: Path, position: int, reseal: bool = True, **changes) -> None:
    """Change row ``position`` (0-based) of the manifest; ``reseal`` as a careful forger would."""
    edited = rows(run_dir)
    edited[position].update(changes)
    if reseal:
        edited[position] = records.seal(edited[position])
    (run_dir / manifest.MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in edited))


# --- the scenarios of docs/errors.md --------------------------------------------------------


def _merge_path_escapes(root, _):
    shards = make_shards(root)
    edit_row(shards[1], 0, preprocessed_file_name="../../victim.txt")
    merge(root / "merged", shards)


def _merge_absolute_path(root, _):
    shards = make_shards(root)
    edit_row(shards[0], 0, file_name=str(shards[1] / "generated_image_2.png"))
    merge(root / "merged", shards)


def _merge_symlink_escapes(root, _):
    shards = make_shards(root)
    (root / "secret.png").write_bytes((shards[0] / "generated_image_1.png").read_bytes())
    (shards[0] / "generated_image_1.png").unlink()
    (shards[0] / "generated_image_1.png").symlink_to(root / "secret.png")
    merge(root / "merged", shards)


def _merge_file_replaced(root, _):
    shards = make_shards(root)
    shutil.copy(shards[0] / "generated_image_1.png", shards[0] / "generated_image_3.png")
    merge(root / "merged", shards)


def _merge_row_edited(root, _):
    shards = make_shards(root)
    edit_row(shards[0], 0, reseal=False, prompt="a forged prompt", seed=12345)
    merge(root / "merged", shards)


def _merge_row_forged(root, _):
    shards = make_shards(root)
    edit_row(shards[0], 1, prompt="a forged prompt")  # resealed: the run's plan still shows it
    merge(root / "merged", shards)


def _merge_other_prompts(root, _):
    prompts = root / "prompts.txt"
    prompts.parent.mkdir(parents=True, exist_ok=True)
    prompts.write_text("a\nb\nc\nd\n")
    first = make_shards(root, f"prompts_file={prompts}")
    prompts.write_text("a\nb\nc\nX\n")  # the same path, other text, before the second shard
    shutil.rmtree(first[1])
    make_shards(root / "again", f"prompts_file={prompts}")
    shutil.move(root / "again" / "shard1", first[1])
    shutil.rmtree(root / "again")
    merge(root / "merged", first)


def _merge_empty_record(root, _):
    shards = make_shards(root)
    (shards[0] / claim.RUN_FILE).write_text("{}")
    merge(root / "merged", shards)


def _merge_predictions_without_keys(root, _):
    shards = make_shards(root)
    (shards[1] / "predictions.json").write_text('{"images": []}')
    merge(root / "merged", shards)


def _resume_truncated_record(root, _):
    job = root / "job"
    ailusion.run([*FAST, PROMPTS], run_dir=job, pm=plugin_manager())
    text = (job / claim.RUN_FILE).read_text()
    (job / claim.RUN_FILE).write_text(text[: len(text) // 2])
    ailusion.run([*FAST, PROMPTS], run_dir=job, pm=plugin_manager())


def _resume_path_escapes(root, _):
    job = root / "job"
    ailusion.run([*FAST, PROMPTS], run_dir=job, pm=plugin_manager())
    edit_row(job, 1, file_name="/etc/passwd")
    ailusion.run([*FAST, PROMPTS], run_dir=job, pm=plugin_manager())


def _prompts_file(root, name: str, content: str):
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(content, encoding="utf-8")
    ailusion.run([*FAST, f"prompts_file={root / name}"], run_dir=root / "job", pm=plugin_manager())


def _merge_array_replaced(root, _):
    import numpy as np

    shards = make_shards(root)
    arrays = np.load(shards[1] / "preprocessed.npy")
    np.save(shards[1] / "preprocessed.npy", arrays[::-1])  # same shape, rows swapped
    merge(root / "merged", shards)


SCENARIOS = {
    "merge-array-replaced": _merge_array_replaced,
    "prompts-seed-range": lambda root, _: _prompts_file(
        root, "p.jsonl", '{"prompt": "a"}\n{"prompt": "b", "seed": 18446744073709551616}\n'),
    "prompts-unknown-key": lambda root, _: _prompts_file(
        root, "p.jsonl", '{"prompt": "a", "negative": "b"}\n'),
    "prompts-csv-cells": lambda root, _: _prompts_file(root, "p.csv", "prompt\na,b\n"),
    "prompts-csv-quote": lambda root, _: _prompts_file(root, "p.csv", 'prompt\n"a cat\n'),
    "merge-path-escapes": _merge_path_escapes,
    "merge-absolute-path": _merge_absolute_path,
    "merge-symlink-escapes": _merge_symlink_escapes,
    "merge-file-replaced": _merge_file_replaced,
    "merge-row-edited": _merge_row_edited,
    "merge-row-forged": _merge_row_forged,
    "merge-other-prompts": _merge_other_prompts,
    "merge-empty-record": _merge_empty_record,
    "merge-predictions-without-keys": _merge_predictions_without_keys,
    "resume-truncated-record": _resume_truncated_record,
    "resume-path-escapes": _resume_path_escapes,
}


# --- what else holds ------------------------------------------------------------------------


@pytest.mark.parametrize("key", [k for k in SCENARIOS if k.startswith("merge-")])
def test_a_refused_merge_writes_nothing_anywhere(key, tmp_path):
    root = tmp_path / "work" / "a"  # ../../victim.txt from root/merged is work/victim.txt
    root.mkdir(parents=True)
    (tmp_path / "work" / "victim.txt").write_text("mine")
    with pytest.raises(AilusionError):
        SCENARIOS[key](root, None)
    assert not (root / "merged").exists()
    assert (tmp_path / "work" / "victim.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["a", "victim.txt"]
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("value", [
    "../x.png", "a/../../x.png", "/abs/x.png", "", ".", "./x.png", "a//x.png", "x.png/",
    "..\\x.png", "C:\\x.png", None, 3, ["x.png"], "x\x00.png",
])
def test_unsafe_paths_are_refused_naming_the_file_and_field(value, tmp_path):
    with pytest.raises(records.UnsafePathError, match=r"^META:3: file_name "):
        records.safe_path(tmp_path, value, "META:3", "file_name")


def test_plain_relative_paths_inside_are_accepted(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "inside").symlink_to(tmp_path / "sub")
    assert records.safe_path(tmp_path, "x.png", "m", "f") == tmp_path / "x.png"
    assert records.safe_path(tmp_path, "inside/x.png", "m", "f") == tmp_path / "inside" / "x.png"
    (tmp_path / "out").symlink_to(tmp_path.parent)
    with pytest.raises(records.UnsafePathError, match="leads outside its dir"):
        records.safe_path(tmp_path, "out/x.png", "m", "f")


@pytest.mark.parametrize("record, detail", [
    ({}, "config should be an object, is missing"),
    ([], "the record should be an object, is list []"),
    ({"config": {}, "plan_sha256": "nope"}, "plan_sha256 is not a sha256 digest"),
    ({"config": {}, "plan_sha256": "0" * 64, "requests_sha256": "x"},
     "requests_sha256 is not a sha256 digest"),
    ({"config": 3, "plan_sha256": "0" * 64}, "config should be an object, is int 3"),
])
def test_malformed_run_records_are_corrupt(record, detail, tmp_path):
    with pytest.raises(records.CorruptError, match=f"^REC: corrupt \\({re.escape(detail)}\\); delete"):
        records.check_run_record(record, "REC")


@pytest.mark.parametrize("row, detail", [
    ({"file_name": "x.png"}, "index should be an integer, is missing"),
    ({"index": True, "file_name": "x.png"}, "index should be an integer, is bool True"),
    ({"index": 0, "file_name": "x.png"}, "index should be at least 1, is 0"),
    ({"index": 1, "file_name": "x.png", "seed": "7"}, "seed should be an integer or null"),
    ({"index": 1, "file_name": "x.png", "file_sha256": "abc"}, "file_sha256 is not a sha256"),
    ("[1]", "the row should be an object"),
])
def test_malformed_rows_are_corrupt(row, detail, tmp_path):
    with pytest.raises(records.CorruptError, match=f"^M:2: corrupt \\({re.escape(detail)}"):
        records.check_row(row, tmp_path, "M:2", "fix it")


def test_merge_command_says_corrupt_in_one_line(tmp_path, capsys):
    shards = make_shards(tmp_path)
    (shards[0] / claim.RUN_FILE).write_text('{"config": {"generat')
    assert merge_command([str(tmp_path / "m"), *map(str, shards)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/shard0/.ailusion.json: corrupt (not valid JSON" in err


def test_rows_record_the_sha256_of_their_files_and_are_sealed(tmp_path):
    ailusion.run([*FAST, PROMPTS], run_dir=tmp_path / "run", pm=plugin_manager())
    for row in rows(tmp_path / "run"):
        assert records.is_sealed(row)
        assert row["file_sha256"] == records.sha256_file(tmp_path / "run" / row["file_name"])
        assert row["preprocessed_file_sha256"] == records.sha256_file(
            tmp_path / "run" / row["preprocessed_file_name"])


def test_prompts_count_by_content_not_path(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one\ntwo\n")
    b.write_text("one\ntwo\n")
    run_dir = tmp_path / "run"
    ailusion.run([*FAST, f"prompts_file={a}"], run_dir=run_dir, pm=plugin_manager())
    moved = ailusion.run([*FAST, f"prompts_file={b}"], run_dir=run_dir, pm=plugin_manager())
    assert moved.summary["skipped"] == 2  # the same text elsewhere is the same run
    record = json.loads((run_dir / claim.RUN_FILE).read_text())
    assert "prompts_file" not in record["config"]
    assert record["prompts_sha256"] == records.sha256_file(a)


def test_resume_redoes_an_image_whose_row_was_edited(tmp_path, recwarn):
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    ailusion.run([*FAST, PROMPTS], run_dir=reference, pm=plugin_manager())
    ailusion.run([*FAST, PROMPTS], run_dir=run_dir, pm=plugin_manager())
    edit_row(run_dir, 1, reseal=False, prompt="edited", seed=99)  # image 2, not resealed
    edit_row(run_dir, 3, seed=99)  # image 4, resealed: its seed is not what the run plans
    shutil.copy(run_dir / "generated_image_1.png", run_dir / "generated_image_5.png")
    again = ailusion.run([*FAST, PROMPTS], run_dir=run_dir, pm=plugin_manager())
    assert (again.summary["written"], again.summary["skipped"]) == (3, 2)
    said = " ".join(str(w.message) for w in recwarn)
    assert "image 2: its row was changed after it was written" in said
    assert "image 4: its row's seed is 99, the run plans" in said
    assert "image 5: generated_image_5.png differs from the file written" in said
    assert rows(run_dir) == rows(reference)
    for name in ("generated_image_2.png", "generated_image_5.png"):
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes()


def test_resume_refuses_a_symlinked_lock_and_changes_nothing(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / claim.LOCK_FILE).symlink_to(victim)
    with pytest.raises(records.UnsafePathError, match="is a symlink"):
        ailusion.run([*FAST, PROMPTS], run_dir=run_dir, pm=plugin_manager())
    assert victim.read_text() == "mine"


def test_merged_dir_keeps_the_hashes_and_resumes(tmp_path):
    merged = merge(tmp_path / "merged", make_shards(tmp_path))
    assert all(records.is_sealed(r) and r["file_sha256"] for r in rows(merged))
    again = ailusion.run([*FAST, PROMPTS], run_dir=merged, pm=plugin_manager())
    assert again.summary["skipped"] == 5
    assert os.listdir(tmp_path / "merged")



def test_planted_links_in_a_run_dir_write_nothing_outside(tmp_path):
    run_dir, outside = tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    ailusion.run([*FAST, PROMPTS], run_dir=run_dir, pm=plugin_manager())
    (run_dir / "generated_image_2.png").unlink()  # so that the resumed run writes
    (run_dir / ".preprocessed.npy.tmp").symlink_to(outside / "planted.npy")  # dangling
    (run_dir / ".generated_image_2.png.0123456789abcdef.tmp").symlink_to(outside / "planted.png")
    again = ailusion.run([*FAST, PROMPTS], run_dir=run_dir, pm=plugin_manager())
    assert again.summary["written"] == 1
    assert os.listdir(outside) == []
    assert not any(p.is_symlink() for p in run_dir.iterdir())
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / ".hydra").symlink_to(outside, target_is_directory=True)
    with pytest.raises(records.UnsafePathError, match=r"\.hydra: is a symlink"):
        ailusion.run([*FAST, PROMPTS], run_dir=run_dir, pm=plugin_manager())
    assert os.listdir(outside) == []


def test_merge_refuses_arrays_and_numbers_that_would_exhaust_memory(tmp_path):
    import numpy as np

    shards = make_shards(tmp_path)
    with open(shards[0] / "predictions.npy", "wb") as f:  # a header declaring 10**11 rows
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (10**11, 10)})
    record = json.loads((shards[0] / claim.RUN_FILE).read_text())  # a careful forger's record
    record["files_sha256"]["predictions.npy"] = records.sha256_file(shards[0] / "predictions.npy")
    (shards[0] / claim.RUN_FILE).write_text(json.dumps(record))
    with pytest.raises(records.CorruptError, match="predictions.npy: corrupt"):
        merge(tmp_path / "m1", shards)
    shards = make_shards(tmp_path / "again")
    edited = rows(shards[1])
    edited[-1] = records.seal({**edited[-1], "index": 10**15})
    (shards[1] / manifest.MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in edited))
    record = json.loads((shards[1] / claim.RUN_FILE).read_text())
    record["requests_sha256"] = claim.requests_digest([claim.request_of(r) for r in edited])
    (shards[1] / claim.RUN_FILE).write_text(json.dumps(record))
    with pytest.raises(AilusionError, match="image 5 is in none of the shards"):
        merge(tmp_path / "m2", shards)
