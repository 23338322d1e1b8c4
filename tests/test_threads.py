"""An image is the same whatever the number of shards: the generator's CPU thread count, which
changes the last bits of CPU images, is fixed per job (not taken from OMP_NUM_THREADS, which
launchers lower per job) and recorded in each image's row."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ailusion.threads import cores

RUN = ["generator=tiny", "prompts=[a red cube,a blue ball,a green tree]",
       "generator.num_images_per_prompt=3", "progress=false"]


def run(run_dir, *overrides, omp=None):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp is not None:
        env["OMP_NUM_THREADS"] = str(omp)  # what joblib's loky sets in each worker
    code = f"import ailusion; ailusion.run({[*RUN, *overrides]!r}, run_dir={str(run_dir)!r})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    rows = [json.loads(line) for line in (run_dir / "metadata.jsonl").read_text().splitlines()]
    return {row["index"]: row for row in rows}


@pytest.mark.slow
@pytest.mark.skipif(cores() < 2, reason="one core: every job runs one thread anyway")
def test_shards_under_a_launchers_thread_limit_make_the_images_of_one_run(tmp_path):
    whole = run(tmp_path / "whole")
    shards = {}
    for shard in (0, 1):
        shards |= run(tmp_path / f"shard{shard}", f"shard={shard}", "num_shards=2", omp=1)
    assert sorted(shards) == sorted(whole) == list(range(1, 10))
    for index, row in whole.items():
        shard = tmp_path / f"shard{(index - 1) // 5}"  # job 0 makes images 1-5, job 1 6-9
        assert row["threads"] == shards[index]["threads"] == cores()
        assert (shard / row["file_name"]).read_bytes() == \
            (tmp_path / "whole" / row["file_name"]).read_bytes(), f"image {index} differs"


def test_the_thread_count_is_the_configured_one_and_recorded(tmp_path):
    rows = run(tmp_path / "one", "generator.threads=1", "generator.num_images_per_prompt=1")
    assert {row["threads"] for row in rows.values()} == {1}
