"""One run per run dir: the lock, the config a dir was made with, and what a killed run left.

A run holds ``.ailusion.lock`` (an ``flock``, released by the kernel when the process dies, so a
killed run never leaves a stale lock) for as long as it writes. ``.ailusion.json`` records the
composed config and digests of what decides the planned images beside it (the plan's inputs,
:func:`ailusion.planning.digest`, and the prompts file's bytes), never a list of the images; a
later run into the same dir resumes only when they match, so two configs never mix in one
dataset. A finished run adds ``requests_sha256``, the digest of the images it made (number,
prompt, seed, source, label), which merging checks the rows against.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import AilusionError, resolver_error
from . import files, manifest, records

LOCK_FILE = ".ailusion.lock"
RUN_FILE = ".ailusion.json"
#: Config keys that change how a run reports, where it runs, how its PNGs are compressed or what
#: is trained on it afterwards, not which images (pixels, arrays, predictions) it makes: a run
#: may be resumed with other values.
IGNORED_KEYS = ("hydra", "progress", "gpu_per_job", "png_compress_level", "png_strategy",
                "png_encoder", "train", "eval_dir")


def fingerprint(config, plan_sha256: str) -> dict:
    """What decides a run's images: the config (minus :data:`IGNORED_KEYS`), the digest of the
    plan's inputs (the same for every shard of one run) and the prompts file's content."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        values = OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as exc:
        if resolver_error(exc) is not None:  # ${real_digits:}'s own one line
            raise resolver_error(exc) from None
        message = str(exc).splitlines()[0]
        raise AilusionError(f"{getattr(exc, 'full_key', None) or 'config'}: {message}") from None
    # The prompts file counts by its content, not its path: the same path holding other text is
    # another run, and the same text moved elsewhere is the same run (so does a classes file,
    # whose classes the plan's digest holds).
    prompts_file = values.pop("prompts_file", None)
    values.pop("classes_file", None)
    record = {"config": values, "plan_sha256": plan_sha256,
              "prompts_sha256": prompts_digest(prompts_file)}
    return _comparable(json.loads(json.dumps(record, sort_keys=True)))


class RequestsDigest:
    """The sha256 of a run's images (number, prompt, negative prompt, seed, source, label), fed
    one request at a time in image order, as a run makes them."""

    def __init__(self):
        self._sha = hashlib.sha256()

    def add(self, r) -> None:
        row = [r.index, r.prompt, r.negative_prompt, r.seed, r.source, r.label]
        self._sha.update(json.dumps(row).encode("utf-8") + b"\n")

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def requests_digest(requests) -> str:
    """The :class:`RequestsDigest` of ``requests``."""
    digest = RequestsDigest()
    for request in requests:
        digest.add(request)
    return digest.hexdigest()


def finish(run_dir: Path, record: dict, requests_sha256: str,
           files_sha256: dict[str, str] | None = None) -> None:
    """Record that the run made its images: ``requests_sha256`` joins the record, and
    ``files_sha256``, the digests of the arrays it wrote (``ailusion merge`` checks them)."""
    files.write_json(Path(run_dir) / RUN_FILE, {**record, "requests_sha256": requests_sha256,
                                                 "files_sha256": files_sha256 or {}})


def request_of(row: dict):
    """The :class:`ailusion.stages.ImageRequest` a manifest row was made for."""
    from dataclasses import fields

    from ..stages import ImageRequest

    return ImageRequest(**{f.name: row.get(f.name) for f in fields(ImageRequest)})


def prompts_digest(prompts_file) -> str | None:
    """The sha256 of the prompts file's bytes (None without one)."""
    if not prompts_file:
        return None
    try:
        return hashlib.sha256(Path(prompts_file).read_bytes()).hexdigest()
    except OSError as exc:
        raise AilusionError(f"prompts_file: cannot read {prompts_file}: {exc.strerror}") from None


def _comparable(record: dict) -> dict:
    """``record`` without the :data:`IGNORED_KEYS` of its config (a stored record may predate a
    key's being ignored)."""
    for key in IGNORED_KEYS:
        record["config"].pop(key, None)
    record.pop("requests_sha256", None)  # what a finished run made, not what decides it
    record.pop("files_sha256", None)
    return record


@contextmanager
def claim(run_dir: Path, record: dict) -> Iterator[None]:
    """Hold ``run_dir`` for one run: fail at once if another run holds it, or if it holds a run
    of another config."""
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AilusionError(f"{run_dir}: cannot create the run dir: {exc.strerror}") from None
    for name in (LOCK_FILE, RUN_FILE, manifest.MANIFEST, ".hydra"):
        if (run_dir / name).is_symlink():  # opening it would write where it points
            raise records.UnsafePathError(
                f"{run_dir / name}: is a symlink; a run dir's own files must be plain files"
            )
    lock = FileLock(str(run_dir / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise AilusionError(
            f"{run_dir}: in use by another ailusion run (it holds {LOCK_FILE}); "
            "wait for it to finish or pick another hydra.run.dir"
        ) from None
    try:
        _check_same_run(run_dir, record)
        yield
    finally:
        lock.release()


def start(run_dir: Path, record: dict) -> None:
    """Begin writing: drop a killed run's temporary files, record the run's config."""
    for entry in Path(run_dir).iterdir():
        if files.is_temporary(entry.name) and (entry.is_symlink() or entry.is_file()):
            entry.unlink(missing_ok=True)
    with files.atomic_path(Path(run_dir) / RUN_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _check_same_run(run_dir: Path, record: dict) -> None:
    path = run_dir / RUN_FILE
    if not path.exists():
        if (run_dir / manifest.MANIFEST).exists():
            raise AilusionError(
                f"{run_dir}: holds a dataset without {RUN_FILE}, so it cannot be resumed; "
                "pick another hydra.run.dir"
            )
        return
    recovery = (f"{run_dir} cannot be resumed: move it away (or delete it) to start over, "
                "or pick another hydra.run.dir")
    previous = _comparable(records.check_run_record(records.read_json(path, recovery), path,
                                                    recovery))
    if previous != record:
        raise AilusionError(
            f"{run_dir}: holds a run of another config ({_difference(previous, record)}); "
            "resume it with the same config or pick another hydra.run.dir"
        )


def _difference(old: dict, new: dict) -> str:
    """The first config key whose value differs, as ``key: OLD there, NEW now``."""
    before, after = _flatten(old.get("config", {})), _flatten(new.get("config", {}))
    for key in sorted(before.keys() | after.keys()):
        if before.get(key, "<unset>") != after.get(key, "<unset>"):
            return f"{key}: {before.get(key, '<unset>')!r} there, {after.get(key, '<unset>')!r} now"
    if old.get("prompts_sha256") != new.get("prompts_sha256"):
        return "the prompts file's content differs"
    return "its prompts, classes or source files differ"


def _flatten(node, prefix: str = "") -> dict:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}"))
    return out


#: The nearest dir that existed before Hydra made the run's (or the sweep's) dir, recorded by
#: :class:`RecordExistingDir` as the run starts (in the environment, so that the jobs a launcher
#: runs in other processes see it too): a failed run removes no dir at or above it.
EXISTED_ENV = "AILUSION_EXISTING_DIR"


@dataclass(frozen=True)
class Before:
    """What was there before a run started: the names in its dir (None: no dir), and the nearest
    dir that existed (the run dir itself when it did)."""

    names: frozenset[str] | None
    existed: Path


def snapshot(run_dir: Path) -> Before:
    """What ``run_dir`` held before a run starts, for :func:`discard_if_unused`."""
    try:
        names = frozenset(os.listdir(run_dir))
    except OSError:
        return Before(None, nearest_existing(run_dir))
    return Before(names, _recorded(run_dir))


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists, resolved."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path.resolve()


def _recorded(run_dir: Path) -> Path:
    """The dir :class:`RecordExistingDir` recorded when it is ``run_dir`` or above it; else
    ``run_dir`` itself (nothing is known to have been made for the run: nothing is removed)."""
    target = Path(run_dir).resolve()
    recorded = os.environ.get(EXISTED_ENV)
    if recorded and (Path(recorded) == target or Path(recorded) in target.parents):
        return Path(recorded)
    return target


class RecordExistingDir:
    """Hydra callback (``hydra.callbacks.existing_dir`` in the apps' configs): before Hydra makes
    the run's dir, or the sweep's, records the nearest dir that exists, so that a failed run
    removes only the dirs made for it, never one a user made, empty or not."""

    def on_run_start(self, config, **kwargs) -> None:
        os.environ[EXISTED_ENV] = str(nearest_existing(Path(config.hydra.run.dir)))

    def on_multirun_start(self, config, **kwargs) -> None:
        os.environ[EXISTED_ENV] = str(nearest_existing(Path(config.hydra.sweep.dir)))

    # Hydra calls every event on every callback (hydra.experimental.callback.Callback's methods,
    # not subclassed here: importing it costs a run that does not use Hydra 0.15 s).
    def on_run_end(self, config, **kwargs) -> None: ...
    def on_multirun_end(self, config, **kwargs) -> None: ...
    def on_job_start(self, config, **kwargs) -> None: ...
    def on_job_end(self, config, job_return, **kwargs) -> None: ...


def discard_if_unused(run_dir: Path, before: Before | None = None) -> None:
    """After a run that failed before writing any data, remove what it created in ``run_dir``,
    and nothing else: the lock and ``.hydra/`` it made, Hydra's log file when this process made
    it, and the dir itself and the empty dirs above it that were made for the run (below
    ``before.existed``). ``before`` is :func:`snapshot` of the dir taken as the run started
    (None: the dir was made for the run, as far as :class:`RecordExistingDir` tells). A dir
    another run holds is left alone."""
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    if before is None:
        before = Before(None, _recorded(run_dir))
    names = {entry.name for entry in run_dir.iterdir()}
    earlier = before.names or frozenset()
    created = names - earlier
    had_data = any(_is_data(name) for name in earlier)
    # A dir with data keeps its logs (a history of its runs); else the logs this process made go.
    log = _hydra_log_name()
    logs = {log} if log in names and not had_data and _made_by_this_process(run_dir / log) else set()
    if any(_is_data(name) for name in created):
        return  # the run wrote data: it stays, to be resumed
    lock = FileLock(str(run_dir / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except (Timeout, OSError):  # held by another run, or not a lock this run can take
        return
    try:
        if ".hydra" in created:
            shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
        for name in logs:
            (run_dir / name).unlink(missing_ok=True)
        if LOCK_FILE not in earlier:  # made by this run (or just now, to hold the dir)
            (run_dir / LOCK_FILE).unlink(missing_ok=True)
    finally:
        lock.release()
    if not earlier <= logs:  # the dir held something before the run (other than its own log)
        return
    # Then the dir, and the parents left empty (Hydra's outputs/DATE/), down from the nearest
    # dir that existed before the run.
    target = run_dir.resolve()
    while before.existed in target.parents:
        try:
            os.rmdir(target)
        except OSError:  # not empty (something new appeared, or another run's): keep it
            break
        target = target.parent


def _hydra_log_name() -> str | None:
    """The name of the log file Hydra opened in the job's dir (None outside a Hydra job)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return f"{HydraConfig.get().job.name}.log"
    except Exception:  # not a Hydra job (the Python API), or Hydra is not set up
        return None


def _is_data(name: str) -> bool:
    return name not in (".hydra", LOCK_FILE) and not name.endswith(".log")


def _made_by_this_process(path: Path) -> bool:
    """True for a file created since this process started (Hydra's log file of this job)."""
    try:
        return path.stat().st_ctime >= _process_start_time() and not path.is_symlink()
    except OSError:
        return False


def _process_start_time() -> float:
    """When this process started (seconds since the epoch); +inf where it cannot be told."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK") - 1.0  # btime is whole seconds
    except (OSError, ValueError, IndexError, StopIteration):
        return float("inf")
