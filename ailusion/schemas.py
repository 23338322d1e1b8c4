"""Config schemas: the top-level one, and the one each plugin registers for its config node.

Hydra checks the YAML files against the top-level schema when it composes a config, but lets
``+key=value`` add any key. So once a config is composed, :func:`check_config_keys` refuses keys
no schema declares, and :func:`typed_node` checks a stage node against the dataclass its plugin
registered with the ``register_config_schemas`` hook: an unknown key fails naming the key and the
plugin's known keys, a value of the wrong type fails naming the key, and the plugin's factory gets
the node with every value converted to its declared type.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError


@dataclass
class AilusionConfig:
    """Keys of ``conf/config.yaml``; each stage's own node is checked by its plugin."""

    generator: Any = MISSING
    preprocessor: Any = MISSING
    model: Any = MISSING
    output: Any = MISSING  # checked by ailusion.rundir.writers and the writer
    prompts: List[str] = field(default_factory=list)
    prompts_file: Optional[str] = None
    prompt_template: str = "{prompt}"
    prompt_prefix: str = ""
    prompt_suffix: str = ""
    classes: List[str] = field(default_factory=list)
    classes_file: Optional[str] = None
    prompt_templates: List[str] = field(default_factory=lambda: ["a photo of a {class}"])
    shard: int = 0
    num_shards: int = 1
    gpu_per_job: bool = False
    png_compress_level: int = 6
    png_strategy: str = "rle"
    png_encoder: str = "pillow"
    progress: bool = True
    train: Any = None  # train=default: train on the run's images once it is made
    eval_dir: Optional[str] = None  # real images (DIR/CLASS/*.png) to evaluate the training on


def register_configs() -> None:
    """Store the schema as ``ailusion_schema`` for the defaults list of ``config.yaml``, and
    register the resolvers the configs use."""
    from .digits import register_resolver

    ConfigStore.instance().store(name="ailusion_schema", node=AilusionConfig)
    register_resolver()


def check_config_keys(config: DictConfig) -> None:
    """Refuse a top-level key that :class:`AilusionConfig` does not declare (``+sed=3``)."""
    known = [f.name for f in dataclasses.fields(AilusionConfig)]
    for key in config:
        if key not in known:
            raise ConfigError(str(key), _unknown(str(key), known, "the top-level config takes"))


def schemas(pm) -> dict[str, type]:
    """``{"NODE/PLUGIN": dataclass}`` from every plugin's ``register_config_schemas`` hook (the
    first plugin to claim a key wins, as for stage names)."""
    found: dict[str, type] = {}
    for result in pm.hook.register_config_schemas():
        for key, schema in (result or {}).items():
            found.setdefault(key, schema)
    return found


def typed_node(pm, path: str, node):
    """``node`` (the config node at ``path``, e.g. ``generator``) checked against the schema its
    plugin (``node.plugin``) registered, as a typed copy; ``node`` itself when there is none."""
    name = node.get("plugin") if isinstance(node, DictConfig) else None
    schema = schemas(pm).get(f"{path}/{name}") if name is not None else None
    if schema is None:
        return node
    return check_node(schema, node, path, f"plugin {name!r}")


def check_node(schema: type, node, path: str, owner: str = "it") -> DictConfig:
    """``node`` (a config node or a dict) as a :class:`DictConfig` typed by the dataclass
    ``schema``; raises :class:`ConfigError` naming ``path.KEY`` for an unknown key, a value of
    the wrong type, or a required value (``MISSING``) left out. A ``plugin`` key is always allowed."""
    try:
        values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}.{exc.full_key}" if exc.full_key else path, _message(exc)) from None
    values = dict(values)
    plugin = values.pop("plugin", None)
    known = [f.name for f in dataclasses.fields(schema) if f.name != "plugin"]
    for key in values:
        if key not in known:
            raise ConfigError(f"{path}.{key}", _unknown(str(key), ["plugin", *known], f"{owner} takes"))
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), values)
    except OmegaConfBaseException as exc:
        key = str(exc.full_key).split(".")[0].split("[")[0]
        hint = typing.get_type_hints(schema).get(key)
        message = f"must be {_describe(hint)}, got {values.get(key)!r}" if hint else _message(exc)
        raise ConfigError(f"{path}.{key}", message) from None
    missing = sorted(OmegaConf.missing_keys(typed))
    if missing:
        raise ConfigError(f"{path}.{missing[0]}", f"is required by {owner} and has no value")
    if plugin is not None:
        OmegaConf.set_struct(typed, False)
        typed.plugin = plugin
    return typed


def _unknown(key: str, known: list[str], takes: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; {takes} {', '.join(known)}"


_NAMES = {int: ("an integer", "integers"), float: ("a number", "numbers"),
          bool: ("true or false", "booleans"), str: ("a string", "strings")}


def _describe(hint, plural: bool = False) -> str:
    """``Optional[List[float]]`` as "a list of numbers or null", for error messages."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        return f"{_describe(args[0], plural)} or null"
    if typing.get_origin(hint) in (list, tuple):
        return f"a list of {_describe(args[0], True) if args else 'values'}"
    name = getattr(hint, "__name__", str(hint))
    return _NAMES.get(hint, (name, name))[plural]


def _message(exc: OmegaConfBaseException) -> str:
    return str(getattr(exc, "msg", exc)).splitlines()[0]
