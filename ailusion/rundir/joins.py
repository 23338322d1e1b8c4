"""``ailusion merge`` for shard formats: join the run dirs of a run's jobs without copying images.

Each job of a shard format wrote whole output shards of its own (``00000.tar``, ``00002.tar`` …
in one dir, ``00001.tar`` … in another). The merged dir holds a link to every shard, its
``_stats.json`` and contact sheet (hard links where the dirs share a file system, else symbolic
ones: no shard is copied), the run's ``info.json``, ``shards.json`` (an index: each shard, where
it was written, its count, flagged, bytes and sha256) and ``_stats.json`` (the totals), and, as
a run's dir, ``.ailusion.json`` (the run's settings, of ``shard=0 num_shards=1``, written once),
``classes.json`` and the model's weights: the merged dir is the unsharded run's dir of its format,
which the same config resumes into and ``ailusion train`` reads.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ..errors import AilusionError
from . import claim, files, records, shards

_STATS = re.compile(r"^(\d{5,})_stats\.json$")
STATS = "_stats.json"
#: How to recover a job's dir whose shard is damaged.
RECOVER = "run that job again with the same config (it writes that shard again), then merge"
INDEX = "shards.json"
FEATURES = "dataset_info.json"


def output_format(path: Path) -> str:
    """The output format of the run dir ``path``: its ``info.json``'s, or ``imagefolder`` for a
    dir made before formats were recorded."""
    info = path / shards.INFO
    if not info.is_file():
        return "imagefolder"
    return records.field(records.expect(records.read_json(info), dict, info, "the info"),
                         "format", str, info)


def read(path: Path) -> dict:
    """A shard-format run dir: its info, config and complete shards ``{number: stats}``."""
    where = path / shards.INFO
    info = records.expect(records.read_json(where), dict, where, "the info")
    for key in ("shard_size", "planned"):
        records.field(info, key, int, where)
    record_path = path / claim.RUN_FILE
    if not record_path.is_file():
        raise AilusionError(f"{path}: not a finished ailusion run dir (no {claim.RUN_FILE})")
    record = records.check_run_record(records.read_json(record_path), record_path)
    found = {}
    for entry in sorted(path.iterdir()):
        match = _STATS.match(entry.name)
        if not match:
            continue
        stats, number = records.expect(records.read_json(entry), dict, entry, "the stats"), \
            int(match.group(1))
        name = records.field(stats, "shard", str, entry)
        for key in ("count", "flagged", "bytes"):
            records.field(stats, key, int, entry)
        records.field(stats, "sha256", str, entry)
        if name != shards.shard_name(number, Path(name).suffix):
            raise records.corrupt(entry, f"it names another shard ({name!r})")
        shard = records.safe_path(path, name, entry, "shard")
        if not shard.is_file() or shard.stat().st_size != stats["bytes"]:
            raise AilusionError(f"{shard}: missing or not the size its stats give; "
                                "rerun that job to complete it")
        digest = records.sha256_file(shard)
        if digest != stats["sha256"]:
            raise AilusionError(f"{shard}: differs from the shard written (sha256 "
                                f"{(digest or 'unreadable')[:12]}…, recorded "
                                f"{stats['sha256'][:12]}…); {RECOVER}")
        found[number] = stats
    return {"path": path, "info": info, "config": record["config"], "record": record,
            "shards": found}


def check(parts: list[dict]) -> None:
    """Fail unless ``parts`` hold every shard of one run exactly once."""
    first = parts[0]
    owner: dict[int, Path] = {}
    for part in parts:
        if {**part["config"], "shard": 0} != {**first["config"], "shard": 0}:
            raise AilusionError(f"{part['path']} was made with another config than "
                                f"{first['path']} (only shard may differ)")
        for key, what in (("prompts_sha256", "prompts (the prompts file's content differs)"),
                          ("plan_sha256", "plan (its prompts, classes or source files differ)")):
            if part["record"].get(key) != first["record"].get(key):
                raise AilusionError(f"{part['path']} was made from other {what} than "
                                    f"{first['path']}")
        if {**part["info"], "planned": 0} != {**first["info"], "planned": 0}:
            raise AilusionError(f"{part['path']} was made with other output settings or "
                                f"preprocessing than {first['path']}")
        for number in part["shards"]:
            if number in owner:
                raise AilusionError(f"shard {number:05d} is in both {owner[number]} and "
                                    f"{part['path']}: these are not distinct jobs of one run")
            owner[number] = part["path"]
    size, planned = first["info"]["shard_size"], first["info"]["planned"]
    missing = sorted(set(range(math.ceil(planned / size) if size else 0)) - set(owner))
    if missing:
        raise AilusionError(f"shard {missing[0]:05d} of {math.ceil(planned / size)} is in none "
                            "of the dirs: pass the run dir of every job (or rerun the one that "
                            "failed)")


def write(out: Path, final: Path, parts: list[dict]) -> int:
    """Link the shards of ``parts`` into ``out`` (to be renamed ``final``); return the count."""
    index, totals = [], {"count": 0, "flagged": 0, "bytes": 0, "seconds": 0.0}
    (out / shards.SHEETS).mkdir()
    for part in parts:
        for number, stats in sorted(part["shards"].items()):
            source = part["path"] / stats["shard"]
            _link(source, out / stats["shard"])
            _link(part["path"] / shards.stats_name(number), out / shards.stats_name(number))
            sheet = part["path"] / shards.SHEETS / f"{number:05d}.png"
            if sheet.is_file():
                _link(sheet, out / shards.SHEETS / sheet.name)
            index.append({
                **{k: stats.get(k) for k in ("shard", "count", "flagged", "bytes", "sha256")},
                "source": os.path.relpath(source.resolve(), final.resolve()),
            })
            for key in totals:
                totals[key] += stats.get(key) or 0
    index.sort(key=lambda entry: entry["shard"])
    files.write_json(out / shards.INFO, parts[0]["info"])
    features = parts[0]["path"] / FEATURES  # the datasets features of a webdataset dir
    if features.is_file():
        records.safe_path(parts[0]["path"], FEATURES, parts[0]["path"], "its file")
        _link(features, out / FEATURES)
    files.write_json(out / INDEX, {"format": parts[0]["info"]["format"], "shards": index})
    totals["seconds"] = round(totals["seconds"], 3)
    files.write_json(out / STATS, {"shards": len(index), **totals})
    return totals["count"]


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system: a symbolic link, still no copy
        os.symlink(source.resolve(), target)
