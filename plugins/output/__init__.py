"""Output formats ``imagefolder``, ``webdataset`` and ``parquet`` (``output.format=NAME``)."""

from __future__ import annotations

from ailusion import hookimpl


@hookimpl(trylast=True)
def register_writers():
    """The default formats; ``trylast`` so that a third-party writer of one of these names wins.
    Imported when a run starts, not when the plugins load (pyarrow and webdataset are heavy)."""
    return {"imagefolder": _imagefolder, "webdataset": _webdataset, "parquet": _parquet}


@hookimpl(trylast=True)
def register_config_schemas():
    from ailusion.rundir.writers import OutputConfig

    return {f"output/{name}": OutputConfig for name in ("imagefolder", "webdataset", "parquet")}


@hookimpl(trylast=True)
def estimate_output(layout):
    """The shard formats' files and disk for ``ailusion plan``: per shard its file, stats and
    contact sheet; per image its PNG, array, logits and row (tar adds a 512-byte header and up
    to 511 bytes of padding per member; Parquet's zstd usually makes it smaller than this)."""
    import math

    c, h, w = layout.array_shape
    png = layout.png_bytes(*layout.image_size) if layout.image_size else 0
    array = c * h * w * layout.array_itemsize + 128  # .npy header
    logits = 4 * layout.num_outputs + 128
    shards = math.ceil(layout.images / layout.shard_size) if layout.images else 0
    sheets = 400_000 * shards  # a contact sheet of 48 thumbnails
    tar = png + array + logits + layout.row_bytes() + 4 * (512 + 256)
    parquet = png + array + logits + layout.row_bytes()
    return {
        name: {"files": 3 * shards + 1, "bytes": per_image * layout.images + sheets,
               "shards": shards, "per_image": per_image}
        for name, per_image in (("webdataset", tar), ("parquet", parquet))
    }


@hookimpl(trylast=True)
def register_data_readers():
    """``ailusion train`` reads labelled webdataset and parquet dirs too."""
    from .readers import ParquetReader, WebDatasetReader

    return {"webdataset": WebDatasetReader, "parquet": ParquetReader}


def _imagefolder(config, context):
    from .imagefolder import ImageFolderWriter

    return ImageFolderWriter(config, context)


def _webdataset(config, context):
    from .webdataset import WebDatasetWriter

    return WebDatasetWriter(config, context)


def _parquet(config, context):
    from .parquet import ParquetWriter

    return ParquetWriter(config, context)
