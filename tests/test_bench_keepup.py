"""The keep-up benchmark's paced generator (bench/keepup.py) runs through the real pipeline."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "keepup.py"


@pytest.fixture(scope="module")
def keepup():
    # Imported by name from bench/, as bench/run.py does: the processes that
    # stage_costs_all_cores starts find its functions by that name.
    sys.path.insert(0, str(BENCH.parent))
    try:
        yield importlib.import_module("keepup")
    finally:
        sys.path.remove(str(BENCH.parent))
        sys.modules.pop("keepup", None)


def test_photos_are_distinct_512_rgb(keepup):
    images = keepup.photos(12)
    assert {image.size for image in images} == {(512, 512)}
    assert {image.mode for image in images} == {"RGB"}
    assert len({image.tobytes() for image in images}) == 12


def test_paced_generator_never_runs_ahead_of_its_rate(keepup):
    config = type("C", (), {"rate": 50, "count": 5})()
    generator = keepup.PacedGenerator(config)
    requests = generator.plan([])
    started = time.perf_counter()
    yielded = [g.request.index for g in generator.generate(requests)]
    assert yielded == [1, 2, 3, 4, 5]
    assert time.perf_counter() - started >= 5 / 50


@pytest.mark.slow
def test_keep_up_runs_the_pipeline_on_paced_images(keepup, tmp_path):
    rate = keepup.keep_up(0, 10, tmp_path)
    assert rate > 0
    rows = [json.loads(line) for line in (tmp_path / "keepup" / "metadata.jsonl").open()]
    assert [row["index"] for row in rows] == list(range(1, 11))
    assert {(row["height"], row["width"]) for row in rows} == {(512, 512)}


@pytest.mark.slow
def test_stage_costs_measure_every_stage_of_the_limit(keepup):
    costs = keepup.stage_costs(repeats=1)
    assert list(costs) == ["PNG 512²", "PNG 224²", "preprocess", "forward (batch 8)",
                           "write + sha256 of both", "npy row + sha256", "manifest row"]
    assert all(0 < cost < 1 for cost in costs.values())


@pytest.mark.slow
def test_stage_costs_with_every_core_busy_time_the_same_stages(keepup):
    single = keepup.stage_costs(repeats=1)
    busy = keepup.stage_costs_all_cores(repeats=1)
    assert list(busy) == list(single)
    assert all(0 < cost < 1 for cost in busy.values())
