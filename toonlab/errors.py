"""User-facing errors: one line, exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
from typing import Iterator

import click


class ToonlabError(click.ClickException):
    """A problem with the user's input; click prints ``Error: <message>`` and exits with 2."""

    exit_code = 2


class UserInputError(ValueError):
    """Base class for errors our library raises on bad user input (bad file, bad checkpoint...).

    Library code raises these (it must not depend on click); CLIs turn them into ToonlabError.
    """


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Convert the library's input errors into one-line CLI errors (exit code 2)."""
    try:
        yield
    except UserInputError as e:
        raise ToonlabError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    except FileNotFoundError as e:
        raise ToonlabError(f"file not found: {e.filename or e}") from None
