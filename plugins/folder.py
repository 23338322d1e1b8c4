"""Generator ``folder``: pre-generated images read from a folder instead of a diffusion model.

``generator=folder generator.path=DIR`` takes every .png/.jpg/.jpeg/.webp file directly in DIR,
in sorted order of their names, turned upright by their EXIF orientation and converted to RGB.
Prompts are not used. Files are checked while planning, so an unreadable one is skipped (with a
warning naming it, ``on_error: skip``) or stops the run before any work (``on_error: fail``),
and the images keep consecutive numbers.

Labels come from class subfolders, as torchvision's ``ImageFolder`` lays them out
(``DIR/cat/*.png``, ``DIR/dog/*.png``): when DIR holds no images of its own but subfolders of
them, each subfolder is a class (sorted by name, or in the order of ``classes`` when the config
gives them), its images (sorted, subfolders included) are labelled with it, and the run is
labelled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from ailusion import hookimpl
from ailusion.errors import AilusionError, ConfigError
from ailusion.planning import Plan
from ailusion.stages import GeneratedImage, ImageRequest, Prompt, StageContext

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
log = logging.getLogger(__name__)


@dataclass
class FolderConfig:
    """The keys of ``conf/generator/folder.yaml``."""

    path: Optional[str] = None
    on_error: str = "skip"


class FolderGenerator:
    """Yields the images of ``path``, one request per readable file."""

    def __init__(self, config, context: StageContext):
        if not config.get("path"):
            raise ConfigError("generator.path", "give the folder of images: generator.path=DIR")
        self.path = Path(config.path).expanduser()
        if not self.path.is_dir():
            raise ConfigError("generator.path", f"no such folder: {self.path}")
        self.on_error = config.get("on_error", "skip")
        if self.on_error not in ("skip", "fail"):
            raise ConfigError("generator.on_error", f"must be skip or fail, got {self.on_error!r}")
        self.files, self.classes = _find_images(self.path)

    def plan(self, prompts: Sequence[Prompt]) -> Plan:
        """One request per readable file (``source`` is its path, ``label`` its class folder's
        name); ``prompts`` are not used, but their class list (``classes``) orders the classes."""
        classes = _class_order(self.path, self.classes, getattr(prompts, "classes", None))
        ids = None if classes is None else {name: i for i, name in enumerate(classes)}
        files = self.files if ids is None else sorted(self.files, key=lambda f: ids[f[1]])
        readable = []
        for path, label in files:
            try:
                load_image(path)
            except AilusionError as exc:
                if self.on_error == "fail":
                    raise
                log.warning("%s; skipped", exc)
                continue
            readable.append((str(path), label))
        if not readable:
            raise ConfigError("generator.path", f"no readable image in {self.path}")

        def request(index: int) -> ImageRequest:
            source, label = readable[index - 1]
            return ImageRequest(index, source=source, label=label,
                                label_id=None if ids is None else ids[label])

        return Plan(len(readable), request, classes=classes, inputs=readable)

    def setup(self) -> None:
        """Nothing to load."""

    def generate(self, requests: Sequence[ImageRequest]) -> Iterator[GeneratedImage]:
        """Yield each requested file as an upright RGB image."""
        for request in requests:
            image = load_image(Path(request.source))
            yield GeneratedImage(request, image, {"height": image.height, "width": image.width})


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def _find_images(root: Path) -> tuple[list[tuple[Path, str | None]], list[str] | None]:
    """``[(file, class or None)]`` and the class folders' names (None for a flat folder)."""
    kinds = "/".join(EXTENSIONS)
    flat = _images_in(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    nested = {d.name: sorted(p for p in d.rglob("*") if p.is_file()
                             and p.suffix.lower() in EXTENSIONS) for d in folders}
    labelled = {name: files for name, files in nested.items() if files}
    if flat:
        if labelled:
            raise ConfigError("generator.path", (
                f"{root} holds images and class subfolders of images ({', '.join(labelled)}): "
                "put every image in a class subfolder (a labelled run) or none"))
        return [(p, None) for p in flat], None
    if not labelled:
        raise ConfigError("generator.path", f"no {kinds} files in {root} or its subfolders")
    empty = [name for name, files in nested.items() if not files]
    if empty:
        raise ConfigError("generator.path", f"class folder {root / empty[0]} has no {kinds} files")
    return [(p, name) for name, files in labelled.items() for p in files], list(labelled)


def _class_order(root: Path, found: list[str] | None, given: list[str] | None):
    """The run's class list: the folders' (sorted), or ``classes`` from the config, which must
    name the same classes."""
    if given is None or found is None:
        if given is not None:
            raise ConfigError("classes", f"{root} has no class subfolders to match the classes")
        return found
    if set(given) != set(found):
        extra = sorted(set(found) ^ set(given))[0]
        problem = (f"has no folder in {root}" if extra in given
                   else f"is a folder of {root} but not in classes")
        raise ConfigError("classes", f"class {extra!r} {problem} (the folders: {', '.join(found)})")
    return list(given)


def load_image(path: Path):
    """Read ``path`` as an upright RGB image, deep and transparent modes scaled and composited
    (:func:`ailusion.images.open_image`); an unreadable or refused file (corrupt, truncated, a
    decompression bomb) is one :class:`AilusionError` naming it."""
    from ailusion.images import ImageError, open_image

    try:
        return open_image(path)
    except ImageError as exc:
        raise AilusionError(f"generator.path: {exc}") from None


@hookimpl(trylast=True)
def register_generators():
    """The ``folder`` generator."""
    return {"folder": FolderGenerator}


@hookimpl(trylast=True)
def register_config_schemas():
    """The keys and types of the ``generator`` node when its plugin is ``folder``."""
    return {"generator/folder": FolderConfig}
