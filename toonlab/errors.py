"""User-facing errors: one line, exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import errno
import sys
import warnings
from typing import Iterator

import click


class ToonlabError(click.ClickException):
    """A problem with the user's input; click prints ``Error: <message>`` and exits with 2."""

    exit_code = 2


class UserInputError(ValueError):
    """Base class for errors our library raises on bad user input (bad file, bad checkpoint, a flag
    that does not fit the model...). The message says what is wrong in the terms of the command line
    (the flag's name and meaning), so CLIs print it as it is.

    Library code raises these (it must not depend on click); CLIs turn them into ToonlabError.
    """


#: Faults of the environment rather than of the code: reported as ``PATH: cause`` (exit 2).
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO,
                                errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EMFILE})


def environment_message(e: OSError) -> str:
    """``PATH: No space left on device`` — the one line for an OSError caused by the machine."""
    where = e.filename if e.filename is not None else ""
    cause = e.strerror or str(e)
    hint = {errno.ENOSPC: " (free some space and re-run)", errno.EDQUOT: " (over the disk quota)",
            errno.EROFS: " (choose a writable folder)", errno.EACCES: " (no permission; choose another folder)"}
    return f"{where}: {cause}{hint.get(e.errno, '')}" if where else f"{cause}{hint.get(e.errno, '')}"


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Convert the library's input errors and the machine's faults into one-line CLI errors (exit code 2)."""
    try:
        yield
    except UserInputError as e:
        raise ToonlabError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    except FileNotFoundError as e:
        raise ToonlabError(f"file not found: {e.filename or e}") from None
    except OSError as e:
        if e.errno in ENVIRONMENT_ERRNOS:
            raise ToonlabError(environment_message(e)) from None
        raise


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """``warning: <message>`` on stderr, without the source line (and without breaking a progress bar)."""
    text = f"warning: {message}"
    try:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    except Exception:  # noqa: BLE001 - never fail while warning
        print(text, file=sys.stderr)


def one_line_warnings() -> None:
    """Show warnings as one plain line (commands call this once; data loader workers too)."""
    warnings.showwarning = _one_line_warning
