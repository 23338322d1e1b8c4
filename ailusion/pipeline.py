"""The pipeline runner: prompts → generator → preprocessor → model, streamed.

The calling thread drives the generator (the GPU) and does nothing else; PNG encoding,
preprocessing and the forward pass run on worker threads fed through bounded queues, so the run
goes at the pace of its slowest stage and its memory does not grow with the number of images.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from . import labels, planning, png, schemas
from .devices import setup_job_devices
from .errors import AilusionError, ConfigError
from .manager import get_plugin_manager, resolve
from .prompts import load_prompts
from .rundir import claim, shards, writers
from .rundir.outputs import Outputs
from .stages import StageContext, check_info
from .streaming import Consumer


@dataclass
class RunResult:
    """What a run produced; every path is inside ``run_dir``."""

    run_dir: Path
    image_paths: list[Path]
    preprocessed_paths: list[Path]
    predictions: np.ndarray  # (N, len(labels)) logits
    labels: list[str]
    summary: dict = field(default_factory=dict)
    #: what each image is called, in order: its file, or its shard and key (``00000.tar:00000001``)
    names: list[str] = field(default_factory=list)


def build_stages(config: DictConfig, context: StageContext, pm):
    """Resolve and construct the three stages; config errors surface here, before any work.
    Each factory gets its node checked against, and typed by, the schema its plugin registered."""
    stages = []
    for stage in ("generator", "preprocessor", "model"):
        name = config[stage].get("plugin")
        factory = resolve(pm, stage, name)
        node = schemas.typed_node(pm, stage, config[stage])
        try:
            stages.append(factory(node, context))
        except AilusionError:
            raise
        except Exception as exc:  # a plugin's bug, reported as one line naming the plugin
            raise AilusionError(
                f"{stage}.plugin: plugin {name!r} failed to start: {type(exc).__name__}: {exc}"
            ) from exc
    return tuple(stages)


def check_config(config: DictConfig) -> None:
    """Check the ranges of the keys the pipeline itself reads (the schema checks their types)."""
    schemas.check_config_keys(config)
    if not 0 <= config.png_compress_level <= 9:
        raise ConfigError(
            "png_compress_level", f"must be in [0, 9], got {config.png_compress_level}"
        )
    for key, known in (("png_strategy", png.PNG_STRATEGIES), ("png_encoder", png.ENCODERS)):
        if config[key] not in known:
            raise ConfigError(key, f"must be one of {', '.join(known)}, got {config[key]!r}")
    writers.check_output(config.get("output"))
    _batch_size(config)


def job_requests(plan, config: DictConfig):
    """This job's requests (``shard`` of ``num_shards``): whole blocks of consecutive images,
    blocks ``shard``, ``shard + num_shards``, … (:func:`ailusion.rundir.shards.job_requests`; a
    lazy :class:`ailusion.planning.Plan` stays lazy). A block is an output shard of a shard
    format, and an array chunk of a big ``imagefolder`` run (``output.shard_size`` images: whole
    subdirs too when it is a multiple of 500); a small ``imagefolder`` run is cut into one range
    of images per job. So no two jobs write one file or subdir, and a failed job is rerun alone."""
    shard, num_shards = config.shard, config.num_shards
    if num_shards < 1:
        raise AilusionError(f"num_shards: must be at least 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise AilusionError(f"shard: must be in [0, {num_shards - 1}], got {shard}")
    output = config.output
    block = output.shard_size
    if output.format == "imagefolder" and len(plan) <= output.subdirs_above:
        block = max(1, -(-len(plan) // num_shards))
    return shards.job_requests(plan, shard, num_shards, block)


def run_pipeline(config: DictConfig, run_dir: Path, pm=None, job_num: int = 0) -> RunResult:
    """Run one job into ``run_dir`` and return its results.

    Everything that can be checked without a model is checked before anything is written, and a
    run that fails before writing leaves no run dir behind.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    before = claim.snapshot(run_dir)  # a failed run removes only what it created
    pm = pm or get_plugin_manager()
    try:
        setup_job_devices(config, job_num)  # before any stage can import torch

        # 1. Plugins and stages
        check_config(config)
        context = StageContext(config=config, run_dir=run_dir, job_num=job_num)
        stages = build_stages(config, context, pm)
        writer = writers.build_writer(config, context, pm)

        # 2. Plan the images (lazily: nothing is listed), keep this job's (whole blocks of
        #    images: see job_requests), then hold the run dir while writing it
        prompts = load_prompts(config)
        plan = stages[0].plan(prompts)
        classes = planning.run_classes(prompts, plan)
        requests = job_requests(plan, config)
        record = claim.fingerprint(config, planning.digest(prompts, plan))
        with claim.claim(run_dir, record):
            return _run(config, run_dir, pm, stages + (writer,), requests, record, started,
                        classes, len(plan))
    except BaseException:
        claim.discard_if_unused(run_dir, before)
        raise


def _run(config, run_dir: Path, pm, stages, requests, record, started: float,
         classes: list[str] | None, planned: int) -> RunResult:
    generator, preprocessor, model, writer = stages
    plugin, ids = config.generator.plugin, labels.class_ids(classes)

    # 3. Find what a previous run completed; load the models, the model first so juliacall can
    #    load before torch; only then write (a failure so far leaves the dir as it was)
    model.setup(preprocessor.output_shape)
    info = writers.RunInfo(
        format=config.output.format, shard_size=config.output.shard_size, planned=planned,
        preprocessing=preprocessor.settings(), preprocessed_shape=preprocessor.output_shape,
        preprocessed_dtype=str(np.dtype(getattr(preprocessor, "dtype", "float32"))),
        labels=list(model.labels),
    )
    done, kept = writer.complete(requests)
    job = requests  # this job's images, made now or by a previous run
    if kept:  # whole shards a previous run completed: not made, not even passed on
        requests = planning.Remaining(requests, kept)
    todo = planning.Remaining(requests, done)
    if len(todo):
        generator.setup()
    claim.start(run_dir, record)
    writer.start(requests, info, done)
    if classes is not None:
        labels.write_classes(run_dir, classes)
    pm.hook.run_start(config=config, run_dir=run_dir, requests=requests)

    # 4. Stream: generate here; save, preprocess and forward on the consumer's threads
    outputs = Outputs(run_dir, len(requests), preprocessor, model, writer, ids,
                      batch_size=_batch_size(config))
    if hasattr(model, "save"):
        outputs.write(model.save, run_dir)
    group = None
    if isinstance(writer, shards.ShardWriter):
        group = lambda index: shards.shard_of(index, writer.shard_size)  # noqa: E731
    consumer = Consumer(outputs, preprocessor, model, pm, done, batch_size=_batch_size(config),
                        group=group)
    progress, made = _progress(config, len(requests)), claim.RequestsDigest()
    try:
        with consumer:
            images = iter(generator.generate(todo)) if len(todo) else iter(())
            for request in requests:
                labels.check_request(request, ids, plugin)
                made.add(request)
                generated = None if request.index in done else next(images, None)
                if generated is None and request.index not in done:
                    raise AilusionError(
                        f"generator {plugin!r} stopped before image {request.index}"
                    )
                if generated is not None and generated.request.index != request.index:
                    raise AilusionError(
                        f"generator {plugin!r} yielded image "
                        f"{generated.request.index} where {request.index} was expected"
                    )
                if generated is not None:
                    generated.info = check_info(config.generator.plugin, generated.info)
                consumer.put(request, generated)
                progress.update(1)
        rows = outputs.finish()
        claim.finish(run_dir, record, claim.requests_digest(job) if kept else made.hexdigest(),
                     outputs.sha256)
    except BaseException:
        outputs.abort()
        raise
    finally:
        progress.close()

    # 5. Finish: the summary
    rows = [rows[r.index] for r in requests]
    summary = {
        "written": len(requests) - len(done),
        "skipped": len(done) + len(kept),
        "flagged": sum(1 for row in rows if row.get("flagged")),
        "seconds": round(time.perf_counter() - started, 3),
        "run_dir": str(run_dir),
    }
    pm.hook.run_end(config=config, run_dir=run_dir, summary=summary)
    return RunResult(
        run_dir=run_dir,
        image_paths=[run_dir / row["file_name"] for row in rows if "file_name" in row],
        preprocessed_paths=[run_dir / row["preprocessed_file_name"] for row in rows
                            if "preprocessed_file_name" in row],
        predictions=outputs.logits,
        labels=list(model.labels),
        summary=summary,
        names=[row.get("file_name") or writer_name(writer, row["index"]) for row in rows],
    )


def writer_name(writer, index: int) -> str:
    """``SHARD:KEY`` of image ``index`` in a shard format (its name where it has no file)."""
    if isinstance(writer, shards.ShardWriter):
        number = shards.shard_of(index, writer.shard_size)
        return f"{shards.shard_name(number, writer.suffix)}:{shards.sample_key(index)}"
    return str(index)


def _batch_size(config: DictConfig) -> int:
    size = config.model.get("batch_size", 8)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError("model.batch_size", f"must be a positive integer, got {size!r}")
    return size


def _progress(config: DictConfig, total: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc="images", unit="img", disable=not config.progress, file=sys.stderr
    )
