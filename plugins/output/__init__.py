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


def _imagefolder(config, context):
    from .imagefolder import ImageFolderWriter

    return ImageFolderWriter(config, context)


def _webdataset(config, context):
    from .webdataset import WebDatasetWriter

    return WebDatasetWriter(config, context)


def _parquet(config, context):
    from .parquet import ParquetWriter

    return ParquetWriter(config, context)
