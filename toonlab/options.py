"""The one command-line vocabulary (README, "Command-line vocabulary"): the same flag for the same idea
in every command, and the old spellings as hidden aliases that still work for one release.

Every command is a :class:`ToonCommand` (``@click.command(cls=ToonCommand, aliases={...})``). Its
``aliases`` map an old spelling to the new one before click parses the arguments:

* ``"--iter": "--iters"`` — a renamed flag (its value follows);
* ``"--vgg=random": "--features=random"`` — one value of an old flag;
* ``"--out=*.md": "--report"`` — an old flag whose value matches a pattern, renamed (value kept);
* ``positional=("--ckpt", "--out")`` — leading positional arguments of an old form.

Each use prints one line, ``warning: --iter is deprecated; use --iters``, on stderr.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import click

__all__ = ["ToonCommand", "ToonGroup", "rewrite_aliases", "VOCABULARY"]

#: The shared flags (what the README's table says), for reference and for tests.
VOCABULARY: dict[str, str] = {
    "--ckpt": "the model file a command reads (role names where it takes several: --source, --cartoon, --translator)",
    "--out": "where results go: a folder (a file only where the result is one file: export, swap, align)",
    "--iters": "how many steps (training or optimisation iterations)",
    "--kimg": "training length in thousands of images (StyleGAN2 trainers)",
    "--size": "image side in pixels",
    "--batch": "images per step (per GPU)",
    "--device": "auto, cpu, cuda or cuda:N",
    "--precision": "auto (bf16/fp16 on GPUs, fp32 on CPUs), fp32, bf16 (fp16 where supported)",
    "--seed": "random seed",
    "--json": "also write the results to this JSON file",
    "--features": "the pretrained feature networks: their real weights, or 'random' (offline smoke runs)",
    "--workers": "data loader worker processes",
    "--dry-run": "print the resolved configuration and exit",
}


def _warn(old: str, new: str) -> None:
    click.echo(f"warning: {old} is deprecated; use {new}", err=True)


def rewrite_aliases(args: Sequence[str], aliases: Mapping[str, str], positional: Sequence[str] = ()) -> list[str]:
    """Old spellings in ``args`` → the new ones, with one warning line per use."""
    out: list[str] = []
    args = list(args)
    i = 0
    # Leading positional arguments of an old form (``export.py SRC OUT`` → ``--ckpt SRC --out OUT``).
    if positional:
        k = 0
        while k < len(positional) and i < len(args) and not args[i].startswith("-"):
            _warn(f"the positional {positional[k].lstrip('-').upper()}", f"{positional[k]} {args[i]}")
            out += [positional[k], args[i]]
            i, k = i + 1, k + 1
    flags = {a for a in aliases if "=" not in a}
    valued = {a.split("=", 1)[0] for a in aliases if "=" in a}
    while i < len(args):
        a = args[i]
        if a == "--":
            out += args[i:]
            break
        name, eq, val = a.partition("=")
        if name in valued:
            value = val if eq else (args[i + 1] if i + 1 < len(args) else None)
            key = next((k for k in aliases if value is not None and "=" in k and k.split("=", 1)[0] == name
                        and fnmatch.fnmatchcase(value, k.split("=", 1)[1])), None)
            if key is not None:
                new = aliases[key]
                new_flag, has_val, new_val = new.partition("=")
                shown = new.replace("=", " ") if has_val else f"{new_flag} {value}"
                _warn(f"{name} {value}", shown)
                out += [new_flag, new_val if has_val else value]
                i += 1 if eq else 2
                continue
        if name in flags:
            new = aliases[name]
            _warn(name, new)
            out.append(new + (eq + val if eq else ""))
            i += 1
            continue
        out.append(a)
        i += 1
    return out


class ToonCommand(click.Command):
    """A click command that understands the deprecated spellings listed in ``aliases`` and always
    shows its defaults in ``--help``."""

    def __init__(self, *args: Any, aliases: Mapping[str, str] | None = None, positional: Sequence[str] = (),
                 **kw: Any) -> None:
        kw.setdefault("context_settings", {}).setdefault("show_default", True)
        kw["context_settings"].setdefault("help_option_names", ["-h", "--help"])
        super().__init__(*args, **kw)
        self.aliases = dict(aliases or {})
        self.positional = tuple(positional)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite_aliases(args, self.aliases, self.positional))

    def invoke(self, ctx: click.Context) -> Any:
        # Inside a CPU-quota'd container torch would start one thread per visible core (runtime.cpu_limit).
        from toonlab.runtime import limit_cpu_threads

        limit_cpu_threads()
        return super().invoke(ctx)


class ToonGroup(click.Group):
    """A click group whose commands are :class:`ToonCommand`\\ s by default."""

    command_class = ToonCommand

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("context_settings", {}).setdefault("help_option_names", ["-h", "--help"])
        super().__init__(*args, **kw)


def config_option(config_cls: type, field: str, *decls: str, **kw: Any):  # noqa: ANN201 - a click decorator
    """A click option for a config dataclass field: ``None`` when not given (the config's default
    applies), and that default shown in ``--help``."""
    import dataclasses

    f = {f.name: f for f in dataclasses.fields(config_cls)}[field]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    if "show_default" not in kw:
        kw["show_default"] = "off" if default is None or default is False else str(default)
    return click.option(*decls, field, default=None, **kw)


def run_config_command(config_cls: type, train: Any, dry_run: bool, opts: Mapping[str, Any]) -> None:
    """The body trainer commands share: build ``config_cls(**opts)`` (bad values are one line,
    exit 2), print it as JSON with ``--dry-run``, else ``train(cfg)`` and name the last checkpoint."""
    import json

    from toonlab.errors import user_errors

    with user_errors():
        cfg = config_cls(**opts)
        if dry_run:
            click.echo(json.dumps(cfg.to_dict(), indent=2))
            return
        last = train(cfg)
    if last is not None:
        click.echo(f"done: {last}")
