"""The hooks an ailusion plugin can implement.

A plugin is a module registered in the ``ailusion`` entry-point group; it implements any of these
hooks with ``@hookimpl`` (``from ailusion import hookimpl``). docs/plugins.md shows a complete one.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("ailusion")
hookimpl = pluggy.HookimplMarker("ailusion")


# ---------------------------------------------------------------------------------------------
# Stages: each returns {name: factory}; ``generator=NAME`` in the config picks the factory whose
# name matches ``generator.plugin``. Every plugin's result is collected (none stops the call);
# when two plugins register one name, the first result wins, and the default plugins run last.
# ---------------------------------------------------------------------------------------------


@hookspec
def register_generators():
    """Return ``{name: factory}``; ``factory(config, context)`` gives an
    :class:`ailusion.stages.Generator`. All results are collected (not firstresult)."""


@hookspec
def register_preprocessors():
    """Return ``{name: factory}``; ``factory(config, context)`` gives an
    :class:`ailusion.stages.Preprocessor`. All results are collected (not firstresult)."""


@hookspec
def register_models():
    """Return ``{name: factory}``; ``factory(config, context)`` gives an
    :class:`ailusion.stages.Model`. All results are collected (not firstresult)."""


@hookspec
def register_writers():
    """Return ``{name: factory}``; ``output.format=NAME`` picks one and ``factory(config.output,
    context)`` gives an :class:`ailusion.rundir.writers.Writer` (a shard format subclasses
    :class:`ailusion.rundir.shards.ShardWriter`). All results are collected (not firstresult)."""


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


@hookspec
def register_config_schemas():
    """Return ``{"NODE/NAME": dataclass}``: the schema of the config node ``NODE`` (``generator``,
    ``preprocessor``, ``model``) when its ``plugin`` is ``NAME``. Unknown keys and wrong types then
    fail before any work, naming the key, and the factory gets the node typed by the dataclass.
    All results are collected (not firstresult)."""


@hookspec
def config_searchpath():
    """Return a Hydra search-path entry (``"pkg://my_plugin.conf"`` or ``"file://…"``), or a list
    of them, holding YAML options for this plugin's config groups (``generator/my_gen.yaml``).
    All results are collected (not firstresult)."""


# ---------------------------------------------------------------------------------------------
# Planning: ``ailusion plan`` asks every output format what a run would write.
# ---------------------------------------------------------------------------------------------


@hookspec
def estimate_output(layout):
    """Return ``{format_name: {"files": int, "bytes": int, ...}}``: the files and disk an output
    format would write for ``layout`` (a :class:`ailusion.dryrun.Layout`: image counts, shapes,
    num_outputs; its ``png_bytes(h, w)`` estimates one PNG). All results are collected (not
    firstresult); ``ailusion plan`` prints each."""


# ---------------------------------------------------------------------------------------------
# Lifecycle: called by the pipeline for every run; return values are ignored.
# ---------------------------------------------------------------------------------------------


@hookspec
def run_start(config, run_dir, requests):
    """A run starts in ``run_dir`` (a :class:`pathlib.Path`) with the composed ``config`` and
    the sequence of :class:`ailusion.stages.ImageRequest` this job will produce (computed on
    demand: iterate it, do not list a big one). Return value ignored."""


@hookspec
def image_written(record, run_dir):
    """An image and everything derived from it is on disk; ``record`` is its manifest row (a
    dict, ``file_name`` relative to ``run_dir``). Return value ignored."""


@hookspec
def run_end(config, run_dir, summary):
    """A run finished; ``summary`` is a dict (``written``, ``skipped``, ``flagged``, ``seconds``,
    ``run_dir``). Not called when the run fails. Return value ignored."""


# ---------------------------------------------------------------------------------------------
# Training: called by ``ailusion train`` (and the one-job mode); return values are ignored.
# ---------------------------------------------------------------------------------------------


@hookspec
def register_data_readers():
    """Return ``{name: reader_class}`` for labelled data formats ``ailusion train`` can read
    beside run dirs. ``reader_class.can_read(path) -> bool`` says whether it reads the dir
    ``path``; ``reader_class(path)`` opens it as an ``ailusion.training.data.DataReader``. All
    results are collected (not firstresult); readers are tried in order, run dirs last."""


@hookspec
def train_epoch_end(config, run_dir, row):
    """An epoch of training finished; ``row`` is its ``history.jsonl`` row (``epoch``,
    ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``) and
    ``run_dir`` where the training writes. Return value ignored."""


@hookspec
def train_end(config, run_dir, metrics):
    """A training job finished and wrote its outputs into ``run_dir``; ``metrics`` is what
    ``metrics.json`` holds. Return value ignored."""
