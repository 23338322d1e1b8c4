"""Errors a user can fix, and warnings, each one line: the CLI prints them without a traceback,
and :func:`ailusion.run` raises every user error as an :class:`AilusionError` with that line."""

from __future__ import annotations

import contextlib
import os
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


def resolver_error(exc: BaseException) -> AilusionError | None:
    """The :class:`AilusionError` a config resolver (``${real_digits:}``) raised, which OmegaConf
    wraps in its own resolution error; None for any other error."""
    while exc is not None and not isinstance(exc, AilusionError):
        exc = exc.__context__
    return exc


def error_line(exc: BaseException) -> str:
    """``exc`` as one line: the message of a user error, the type too for anything else."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, OmegaConfBaseException) and resolver_error(exc) is not None:
        exc = resolver_error(exc)  # its own line, not OmegaConf's wrapping of it
    if isinstance(exc, (AilusionError, HydraException, OmegaConfBaseException)):
        text = str(exc).split("Config search path:")[0]
        if isinstance(exc.__cause__, OmegaConfBaseException):  # its next lines repeat the key
            text = f"{text}: {str(exc.__cause__).splitlines()[0]}"
        text = text.replace(":\n\t", ": ").replace("\n\t", ", ")
    elif _read_only(exc) is not None:
        text = _read_only(exc)
    elif isinstance(exc, OSError) and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = f"{type(exc).__name__}: {exc} (HYDRA_FULL_ERROR=1 shows the traceback)"
    return " ".join(text.split())


def _read_only(exc: BaseException) -> str | None:
    """The line for a run dir that cannot be written (a read-only file system, no permission),
    from the error itself or from Hydra's failure to open its log file there."""
    import errno

    if isinstance(exc, ValueError) and str(exc).startswith("Unable to configure handler"):
        exc = exc.__cause__ or exc.__context__  # logging's error, raised from the OSError
    if not (isinstance(exc, OSError) and exc.filename
            and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)):
        return None
    where, name = os.path.split(exc.filename)
    return (f"{where}: is read-only ({exc.strerror}: cannot write {name}); "
            "a run needs a writable dir: pick another hydra.run.dir, or copy this one to a "
            "writable place to resume it")


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
