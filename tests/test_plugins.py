"""The plugin system as a third party sees it: every hook, the listing, broken and misspelt plugins.

Plugins are registered by hand on a fresh manager and passed as ``pm=`` (no install needed); the
entry-point behaviour is tested with a temporary module behind a patched entry-point list.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pluggy
import pytest
from PIL import Image

import ailusion
from ailusion import hookimpl, hookspecs
from ailusion.api import compose_config
from ailusion.cli import plugins_command
from ailusion.errors import ConfigError
from ailusion.manager import get_plugin_manager, get_plugins, registry, resolve
from ailusion.stages import GeneratedImage, ImageRequest

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs) if hasattr(_, "ailusion_spec"))


# --- Stages a third-party plugin might add: cheap, deterministic, no torch ---------------------


class SolidGenerator:
    """One flat-coloured 16×16 image per prompt; its red level is 10 × its index."""

    def __init__(self, config, context):
        self.seed = int(config.get("seed", 0))

    def plan(self, prompts):
        return [ImageRequest(i, p.text, None, self.seed + i) for i, p in enumerate(prompts, 1)]

    def setup(self):
        pass

    def generate(self, requests):
        for r in requests:
            yield GeneratedImage(r, Image.new("RGB", (16, 16), (10 * r.index, 50, 100)), {})


class MeanPreprocessor:
    """Each image as one 2×2 gray array holding its mean brightness."""

    output_shape = (1, 2, 2)

    def __init__(self, config, context):
        pass

    def settings(self):
        return {"mean": True}

    def preprocess(self, images):
        means = [np.asarray(image.convert("L"), np.float32).mean() / 255 for image in images]
        return np.array([np.full(self.output_shape, m, np.float32) for m in means])

    def to_image(self, array):
        return Image.fromarray(np.uint8(array[0] * 255))


class SumModel:
    """Two outputs: the sum of the inputs and its negation."""

    labels = ["sum", "minus_sum"]

    def __init__(self, config, context):
        pass

    def setup(self, input_shape):
        self.input_shape = input_shape

    def forward(self, batch):
        total = batch.reshape(len(batch), -1).sum(axis=1)
        return np.stack([total, -total], axis=1)


class ThirdParty:
    """A plugin registering all three stages under new names, recording the lifecycle hooks."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def register_generators(self):
        return {"solid": SolidGenerator}

    @hookimpl
    def register_preprocessors(self):
        return {"mean": MeanPreprocessor}

    @hookimpl
    def register_models(self):
        return {"sum": SumModel}

    @hookimpl
    def run_start(self, config, run_dir, requests):
        self.calls.append(("run_start", run_dir, [r.index for r in requests]))

    @hookimpl
    def image_written(self, record, run_dir):
        # The hook's promise: the files are on disk when it is called.
        exists = all((run_dir / record[k]).is_file() for k in ("file_name", "preprocessed_file_name"))
        self.calls.append(("image_written", record["index"], exists))

    @hookimpl
    def run_end(self, config, run_dir, summary):
        self.calls.append(("run_end", summary["written"], summary["skipped"]))


STAGES = ["generator.plugin=solid", "preprocessor.plugin=mean", "model.plugin=sum"]
PROMPTS = "prompts=[one,two,three]"


@pytest.fixture(scope="module")
def third_party_run(tmp_path_factory):
    """One run of the three third-party stages; returns (plugin, result)."""
    plugin = ThirdParty()
    pm = get_plugin_manager()
    pm.register(plugin, name="third_party")
    run_dir = tmp_path_factory.mktemp("third_party") / "run"
    result = ailusion.run([*STAGES, PROMPTS, "progress=false"], run_dir=run_dir, pm=pm)
    return plugin, result


# --- One test (at least) per hook: test_hook_<hook>_… ------------------------------------------


def test_hook_register_generators_adds_a_generator_that_makes_the_images(third_party_run):
    _, result = third_party_run
    for index, path in enumerate(result.image_paths, 1):
        assert np.asarray(Image.open(path))[0, 0].tolist() == [10 * index, 50, 100]


def test_hook_register_generators_a_third_party_name_wins_over_a_default():
    pm = get_plugin_manager()

    class Override:
        @hookimpl
        def register_generators(self):
            return {"stable_diffusion": SolidGenerator}

    pm.register(Override())
    assert registry(pm, "generator")["stable_diffusion"] is SolidGenerator


def test_hook_register_preprocessors_adds_a_preprocessor_whose_arrays_are_saved(third_party_run):
    _, result = third_party_run
    batch = np.load(result.run_dir / "preprocessed.npy")
    assert batch.shape == (3, 1, 2, 2)
    expected = [10 * i * 0.299 + 50 * 0.587 + 100 * 0.114 for i in (1, 2, 3)]  # ITU-R 601-2 luma
    np.testing.assert_allclose(batch[:, 0, 0, 0] * 255, expected, atol=0.6)


def test_hook_register_preprocessors_a_third_party_name_wins_over_a_default():
    pm = get_plugin_manager()

    class Override:
        @hookimpl
        def register_preprocessors(self):
            return {"image": MeanPreprocessor}

    pm.register(Override())
    assert resolve(pm, "preprocessor", "image") is MeanPreprocessor


def test_hook_register_models_adds_a_model_whose_logits_are_saved(third_party_run):
    _, result = third_party_run
    batch = np.load(result.run_dir / "preprocessed.npy")
    sums = batch.reshape(3, -1).sum(axis=1)
    np.testing.assert_allclose(result.predictions, np.stack([sums, -sums], axis=1), rtol=1e-6)
    assert result.labels == ["sum", "minus_sum"]
    saved = json.loads((result.run_dir / "predictions.json").read_text())
    assert saved["labels"] == ["sum", "minus_sum"]


def test_hook_register_models_unknown_name_fails_listing_the_installed_ones():
    with pytest.raises(ConfigError, match=r"model\.plugin: .*'nope'.*installed: .*flux_cnn"):
        resolve(get_plugin_manager(), "model", "nope")


def test_hook_register_writers_adds_a_format_that_writes_the_run(tmp_path):
    from fake_plugins import FAST, plugin_manager
    from test_shards import LinesPlugin

    pm = plugin_manager()
    pm.register(LinesPlugin(), name="lines")
    ailusion.run([*FAST, "prompts=[a,b,c]", "output.format=lines",
                  "output.shard_size=2"], run_dir=tmp_path / "run", pm=pm)
    lines = (tmp_path / "run" / "00000.jsonl").read_text().splitlines()
    assert [json.loads(line)["prompt"] for line in lines] == ["a", "b"]
    assert (tmp_path / "run" / "00001_stats.json").is_file()


def test_hook_run_start_gets_the_run_dir_and_every_planned_image(third_party_run):
    plugin, result = third_party_run
    assert plugin.calls[0] == ("run_start", result.run_dir, [1, 2, 3])


def test_hook_image_written_is_called_once_per_image_after_its_files_exist(third_party_run):
    plugin, _ = third_party_run
    written = [call for call in plugin.calls if call[0] == "image_written"]
    assert sorted(written) == [("image_written", i, True) for i in (1, 2, 3)]


def test_hook_run_end_is_called_last_with_the_summary(third_party_run):
    plugin, _ = third_party_run
    assert plugin.calls[-1] == ("run_end", 3, 0)
    assert [call[0] for call in plugin.calls].count("run_end") == 1


def test_hook_config_searchpath_adds_a_config_option(entry_point_plugin, tmp_path):
    conf = tmp_path / "plugin_conf"
    (conf / "generator").mkdir(parents=True)
    (conf / "generator" / "solid.yaml").write_text("plugin: solid\nseed: 7\n")
    entry_point_plugin("searchpath", f"""
        from ailusion import hookimpl

        @hookimpl
        def config_searchpath():
            return ["file://{conf}"]
    """)
    config = compose_config(["generator=solid"])
    assert config.generator == {"plugin": "solid", "seed": 7}


class NpzReader:
    """A third-party data format: ``data.npz`` with ``x`` (N, C, H, W), ``y``, ``numbers`` and
    ``classes``, read behind the training's reader interface."""

    @classmethod
    def can_read(cls, path):
        return (Path(path) / "data.npz").is_file()

    def __init__(self, path):
        self.path = Path(path)
        with np.load(self.path / "data.npz") as f:
            self._x, self.labels, self.numbers = f["x"], f["y"], f["numbers"]
            self.classes = [str(c) for c in f["classes"]]
        self.preprocessing = {"plugin": "image", "size": 6}
        self.input_shape = tuple(self._x.shape[1:])

    def __len__(self):
        return len(self._x)

    def batch(self, positions):
        return self._x[positions].astype(np.float32), self.labels[positions]


class TrainingWatcher:
    def __init__(self):
        self.epochs, self.ends = [], []

    @hookimpl
    def register_data_readers(self):
        return {"npz": NpzReader}

    @hookimpl
    def train_epoch_end(self, config, run_dir, row):
        self.epochs.append((Path(run_dir), dict(row)))

    @hookimpl
    def train_end(self, config, run_dir, metrics):
        self.ends.append((Path(run_dir), metrics))


@pytest.fixture(scope="module")
def third_party_training(tmp_path_factory):
    root = tmp_path_factory.mktemp("npz")
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = rng.random((60, 3, 6, 6), dtype=np.float32) * 0.2 + y[:, None, None, None] * 0.8
    (root / "data").mkdir()
    np.savez(root / "data" / "data.npz", x=x, y=y, numbers=np.arange(1, 61),
             classes=np.array(["dark", "light"]))
    watcher = TrainingWatcher()
    pm = get_plugin_manager()
    pm.register(watcher)
    metrics = ailusion.train([f"data={root / 'data'}", "train.epochs=3", "train.lr=0.01", "train.batch_size=4",
                              "model.backend=torch", "progress=false"], run_dir=root / "out", pm=pm)
    return watcher, metrics, root / "out"


def test_hook_register_data_readers_adds_a_format_training_reads(third_party_training):
    _, metrics, out = third_party_training
    assert metrics["classes"] == ["dark", "light"]
    assert metrics["train_images"] + metrics["val_images"] == 60
    assert metrics["val_accuracy"] == 1.0
    assert (out / "model_weights.safetensors").is_file()


def test_hook_train_epoch_end_gets_each_epochs_history_row(third_party_training):
    watcher, _, out = third_party_training
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert watcher.epochs == [(out, row) for row in history]
    assert [row["epoch"] for _, row in watcher.epochs] == [1, 2, 3]


def test_hook_train_end_is_called_once_with_the_metrics(third_party_training):
    watcher, metrics, out = third_party_training
    assert watcher.ends == [(out, metrics)]
    assert json.loads((out / "metrics.json").read_text())["objective_value"] == metrics["val_accuracy"]


def test_hook_register_config_schemas_checks_and_types_the_stage_node(tmp_path):
    @dataclass
    class SolidConfig:
        seed: int = 0

    class Schema:
        @hookimpl
        def register_config_schemas(self):
            return {"generator/solid": SolidConfig}

    pm = get_plugin_manager()
    pm.register(ThirdParty(), name="third_party")
    pm.register(Schema(), name="schema")
    stages = ["~generator", "+generator.plugin=solid", *STAGES[1:], PROMPTS, "progress=false"]
    with pytest.raises(ConfigError, match=r"^generator\.sed: unknown key .*plugin 'solid' takes plugin, seed$"):
        ailusion.run([*stages, "+generator.sed=3"], run_dir=tmp_path / "a", pm=pm)
    result = ailusion.run([*stages, "+generator.seed='4'"], run_dir=tmp_path / "b", pm=pm)
    assert json.loads((tmp_path / "b" / "metadata.jsonl").read_text().splitlines()[0])["seed"] == 5
    assert result.summary["written"] == 3


def test_hook_estimate_output_adds_a_format_to_ailusion_plan():
    from ailusion.dryrun import describe
    from fake_plugins import FAST, plugin_manager

    class Shelves:
        @hookimpl
        def estimate_output(self, layout):
            return {"shelves": {"files": layout.images // 10 + 1,
                                "bytes": layout.images * layout.png_bytes(8, 8)}}

    pm = plugin_manager()
    pm.register(Shelves())
    plan = describe([*FAST, "prompts=[a,b,c,d]", "generator.num_images_per_prompt=5"], pm=pm)
    assert plan["estimates"]["shelves"] == {"files": 3, "bytes": 20 * (int(8 * 8 * 3 * 0.5) + 200)}
    assert set(plan["estimates"]) == {"imagefolder", "webdataset", "parquet", "shelves"}


def test_every_hook_has_a_test():
    tested = {name for name in globals() if name.startswith("test_hook_")}
    untested = [h for h in HOOKS if not any(t.startswith(f"test_hook_{h}_") for t in tested)]
    assert HOOKS and not untested, f"hooks without a test_hook_<hook>_… test: {untested}"


def test_every_hook_is_documented():
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    headings = re.findall(r"^#+ .*$", docs, flags=re.MULTILINE)
    undocumented = [h for h in HOOKS if not any(f"`{h}" in line for line in headings)]
    assert not undocumented, f"hooks without a heading in docs/plugins.md: {undocumented}"


# --- Entry points: the listing, broken plugins, misspelt hooks ---------------------------------


@pytest.fixture
def entry_point_plugin(tmp_path, monkeypatch):
    """Install a plugin module as if from an ``ailusion`` entry point: ``make(name, source)``."""
    added = []
    real = metadata.entry_points

    def entry_points(**params):
        found = real(**params)
        if params.get("group") == "ailusion":
            return metadata.EntryPoints([*found, *added])
        return found

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name, source):
        module = f"ailusion_test_{name}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, module, raising=False)
        added.append(metadata.EntryPoint(name, module, "ailusion"))
        return module

    return make


def test_plugins_listing_table_names_hooks_versions_and_origins(capsys):
    assert plugins_command([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "version", "from", "provides", "hooks"]
    rows = {line.split()[0]: line.split(maxsplit=5) for line in lines[1:]}
    assert rows["stable_diffusion"] == [
        "stable_diffusion", ailusion.__version__, "ailusion", "generator:", "stable_diffusion",
        "register_config_schemas, register_generators"]
    assert rows["flux_cnn"][3:] == ["model:", "flux_cnn", "register_config_schemas, register_models"]


def test_plugins_listing_json_without_importing_torch():
    code = (
        "import sys; from ailusion.cli import main; sys.argv = ['ailusion', 'plugins', '--json']\n"
        "try: main()\n"
        "except SystemExit: print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *listing, imported = out.stdout.strip().splitlines()
    plugins = {p["name"]: p for p in json.loads("\n".join(listing))}
    assert plugins["image"]["hooks"] == ["register_config_schemas", "register_preprocessors"]
    assert plugins["image"]["version"] == ailusion.__version__
    assert plugins["image"]["distribution"] == "ailusion"
    assert imported == "False False"


def test_a_plugin_that_fails_to_import_gives_one_warning_and_the_rest_works(
    entry_point_plugin, tmp_path
):
    entry_point_plugin("broken", "raise ImportError('needs the frobnicator package')\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = get_plugin_manager()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "'broken'" in messages[0] and "frobnicator" in messages[0]
    assert {"stable_diffusion", "image", "flux_cnn"} <= {p.name for p in get_plugins(pm)}
    pm.register(ThirdParty())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # composing the config loads the plugins once more
        result = ailusion.run([*STAGES, "prompts=[x]", "progress=false"], run_dir=tmp_path, pm=pm)
    assert result.image_paths[0].is_file()


def test_a_broken_plugin_warns_once_per_command(broken_site):
    env = broken_site
    listing = subprocess.run(
        ["ailusion", "plugins"], capture_output=True, text=True, env=env, check=True
    )
    config = subprocess.run(
        ["ailusion", "--cfg", "job", "generator=tiny"], capture_output=True, text=True, env=env,
        check=True,
    )
    for out in (listing, config):
        assert out.stderr.count("plugin 'broken'") == 1, out.stderr
        assert "ailusion-broken" in out.stderr and "Traceback" not in out.stderr
    assert "stable_diffusion" in listing.stdout and "plugin: stable_diffusion" in config.stdout


def test_check_pending_catches_a_misspelt_hookimpl():
    class Misspelt:
        @hookimpl
        def register_generator(self):  # the hook is register_generators
            return {}

    pm = get_plugin_manager()
    pm.register(Misspelt())
    with pytest.raises(pluggy.PluginValidationError, match="register_generator"):
        pm.check_pending()


def test_a_misspelt_entry_point_plugin_is_skipped_with_a_warning(entry_point_plugin):
    entry_point_plugin("misspelt", """
        from ailusion import hookimpl

        @hookimpl
        def run_ended(config, run_dir, summary):
            pass
    """)
    with pytest.warns(UserWarning, match=r"plugin 'misspelt'.*run_ended"):
        pm = get_plugin_manager()
    assert pm.get_plugin("misspelt") is None and pm.get_plugin("image") is not None


def test_an_unknown_generator_plugin_fails_before_any_work(tmp_path):
    out = subprocess.run(
        ["ailusion", "generator=tiny", "generator.plugin=nope", f"hydra.run.dir={tmp_path / 'r'}"],
        capture_output=True, text=True,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("ailusion: error: generator.plugin: ") and "'nope'" in line
    assert re.search(r"\(installed: [a-z_, ]*stable_diffusion", line)
    assert not list((tmp_path / "r").glob("*.png"))


# --- The example plugin of examples/ailusion-example-plugin, once installed --------------------

needs_example = pytest.mark.skipif(
    importlib.util.find_spec("ailusion_example_plugin") is None,
    reason="pip install ./examples/ailusion-example-plugin to run it",
)


@needs_example
def test_the_example_plugin_runs_a_pipeline_with_its_config_option(tmp_path):
    result = ailusion.run(
        ["generator=tiny", "generator.height=32", "generator.width=32", "prompts=[a red cube]",
         "preprocessor=edges", "preprocessor.size=48", "progress=false"],
        run_dir=tmp_path,
    )
    batch = np.load(tmp_path / "preprocessed.npy")
    assert batch.shape == (1, 1, 48, 48) and 0 <= batch.min() and batch.max() <= 1
    assert result.predictions.shape == (1, 10)
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["preprocessing"] == {"edges": True, "size": 48}
    listed = {p.name: p for p in get_plugins(get_plugin_manager())}
    assert listed["edges"].distribution == "ailusion-example-plugin"
    assert listed["edges"].hooks == (
        "config_searchpath", "register_config_schemas", "register_preprocessors")
