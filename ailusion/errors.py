"""Errors a user can fix, and warnings, each one line: the CLI prints them without a traceback,
and :func:`ailusion.run` raises every user error as an :class:`AilusionError` with that line."""

from __future__ import annotations

import contextlib
import warnings


class AilusionError(Exception):
    """An error in the user's input, config or environment, with a one-line, actionable message."""


class ConfigError(AilusionError):
    """A config value that is not allowed; the message names the key."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


class AilusionWarning(UserWarning):
    """A warning from ailusion, shown as one line: ``ailusion: warning: MESSAGE``."""


def error_line(exc: BaseException) -> str:
    """``exc`` as one line: the message of a user error, the type too for anything else."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, (AilusionError, HydraException, OmegaConfBaseException)):
        text = str(exc).split("Config search path:")[0]
        if isinstance(exc.__cause__, OmegaConfBaseException):  # its next lines repeat the key
            text = f"{text}: {str(exc.__cause__).splitlines()[0]}"
        text = text.replace(":\n\t", ": ").replace("\n\t", ", ")
    elif isinstance(exc, OSError) and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = f"{type(exc).__name__}: {exc} (HYDRA_FULL_ERROR=1 shows the traceback)"
    return " ".join(text.split())


@contextlib.contextmanager
def user_errors():
    """Re-raise Hydra's and OmegaConf's errors (a typo, an unknown option, a bad override) and
    file errors as :class:`AilusionError`, with the line the CLI prints for them."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except AilusionError:
        raise
    except (HydraException, OmegaConfBaseException) as exc:
        raise AilusionError(error_line(exc)) from exc
    except OSError as exc:
        if not exc.filename:
            raise
        raise AilusionError(error_line(exc)) from exc


_format_warning = warnings.formatwarning


def _one_line_warning(message, category, filename, lineno, line=None):
    if isinstance(category, type) and issubclass(category, AilusionWarning):
        text = " ".join(str(message).split()).removeprefix("ailusion: ")
        return f"ailusion: warning: {text}\n"
    return _format_warning(message, category, filename, lineno, line)


warnings.formatwarning = _one_line_warning
