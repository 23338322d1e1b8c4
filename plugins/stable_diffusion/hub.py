"""Finding a model: a pipeline folder, the local Hugging Face cache, or the Hub.

Every way a model can be unavailable (a Hub id that is not cached while offline, a misspelt id,
a folder that is not a diffusers pipeline, an unreachable Hub) ends in one
:class:`~ailusion.errors.AilusionError` line naming the model, within seconds: what the disk can
tell is checked first, then the Hub is asked once with a short timeout, all before diffusers
(which would wait on the Hub without a timeout) is even imported.
"""

from __future__ import annotations

from pathlib import Path

from ailusion.errors import AilusionError

HINT = "or run the offline demo with generator=tiny"


def check_model(model: str, revision: str | None) -> bool:
    """Check what can be told from the disk alone, without the network or torch: a folder must
    be a diffusers pipeline, an id well-formed and, with ``HF_HUB_OFFLINE``, cached. Return
    whether the model is in the local Hugging Face cache (a folder counts as cached)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise AilusionError(f"generator.model: {model} is not a diffusers pipeline folder (no "
                                f"model_index.json); give a folder made by save_pretrained, {HINT}")
        return True
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        raise AilusionError(f"generator.model: {model} is neither a folder nor a Hub id "
                            f"(owner/name); check the spelling, {HINT}") from None
    cached = isinstance(try_to_load_from_cache(model, "model_index.json", revision=revision), str)
    if constants.HF_HUB_OFFLINE and not cached:
        raise AilusionError(f"generator.model: {model} is not in the local Hugging Face cache "
                            f"and HF_HUB_OFFLINE is set; download it once online, {HINT}")
    return cached


def locate_model(model: str, revision: str | None) -> tuple[str, bool]:
    """Return ``(path or Hub id, local_files_only)`` for ``model``, or raise one clear line."""
    from huggingface_hub import constants, model_info
    from huggingface_hub.errors import (
        GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    cached = check_model(model, revision)
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser()), True
    if constants.HF_HUB_OFFLINE:
        return model, True
    try:
        model_info(model, revision=revision, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except GatedRepoError:  # a subclass of RepositoryNotFoundError: caught first
        raise AilusionError(f"generator.model: {model} is gated; accept its licence on the Hub "
                            f"and log in with `hf auth login`, {HINT}") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise AilusionError(f"generator.model: no model {model} (revision {revision or 'main'}) on "
                            f"the Hub; check the spelling, {HINT}") from None
    except Exception as exc:  # any network failure: fall back on the cache
        if cached:
            return model, True
        raise AilusionError(f"generator.model: {model} is not in the local cache and the Hub "
                            f"cannot be reached ({type(exc).__name__}); connect once to download "
                            f"it, {HINT}") from None
    return model, False
