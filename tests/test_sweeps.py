"""Sweeps, shards, merging and launchers: what a Hydra user does with ailusion at scale."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image

import ailusion
from ailusion import devices
from ailusion.errors import AilusionError
from ailusion.rundir.merge import merge

TINY = ["generator=tiny", "generator.height=32", "generator.width=32", "progress=false"]
FIVE = "prompts=[a fox,a boat,a tree,a lamp,a cake]"


def ailusion_cli(*args, **kwargs):
    return subprocess.run(["ailusion", *args], capture_output=True, text=True, **kwargs)


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image)


def manifest(run_dir):
    return [json.loads(line) for line in (run_dir / "metadata.jsonl").read_text().splitlines()]


def assert_same_dataset(a, b):
    """Two run dirs hold the same images, arrays, predictions and manifest. Logits may differ in
    the last float bits: a forward pass on a batch of 2 rounds differently from one on 5."""
    rows_a, rows_b = manifest(a), manifest(b)
    assert [row["index"] for row in rows_a] == [row["index"] for row in rows_b]
    for row_a, row_b in zip(rows_a, rows_b):
        exact = lambda row: {k: v for k, v in row.items() if k not in ("logits", "probability", "row_sha256")}
        assert exact(row_a) == exact(row_b)
        np.testing.assert_allclose(row_a["logits"], row_b["logits"], rtol=1e-4, atol=1e-5)
        for key in ("file_name", "preprocessed_file_name"):
            np.testing.assert_array_equal(pixels(a / row_a[key]), pixels(b / row_b[key]))
    np.testing.assert_array_equal(np.load(a / "preprocessed.npy"), np.load(b / "preprocessed.npy"))
    np.testing.assert_allclose(
        np.load(a / "predictions.npy"), np.load(b / "predictions.npy"), rtol=1e-4, atol=1e-5
    )
    index = "preprocessed_index.json"
    assert json.loads((a / index).read_text()) == json.loads((b / index).read_text())


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """Five images made once unsharded and once as two shards (in-process)."""
    root = tmp_path_factory.mktemp("sharded")
    ailusion.run([*TINY, FIVE], run_dir=root / "whole")
    for shard in range(2):
        ailusion.run(
            [*TINY, FIVE, f"shard={shard}", "num_shards=2", "gpu_per_job=true"],
            run_dir=root / f"shard{shard}",
        )
    return root


def shard_dirs(root, count=2):
    return [root / f"shard{i}" for i in range(count)]


# --- Sweeps ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_gives_one_complete_job_dir_per_combination(tmp_path):
    out = ailusion_cli(
        "-m", *TINY, "prompts=[a lighthouse]", "generator.seed=1,2",
        "preprocessor.grayscale=true,false", f"hydra.sweep.dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        seed, gray = config.generator.seed, config.preprocessor.grayscale
        seen.add((seed, gray))
        [row] = manifest(job)
        assert row["seed"] == seed and (job / row["file_name"]).is_file()
        assert np.load(job / "preprocessed.npy").shape == (1, 1 if gray else 3, 224, 224)
        assert np.load(job / "predictions.npy").shape == (1, 10)
    assert seen == {(1, True), (1, False), (2, True), (2, False)}
    # The same seed gives the same generated image, whatever the preprocessing.
    by_seed = {}
    for job in jobs:
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        by_seed.setdefault(config.generator.seed, []).append(pixels(job / "generated_image_1.png"))
    for images in by_seed.values():
        np.testing.assert_array_equal(images[0], images[1])


# --- Shards and merge --------------------------------------------------------------------------


def test_shards_cover_every_image_once_with_the_pixels_of_an_unsharded_run(sharded):
    indices = [sorted(row["index"] for row in manifest(d)) for d in shard_dirs(sharded)]
    assert indices == [[1, 2, 3], [4, 5]]  # one range of consecutive images per job
    for shard_dir in shard_dirs(sharded):
        for image in shard_dir.glob("generated_image_*.png"):
            np.testing.assert_array_equal(pixels(image), pixels(sharded / "whole" / image.name))


def test_merge_of_the_shards_is_the_unsharded_run(sharded, tmp_path):
    merged = merge(tmp_path / "merged", shard_dirs(sharded))
    assert_same_dataset(merged, sharded / "whole")
    config = OmegaConf.load(merged / ".hydra" / "config.yaml")
    assert (config.shard, config.num_shards) == (0, 1)
    # The unsharded run into the merged dir finds every image done.
    resumed = ailusion.run([*TINY, FIVE, "gpu_per_job=true"], run_dir=merged)
    assert resumed.summary["skipped"] == 5 and resumed.summary["written"] == 0
    assert (merged / "generated_image_4.png").stat().st_ino == (
        (sharded / "shard1" / "generated_image_4.png").stat().st_ino
    )  # hard-linked, not copied


def test_merge_command_fails_in_one_line_when_a_shard_is_given_twice(sharded, tmp_path):
    out = ailusion_cli("merge", str(tmp_path / "m"), *map(str, shard_dirs(sharded)),
                       str(sharded / "shard1"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "shard1: given twice" in out.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "dirs, message",
    [
        (["whole", "shard0"], "image 1 is in both"),
        (["shard1"], "shard 0 of 2 is missing"),
        (["shard0", "shard1", "nowhere"], "nowhere: not a finished ailusion run dir"),
    ],
)
def test_merge_refuses_overlaps_and_gaps(sharded, tmp_path, dirs, message):
    with pytest.raises(AilusionError, match=message):
        merge(tmp_path / "m", [sharded / d for d in dirs])
    assert not (tmp_path / "m").exists() and os.listdir(tmp_path) == []


def test_merge_refuses_shards_of_different_configs(sharded, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(sharded / "shard1", other)
    record = json.loads((other / ".ailusion.json").read_text())
    record["config"]["generator"]["seed"] = 99
    (other / ".ailusion.json").write_text(json.dumps(record))
    with pytest.raises(AilusionError, match="another config"):
        merge(tmp_path / "m", [sharded / "shard0", other])


def test_merge_refuses_an_incomplete_shard_and_writes_nothing(sharded, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sharded / "shard1", broken)
    (broken / "generated_image_4.png").unlink()
    with pytest.raises(AilusionError, match="image 4: generated_image_4.png is missing"):
        merge(tmp_path / "m", [sharded / "shard0", broken])
    assert sorted(os.listdir(tmp_path)) == ["broken"]


# --- Launchers ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_submitit_local_runs_the_shards_in_fresh_processes_and_they_merge(sharded, tmp_path):
    out = ailusion_cli(
        "-m", "hydra/launcher=submitit_local", *TINY, FIVE, "num_shards=2", "shard=0,1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert out.returncode == 0, out.stderr
    merged = merge(tmp_path / "merged", [tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"])
    assert_same_dataset(merged, sharded / "whole")


LIGHT_PLUGIN = '''
import numpy as np
from PIL import Image
from ailusion import hookimpl
from ailusion.stages import GeneratedImage, ImageRequest

class Solid:
    def __init__(self, config, context): self.seed = int(config.seed)
    def plan(self, prompts): return [ImageRequest(i, p.text, None, self.seed + i) for i, p in enumerate(prompts, 1)]
    def setup(self): pass
    def generate(self, requests):
        for r in requests: yield GeneratedImage(r, Image.new("RGB", (8, 8), (r.seed % 250 + 5, 0, 0)), {})

class Red:
    output_shape = (1, 1, 1)
    def __init__(self, config, context): pass
    def settings(self): return {}
    def preprocess(self, images): return np.array([[[[i.getpixel((0, 0))[0] / 255]]] for i in images], np.float32)
    def to_image(self, array): return Image.fromarray(np.uint8(array[0] * 255))

class Same:
    labels = ["red"]
    def __init__(self, config, context): pass
    def setup(self, shape): pass
    def forward(self, batch): return batch.reshape(len(batch), 1)

@hookimpl
def register_generators(): return {"solid": Solid}
@hookimpl
def register_preprocessors(): return {"red": Red}
@hookimpl
def register_models(): return {"same": Same}
'''


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_processes(tmp_path):
    site = tmp_path / "site"
    (site / "ailusion_light-1.0.dist-info").mkdir(parents=True)
    (site / "ailusion_light-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ailusion-light\nVersion: 1.0\n"
    )
    (site / "ailusion_light-1.0.dist-info" / "entry_points.txt").write_text(
        "[ailusion]\nlight = ailusion_light\n"
    )
    (site / "ailusion_light.py").write_text(LIGHT_PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = ailusion_cli(
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "generator.plugin=solid",
        "preprocessor.plugin=red", "model.plugin=same", "progress=false", "prompts=[a,b]",
        "generator.seed=10,20", f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env,
    )
    assert out.returncode == 0, out.stderr
    for job, seed in (("0", 10), ("1", 20)):
        logits = np.load(tmp_path / "sweep" / job / "predictions.npy")
        np.testing.assert_allclose(logits[:, 0] * 255, [seed + 6, seed + 7], atol=1e-3)


# --- One GPU per job ---------------------------------------------------------------------------


def test_gpu_per_job_gives_job_n_gpu_n_modulo_the_visible_ones():
    environ = {"CUDA_VISIBLE_DEVICES": "0,2,5"}
    assert devices.assign_job_gpu(4, environ) == "2"
    assert environ["CUDA_VISIBLE_DEVICES"] == "2"
    # A later job in the same process still picks among all three.
    assert devices.assign_job_gpu(3, environ) == "0"
    assert environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_gpu_per_job_is_a_no_op_without_gpus(monkeypatch):
    environ = {"CUDA_VISIBLE_DEVICES": ""}
    assert devices.assign_job_gpu(1, environ) is None
    assert environ == {"CUDA_VISIBLE_DEVICES": ""}
    monkeypatch.setattr(devices, "assign_job_gpu", lambda *a: pytest.fail("called"))
    assert devices.setup_job_devices(OmegaConf.create({"gpu_per_job": False}), 3) is None


# --- Julia and fork ----------------------------------------------------------------------------


def _in_forked_child(fn) -> int:
    """Run ``fn`` in a forked child; its exit status is 3 if it raised AilusionError, else 0."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
        except AilusionError:
            os._exit(3)
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_julia_refuses_to_run_in_a_child_forked_after_julia_started(monkeypatch):
    monkeypatch.setattr(devices, "_julia_pid", None)
    assert _in_forked_child(devices.claim_julia_process) == 0  # Julia not started yet: fine
    devices.claim_julia_process()
    devices.claim_julia_process()  # the same process again: fine
    assert _in_forked_child(devices.claim_julia_process) == 3


def test_julia_refusal_also_covers_juliacall_imported_without_a_claim(monkeypatch):
    monkeypatch.setattr(devices, "_julia_pid", None)
    monkeypatch.setitem(sys.modules, "juliacall", types.ModuleType("juliacall"))
    assert _in_forked_child(devices.claim_julia_process) == 3


# --- The command line --------------------------------------------------------------------------


def test_help_lists_the_groups_and_commands_without_importing_torch():
    code = (
        "import sys; from ailusion.cli import main; sys.argv = ['ailusion', '--help']\n"
        "try: main()\n"
        "except SystemExit: print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "generator:" in out.stdout and "ailusion merge" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False False"


@pytest.mark.parametrize("command", [["ailusion"], [sys.executable, "-m", "ailusion"]])
def test_cfg_job_prints_the_composed_config(command):
    out = subprocess.run(
        [*command, "--cfg", "job", "generator=tiny", "gpu_per_job=true", "experiment=four_shards"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    assert config["generator"]["model"] == "tiny"
    assert (config["gpu_per_job"], config["num_shards"]) == (True, 4)
