"""Per-plugin config schemas: unknown keys (even appended with ``+``) and wrong types fail before any
work, naming the key and the plugin's known keys; a third-party plugin gets the same by
registering a dataclass with ``register_config_schemas``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra_plugins.ailusion_searchpath.ailusion_searchpath import register
from omegaconf import MISSING, OmegaConf

import ailusion
from ailusion import hookimpl
from ailusion.errors import AilusionError, ConfigError
from ailusion.manager import STAGES, get_plugin_manager, registry
from ailusion.schemas import check_node, schemas, typed_node

from test_plugins import SolidGenerator, ThirdParty

FAST = ["generator=tiny", "prompts=[a red cube]", "progress=false"]


def refused(tmp_path, *overrides, pm=None) -> ConfigError:
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as error:
        ailusion.run([*FAST, *overrides], run_dir=run_dir, pm=pm)
    assert not run_dir.exists(), "a refused run wrote something"
    assert "\n" not in str(error.value)
    return error.value


def test_an_appended_misspelt_key_fails_naming_it_and_the_plugins_keys(tmp_path):
    error = refused(tmp_path, "+generator.sed=3")
    assert error.key == "generator.sed"
    assert str(error).startswith("generator.sed: unknown key (did you mean 'seed'?); "
                                 "plugin 'stable_diffusion' takes plugin, model, revision,")
    assert ", seed, " in str(error)


@pytest.mark.parametrize("override, key", [
    ("+preprocessor.szie=96", "preprocessor.szie"),
    ("+model.kernel=5", "model.kernel"),
    ("+sed=3", "sed"),  # the top level too
])
def test_every_node_refuses_unknown_keys(tmp_path, override, key):
    assert refused(tmp_path, override).key == key


@pytest.mark.parametrize("override, key, words", [
    ("generator.seed=abc", "generator.seed", "must be an integer, got 'abc'"),
    ("model.install_julia=maybe", "model.install_julia", "must be true or false, got 'maybe'"),
    ("preprocessor.mean=abc", "preprocessor.mean", "must be a list of numbers or null, got 'abc'"),
])
def test_a_value_of_the_wrong_type_fails_naming_the_key(tmp_path, override, key, words):
    assert str(refused(tmp_path, override)) == f"{key}: {words}"


def test_the_factory_gets_values_of_the_declared_types():
    pm = get_plugin_manager()
    node = OmegaConf.create({"plugin": "image", "reducing_gap": 3, "grayscale_channels": "3"})
    typed = typed_node(pm, "preprocessor", node)
    assert typed.reducing_gap == 3.0 and isinstance(typed.reducing_gap, float)
    assert typed.grayscale_channels == 3 and typed.plugin == "image"
    assert typed.size == 224  # a key left out gets the schema's default
    model = typed_node(pm, "model", OmegaConf.create({"plugin": "flux_cnn", "seed": "5"}))
    assert model.seed == 5 and model.batch_size == 8


def test_every_default_stage_plugin_registers_a_schema():
    pm = get_plugin_manager()
    found = schemas(pm)
    for stage in STAGES:
        for name in registry(pm, stage):
            assert f"{stage}/{name}" in found, f"{stage} plugin {name!r} registers no schema"


@pytest.mark.parametrize("group, option", [
    ("generator", "stable_diffusion"), ("generator", "folder"), ("generator", "glyphs"),
    ("preprocessor", "image"),
    ("model", "flux_cnn"), ("preprocessor", "edges"),
])
def test_each_schema_has_the_keys_and_defaults_of_its_yaml(group, option):
    """The YAML option named after the plugin and its dataclass declare the same keys and values."""
    register()
    GlobalHydra.instance().clear()
    with initialize_config_module("ailusion.conf", version_base="1.3"):
        node = compose("config", overrides=[f"{group}={option}"])[group]
    GlobalHydra.instance().clear()
    schema = schemas(get_plugin_manager())[f"{group}/{node.plugin}"]
    defaults = OmegaConf.to_container(OmegaConf.structured(schema))
    yaml = OmegaConf.to_container(node)
    yaml.pop("plugin")
    assert yaml == defaults


class Shapes:
    """A third-party generator with a schema (and no validation code of its own)."""

    @dataclass
    class Config:
        count: int = 2
        colour: str = "red"
        scale: float = 1.0
        name: str = MISSING  # required: the run fails naming it when left out

    seen = []

    def __init__(self, config, context):
        Shapes.seen.append(config)
        self.inner = SolidGenerator(config, context)

    def plan(self, prompts):
        return self.inner.plan(prompts)

    def setup(self):
        pass

    def generate(self, requests):
        return self.inner.generate(requests)


class ShapesPlugin(ThirdParty):
    """ThirdParty's stages, with the generator ``shapes`` and its schema."""

    @hookimpl
    def register_generators(self):
        return {"shapes": Shapes}

    @hookimpl
    def register_config_schemas(self):
        return {"generator/shapes": Shapes.Config}


def shapes_pm():
    pm = get_plugin_manager()
    pm.register(ShapesPlugin(), name="shapes")
    return pm


STAGES_3P = ["~generator", "+generator.plugin=shapes", "preprocessor.plugin=mean", "model.plugin=sum",
             "prompts=[one,two]", "progress=false"]


def test_a_third_party_schema_types_the_node_its_factory_gets(tmp_path):
    Shapes.seen.clear()
    ailusion.run([*STAGES_3P, "+generator.count=3", "+generator.scale=2", "+generator.name=x"],
                 run_dir=tmp_path / "run", pm=shapes_pm())
    config = Shapes.seen[-1]
    assert (config.count, config.colour, config.scale, config.name) == (3, "red", 2.0, "x")
    assert isinstance(config.scale, float)


def test_a_third_party_schema_refuses_unknown_keys_and_missing_values(tmp_path):
    with pytest.raises(ConfigError) as error:
        ailusion.run([*STAGES_3P, "+generator.name=x", "+generator.cuont=3"],
                     run_dir=tmp_path / "a", pm=shapes_pm())
    assert str(error.value) == ("generator.cuont: unknown key (did you mean 'count'?); "
                                "plugin 'shapes' takes plugin, count, colour, scale, name")
    with pytest.raises(ConfigError, match=r"^generator\.name: is required by plugin 'shapes'"):
        ailusion.run(STAGES_3P, run_dir=tmp_path / "b", pm=shapes_pm())


def test_a_plugin_without_a_schema_gets_its_node_as_it_is():
    node = OmegaConf.create({"plugin": "nobody", "anything": 1})
    assert typed_node(get_plugin_manager(), "generator", node) is node


def test_check_node_takes_plain_dicts_and_names_the_owner():
    @dataclass
    class Small:
        size: int = 8

    assert check_node(Small, {"size": "16"}, "preprocessor").size == 16
    with pytest.raises(AilusionError, match=r"^preprocessor\.sise: unknown key .*; it takes"):
        check_node(Small, {"sise": 1}, "preprocessor")
