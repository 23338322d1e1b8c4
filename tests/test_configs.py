"""Every option of every config group composes, with Hydra's compose API (no subprocess)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra_plugins.ailusion_searchpath.ailusion_searchpath import register
from omegaconf import OmegaConf

from ailusion.manager import get_plugin_manager, registry

STAGE_GROUPS = ("generator", "preprocessor", "model")


@pytest.fixture
def hydra_ready():
    """Hydra initialised over ailusion's configs (and installed plugins'), cleared afterwards."""
    register()
    GlobalHydra.instance().clear()
    with initialize_config_module("ailusion.conf", version_base="1.3"):
        yield GlobalHydra.instance().config_loader()
    GlobalHydra.instance().clear()


def options(group: str) -> list[str]:
    """The options of ``group`` as Hydra sees them (plugins' options included)."""
    register()
    with initialize_config_module("ailusion.conf", version_base="1.3"):
        found = GlobalHydra.instance().config_loader().get_group_options(group)
    GlobalHydra.instance().clear()
    return found


def test_every_group_has_options(hydra_ready):
    for group in (*STAGE_GROUPS, "experiment"):
        assert hydra_ready.get_group_options(group), f"conf/{group}/ has no options"
    assert len(hydra_ready.get_group_options("experiment")) >= 2


@pytest.mark.parametrize(
    "group, option", [(g, o) for g in STAGE_GROUPS for o in options(g)]
)
def test_every_stage_option_composes_and_names_an_installed_plugin(hydra_ready, group, option):
    config = compose("config", overrides=[f"{group}={option}"])
    plugin = config[group].plugin
    assert isinstance(plugin, str) and plugin, f"{group}/{option}.yaml has no plugin: NAME"
    assert plugin in registry(get_plugin_manager(), group)
    # The other groups keep their defaults.
    default = compose("config")
    for other in STAGE_GROUPS:
        if other != group:
            assert config[other] == default[other]


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_changes_something(hydra_ready, experiment):
    base = compose("config", return_hydra_config=True)
    config = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    changed = OmegaConf.to_container(config) != OmegaConf.to_container(base)
    assert changed, f"experiment/{experiment}.yaml changes nothing"
    # The keys it sweeps exist, and each value it sweeps (an interval's ends) composes.
    for key, values in (config.hydra.sweeper.params or {}).items():
        known = OmegaConf.select(config, key, default="<unknown>") != "<unknown>"
        assert known, f"experiment/{experiment}.yaml sweeps the unknown key {key}"
        for value in swept_values(key, values):
            compose("config", overrides=[f"experiment={experiment}", f"{key}={value}"])


def swept_values(key, values) -> list:
    """The values a sweep override names: each choice, or an interval's two ends (Optuna's
    ``interval(0, 30)``, ``tag(log, interval(…))``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    parsed = OverridesParser.create().parse_override(f"{key}={values}")
    if not parsed.is_sweep_override():
        return [parsed.value()]
    sweep = parsed.value()
    if isinstance(sweep, IntervalSweep):
        return [sweep.start, sweep.end]
    return list(parsed.sweep_string_iterator())


def test_experiment_files_say_package_global_and_how_to_run_them():
    from importlib.resources import files

    for option in options("experiment"):
        text = files("ailusion.conf").joinpath("experiment", f"{option}.yaml").read_text()
        assert text.startswith("# @package _global_\n"), option
        assert f"experiment={option}" in text, f"{option}.yaml has no command in a comment"


def test_the_schema_rejects_a_wrongly_typed_top_level_key_naming_it(hydra_ready):
    with pytest.raises(ConfigCompositionException) as caught:
        compose("config", overrides=["num_shards=four"])
    assert "num_shards" in str(caught.value.__cause__ or caught.value)


def test_top_level_defaults(hydra_ready):
    config = compose("config")
    assert (config.shard, config.num_shards, config.gpu_per_job) == (0, 1, False)
    assert len(config.prompts) >= 3
