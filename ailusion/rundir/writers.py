"""Output formats: the contract of a writer, and how ``output.format`` picks one.

A plugin adds a format by returning ``{name: factory}`` from the ``register_writers`` hook;
``output.format=NAME`` picks it and the pipeline calls ``factory(config.output, context)``. The
default plugins register ``imagefolder`` (a PNG per image and ``metadata.jsonl``), ``webdataset``
(tar shards) and ``parquet`` (Parquet shards). Most formats write shards of ``output.shard_size``
images: subclass :class:`ailusion.rundir.shards.ShardWriter` and write only the shard's file.

A writer sees each image three times: :meth:`Writer.encode` on a worker thread as soon as the
image is generated (PNG encoding), :meth:`Writer.encode_processed` once its batch is preprocessed
and through the model, then :meth:`Writer.add` on one thread, in image order, once both are done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

#: Keys of the ``output`` node every writer understands; a writer may read more of its own.
OUTPUT_KEYS = ("format", "shard_size", "subdirs_above")


@dataclass
class Sample:
    """One image and everything derived from it, as a writer receives it."""

    index: int  # the image's 1-based number in the whole run
    row: dict  # its manifest row: prompt, seed, …, and once processed label, probability, flagged
    image: Image.Image  # the generated image
    kept: bool = False  # a previous run wrote its files (read back): only the rest is rebuilt
    # Set once its batch is processed:
    view: Image.Image | None = None  # the preprocessed array as an 8-bit image, for viewing
    array: np.ndarray | None = None  # the preprocessed (C, H, W) array
    logits: np.ndarray | None = None  # the model's (len(labels),) float32 logits
    encoded: dict[str, Any] = field(default_factory=dict)  # what encode() made, for add()


@dataclass
class RunInfo:
    """What is the same for every image of a run, written once (``info.json``), not per row."""

    format: str
    shard_size: int
    planned: int  # images the whole run plans (every job's)
    preprocessing: dict  # the preprocessor's settings
    preprocessed_shape: tuple[int, int, int]
    preprocessed_dtype: str
    labels: list[str]  # the model's output names, one per logit

    def to_json(self) -> dict:
        return {
            "format": self.format, "shard_size": self.shard_size, "planned": self.planned,
            "preprocessing": self.preprocessing,
            "preprocessed": {"shape": list(self.preprocessed_shape),
                             "dtype": self.preprocessed_dtype},
            "labels": self.labels,
        }


@runtime_checkable
class Writer(Protocol):
    """Writes a run's images into its run dir in one format."""

    def names(self, index: int) -> dict[str, str]:
        """The file names the manifest row of image ``index`` gives (``file_name``, …), relative
        to the run dir; ``{}`` for a format that keeps its images inside shard files."""

    def complete(self, requests: list) -> tuple[dict[int, dict], Any]:
        """What a previous run into this dir left complete, read without writing anything: the
        rows of images to pass again (their files are kept, the rest is rebuilt), and the numbers
        of images not to pass at all (a complete shard, kept as it is), as anything with ``in``
        and ``len`` (:class:`ailusion.rundir.shards.Ranges`: its memory does not grow with the
        count)."""

    def start(self, requests: list, info: RunInfo, done: dict[int, dict]) -> None:
        """Begin writing the images of ``requests`` (``done`` among them come with their rows);
        the run dir is this run's, and a killed run's temporary files are gone."""

    def encode(self, sample: Sample) -> None:
        """The costly part of writing the generated image (PNG encoding), on a worker thread, as
        soon as it arrives: ``sample.row`` has no predictions yet and there is no array."""

    def encode_processed(self, sample: Sample) -> None:
        """The costly part of writing what its batch computed (``view``, ``array``, ``logits``),
        on a worker thread; it may run before :meth:`encode` has finished."""

    def add(self, sample: Sample) -> None:
        """Write ``sample``; called in image order, on one thread, after its :meth:`encode`."""

    def finish(self) -> None:
        """Every image was added: close and put in place what is still open."""

    def abort(self) -> None:
        """The run failed: keep what is complete, drop what is half-written."""


def check_output(node) -> tuple[str, int]:
    """``(format, shard_size)`` of the ``output`` config node, checked."""
    fmt = node.get("format") if node is not None else None
    if not isinstance(fmt, str) or not fmt:
        raise ConfigError("output.format", f"must name an output format, got {fmt!r}")
    size = node.get("shard_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError("output.shard_size", f"must be a positive integer, got {size!r}")
    above = node.get("subdirs_above")
    if not isinstance(above, int) or isinstance(above, bool) or above < 0:
        raise ConfigError("output.subdirs_above", f"must be an integer ≥ 0, got {above!r}")
    return fmt, size


@dataclass
class OutputConfig:
    """The schema of the ``output`` node for the default formats (``register_config_schemas``
    as ``output/FORMAT``); a third party's format may register its own, with more keys."""

    format: str = "imagefolder"
    shard_size: int = 5000
    subdirs_above: int = 10000


def writer_factory(config, pm):
    """``(factory, node)`` of the writer ``output.format`` names, with ``config.output`` checked
    against the schema registered for ``output/FORMAT`` (when one is); nothing is made."""
    from ..manager import resolve
    from ..schemas import check_node, schemas

    fmt, _ = check_output(config.get("output"))
    factory = resolve(pm, "writer", fmt, key="output.format", what="output format")
    node = config.output
    schema = schemas(pm).get(f"output/{fmt}")
    if schema is not None:
        node = check_node(schema, node, "output", f"format {fmt!r}")
    return factory, node


def build_writer(config, context, pm) -> Writer:
    """The writer ``output.format`` names, made from its checked ``config.output``."""
    factory, node = writer_factory(config, pm)
    fmt = node.get("format")
    try:
        return factory(node, context)
    except ConfigError:
        raise
    except Exception as exc:  # a plugin's bug, reported as one line naming the format
        raise ConfigError(
            "output.format", f"writer {fmt!r} failed to start: {type(exc).__name__}: {exc}"
        ) from exc
