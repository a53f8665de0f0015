"""Trainer hooks: how higher layers (periodic metrics) take part in a training run without the
trainers importing them.

A *hook factory* is built by a command-line extension (``metrics/hook.py``) from its own options;
it carries the settings it records in the run's ``config.json`` and is called with the trainer once
the networks exist, returning a :class:`Hook`. Trainer commands receive the factories through the
click context (:func:`hook_factories`), so ``stylegan2/train.py`` never names ``metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Protocol

__all__ = ["Hook", "HookFactory", "add_hook_factory", "hook_factories"]

_META_KEY = "toonlab.hook_factories"


class Hook:
    """Called by the training loop; every method is optional."""

    def start(self, trainer: Any) -> None:
        """Before the first step of this process (after a resume)."""

    def after_step(self, trainer: Any) -> Mapping[str, float]:
        """After every step: scalars to report (``{}`` when there is nothing to say this step)."""
        return {}

    def end(self, trainer: Any) -> None:
        """After the last step, or when the run stops early."""


class HookFactory(Protocol):
    """Builds a hook for a trainer; ``config`` is recorded in ``config.json`` (may change on resume)."""

    config: Mapping[str, Any]

    def __call__(self, trainer: Any) -> Hook: ...


def add_hook_factory(factory: HookFactory | Callable[[Any], Hook]) -> None:
    """Register a factory for the trainer command now running (called by CLI extensions)."""
    import click

    ctx = click.get_current_context()
    ctx.meta.setdefault(_META_KEY, []).append(factory)


def hook_factories() -> list[HookFactory]:
    """The factories registered for the command now running (none outside a click command)."""
    import click

    ctx = click.get_current_context(silent=True)
    return list(ctx.meta.get(_META_KEY, [])) if ctx is not None else []
