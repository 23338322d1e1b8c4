"""The sweep summary: after every multirun, ``summary.csv`` and ``summary.png`` in the sweep dir.

A Hydra callback (``hydra.callbacks.sweep_summary`` in conf/config.yaml). Each job, in whatever
process its launcher runs it (the basic launcher, joblib's workers, submitit's), leaves
``.hydra/job_return.json`` in its run dir: its number, overrides, return value (the objective
when training is configured) and time. At the end of the multirun the summary is built from the
job dirs on disk, not from in-process returns, so it is the same whatever the launcher, and
``python -m ailusion.sweeps SWEEP_DIR`` rebuilds it for any sweep dir.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)
RECORD = "job_return.json"
METRICS = Path("train") / "metrics.json"  # where the one-job mode writes its metrics


class SweepSummary(Callback):
    """Records each job as it ends; writes the sweep's summary when the multirun ends."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._started: float | None = None

    def on_job_start(self, config, **kwargs: Any) -> None:
        self._started = time.perf_counter()

    def on_job_end(self, config, job_return, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not self.enabled or HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        run_dir = Path(config.hydra.runtime.output_dir)
        if not run_dir.is_dir():
            return
        value = job_return.return_value if job_return.status.name == "COMPLETED" else None
        record = {
            "job": int(config.hydra.job.num),
            "status": job_return.status.name.lower(),
            "overrides": list(job_return.overrides or []),
            "return_value": value if _is_number(value) else None,
            "seconds": round(time.perf_counter() - self._started, 3) if self._started else None,
        }
        _write(run_dir / _subdir(config) / RECORD, json.dumps(record, indent=1) + "\n")

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        if not self.enabled:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        try:
            csv_path, png_path, rows = write_summary(sweep_dir)
        except Exception as exc:  # the sweep's results are on disk; the summary must not hide them
            log.warning("sweep summary not written: %s: %s", type(exc).__name__, exc)
            return
        if rows:
            print(f"ailusion: sweep summary: {csv_path} and {png_path} ({len(rows)} jobs"
                  f"{best_line(rows)})", file=sys.stderr)


def _subdir(config) -> str:
    from .hydra_files import SUBDIR_ENV

    return config.hydra.job.env_set.get(SUBDIR_ENV) or config.hydra.output_subdir or ".hydra"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _write(path: Path, text: str) -> None:
    from .rundir.files import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def best_line(rows: list[dict]) -> str:
    """``; best: job N, OBJECTIVE VALUE: its swept overrides`` (empty without an objective)."""
    scored = [r for r in rows if _is_number(r.get("objective_value"))]
    if not scored:
        return ""
    best = max(scored, key=lambda r: r["objective_value"])
    name = best.get("objective") or "objective"
    swept = swept_keys(rows)
    overrides = " ".join(f"{k}={best['values'][k]}" for k in swept if k in best["values"])
    return f"; best: job {best['job']}, {name} {best['objective_value']:.4f}: {overrides}"


def write_summary(sweep_dir: Path) -> tuple[Path, Path, list[dict]]:
    """Write ``summary.csv`` and ``summary.png`` for the job dirs under ``sweep_dir``."""
    from .summary_plot import plot_summary

    rows = collect(sweep_dir)
    swept = swept_keys(rows)
    for row in rows:
        row.update({f"override.{k}": row["values"].get(k, "") for k in swept})
    metric_names = sorted({k for r in rows for k in r["metrics"]})
    columns = (["job", "dir", "status", "overrides", *(f"override.{k}" for k in swept),
                "objective", "objective_value", *metric_names, "images", "seconds"])
    lines = [columns]
    for row in rows:
        flat = {**row, **row["metrics"], "overrides": " ".join(row["override_list"])}
        lines.append(["" if flat.get(c) is None else flat.get(c) for c in columns])
    csv_path, png_path = sweep_dir / "summary.csv", sweep_dir / "summary.png"
    from io import StringIO

    buffer = StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    _write(csv_path, buffer.getvalue())
    plot_summary(rows, swept, png_path)
    return csv_path, png_path, rows


def collect(sweep_dir: Path) -> list[dict]:
    """One dict per job dir under ``sweep_dir`` (a dir with a job record or ``.hydra/``)."""
    rows = []
    for record_path in sorted(sweep_dir.glob(f"**/{RECORD}")):
        job_dir = record_path.parent.parent
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("sweep summary: %s is unreadable; job left out", record_path)
            continue
        if not isinstance(record, dict) or not isinstance(record.get("overrides"), list):
            log.warning("sweep summary: %s is not a job record; job left out", record_path)
            continue
        overrides = [str(o) for o in record["overrides"]]
        metrics = _metrics(job_dir)
        value = record.get("return_value")
        if not _is_number(value):
            value = metrics.get("objective_value")
        rows.append({
            "job": record.get("job"),
            "dir": str(job_dir.relative_to(sweep_dir)),
            "status": record.get("status"),
            "override_list": overrides,
            "values": dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o),
            "objective": metrics.pop("objective", None),
            "objective_value": value if _is_number(value) else None,
            "metrics": {k: v for k, v in metrics.items() if k != "objective_value"},
            "images": _images(job_dir),
            "seconds": record.get("seconds"),
        })
    rows.sort(key=lambda r: (r["job"] if isinstance(r["job"], int) else 1 << 30, r["dir"]))
    return rows


def swept_keys(rows: list[dict]) -> list[str]:
    """The override keys whose values differ between jobs (or that one job alone sets)."""
    keys: dict[str, set] = {}
    for row in rows:
        for key in row["values"]:
            keys.setdefault(key, set())
    for key in keys:
        keys[key] = {row["values"].get(key) for row in rows}
    return [k for k, values in keys.items() if len(values) > 1]


def _metrics(job_dir: Path) -> dict:
    """The scalar entries of the job's ``train/metrics.json`` (empty without training)."""
    path = job_dir / METRICS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("sweep summary: %s is unreadable; its metrics are left out", path)
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items()
            if _is_number(v) or (k == "objective" and isinstance(v, str))}


def _images(job_dir: Path) -> int | None:
    from .rundir.manifest import read_manifest

    try:
        return len(read_manifest(job_dir)) if (job_dir / "metadata.jsonl").is_file() else None
    except Exception:  # an unreadable manifest: the count is unknown, the row stays
        return None


if __name__ == "__main__":  # python -m ailusion.sweeps SWEEP_DIR: (re)build a sweep's summary
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python -m ailusion.sweeps SWEEP_DIR")
    csv_file, png_file, found = write_summary(Path(sys.argv[1]))
    print(f"{csv_file} and {png_file}: {len(found)} jobs{best_line(found)}")
