"""Generator ``folder``: pre-generated images read from a folder instead of a diffusion model.

``generator=folder generator.path=DIR`` takes every .png/.jpg/.jpeg/.webp file directly in DIR,
in sorted order of their names, turned upright by their EXIF orientation and converted to RGB.
Prompts are not used. Files are checked while planning, so an unreadable one is skipped (with a
warning naming it, ``on_error: skip``) or stops the run before any work (``on_error: fail``),
and the images keep consecutive numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from ailusion import hookimpl
from ailusion.errors import AilusionError, ConfigError
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
        self.files = sorted(
            p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS
        )
        if not self.files:
            raise ConfigError("generator.path", f"no {'/'.join(EXTENSIONS)} files in {self.path}")

    def plan(self, prompts: Sequence[Prompt]) -> list[ImageRequest]:
        """One request per readable file (``source`` is its path); ``prompts`` are ignored."""
        readable = []
        for path in self.files:
            try:
                load_image(path)
            except AilusionError as exc:
                if self.on_error == "fail":
                    raise
                log.warning("%s; skipped", exc)
                continue
            readable.append(path)
        if not readable:
            raise ConfigError("generator.path", f"no readable image in {self.path}")
        return [ImageRequest(i, source=str(p)) for i, p in enumerate(readable, start=1)]

    def setup(self) -> None:
        """Nothing to load."""

    def generate(self, requests: Sequence[ImageRequest]) -> Iterator[GeneratedImage]:
        """Yield each requested file as an upright RGB image."""
        for request in requests:
            image = load_image(Path(request.source))
            yield GeneratedImage(request, image, {"height": image.height, "width": image.width})


def load_image(path: Path):
    """Read ``path`` as an upright RGB image; an unreadable file is one :class:`AilusionError`."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise AilusionError(f"generator.path: cannot read {path}: {reason}") from None


@hookimpl(trylast=True)
def register_generators():
    """The ``folder`` generator."""
    return {"folder": FolderGenerator}


@hookimpl(trylast=True)
def register_config_schemas():
    """The keys and types of the ``generator`` node when its plugin is ``folder``."""
    return {"generator/folder": FolderConfig}
